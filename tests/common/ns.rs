//! (Included with `#[path = "common/ns.rs"] mod ns;` beside `mod common;`.)
//! A container-like start for the tests of wait, idle, shell and ssh: `sh`
//! runs a prelude script as PID 1 of fresh namespaces (`unshare --pid --fork
//! --mount-proc` plus any of `--mount`, `--net`), which ends by `exec`ing
//! labinit, so labinit is PID 1 with a private `/dev`, `/etc`, `/home` or
//! network as the test needs. Placeholders as in `pidns`: `{D}` the run's
//! directory, `{L}` labinit, `{S}` the signal printer. The namespace is
//! killed (SIGKILL to its PID 1; its mounts go with it) and the directory
//! removed when dropped.
#![allow(dead_code)]

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use nix::libc;

use crate::common::pidns::{expand, kill_namespace, poll, procs, wait_code, PATIENCE};
use crate::common::TempDir;

pub struct Ns {
    pub dir: TempDir,
    child: Option<Child>,
    code: Option<i32>,
}

impl Ns {
    /// Start `script` (placeholders expanded) under `unshare FLAGS --pid
    /// --fork --kill-child --mount-proc`, with exactly `env`, in `{D}`.
    /// `setup` runs first with the directory (to create files).
    pub fn start(flags: &[&str], script: &str, env: &[(&str, &str)], setup: impl FnOnce(&TempDir)) -> Ns {
        let dir = TempDir::new("ns");
        fs::create_dir_all(dir.join("root")).unwrap();
        setup(&dir);
        let d = dir.path().to_path_buf();
        let mut cmd = Command::new("unshare");
        cmd.args(flags).args(["--pid", "--fork", "--kill-child", "--mount-proc", "--", "/bin/sh", "-c"]);
        cmd.arg(expand(script, &d));
        cmd.env_clear();
        for (k, v) in env {
            cmd.env(k, expand(v, &d));
        }
        cmd.current_dir(&d)
            .stdin(Stdio::null())
            .stdout(fs::File::create(d.join("stdout")).unwrap())
            .stderr(fs::File::create(d.join("stderr")).unwrap());
        let child = cmd.spawn().expect("unshare");
        Ns { dir, child: Some(child), code: None }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        self.read("stderr")
    }

    /// Wait until stderr has a line containing `what`; false after PATIENCE.
    pub fn logged(&self, what: &str) -> bool {
        poll(|| self.stderr().lines().any(|l| l.contains(what)).then_some(())).is_some()
    }

    /// PID 1 of the namespace, as the host sees it.
    pub fn init(&self) -> i32 {
        let u = self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0);
        poll(|| procs().into_iter().find(|p| p.1 == u).map(|p| p.0)).expect("namespace init did not appear")
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain syscall.
        unsafe { libc::kill(self.init(), sig) };
    }

    /// Whether the run is still going.
    pub fn running(&mut self) -> bool {
        self.code.is_none() && self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Wait for the end; the exit code (128+N when killed).
    pub fn wait(&mut self) -> i32 {
        if let Some(c) = self.code {
            return c;
        }
        match wait_code(self.child.as_mut().expect("child")) {
            Some(c) => {
                self.code = Some(c);
                c
            }
            None => {
                self.kill();
                panic!("the run did not end within {PATIENCE:?}; stderr:\n{}", self.stderr());
            }
        }
    }

    /// `nsenter` into the namespaces `what` (e.g. `["-p", "-m"]`) of the
    /// running PID 1, like `kubectl exec`: the command with exactly `env`.
    pub fn exec(&self, what: &[&str], argv: &[&str], env: &[(&str, &str)]) -> Command {
        let d = self.dir.path().to_path_buf();
        let mut c = Command::new("nsenter");
        c.arg("-t").arg(self.init().to_string()).args(what.iter().map(|a| expand(a, &d))).arg("--");
        c.args(argv.iter().map(|a| expand(a, &d)));
        c.env_clear();
        for (k, v) in env {
            c.env(k, expand(v, &d));
        }
        c.current_dir(&d);
        c
    }

    fn kill(&mut self) {
        kill_namespace(self.child.take());
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        self.kill();
    }
}
