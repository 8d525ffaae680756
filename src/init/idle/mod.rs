//! The idle watchdog (replaces the Python `sleeper`): decides from `/proc`
//! alone whether the container is busy, and when it has been idle for the
//! configured time. Owns sampling and the busy/idle state machine; stopping
//! the container is the supervisor's job.
//!
//! Busy means, for any process other than labinit and its services: CPU use of
//! at least `cpu` (fraction of one core) over the last interval, an open
//! NVIDIA device (`/dev/nvidia[0-9]*`, configurable so tests can fake one), or
//! a process name containing one of `busy_names` (default `python`, like the
//! sleeper). GPU file descriptors are only scanned when a device matching the
//! glob exists, so a CPU-only container never pays for the fd walk.
//!
//! A Jupyter server whose API answers is also judged by its own activity
//! ([`crate::init::jupyter`]): busy while a kernel executes or a client was
//! active since the previous check. The server process counts by that alone.
//! Below it the name rule does not count, nor the GPU rule for its direct
//! children (kernels, terminals); the CPU rule does (an idle kernel uses
//! none; a thread or a `!python train.py &` a cell left running does).
//!
//! Layout, leaves first: `config` (settings from `LABKIT_IDLE_*`),
//! `event` (verdicts and their log lines), `devices` (the GPU rule's
//! device nodes), `watchdog` (the scan and the state machine),
//! `log_file` (`LABKIT_IDLE_LOG`), `bench` (`labinit idle-check`). The
//! Jupyter rule is [`crate::init::jupyter`], which knows nothing of this
//! module.

pub(crate) mod bench;
pub(crate) mod config;
pub(crate) mod devices;
pub(crate) mod event;
pub(crate) mod log_file;
pub(crate) mod watchdog;

pub(crate) use bench::bench;
pub(crate) use config::{config_from_env, for_job};
// `pub` while `Supervisor::with_idle` (supervisor.rs) is `pub`.
pub use config::IdleConfig;
pub(crate) use event::{message, Busy, Event};
pub(crate) use log_file::IdleLog;
pub(crate) use watchdog::Watchdog;
