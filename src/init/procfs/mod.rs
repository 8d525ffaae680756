//! Reading processes from `/proc`: the one parser of `/proc/PID/stat` used by
//! the supervisor (who is in the job), the idle watchdog (who is busy) and the
//! nesting check. Owns nothing but reading; decisions live with the callers.
//!
//! `stat`: the parser and one listing of every process (one `openat`/`read`
//! per process, the read buffer reused). `scan`: [`StatReader`], the idle
//! watchdog's repeated scans, which read each process's CPU-time clock and
//! re-read `stat` only for what changed.

mod scan;
mod stat;

pub(crate) use scan::StatReader;
pub(crate) use stat::{parse_stat, processes, try_processes, ProcStat};
