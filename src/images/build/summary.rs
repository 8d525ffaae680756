//! The outcome of a build run (its `--summary-json` form too), and what a
//! run shows from the engine's logs: the step a target is at, the tail of a
//! failed target's log. Pure.

use std::path::PathBuf;
use std::time::Duration;

use super::State;

/// The outcome of a build run.
#[derive(Debug)]
pub struct Summary {
    pub states: Vec<(String, State, Option<Duration>)>,
    pub pushed: bool,
    pub push_failed: bool,
    pub elapsed: Duration,
    /// Image ID each built target got (None when it did not build).
    pub ids: Vec<Option<String>>,
    pub logs: Vec<PathBuf>,
}

impl Summary {
    /// `--summary-json`: `{"schema":1,"success":…,"elapsed_seconds":…,
    /// "pushed":…,"push_failed":…,"targets":[{"name","state","seconds",
    /// "image_id","log"}]}`; state is built, failed or skipped.
    pub(crate) fn to_json(&self) -> String {
        let targets: Vec<serde_json::Value> = self
            .states
            .iter()
            .enumerate()
            .map(|(i, (name, state, d))| {
                serde_json::json!({
                    "name": name,
                    "state": match state {
                        State::Built => "built",
                        State::Failed => "failed",
                        State::Skipped => "skipped",
                        State::Waiting | State::Running => "unknown",
                    },
                    "seconds": d.map(|d| (d.as_secs_f64() * 10.0).round() / 10.0),
                    "image_id": self.ids.get(i).cloned().flatten(),
                    "log": self.logs.get(i).map(|p| p.display().to_string()),
                })
            })
            .collect();
        serde_json::to_string_pretty(&serde_json::json!({
            "schema": 1,
            "success": self.success(),
            "elapsed_seconds": (self.elapsed.as_secs_f64() * 10.0).round() / 10.0,
            "pushed": self.pushed,
            "push_failed": self.push_failed,
            "targets": targets,
        }))
        .expect("summary serialises")
    }

    pub fn success(&self) -> bool {
        self.states.iter().all(|(_, s, _)| *s == State::Built) && !self.push_failed
    }
}

/// How much of a failed target's log the build prints.
pub const FAILED_LOG_LINES: usize = 20;

pub(super) fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// The last `n` non-empty lines of a log, for a failed target.
pub(crate) fn tail_lines(text: &str, n: usize) -> Vec<String> {
    let mut v: Vec<String> = text.lines().rev().filter(|l| !l.trim().is_empty()).take(n).map(str::to_string).collect();
    v.reverse();
    v
}

/// The step an engine is at, from its log: docker's `Step 3/12 : RUN …`,
/// podman's `STEP 3/12: RUN …`, or BuildKit's `#7 [3/12] RUN …`. Pure.
pub(crate) fn current_step(log: &str) -> Option<String> {
    log.lines().rev().find_map(|l| {
        let l = l.trim();
        let buildkit = l.starts_with('#') && l.split_whitespace().nth(1).is_some_and(|w| w.starts_with('['));
        (l.starts_with("Step ") || l.starts_with("STEP ") || buildkit)
            .then(|| l.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(100).collect())
    })
}
