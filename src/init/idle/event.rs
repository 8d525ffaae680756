//! What a check concludes ([`Busy`], [`Event`]) and the log line for it.

use std::time::Duration;

use super::config::IdleConfig;
use crate::init::duration;
use crate::init::jupyter;

/// Why the container counts as busy.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Busy {
    Cpu {
        pid: i32,
        name: String,
        percent: f64,
    },
    Gpu {
        pid: i32,
        name: String,
        device: String,
    },
    Name {
        pid: i32,
        name: String,
    },
    Jupyter(jupyter::Reason),
    /// The check saw no process (`/proc` missing, empty or unreadable): it
    /// cannot judge, so the container is kept rather than stopped blind.
    Unseen {
        proc_root: String,
    },
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Busy::Cpu { pid, name, percent } => write!(f, "{name} (pid {pid}) used {percent:.0}% CPU"),
            Busy::Gpu { pid, name, device } => write!(f, "{name} (pid {pid}) holds {device} open"),
            Busy::Name { pid, name } => write!(f, "{name} (pid {pid}) is running"),
            Busy::Jupyter(r) => write!(f, "{r}"),
            Busy::Unseen { proc_root } => write!(
                f,
                "no process can be read from {proc_root} (not mounted, empty, or out of file descriptors?); \
                 the container is kept until the watchdog can see its processes"
            ),
        }
    }
}

/// What a check concluded, for the log and the supervisor.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    /// Nothing worth a log line.
    Quiet,
    /// Became busy (the first check, or after being idle).
    Busy(Busy),
    /// Became idle; carries the reason it was last busy, if any.
    Idle { last_busy: Option<Busy> },
    /// Still idle; a periodic reminder with the time left.
    StillIdle { idle_for: Duration, left: Duration },
    /// Idle for the whole timeout: stop the container.
    Expired { idle_for: Duration, last_busy: Option<Busy> },
}

fn last_busy_text(b: &Option<Busy>) -> String {
    match b {
        Some(b) => format!("last busy: {b}"),
        None => "nothing was busy since the start".to_owned(),
    }
}

/// The log line for an event (`None` for [`Event::Quiet`]). Pure.
pub(crate) fn message(event: &Event, cfg: &IdleConfig) -> Option<String> {
    let t = duration::show(cfg.timeout);
    Some(match event {
        Event::Quiet => return None,
        Event::Busy(b) => format!("idle watchdog: busy: {b}"),
        Event::Idle { last_busy } => {
            format!("idle watchdog: idle ({}); the container stops after {t} idle", last_busy_text(last_busy))
        }
        Event::StillIdle { idle_for, left } => format!(
            "idle watchdog: idle for {}; the container stops in {} unless something gets busy",
            duration::show(*idle_for),
            duration::show(*left)
        ),
        Event::Expired { idle_for, last_busy } => format!(
            "idle watchdog: idle for {} (LABKIT_IDLE_TIMEOUT {t}; {}): stopping the container",
            duration::show(*idle_for),
            last_busy_text(last_busy)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        let cfg = IdleConfig { timeout: Duration::from_secs(1800), ..IdleConfig::default() };
        let py = Busy::Name { pid: 7, name: "python3".into() };
        assert_eq!(message(&Event::Quiet, &cfg), None);
        assert_eq!(message(&Event::Busy(py.clone()), &cfg).unwrap(), "idle watchdog: busy: python3 (pid 7) is running");
        let idle = message(&Event::Idle { last_busy: Some(py.clone()) }, &cfg).unwrap();
        assert!(idle.contains("last busy: python3 (pid 7)") && idle.contains(&duration::show(cfg.timeout)), "{idle}");
        let still = Event::StillIdle { idle_for: Duration::from_secs(300), left: Duration::from_secs(1500) };
        assert_eq!(
            message(&still, &cfg).unwrap(),
            format!(
                "idle watchdog: idle for {}; the container stops in {} unless something gets busy",
                duration::show(Duration::from_secs(300)),
                duration::show(Duration::from_secs(1500))
            )
        );
        let blind = Busy::Unseen { proc_root: "/proc".into() };
        assert_eq!(
            message(&Event::Busy(blind), &cfg).unwrap(),
            "idle watchdog: busy: no process can be read from /proc (not mounted, empty, or out of file \
             descriptors?); the container is kept until the watchdog can see its processes"
        );
        let exp = message(&Event::Expired { idle_for: Duration::from_secs(1800), last_busy: None }, &cfg).unwrap();
        assert!(exp.contains("stopping the container") && exp.contains("nothing was busy"), "{exp}");
    }
}
