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
//! Layout, leaves first: [`config`] (settings from `LABKIT_IDLE_*`),
//! [`event`] (verdicts and their log lines), [`devices`] (the GPU rule's
//! device nodes), [`watchdog`] (the scan and the state machine),
//! [`log_file`] (`LABKIT_IDLE_LOG`), [`bench`] (`labinit idle-check`). The
//! Jupyter rule is [`crate::init::jupyter`], which knows nothing of this
//! module.

pub mod bench;
pub mod config;
pub mod devices;
pub mod event;
pub mod log_file;
pub mod watchdog;

pub use bench::bench;
pub use config::{config_from_env, for_job, IdleConfig, TIMEOUT_VAR};
pub use devices::{glob_match, matching_devices};
pub use event::{human, message, Busy, Event};
pub use log_file::{append, log_line, log_path, IdleLog};
pub use watchdog::{Watchdog, REMINDER};

/// `YYYY-MM-DDTHH:MM:SSZ` (moved to [`crate::init::civil::utc`]; kept for
/// its callers until they name `civil`).
pub use crate::init::civil::utc;
