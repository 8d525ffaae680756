//! `labinit idle-check` (hidden): the watchdog's cost per check, for
//! `make bench`.

use std::path::Path;
use std::time::Duration;

use super::config::config_from_env;
use super::watchdog::Watchdog;
use crate::init::procfs;

/// This process's CPU time so far (user + system).
fn cpu_time() -> Duration {
    let mut ts = nix::libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid timespec pointer.
    unsafe { nix::libc::clock_gettime(nix::libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// `labinit idle-check --checks N` (hidden; `make bench`): run N checks over
/// this PID namespace with the `LABKIT_IDLE_*` settings and print the CPU
/// time of one check and the peak resident memory, one `key=value` line.
/// `get` looks a variable up (the CLI passes the process environment).
pub(crate) fn bench(checks: u32, get: &dyn Fn(&str) -> Option<String>) -> i32 {
    let cfg = match config_from_env(get, Duration::from_secs(1800)) {
        Ok(c) => c.unwrap_or_default(),
        Err(f) => {
            crate::init::log::error(&f.message);
            return f.code;
        }
    };
    let mut dog = Watchdog::new(cfg);
    let me = [std::process::id() as i32];
    let proc_root = Path::new("/proc");
    let gap = Duration::from_millis(20);
    dog.busy_reason(proc_root, &[], &me, gap); // primes the CPU counters
    let mut cpu = Duration::ZERO;
    let mut reason = None;
    for _ in 0..checks.max(1) {
        std::thread::sleep(gap);
        let t0 = cpu_time();
        reason = dog.busy_reason(proc_root, &[], &me, gap);
        cpu += cpu_time().saturating_sub(t0);
    }
    let procs = procfs::processes(proc_root).len();
    let rss =
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).map(|u| u.max_rss()).unwrap_or(0);
    println!(
        "processes={procs} checks={} cpu_per_check_us={:.0} max_rss_kib={rss} verdict={}",
        checks.max(1),
        cpu.as_secs_f64() * 1e6 / f64::from(checks.max(1)),
        reason.map(|b| format!("busy: {b}")).unwrap_or_else(|| "idle".into())
    );
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings come from the lookup the CLI passes, not from the
    /// process environment: a bad value there is refused like in `wait`.
    #[test]
    fn settings_come_from_the_lookup() {
        let bad = |n: &str| (n == "LABKIT_IDLE_CPU").then(|| "lots".to_owned());
        assert_eq!(bench(1, &bad), crate::init::exit::CONFIG);
        // Control: no settings, one check over this process's /proc.
        assert_eq!(bench(1, &|_| None), 0);
    }
}
