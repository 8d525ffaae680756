//! The setup half of labinit: from the `CLUSTER_*` variables, provision the
//! account (group, user, shadow, home, sudo), then run the setup steps. Owns
//! nothing about running or supervising the job; it hands back the identity
//! and environment the job must get.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use crate::init::exit::Fatal;

/// Who the job runs as, fully resolved from the account files (never NSS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups for `setgroups`, primary group included: the
    /// groups whose member lists name the user, plus the gids PID 1 was started
    /// with that root's own memberships do not explain (fsGroup, --group-add).
    pub groups: Vec<u32>,
    /// Path inside the container (not prefixed by the test root).
    pub home: PathBuf,
    pub shell: PathBuf,
}

/// What setup hands to the job.
#[derive(Debug, Clone, Default)]
pub struct SetupOutcome {
    /// `None`: no user was asked for (all four `CLUSTER_*` unset) or labinit
    /// is not root; the job runs as the current identity.
    pub identity: Option<Identity>,
    /// `NAME=value` pairs exported by setup steps through `LABKIT_ENV`, in order.
    pub exports: Vec<(String, String)>,
}

/// Signal number received during setup (0 = none). Setup stops at the next
/// step boundary; the running step's process group gets the signal too.
static PENDING_SIGNAL: AtomicI32 = AtomicI32::new(0);

/// A terminating signal that arrived during setup, if any.
pub fn pending_signal() -> Option<i32> {
    match PENDING_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        n => Some(n),
    }
}

/// Provision the account and run the setup steps.
///
/// `root` prefixes every file path (`/` in production, a temp dir in tests);
/// `env` is the container's environment.
pub fn setup(root: &Path, env: &[(String, String)]) -> Result<SetupOutcome, Fatal> {
    let _ = (root, env);
    Ok(SetupOutcome::default())
}
