//! Running labinit as PID 1 of a fresh PID namespace (`unshare --pid --fork
//! --mount-proc`), as a subreaper under another PID 1 (`sh`), or a legacy-like
//! control (`bash -c` as PID 1) — same scenario, three modes. Jobs are built
//! from `labkit-sigprint` and marker files in a per-run directory.
//!
//! Placeholders in arguments: `{D}` the run's directory, `{S}` the signal
//! printer, `{L}` labinit; `{D}/bin` holds the legacy names as links to it. Every run is killed (the whole namespace, by
//! SIGKILL to its PID 1) and its directory removed when dropped.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::libc;

use super::TempDir;

/// How long any wait may take before the test gives up (hang guard only).
pub const PATIENCE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// labinit is PID 1 of the namespace.
    Pid1,
    /// labinit runs under `sh` as PID 1 (a subreaper, not PID 1).
    Subreaper,
    /// No labinit: the job string under `bash -c` as PID 1, like the legacy.
    Control,
}

pub const MODES: [Mode; 2] = [Mode::Pid1, Mode::Subreaper];

/// The signal printer (tests/helpers/sigprint.rs): a Cargo example, not a
/// product binary, so it sits in `examples/` beside the `deps/` directory
/// that holds this test binary (target/<profile>/, also with --target).
/// Plain `cargo test` builds it; a run of a single suite (`cargo test --test
/// signals`) does not, hence the message.
pub fn sigprint() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's own path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("test binary under target/<profile>/deps");
    let p = profile_dir.join("examples").join("labkit-sigprint");
    assert!(
        p.is_file(),
        "the test helper {} is not built: run `cargo build --example labkit-sigprint` (with --release for a \
         release test run) or a plain `cargo test`, which builds it",
        p.display()
    );
    p
}

pub fn python3() -> Option<&'static str> {
    ["/usr/bin/python3", "/usr/local/bin/python3"].into_iter().find(|p| Path::new(p).exists())
}

pub struct Run {
    pub dir: TempDir,
    pub mode: Mode,
    child: Option<Child>,
    code: Option<i32>,
}

/// Options of one run.
#[derive(Default, Clone)]
pub struct Opts {
    pub env: Vec<(String, String)>,
    /// Signals ignored by labinit's parent (inherited through exec).
    pub ignore: Vec<i32>,
    /// Working directory (relative to the run's directory), default the directory.
    pub cwd: Option<String>,
    /// Files created before the start: (path relative to the run's
    /// directory, content with placeholders); `*.sh` are made executable.
    pub files: Vec<(String, String)>,
}

pub fn expand(s: &str, dir: &Path) -> String {
    s.replace("{D}", &dir.display().to_string())
        .replace("{S}", &sigprint().display().to_string())
        .replace("{L}", &super::labinit().display().to_string())
}

impl Run {
    /// Start `labinit --root {D}/root ARGS…` (Pid1, Subreaper) or `bash -c
    /// CONTROL` (Control).
    pub fn start(mode: Mode, args: &[&str], control: &str, opts: &Opts) -> Run {
        let dir = TempDir::new("pidns");
        fs::create_dir_all(dir.join("root")).unwrap();
        fs::create_dir_all(dir.join("home")).unwrap();
        // The legacy names, as links to the binary under test.
        fs::create_dir_all(dir.join("bin")).unwrap();
        for name in ["setup_and_run_command.sh", "setup.sh"] {
            std::os::unix::fs::symlink(super::labinit(), dir.join("bin").join(name)).unwrap();
        }
        let d = dir.path().to_path_buf();
        for (rel, content) in &opts.files {
            let p = dir.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, expand(content, &d)).unwrap();
            if rel.ends_with(".sh") {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        let mut labinit_argv: Vec<String> =
            vec![super::labinit().display().to_string(), "--root".into(), format!("{}/root", d.display())];
        labinit_argv.extend(args.iter().map(|a| expand(a, &d)));
        let mut cmd = Command::new("unshare");
        cmd.args(["--pid", "--fork", "--kill-child", "--mount-proc", "--"]);
        match mode {
            Mode::Pid1 => {
                cmd.args(&labinit_argv);
            }
            Mode::Subreaper => {
                cmd.args(["/bin/sh", "-c", "\"$@\"; exit $?", "sh"]).args(&labinit_argv);
            }
            Mode::Control => {
                cmd.args(["/bin/bash", "-c", &expand(control, &d)]);
            }
        }
        let lifetime = if mode == Mode::Control { "2500" } else { "60000" };
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("HOME", d.join("home"))
            .env("SIGPRINT_LIFETIME_MS", lifetime)
            .env("LABKIT_STEPS_DIR", "/steps");
        for (k, v) in &opts.env {
            cmd.env(k, expand(v, &d));
        }
        cmd.current_dir(opts.cwd.as_ref().map(|c| d.join(c)).unwrap_or(d.clone()));
        cmd.stdin(Stdio::null())
            .stdout(fs::File::create(d.join("stdout")).unwrap())
            .stderr(fs::File::create(d.join("stderr")).unwrap());
        let ignore = opts.ignore.clone();
        // SAFETY: only signal(), fcntl() and close() between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                for s in &ignore {
                    libc::signal(*s, libc::SIG_IGN);
                }
                // Start like a container: no descriptors but 0-2 (the test
                // runner's own inheritable ones would otherwise pass through).
                for fd in 3..1024 {
                    let flags = libc::fcntl(fd, libc::F_GETFD);
                    if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                        libc::close(fd);
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("unshare");
        Run { dir, mode, child: Some(child), code: None }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).unwrap_or_default()
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.path(rel).exists()
    }

    pub fn stderr(&self) -> String {
        self.read("stderr")
    }

    fn unshare_pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// PID 1 of the namespace, as the host sees it.
    pub fn ns_init(&self) -> Option<i32> {
        let u = self.unshare_pid();
        poll(|| procs().into_iter().find(|p| p.1 == u).map(|p| p.0))
    }

    /// The process signals are sent to: labinit, or bash in the control.
    pub fn target(&self) -> i32 {
        let init = self.ns_init().expect("namespace init did not appear");
        match self.mode {
            Mode::Pid1 | Mode::Control => init,
            Mode::Subreaper => poll(|| procs().into_iter().find(|p| p.1 == init).map(|p| p.0))
                .expect("labinit did not appear under sh"),
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain syscall.
        unsafe { libc::kill(self.target(), sig) };
    }

    /// Wait until `DIR/NAME.ready` exists for every name.
    pub fn ready(&self, names: &[&str]) {
        for n in names {
            let f = format!("{n}.ready");
            assert!(
                poll(|| self.exists(&f).then_some(())).is_some(),
                "{n} never became ready ({:?}); stderr:\n{}",
                self.mode,
                self.stderr()
            );
        }
    }

    /// Wait for `DIR/NAME.log` to contain `what`; false after PATIENCE.
    pub fn logged(&self, name: &str, what: &str) -> bool {
        poll(|| self.read(&format!("{name}.log")).lines().any(|l| l == what).then_some(())).is_some()
    }

    /// Wait for the run to end; its exit code (128+N when killed).
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
                panic!("{:?}: the run did not end within {PATIENCE:?}; stderr:\n{}", self.mode, self.stderr());
            }
        }
    }

    /// Every process of the namespace (host pids): (pid, ppid, state, comm).
    pub fn ns_procs(&self) -> Vec<(i32, i32, char, String)> {
        let all = procs();
        let mut out = Vec::new();
        let mut todo = vec![self.unshare_pid()];
        while let Some(p) = todo.pop() {
            for q in all.iter().filter(|q| q.1 == p) {
                out.push(q.clone());
                todo.push(q.0);
            }
        }
        out
    }

    fn kill(&mut self) {
        kill_namespace(self.child.take());
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Wait up to PATIENCE for `child` (an `unshare`); its exit code, 128+N
/// when killed by signal N, or `None` when it is still running.
pub fn wait_code(child: &mut Child) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    poll(|| match child.try_wait() {
        Ok(Some(st)) => Some(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))),
        _ => None,
    })
}

/// Kill the PID namespace that `child` (an `unshare --fork`) created:
/// SIGKILL to its PID 1 takes every process in it along, then reap `child`.
pub fn kill_namespace(child: Option<Child>) {
    let Some(mut c) = child else { return };
    let u = c.id() as i32;
    if let Some(init) = procs().into_iter().find(|p| p.1 == u).map(|p| p.0) {
        // SAFETY: plain syscall; SIGKILL to a namespace's init kills it all.
        unsafe { libc::kill(init, libc::SIGKILL) };
    }
    let _ = c.kill();
    let _ = c.wait();
}

/// Poll `f` every few milliseconds until it gives a value or PATIENCE ends.
pub fn poll<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every process on the host: (pid, ppid, state, comm).
pub fn procs() -> Vec<(i32, i32, char, String)> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else { return out };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some((head, tail)) = stat.rsplit_once(')') else { continue };
        let comm = head.split_once('(').map(|x| x.1.to_owned()).unwrap_or_default();
        let mut f = tail.split_whitespace();
        let state = f.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        out.push((pid, ppid, state, comm));
    }
    out
}

/// Parse `Key:\tvalue` lines of a status report.
pub fn status_fields(text: &str) -> HashMap<String, String> {
    text.lines().filter_map(|l| l.split_once(':')).map(|(k, v)| (k.to_owned(), v.trim().to_owned())).collect()
}
