//! Jupyter servers' runtime files (`jpserver-PID.json`): where they are,
//! reading them the careful way (see the module doc of
//! [`crate::init::jupyter`]) and checking what they say.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::libc;

use crate::init::json::{self, Json};
use crate::init::log::shown;

/// Largest runtime file read (Jupyter's are ~300 bytes).
pub(crate) const MAX_FILE: u64 = 64 * 1024;

/// A Jupyter server as its runtime file describes it, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub(crate) pid: i32,
    pub(crate) port: u16,
    /// URL path prefix, `/` or `/a/b/`.
    pub(crate) base_url: String,
    /// Empty when the server has no token.
    pub(crate) token: String,
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
pub(crate) fn runtime_dirs(get: &dyn Fn(&str) -> Option<String>, home: Option<&Path>) -> Vec<PathBuf> {
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

/// The runtime files of live servers in `dirs` (a file whose pid has no
/// `proc_root/PID` is stale, Jupyter's to clean up), at most `max`: (pid, what
/// the file says or why not).
pub(crate) fn live_servers(dirs: &[PathBuf], proc_root: &Path, max: usize) -> Vec<(i32, Result<Server, String>)> {
    let mut out: Vec<(i32, Result<Server, String>)> = Vec::new();
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(dir) else { continue };
        let Some(dfd) = open_dir(dir) else { continue };
        for e in rd.flatten() {
            let name = e.file_name();
            let Some(pid) = runtime_file_pid(name.as_bytes()) else { continue };
            if out.iter().any(|(p, _)| *p == pid) || out.len() >= max {
                continue;
            }
            // A stale file (the server is gone) is Jupyter's to clean up.
            let Ok(proc) = std::fs::metadata(proc_root.join(pid.to_string())) else { continue };
            let server = read_runtime_file(&dfd, name.as_bytes(), proc.uid())
                .and_then(|text| parse_server(&text, pid))
                .map_err(|e| format!("runtime file {}: {e}", shown(&dir.join(&name).to_string_lossy(), 200)));
            out.push((pid, server));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

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
}
