//! The tests' one namespace runner: labinit in fresh PID and mount
//! namespaces (`unshare --pid --fork --kill-child --mount-proc`), the way a
//! container runtime starts it. The mount namespace is private (unshare's
//! default propagation), so every mount a run makes vanishes with it, and
//! labinit's /etc is always a private one: the run's own `{D}/root/etc`
//! through `--root`, or whatever the prelude script mounts or `chroot`s to.
//!
//! Two ways in, one handle ([`Run`]):
//! - [`Run::start`]: `labinit --root {D}/root ARGS` as PID 1 of the namespace
//!   ([`Mode::Pid1`]), as a subreaper under `sh` as PID 1
//!   ([`Mode::Subreaper`]), or the legacy-like control without labinit
//!   (`bash -c CONTROL` as PID 1, [`Mode::Control`]): one scenario, three
//!   modes. Jobs are built from the signal printer and marker files.
//! - [`Run::script`]: a container-like start: `sh` runs a prelude (mounts,
//!   private /dev, /etc, /home, a `chroot`, a network with `--net`) as PID 1
//!   of the namespace with exactly the given environment, and usually ends by
//!   `exec`ing labinit, which then is PID 1.
//!
//! Placeholders in arguments, scripts and environment values: `{D}` the
//! run's directory, `{S}` the signal printer, `{L}` labinit. A run's stdout
//! and stderr are `{D}/stdout` and `{D}/stderr`. Every run is killed (SIGKILL
//! to its PID 1 takes every process of the namespace, and its mounts, along)
//! and its directory removed when the handle is dropped, also when the test
//! panics.

use std::collections::HashMap;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use nix::libc;

use super::TempDir;

/// How long any wait may take before the test gives up (hang guard only).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// What PID 1 of the namespace is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// labinit is PID 1 of the namespace.
    Pid1,
    /// labinit runs under `sh` as PID 1 (a subreaper, not PID 1).
    Subreaper,
    /// No labinit: the job string under `bash -c` as PID 1, like the legacy.
    Control,
}

/// The modes every supervision scenario runs in.
pub const MODES: [Mode; 2] = [Mode::Pid1, Mode::Subreaper];

/// The namespaces of every run: PID and (private) mount, with a fresh /proc.
pub const UNSHARE: [&str; 5] = ["--pid", "--fork", "--kill-child", "--mount-proc", "--"];

/// The argv that starts `labinit_argv` (labinit and its arguments) with
/// labinit as PID 1 or as a subreaper under `sh`, in fresh namespaces: for
/// harnesses that spawn the process themselves (the pty driver).
pub fn launcher(mode: Mode, labinit_argv: &[String]) -> Vec<String> {
    let mut argv: Vec<String> = vec!["unshare".into()];
    argv.extend(UNSHARE.iter().map(|s| s.to_string()));
    match mode {
        Mode::Pid1 => {}
        Mode::Subreaper => argv.extend(["/bin/sh", "-c", "\"$@\"; exit $?", "sh"].map(String::from)),
        Mode::Control => panic!("the control runs no labinit"),
    }
    argv.extend(labinit_argv.iter().cloned());
    argv
}

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

/// Options of one [`Run::start`].
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
    let mut s = s.replace("{D}", &dir.display().to_string());
    if s.contains("{S}") {
        s = s.replace("{S}", &sigprint().display().to_string());
    }
    s.replace("{L}", &super::labinit().display().to_string())
}

/// One run in its own namespaces; see the module's documentation.
pub struct Run {
    pub dir: TempDir,
    pub mode: Mode,
    child: Option<Child>,
    status: Option<ExitStatus>,
}

impl Run {
    /// Start `labinit --root {D}/root ARGS…` (Pid1, Subreaper) or `bash -c
    /// CONTROL` (Control), with PATH, HOME={D}/home, LABKIT_STEPS_DIR=/steps
    /// and `opts.env`; `{D}/bin` holds the legacy names as links to labinit.
    pub fn start(mode: Mode, args: &[&str], control: &str, opts: &Opts) -> Run {
        let dir = TempDir::new("ns");
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
        let argv = match mode {
            Mode::Pid1 | Mode::Subreaper => launcher(mode, &labinit_argv),
            Mode::Control => {
                let mut v: Vec<String> = vec!["unshare".into()];
                v.extend(UNSHARE.iter().map(|s| s.to_string()));
                v.extend(["/bin/bash".into(), "-c".into(), expand(control, &d)]);
                v
            }
        };
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
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
        Run::spawn(dir, mode, cmd)
    }

    /// Start `script` (placeholders expanded) with `/bin/sh -c` as PID 1 of
    /// fresh namespaces, plus any of `flags` (`--net`; `--mount` is implied),
    /// with exactly `env`, in `{D}`. `setup` runs first with the directory
    /// (to create files); `{D}/root` exists.
    pub fn script(flags: &[&str], script: &str, env: &[(&str, &str)], setup: impl FnOnce(&TempDir)) -> Run {
        let dir = TempDir::new("ns");
        fs::create_dir_all(dir.join("root")).unwrap();
        setup(&dir);
        let d = dir.path().to_path_buf();
        let mut cmd = Command::new("unshare");
        cmd.args(flags).args(UNSHARE).args(["/bin/sh", "-c"]);
        cmd.arg(expand(script, &d));
        cmd.env_clear();
        for (k, v) in env {
            cmd.env(k, expand(v, &d));
        }
        cmd.current_dir(&d);
        Run::spawn(dir, Mode::Pid1, cmd)
    }

    fn spawn(dir: TempDir, mode: Mode, mut cmd: Command) -> Run {
        cmd.stdin(Stdio::null())
            .stdout(fs::File::create(dir.join("stdout")).unwrap())
            .stderr(fs::File::create(dir.join("stderr")).unwrap());
        let child = cmd.spawn().expect("unshare");
        Run { dir, mode, child: Some(child), status: None }
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

    pub fn stdout(&self) -> String {
        self.read("stdout")
    }

    fn unshare_pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// PID 1 of the namespace, as the host sees it.
    pub fn ns_init(&self) -> Option<i32> {
        let u = self.unshare_pid();
        poll(|| procs().into_iter().find(|p| p.1 == u).map(|p| p.0))
    }

    /// PID 1 of the namespace, as the host sees it; panics when it never appears.
    pub fn init(&self) -> i32 {
        self.ns_init().expect("namespace init did not appear")
    }

    /// The process signals are sent to: labinit, or bash in the control,
    /// or PID 1 of a script run.
    pub fn target(&self) -> i32 {
        let init = self.init();
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

    /// Wait until stderr has a line containing `what`; false after PATIENCE.
    pub fn logged(&self, what: &str) -> bool {
        poll(|| self.stderr().lines().any(|l| l.contains(what)).then_some(())).is_some()
    }

    /// Wait for the signal printer's `DIR/NAME.log` to have the line `what`;
    /// false after PATIENCE.
    pub fn job_logged(&self, name: &str, what: &str) -> bool {
        poll(|| self.read(&format!("{name}.log")).lines().any(|l| l == what).then_some(())).is_some()
    }

    /// Whether the run is still going.
    pub fn running(&mut self) -> bool {
        self.status.is_none() && self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Wait for the run to end; its exit code (128+N when killed).
    pub fn wait(&mut self) -> i32 {
        let st = self.wait_status();
        st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
    }

    fn wait_status(&mut self) -> ExitStatus {
        if let Some(st) = self.status {
            return st;
        }
        let child = self.child.as_mut().expect("child");
        match poll(|| child.try_wait().ok().flatten()) {
            Some(st) => {
                self.status = Some(st);
                st
            }
            None => {
                self.kill();
                panic!("{:?}: the run did not end within {PATIENCE:?}; stderr:\n{}", self.mode, self.stderr());
            }
        }
    }

    /// Wait for the end, then the run as `Command::output` gives it.
    pub fn output(mut self) -> Output {
        let status = self.wait_status();
        let read = |rel: &str| fs::read(self.path(rel)).unwrap_or_default();
        Output { status, stdout: read("stdout"), stderr: read("stderr") }
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

    /// Kill the namespace: SIGKILL to its PID 1 takes every process in it
    /// along, then reap `unshare`.
    fn kill(&mut self) {
        let Some(mut c) = self.child.take() else { return };
        let u = c.id() as i32;
        if let Some(init) = procs().into_iter().find(|p| p.1 == u).map(|p| p.0) {
            // SAFETY: plain syscall; SIGKILL to a namespace's init kills it all.
            unsafe { libc::kill(init, libc::SIGKILL) };
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Run `script` (`sh -e`) as PID 1 of fresh namespaces (mounts it makes
/// vanish with them) with ROOT (`root`, a throwaway root), LABINIT and
/// alice's CLUSTER_* set, plus `extra_env`; its output once it ended.
pub fn in_ns(root: &TempDir, script: &str, extra_env: &[(&str, &str)]) -> Output {
    let root = root.path().display().to_string();
    let labinit = super::labinit().display().to_string();
    let alice = super::alice_env();
    let mut env: Vec<(&str, &str)> = vec![("ROOT", &root), ("LABINIT", &labinit)];
    env.extend(alice.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    env.extend(extra_env);
    Run::script(&[], &format!("set -e\n{script}"), &env, |_| {}).output()
}

/// Quote `s` for `sh` (single quotes), to put arguments into a script.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
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
