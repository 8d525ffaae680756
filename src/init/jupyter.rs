//! The idle watchdog's Jupyter rule: a notebook is busy while one of its
//! kernels executes or a client was active, not because a kernel exists, is
//! named python or holds a GPU open (Kubeflow and JupyterHub cull by kernel
//! activity for the same reason).
//!
//! Owns finding Jupyter servers (their `jpserver-PID.json` runtime files),
//! asking their REST API (`GET /api/status`, `GET /api/kernels`) with a
//! minimal blocking HTTP/1.1 client over loopback, and the pure decision
//! ([`judge`]). Which processes the rule covers is decided by the watchdog
//! ([`crate::init::idle`]) from [`tree_depths`].
//!
//! The runtime files sit in a directory the user controls and PID 1 is root:
//! a file is opened without following a link at its name, without blocking
//! (a FIFO), only if it is a regular file of at most [`MAX_FILE`] bytes owned
//! by the user the server process runs as, and what it says is used for one
//! thing only: an HTTP request to 127.0.0.1 on the port it names.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::libc;

use crate::init::civil;
use crate::init::duration;
use crate::init::json::{self, Json};
use crate::init::log::shown;

/// Largest runtime file read (Jupyter's are ~300 bytes).
pub const MAX_FILE: u64 = 64 * 1024;
/// Largest HTTP answer read (a kernel is ~200 bytes in `/api/kernels`).
pub const MAX_RESPONSE: usize = 1024 * 1024;
/// Time allowed for one server's two requests: PID 1 waits meanwhile.
pub const SERVER_DEADLINE: Duration = Duration::from_secs(2);
/// Servers asked per check, at most.
pub const MAX_SERVERS: usize = 8;
/// A server whose API failed [`GIVE_UP`] checks in a row, or refused the
/// token, is asked again after this long, not at every check (each refused
/// request is a warning in the researcher's Jupyter log).
pub const RETRY: Duration = Duration::from_secs(60);
/// Failures in a row before a server counts as not answering (logged, and
/// asked again after [`RETRY`]). Fewer are taken as passing: jupyter_server
/// answers HTTP 500 to `/api/kernels` while a kernel is starting. Either
/// way, a check without an answer judges the server's processes by the
/// other rules.
pub const GIVE_UP: u32 = 3;

// ---------------------------------------------------------------------------
// What the API says, and the decision.

/// `GET /api/status`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Status {
    /// Microseconds since the epoch (UTC).
    pub last_activity: Option<i64>,
    pub connections: u64,
    pub kernels: u64,
}

/// One kernel of `GET /api/kernels`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Kernel {
    pub id: String,
    pub name: String,
    /// `idle`, `busy`, `starting`, … (Jupyter's kernel status).
    pub execution_state: String,
    /// Microseconds since the epoch (UTC).
    pub last_activity: Option<i64>,
    pub connections: u64,
}

/// Why a Jupyter server counts as busy.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// A kernel runs a cell (`execution_state` `busy`).
    Executing { server: i32, kernel: String, name: String },
    /// A client request or kernel output since the previous check.
    Active { server: i32, ago: Duration },
    /// A server that answered before did not answer this check (a slow
    /// moment, a kernel starting): busy, since nothing says it is idle,
    /// until it answers again or is given up ([`GIVE_UP`] failures).
    Unanswered { server: i32 },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Executing { server, kernel, name } => {
                write!(f, "jupyter kernel {} ({}) executing (server pid {server})", shown(kernel, 8), shown(name, 40))
            }
            Reason::Active { server, ago } => write!(
                f,
                "jupyter server (pid {server}) active {} ago (a client request or kernel output)",
                duration::show(*ago)
            ),
            Reason::Unanswered { server } => {
                write!(f, "jupyter server (pid {server}) did not answer this check (counted busy until it does)")
            }
        }
    }
}

/// The Jupyter rule for one server. `now` and the API's times are
/// microseconds since the epoch; `window` is the time since the previous
/// check: activity within it counts, so the watchdog's idle time starts at
/// the last activity (a kernel that finished a cell an hour ago is idle).
/// A kernel executing wins over activity. Pure.
pub fn judge(server: i32, status: &Status, kernels: &[Kernel], now: i64, window: Duration) -> Option<Reason> {
    if let Some(k) = kernels.iter().find(|k| k.execution_state == "busy") {
        return Some(Reason::Executing { server, kernel: k.id.clone(), name: k.name.clone() });
    }
    let last = kernels.iter().filter_map(|k| k.last_activity).chain(status.last_activity).max()?;
    let ago_us = now.saturating_sub(last).max(0);
    let window_us = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
    (ago_us <= window_us).then(|| Reason::Active { server, ago: Duration::from_micros(ago_us as u64) })
}

/// `GET /api/status` from its JSON. Pure.
pub fn parse_status(text: &str) -> Result<Status, String> {
    let v = json::parse(text)?;
    if !matches!(v, Json::Obj(_)) {
        return Err("/api/status: not a JSON object".into());
    }
    let last_activity = match v.get("last_activity") {
        None | Some(Json::Null) => None,
        Some(t) => Some(t.as_str().and_then(parse_time).ok_or("/api/status: last_activity is not an ISO 8601 time")?),
    };
    Ok(Status {
        last_activity,
        connections: v.get("connections").and_then(Json::as_u64).unwrap_or(0),
        kernels: v.get("kernels").and_then(Json::as_u64).unwrap_or(0),
    })
}

/// `GET /api/kernels` from its JSON. Pure.
pub fn parse_kernels(text: &str) -> Result<Vec<Kernel>, String> {
    let v = json::parse(text)?;
    let list = v.as_array().ok_or("/api/kernels: not a JSON array")?;
    list.iter()
        .map(|k| {
            let s = |key: &str| k.get(key).and_then(Json::as_str).unwrap_or("").to_owned();
            if !matches!(k, Json::Obj(_)) {
                return Err("/api/kernels: an entry is not an object".to_owned());
            }
            Ok(Kernel {
                id: s("id"),
                name: s("name"),
                execution_state: s("execution_state"),
                last_activity: k.get("last_activity").and_then(Json::as_str).and_then(parse_time),
                connections: k.get("connections").and_then(Json::as_u64).unwrap_or(0),
            })
        })
        .collect()
}

/// An ISO 8601 time as Jupyter writes it (`2026-11-30T07:40:00.123456Z`;
/// also `+HH:MM` offsets, a space for `T`, no fraction) in microseconds
/// since the epoch. Pure.
pub fn parse_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let d = b.get(r)?;
        d.iter().all(u8::is_ascii_digit).then(|| d.iter().fold(0i64, |n, c| n * 10 + i64::from(c - b'0')))
    };
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d, h, mi, sec) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let mdays = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&mo) || d < 1 || d > mdays[(mo - 1) as usize] || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut micros = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 6 {
                micros = micros * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..6 {
            micros *= 10;
        }
    }
    let offset = match &b[i..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = (oh * 60 + om) * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let days = civil::days_from_civil(y, mo, d);
    let secs = days * 86400 + h * 3600 + mi * 60 + sec - offset;
    Some(secs * 1_000_000 + micros)
}

// ---------------------------------------------------------------------------
// Runtime files.

/// A Jupyter server as its runtime file describes it, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub pid: i32,
    pub port: u16,
    /// URL path prefix, `/` or `/a/b/`.
    pub base_url: String,
    /// Empty when the server has no token.
    pub token: String,
}

/// The pid in a runtime file name `jpserver-PID.json`. Pure.
pub fn runtime_file_pid(name: &[u8]) -> Option<i32> {
    let digits = name.strip_prefix(b"jpserver-")?.strip_suffix(b".json")?;
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok().filter(|p| *p > 0)
}

/// Check a runtime file's JSON: the pid it names, a TCP port, plain HTTP,
/// and a base URL and token that can go into a request line and header
/// as they are. Errors say what is wrong, for the log. Pure.
pub fn parse_server(text: &str, pid: i32) -> Result<Server, String> {
    let v = json::parse(text)?;
    if v.get("pid").and_then(Json::as_u64) != Some(pid as u64) {
        return Err(format!("its pid field is not {pid}"));
    }
    if v.get("secure").and_then(Json::as_bool) == Some(true) {
        return Err("it serves HTTPS only and labinit asks over plain HTTP".into());
    }
    if v.get("sock").and_then(Json::as_str).is_some_and(|s| !s.is_empty()) {
        return Err("it listens on a Unix socket, not a TCP port".into());
    }
    let port = v.get("port").and_then(Json::as_u64).filter(|p| (1..=65535).contains(p)).ok_or("no TCP port")? as u16;
    let base_url = v.get("base_url").and_then(Json::as_str).unwrap_or("/").to_owned();
    let url_ok = |c: u8| c.is_ascii_alphanumeric() || b"-._~/%!$&'()*+,;=:@".contains(&c);
    if !base_url.starts_with('/') || !base_url.ends_with('/') || base_url.len() > 512 || !base_url.bytes().all(url_ok) {
        return Err(format!("base_url {} is not a plain URL path", shown(&base_url, 60)));
    }
    let token = v.get("token").and_then(Json::as_str).unwrap_or("").to_owned();
    let token_ok = |c: u8| c.is_ascii_alphanumeric() || b"-._~+/=".contains(&c);
    if token.len() > 512 || !token.bytes().all(token_ok) {
        return Err("its token has characters a header cannot carry".into());
    }
    Ok(Server { pid, port, base_url, token })
}

/// The runtime directories to look in, like `jupyter_core.paths
/// .jupyter_runtime_dir()` for the job's environment (`get` looks a
/// variable up): `$JUPYTER_RUNTIME_DIR`, `$JUPYTER_DATA_DIR/runtime`,
/// `$XDG_DATA_HOME/jupyter/runtime`, then `~/.local/share/jupyter/runtime`
/// of the job's home and of root (a server started by `kubectl exec`).
/// Absolute paths only, no duplicates. Pure.
pub fn runtime_dirs(get: &dyn Fn(&str) -> Option<String>, home: Option<&Path>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let var = |k: &str| get(k).filter(|v| v.starts_with('/'));
    let mut add = |p: PathBuf| {
        if p.is_absolute() && !out.contains(&p) {
            out.push(p);
        }
    };
    if let Some(d) = var("JUPYTER_RUNTIME_DIR") {
        add(PathBuf::from(d));
    }
    if let Some(d) = var("JUPYTER_DATA_DIR") {
        add(Path::new(&d).join("runtime"));
    }
    if let Some(d) = var("XDG_DATA_HOME") {
        add(Path::new(&d).join("jupyter/runtime"));
    }
    for h in [home.map(Path::to_path_buf), var("HOME").map(PathBuf::from), Some(PathBuf::from("/root"))]
        .into_iter()
        .flatten()
    {
        add(h.join(".local/share/jupyter/runtime"));
    }
    out
}

/// Read `dir/name` the careful way (see the module doc): `owner` is the uid
/// the file must belong to (the server process's), or root.
fn read_runtime_file(dir: &OwnedFd, name: &[u8], owner: u32) -> Result<String, String> {
    let mut path = name.to_vec();
    path.push(0);
    // SAFETY: NUL-terminated name; dir is an open directory descriptor.
    let raw = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            path.as_ptr().cast(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY,
        )
    };
    if raw < 0 {
        return Err(format!("cannot open it: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: raw was just returned by openat and is owned from here on.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(raw) });
    let meta = file.metadata().map_err(|e| format!("cannot stat it: {e}"))?;
    if !meta.file_type().is_file() {
        return Err("it is not a regular file".into());
    }
    if meta.uid() != owner && meta.uid() != 0 {
        return Err(format!("it belongs to uid {}, not to the server's uid {owner}", meta.uid()));
    }
    if meta.len() > MAX_FILE {
        return Err(format!("it is larger than {MAX_FILE} bytes"));
    }
    let mut buf = Vec::new();
    (&mut file).take(MAX_FILE + 1).read_to_end(&mut buf).map_err(|e| format!("cannot read it: {e}"))?;
    if buf.len() as u64 > MAX_FILE {
        return Err(format!("it is larger than {MAX_FILE} bytes"));
    }
    String::from_utf8(buf).map_err(|_| "it is not UTF-8".to_owned())
}

fn open_dir(dir: &Path) -> Option<OwnedFd> {
    let mut p = dir.as_os_str().as_bytes().to_vec();
    p.push(0);
    // SAFETY: NUL-terminated path.
    let raw = unsafe { libc::open(p.as_ptr().cast(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    // SAFETY: raw was just returned by open.
    (raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw) })
}

// ---------------------------------------------------------------------------
// HTTP.

/// An HTTP answer: status code and body.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// Parse a whole HTTP/1.x answer (`Content-Length`, chunked, or until the
/// end). Pure.
pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("the answer has no end of headers")?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| "the headers are not text")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(format!("not an HTTP answer: {}", shown(status_line, 40)));
    }
    let status: u16 = code.parse().map_err(|_| format!("bad status {}", shown(code, 8)))?;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else { continue };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            length = Some(v.parse().map_err(|_| "bad Content-Length")?);
        } else if k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked") {
            chunked = true;
        }
    }
    let rest = &raw[head_end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n).ok_or("the answer is shorter than its Content-Length")?.to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { status, body: String::from_utf8(body).map_err(|_| "the body is not UTF-8")? })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n").ok_or("truncated chunk")?;
        let size_text = std::str::from_utf8(&rest[..eol]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if size > MAX_RESPONSE || rest.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// `GET path` on 127.0.0.1:`port` with the token, `Connection: close`,
/// within `deadline`. Errors keep errno.
pub fn get(port: u16, path: &str, token: &str, deadline: Instant) -> Result<Response, String> {
    let left = || deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, left()).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let auth = if token.is_empty() { String::new() } else { format!("Authorization: token {token}\r\n") };
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Accept: application/json\r\nUser-Agent: labinit\r\nConnection: close\r\n\r\n"
    );
    s.set_write_timeout(Some(left()))
        .and_then(|_| s.write_all(req.as_bytes()))
        .map_err(|e| format!("cannot send to {addr}: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        s.set_read_timeout(Some(left())).map_err(|e| format!("{addr}: {e}"))?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("no answer from {addr} within {:?}: {e}", SERVER_DEADLINE)),
        }
        if raw.len() > MAX_RESPONSE {
            return Err(format!("the answer from {addr} is larger than {MAX_RESPONSE} bytes"));
        }
        // Done once the body is complete (a server may keep the connection).
        if let Ok(r) = parse_response(&raw) {
            if complete(&raw) {
                return Ok(r);
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("no whole answer from {addr} within {:?}", SERVER_DEADLINE));
        }
    }
    parse_response(&raw)
}

/// Whether `raw` holds a whole answer with a known length or a last chunk.
fn complete(raw: &[u8]) -> bool {
    let Some(head_end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    if head.contains("transfer-encoding: chunked") {
        return dechunk(&raw[head_end + 4..]).is_ok();
    }
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|n| raw.len() >= head_end + 4 + n)
}

/// Ask a server for its status and kernels. An error says whether it is
/// lasting (the token refused) or may pass (no answer, HTTP 5xx, …).
pub fn ask(server: &Server, deadline: Instant) -> Result<(Status, Vec<Kernel>), (String, bool)> {
    let fetch = |what: &str| -> Result<String, (String, bool)> {
        let path = format!("{}api/{what}?no_track_activity=1", server.base_url);
        let r = get(server.port, &path, &server.token, deadline).map_err(|e| (e, false))?;
        match r.status {
            200 => Ok(r.body),
            401 | 403 => Err((
                format!("GET /api/{what} was refused ({}): the runtime file's token is not accepted", r.status),
                true,
            )),
            s => Err((format!("GET /api/{what} answered HTTP {s}"), false)),
        }
    };
    let status = parse_status(&fetch("status")?).map_err(|e| (e, false))?;
    let kernels = parse_kernels(&fetch("kernels")?).map_err(|e| (e, false))?;
    Ok((status, kernels))
}

// ---------------------------------------------------------------------------
// Process trees.

/// How far below one of `roots` each process is (0 = a root, 1 = a child,
/// 2 = deeper), for the processes that descend from a root. `procs` holds
/// (pid, ppid) pairs. Pure.
pub fn tree_depths(procs: &[(i32, i32)], roots: &[i32]) -> HashMap<i32, u8> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for &(pid, ppid) in procs {
        if pid != ppid {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut depth: HashMap<i32, u8> = HashMap::new();
    let mut todo: Vec<(i32, u8)> = roots.iter().filter(|r| procs.iter().any(|p| p.0 == **r)).map(|r| (*r, 0)).collect();
    while let Some((p, d)) = todo.pop() {
        if depth.get(&p).is_some_and(|old| *old <= d) {
            continue;
        }
        depth.insert(p, d);
        for c in children.get(&p).into_iter().flatten() {
            todo.push((*c, (d + 1).min(2)));
        }
    }
    depth
}

// ---------------------------------------------------------------------------
// The watchdog's side: one check.

/// What one check found.
#[derive(Debug, Default)]
pub struct Check {
    /// Servers whose API answered: their processes follow the Jupyter rule.
    pub servers: Vec<i32>,
    /// The first busy verdict among them.
    pub busy: Option<Reason>,
    /// Log lines for changes (a server found, or its API failing), each
    /// once per change.
    pub notes: Vec<String>,
}

/// Finds servers and asks them, remembering per server whether its API
/// answered so a failure is logged once, not at every check, and asked
/// again only after [`RETRY`].
pub struct Finder {
    dirs: Vec<PathBuf>,
    proc_root: PathBuf,
    answered: HashMap<i32, Answered>,
}

/// What a server's API did lately.
#[derive(Debug, Clone, Copy, Default)]
struct Answered {
    /// The last answer was good (its "found" line is logged).
    ok: bool,
    /// Failures in a row.
    fails: u32,
    /// Given up on until then (its failure is logged).
    retry: Option<Instant>,
}

impl Finder {
    pub fn new(dirs: Vec<PathBuf>, proc_root: PathBuf) -> Finder {
        Finder { dirs, proc_root, answered: HashMap::new() }
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Live servers' runtime files: (pid, what the file says or why not).
    fn servers(&self) -> Vec<(i32, Result<Server, String>)> {
        let mut out: Vec<(i32, Result<Server, String>)> = Vec::new();
        for dir in &self.dirs {
            let Ok(rd) = std::fs::read_dir(dir) else { continue };
            let Some(dfd) = open_dir(dir) else { continue };
            for e in rd.flatten() {
                let name = e.file_name();
                let Some(pid) = runtime_file_pid(name.as_bytes()) else { continue };
                if out.iter().any(|(p, _)| *p == pid) || out.len() >= MAX_SERVERS {
                    continue;
                }
                // A stale file (the server is gone) is Jupyter's to clean up.
                let Ok(proc) = std::fs::metadata(self.proc_root.join(pid.to_string())) else { continue };
                let server = read_runtime_file(&dfd, name.as_bytes(), proc.uid())
                    .and_then(|text| parse_server(&text, pid))
                    .map_err(|e| format!("runtime file {}: {e}", shown(&dir.join(&name).to_string_lossy(), 200)));
                out.push((pid, server));
            }
        }
        out
    }

    /// Find the servers and judge each; `now` in microseconds since the
    /// epoch, `window` the time since the previous check.
    pub fn check(&mut self, now: i64, window: Duration) -> Check {
        let mut c = Check::default();
        let found = self.servers();
        self.answered.retain(|pid, _| found.iter().any(|(p, _)| p == pid));
        for (pid, server) in found {
            let before = self.answered.get(&pid).copied().unwrap_or_default();
            let t = Instant::now();
            if before.retry.is_some_and(|r| t < r) {
                continue;
            }
            // A bad runtime file or a refused token will not mend by itself.
            let answer = match server {
                Err(e) => Err((e, true)),
                Ok(s) => ask(&s, t + SERVER_DEADLINE)
                    .map(|a| (s.port, a))
                    .map_err(|(e, lasting)| (format!("port {}: {e}", s.port), lasting)),
            };
            let lasting = answer.as_ref().err().is_some_and(|e| e.1);
            let (after, log) = update(before, answer.is_ok(), lasting, t);
            self.answered.insert(pid, after);
            match answer {
                Ok((port, (status, kernels))) => {
                    if log == Log::Found {
                        c.notes.push(format!(
                            "idle watchdog: jupyter server (pid {pid}, port {port}) found: its kernels count as busy while they execute, and the server while clients are active"
                        ));
                    }
                    c.servers.push(pid);
                    if c.busy.is_none() {
                        c.busy = judge(pid, &status, &kernels, now, window);
                    }
                }
                Err((e, _)) => {
                    // A passing failure of a server that answered: its tree
                    // keeps the Jupyter rules (the kernel's name must not
                    // count), and it is busy for this check.
                    if after.retry.is_none() && before.ok {
                        c.servers.push(pid);
                        if c.busy.is_none() {
                            c.busy = Some(Reason::Unanswered { server: pid });
                        }
                    }
                    if log == Log::GaveUp {
                        c.notes.push(format!(
                            "idle watchdog: jupyter server (pid {pid}): cannot ask its API ({e}); its processes count by the rules for other processes (asked again every {})",
                            duration::show(RETRY)
                        ));
                    }
                }
            }
        }
        c
    }
}

/// Which line a server's answer deserves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Log {
    None,
    /// It answers (first time, or again after giving up).
    Found,
    /// It stopped answering: given up until [`RETRY`] from now.
    GaveUp,
}

/// The next state of a server after an answer (`ok`) or a failure
/// (`lasting`: one that will not mend by itself), at `now`. Pure.
fn update(before: Answered, ok: bool, lasting: bool, now: Instant) -> (Answered, Log) {
    if ok {
        let log = if before.ok { Log::None } else { Log::Found };
        return (Answered { ok: true, fails: 0, retry: None }, log);
    }
    let fails = before.fails.saturating_add(1);
    if lasting || fails >= GIVE_UP {
        // Logged once per outage: not again when a retry fails too.
        let log = if before.retry.is_none() { Log::GaveUp } else { Log::None };
        return (Answered { ok: false, fails, retry: Some(now + RETRY) }, log);
    }
    (Answered { ok: before.ok, fails, retry: before.retry }, Log::None)
}

/// Microseconds since the epoch, now.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unanswered_check_is_busy_and_says_why() {
        let r = Reason::Unanswered { server: 42 };
        assert_eq!(r.to_string(), "jupyter server (pid 42) did not answer this check (counted busy until it does)");
        // Control: a passing failure keeps the server's state; the third gives up.
        let t = Instant::now();
        let ok = Answered { ok: true, fails: 0, retry: None };
        let (once, log) = update(ok, false, false, t);
        assert!(once.retry.is_none() && once.ok && log == Log::None);
        let (twice, _) = update(once, false, false, t);
        let (thrice, log) = update(twice, false, false, t);
        assert!(thrice.retry.is_some() && log == Log::GaveUp);
    }

    const T0: &str = "2026-11-30T07:40:00.123456Z";

    #[test]
    fn times() {
        let t0 = parse_time(T0).unwrap();
        assert_eq!(t0, 1_796_024_400_123_456);
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("2000-02-29T00:00:00Z"), Some(951_782_400_000_000));
        assert_eq!(parse_time("2026-11-30T08:40:00.123456+01:00"), Some(t0));
        assert_eq!(parse_time("2026-11-30T07:40:00.1234569Z"), Some(t0), "digits past microseconds dropped");
        assert_eq!(parse_time("2026-11-30T07:40:00.1Z"), Some(t0 - 23_456));
        assert_eq!(parse_time("2026-11-30 07:40:00Z"), Some(t0 - 123_456));
        // Agrees with the watchdog's own formatter for every day of 60 years.
        for day in 0..(60 * 366) {
            let secs = day * 86400 + 12 * 3600 + 34 * 60 + 56;
            assert_eq!(parse_time(&civil::utc(secs as u64)), Some(secs * 1_000_000));
        }
        for bad in [
            "",
            "2026-11-30",
            "2026-11-30T07:40:00",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-31T00:00:00Z",
            "2026-11-30T24:00:00Z",
            "2026-11-30T07:40:00.Z",
            "2026-11-30T07:40:00+0100",
            "2026-11-30T07:40:00Zjunk",
            "2026-11-30T07:4a:00Z",
            "+026-11-30T07:40:00Z",
        ] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
    }

    fn kernel(id: &str, state: &str, last: &str) -> Kernel {
        Kernel {
            id: id.into(),
            name: "python3".into(),
            execution_state: state.into(),
            last_activity: parse_time(last),
            connections: 1,
        }
    }

    #[test]
    fn judging() {
        let now = parse_time("2026-11-30T08:00:00Z").unwrap();
        let ten = Duration::from_secs(10);
        let old = "2026-11-30T07:00:00Z";
        let status = Status { last_activity: parse_time(old), connections: 3, kernels: 2 };
        let idle = [kernel("1a2b3c4d-5e6f", "idle", old), kernel("99", "starting", old)];
        // Kernels that exist, are connected, and were active an hour ago: idle.
        assert_eq!(judge(7, &status, &idle, now, ten), None);
        // One executing: busy, whatever the times.
        let mut running = idle.to_vec();
        running[1].execution_state = "busy".into();
        assert_eq!(
            judge(7, &status, &running, now, ten),
            Some(Reason::Executing { server: 7, kernel: "99".into(), name: "python3".into() })
        );
        // Activity since the previous check (a client request, kernel output).
        let recent = Status { last_activity: parse_time("2026-11-30T07:59:53Z"), ..status.clone() };
        assert_eq!(judge(7, &recent, &idle, now, ten), Some(Reason::Active { server: 7, ago: Duration::from_secs(7) }));
        // ... but not when the window is shorter than the time since.
        assert_eq!(judge(7, &recent, &idle, now, Duration::from_secs(5)), None);
        // A kernel's own last activity counts too; a time in the future is now.
        let k = [kernel("a", "idle", "2026-11-30T08:00:05Z")];
        assert_eq!(judge(7, &status, &k, now, ten), Some(Reason::Active { server: 7, ago: Duration::ZERO }));
        // No times at all: nothing to go on, idle.
        assert_eq!(judge(7, &Status::default(), &[], now, ten), None);
    }

    #[test]
    fn api_answers() {
        let s = parse_status(r#"{"connections": 2, "kernels": 1, "last_activity": "2026-11-30T07:40:00.123456Z", "started": "2026-11-30T07:00:00Z"}"#).unwrap();
        assert_eq!(s, Status { last_activity: parse_time(T0), connections: 2, kernels: 1 });
        let k = parse_kernels(r#"[{"id": "d6c6504f-cac4", "name": "python3", "last_activity": "2026-11-30T07:40:00.123456Z", "execution_state": "busy", "connections": 0}]"#).unwrap();
        assert_eq!(
            k,
            vec![Kernel {
                id: "d6c6504f-cac4".into(),
                name: "python3".into(),
                execution_state: "busy".into(),
                last_activity: parse_time(T0),
                connections: 0
            }]
        );
        assert_eq!(parse_kernels("[]").unwrap(), vec![]);
        assert!(parse_status("[]").is_err());
        assert!(parse_status(r#"{"last_activity": "yesterday"}"#).is_err());
        assert!(parse_kernels("{}").is_err());
        assert!(parse_kernels("[1]").is_err());
        assert!(parse_kernels("[{").is_err());
    }

    #[test]
    fn runtime_files() {
        assert_eq!(runtime_file_pid(b"jpserver-17006.json"), Some(17006));
        for bad in [
            &b"jpserver-17006-open.html"[..],
            b"jpserver-.json",
            b"jpserver-0.json",
            b"jpserver--1.json",
            b"nbserver-1.json",
            b"jpserver-99999999999.json",
            b"kernel-1.json",
        ] {
            assert_eq!(runtime_file_pid(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        let good = r#"{"base_url": "/", "hostname": "127.0.0.1", "password": false, "pid": 17006, "port": 39657, "root_dir": "/tmp", "secure": false, "sock": "", "token": "c9a1d451b4", "url": "http://127.0.0.1:39657/", "version": "2.21.1"}"#;
        assert_eq!(
            parse_server(good, 17006).unwrap(),
            Server { pid: 17006, port: 39657, base_url: "/".into(), token: "c9a1d451b4".into() }
        );
        assert!(parse_server(good, 17007).unwrap_err().contains("pid"));
        let with = |k: &str, v: &str| good.replacen(&format!("\"{k}\": "), &format!("\"{k}\": {v}, \"_{k}\": "), 1);
        assert_eq!(parse_server(&with("base_url", r#""/user/alice/""#), 17006).unwrap().base_url, "/user/alice/");
        assert_eq!(parse_server(&with("token", r#""""#), 17006).unwrap().token, "");
        for (k, v, why) in [
            ("secure", "true", "HTTPS"),
            ("sock", r#""/tmp/j.sock""#, "Unix socket"),
            ("port", "0", "port"),
            ("port", "70000", "port"),
            ("port", r#""8888""#, "port"),
            ("base_url", r#""/x HTTP/1.1\r\nEvil: 1\r\n/""#, "base_url"),
            ("base_url", r#""relative/""#, "base_url"),
            ("token", r#""abc\r\nX-Evil: 1""#, "token"),
            ("token", r#""a b""#, "token"),
        ] {
            let e = parse_server(&with(k, v), 17006).unwrap_err();
            assert!(e.contains(why), "{k}={v}: {e}");
        }
        assert!(parse_server("not json", 1).is_err());
    }

    #[test]
    fn runtime_dirs_follow_jupyter_core() {
        let env = |k: &str| match k {
            "JUPYTER_RUNTIME_DIR" => Some("/scratch/rt".to_owned()),
            "JUPYTER_DATA_DIR" => Some("relative/ignored".to_owned()),
            "XDG_DATA_HOME" => Some("/data/xdg".to_owned()),
            "HOME" => Some("/home/alice".to_owned()),
            _ => None,
        };
        let dirs = runtime_dirs(&env, Some(Path::new("/home/alice")));
        let want: Vec<PathBuf> = [
            "/scratch/rt",
            "/data/xdg/jupyter/runtime",
            "/home/alice/.local/share/jupyter/runtime",
            "/root/.local/share/jupyter/runtime",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(dirs, want);
        let none = |_: &str| None;
        assert_eq!(runtime_dirs(&none, None), vec![PathBuf::from("/root/.local/share/jupyter/runtime")]);
    }

    #[test]
    fn http_answers() {
        let r =
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: 2\r\n\r\n[]extra")
                .unwrap();
        assert_eq!(r, Response { status: 200, body: "[]".into() });
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, "[1,2]");
        let r = parse_response(b"HTTP/1.0 403 Forbidden\r\n\r\n{}").unwrap();
        assert_eq!(r, Response { status: 403, body: "{}".into() });
        for bad in [
            &b"HTTP/1.1 200 OK\r\n"[..],
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n[]",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n[]\r\n",
        ] {
            assert!(parse_response(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(complete(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]"));
        assert!(!complete(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n[]"));
        assert!(!complete(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n"));
    }

    /// A one-shot loopback server: the client's request is read, `answer`
    /// sent, then the connection closed (or held open with `hold`).
    fn serve(answer: &'static [u8], hold: bool) -> (u16, std::thread::JoinHandle<String>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut b).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&b[..n]);
            }
            s.write_all(answer).unwrap();
            if hold {
                std::thread::sleep(Duration::from_millis(1500));
            }
            String::from_utf8_lossy(&req).into_owned()
        });
        (port, h)
    }

    #[test]
    fn http_get_over_loopback() {
        let (port, h) = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]", true);
        let t = Instant::now();
        let r = get(port, "/api/kernels?no_track_activity=1", "tok", Instant::now() + SERVER_DEADLINE).unwrap();
        assert_eq!(r.body, "[]");
        assert!(
            t.elapsed() < Duration::from_millis(1400),
            "a complete answer ends the read, the open connection does not matter"
        );
        let req = h.join().unwrap();
        assert!(req.starts_with("GET /api/kernels?no_track_activity=1 HTTP/1.1\r\n"), "{req}");
        assert!(
            req.contains("\r\nAuthorization: token tok\r\n") && req.contains(&format!("Host: 127.0.0.1:{port}")),
            "{req}"
        );
        // Without a token, no Authorization header.
        let (port, h) = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", false);
        get(port, "/api/status", "", Instant::now() + SERVER_DEADLINE).unwrap();
        assert!(!h.join().unwrap().contains("Authorization"));
        // A silent server: an error within the deadline, not a hang.
        let (port, h) = serve(b"", true);
        let t = Instant::now();
        let e = get(port, "/", "", Instant::now() + Duration::from_millis(300)).unwrap_err();
        assert!(t.elapsed() < Duration::from_millis(1200), "{e}");
        h.join().unwrap();
        // Nobody listening: the errno is in the message.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let e = get(free, "/", "", Instant::now() + SERVER_DEADLINE).unwrap_err();
        assert!(e.contains("refused"), "{e}");
    }

    /// The runtime directory is the user's: links, FIFOs, other owners and
    /// big files are refused without blocking and without reading them.
    #[test]
    fn runtime_files_are_read_the_careful_way() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let dir = std::env::temp_dir().join(format!("labkit-jupyter-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let other = me.wrapping_add(4242);
        std::fs::write(dir.join("good.json"), "{\"pid\": 1}").unwrap();
        std::fs::write(dir.join("secret"), "root's").unwrap();
        std::fs::set_permissions(dir.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
        symlink(dir.join("secret"), dir.join("link.json")).unwrap();
        nix::unistd::mkfifo(&dir.join("fifo.json"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        std::fs::write(dir.join("big.json"), vec![b' '; MAX_FILE as usize + 1]).unwrap();
        std::fs::create_dir(dir.join("dir.json")).unwrap();
        let dfd = open_dir(&dir).unwrap();
        assert_eq!(read_runtime_file(&dfd, b"good.json", me).unwrap(), "{\"pid\": 1}");
        let t = Instant::now();
        for (name, why) in [
            ("link.json", "cannot open"),
            ("fifo.json", "not a regular file"),
            ("big.json", "larger than"),
            ("dir.json", "not a regular file"),
            ("missing.json", "cannot open"),
        ] {
            let e = read_runtime_file(&dfd, name.as_bytes(), me).unwrap_err();
            assert!(e.contains(why), "{name}: {e}");
        }
        assert!(t.elapsed() < Duration::from_secs(2), "a FIFO must not block");
        // Owned by someone else than the server's user (and not root).
        if me == 0 {
            std::os::unix::fs::chown(dir.join("good.json"), Some(other), None).unwrap();
            let e = read_runtime_file(&dfd, b"good.json", 1000).unwrap_err();
            assert!(e.contains(&format!("belongs to uid {other}")), "{e}");
            // Root's own file is accepted for any server (root wrote it).
            std::os::unix::fs::chown(dir.join("good.json"), Some(0), None).unwrap();
            assert!(read_runtime_file(&dfd, b"good.json", 1000).is_ok());
        } else {
            let e = read_runtime_file(&dfd, b"good.json", other).unwrap_err();
            assert!(e.contains("belongs to uid"), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failures_are_logged_once_and_retried_later() {
        let t = Instant::now();
        let fresh = Answered::default();
        // A server that answers: found once.
        let (a, log) = update(fresh, true, false, t);
        assert_eq!(log, Log::Found);
        assert_eq!(update(a, true, false, t).1, Log::None);
        // Passing failures (HTTP 500 while a kernel starts) are not news...
        let (b, log) = update(a, false, false, t);
        assert_eq!((log, b.fails, b.retry), (Log::None, 1, None));
        let (b, _) = update(b, false, false, t);
        assert_eq!(update(b, true, false, t).1, Log::None, "still the same server, still found");
        // ... until GIVE_UP in a row.
        let (c, log) = update(b, false, false, t);
        assert_eq!((log, c.retry), (Log::GaveUp, Some(t + RETRY)));
        // A failed retry is not logged again; an answer is.
        let (d, log) = update(c, false, false, t + RETRY);
        assert_eq!((log, d.retry), (Log::None, Some(t + 2 * RETRY)));
        assert_eq!(update(d, true, false, t + RETRY).1, Log::Found);
        // A refused token gives up at once.
        let (e, log) = update(fresh, false, true, t);
        assert_eq!((log, e.retry.is_some()), (Log::GaveUp, true));
    }

    #[test]
    fn depths_in_the_tree() {
        // 1 labinit; 10 server; 11, 12 kernels; 13 a kernel's child; 14 its child; 20 other.
        let procs = [(1, 0), (10, 1), (11, 10), (12, 10), (13, 11), (14, 13), (20, 1)];
        let d = tree_depths(&procs, &[10]);
        assert_eq!((d[&10], d[&11], d[&12], d[&13], d[&14]), (0, 1, 1, 2, 2));
        assert!(!d.contains_key(&1) && !d.contains_key(&20));
        assert!(tree_depths(&procs, &[99]).is_empty(), "a root that is not running");
        // A loop in the (racy) parent links does not hang.
        let d = tree_depths(&[(5, 6), (6, 5)], &[5]);
        assert_eq!((d[&5], d[&6]), (0, 1));
    }

    #[test]
    fn log_text_is_escaped() {
        let r =
            Reason::Executing { server: 3, kernel: "1a2b3c4d-5e6f-7a8b".into(), name: "evil\nlabinit: idle".into() };
        let s = r.to_string();
        assert_eq!(s, "jupyter kernel 1a2b3c4d… (evil\\nlabinit: idle) executing (server pid 3)");
        assert!(!s.contains('\n'));
        assert_eq!(
            Reason::Active { server: 3, ago: Duration::from_secs(4) }.to_string(),
            format!(
                "jupyter server (pid 3) active {} ago (a client request or kernel output)",
                duration::show(Duration::from_secs(4))
            )
        );
    }
}
