//! A minimal blocking HTTP/1.1 client for loopback: one `GET` with a
//! token, `Connection: close`, a deadline and a size limit; answers with
//! `Content-Length`, chunked, or until the end.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::init::duration;
use crate::init::log::shown;

/// Largest HTTP answer read (a kernel is ~200 bytes in `/api/kernels`).
pub(crate) const MAX_RESPONSE: usize = 1024 * 1024;
/// Time allowed for one server's two requests: PID 1 waits meanwhile.
pub(crate) const SERVER_DEADLINE: Duration = Duration::from_secs(2);

/// An HTTP answer: status code and body.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub(crate) status: u16,
    pub(crate) body: String,
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
pub(crate) fn get(port: u16, path: &str, token: &str, deadline: Instant) -> Result<Response, String> {
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
            Err(e) => return Err(format!("no answer from {addr} within {}: {e}", duration::show(SERVER_DEADLINE))),
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
            return Err(format!("no whole answer from {addr} within {}", duration::show(SERVER_DEADLINE)));
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
