//! Test helper: a job that reports every signal it receives.
//!
//! `labkit-sigprint NAME DIR [--on-term exit|ignore|checkpoint=MS] [--code N]`
//!
//! At start it writes `DIR/NAME.status` (its /proc/self/status, open fds and
//! cwd, as inherited), blocks every catchable signal, then writes
//! `DIR/NAME.ready`. Each signal is appended to `DIR/NAME.log` as `SIGTERM`
//! etc. TERM and INT trigger `--on-term`: `exit` (default) writes
//! `DIR/NAME.done` and exits with `--code`; `checkpoint=MS` first works for
//! MS milliseconds; `ignore` carries on. Without a signal it exits by itself
//! after `$SIGPRINT_LIFETIME_MS` (default 60000), writing `DIR/NAME.natural`.

use std::io::Write;
use std::time::{Duration, Instant};

use nix::libc;

fn append(path: &str, text: &str) {
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = f.write_all(text.as_bytes());
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: labkit-sigprint NAME DIR [--on-term exit|ignore|checkpoint=MS] [--code N]");
        std::process::exit(2);
    }
    let (name, dir) = (&args[1], &args[2]);
    let mut on_term = "exit".to_owned();
    let mut code = 0;
    let mut i = 3;
    while i + 1 < args.len() {
        match args[i].as_str() {
            "--on-term" => on_term = args[i + 1].clone(),
            "--code" => code = args[i + 1].parse().unwrap_or(0),
            _ => {}
        }
        i += 2;
    }
    let base = format!("{dir}/{name}");
    let lifetime = std::env::var("SIGPRINT_LIFETIME_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(60_000u64);

    let mut report = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    report.push_str(&format!("Fds:\t{}\n", fds.join(" ")));
    let cwd = std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default();
    report.push_str(&format!("Cwd:\t{cwd}\n"));
    for (k, v) in std::env::vars() {
        report.push_str(&format!("Env:\t{k}={v}\n"));
    }
    append(&format!("{base}.status"), &report);

    // SAFETY: signal mask setup on local sets, single-threaded.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        for s in [
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGFPE,
            libc::SIGILL,
            libc::SIGABRT,
            libc::SIGTTIN,
            libc::SIGTTOU,
            libc::SIGTSTP,
        ] {
            libc::sigdelset(&mut set, s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    append(&format!("{base}.ready"), &format!("{}\n", std::process::id()));
    let end = Instant::now() + Duration::from_millis(lifetime);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            append(&format!("{base}.natural"), "natural\n");
            std::process::exit(code);
        }
        let ts =
            libc::timespec { tv_sec: left.as_secs() as libc::time_t, tv_nsec: left.subsec_nanos() as libc::c_long };
        // SAFETY: valid set and timespec.
        let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
        if sig <= 0 {
            continue;
        }
        let sname =
            nix::sys::signal::Signal::try_from(sig).map(|s| s.as_str().to_owned()).unwrap_or(format!("SIG{sig}"));
        append(&format!("{base}.log"), &format!("{sname}\n"));
        println!("{name} {sname}");
        if sig == libc::SIGTERM || sig == libc::SIGINT {
            if on_term == "ignore" {
                continue;
            }
            if let Some(ms) = on_term.strip_prefix("checkpoint=") {
                std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(1000)));
            }
            append(&format!("{base}.done"), "done\n");
            std::process::exit(code);
        }
    }
}
