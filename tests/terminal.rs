//! Terminals: under a pty (`docker run -it`, `kubectl run -it`), an
//! interactive bash started by labinit has job control (`m` in `$-`, no
//! "cannot set terminal process group"), Ctrl-C reaches the foreground job,
//! Ctrl-Z stops it (labinit itself is never stopped) and labinit exits with
//! the shell's code. As PID 1 and as a subreaper; the control is a PID 1
//! that starts bash without handing it the terminal (`setsid`).

mod common;

use std::collections::HashMap;
use std::process::Command;

use common::ns::{launcher, python3, sigprint, Mode, UNSHARE};

/// Run `argv` (an `unshare` into fresh namespaces) under the pty driver.
fn drive(argv: &[String], dir: &common::TempDir, patience: &str) -> (HashMap<String, String>, String) {
    let py = python3().expect("python3");
    let driver = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/helpers/pty_driver.py");
    let mut cmd = Command::new(py);
    cmd.arg(driver).arg(dir.path()).arg(sigprint()).arg("--");
    cmd.args(argv);
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", dir.path())
        .env("TERM", "dumb")
        .env("PTY_PATIENCE", patience);
    let out = cmd.output().expect("python3");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let result = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    (result, text)
}

#[test]
fn interactive_bash_gets_job_control_and_ctrl_c() {
    // python3 drives the pty (tests/helpers/pty_driver.py); tests/tools/deps.sh
    // installs it, so a missing one is a failure, never a silent pass.
    assert!(python3().is_some(), "python3 is needed to drive the terminal (tests/tools/deps.sh installs it)");
    let labinit = common::labinit().display().to_string();
    let bash = ["bash", "--norc", "--noprofile", "-i"];
    for mode in [Mode::Pid1, Mode::Subreaper] {
        let dir = common::TempDir::new("tty");
        let root = dir.join("root").display().to_string();
        std::fs::create_dir_all(&root).unwrap();
        let mut labinit_argv = vec![labinit.clone(), "--root".into(), root, "run".into(), "--".into()];
        labinit_argv.extend(bash.iter().map(|s| s.to_string()));
        let (r, text) = drive(&launcher(mode, &labinit_argv), &dir, "20");
        assert!(r.get("flags").is_some_and(|f| f.contains('m')), "{mode:?}: no job control:\n{text}");
        assert_eq!(r.get("no_tty_warning").map(String::as_str), Some("1"), "{mode:?}:\n{text}");
        assert_eq!(r.get("ctrl_c").map(String::as_str), Some("1"), "{mode:?}: Ctrl-C did not reach the job:\n{text}");
        assert_eq!(r.get("stopped").map(String::as_str), Some("1"), "{mode:?}: Ctrl-Z did not stop the job:\n{text}");
        assert_eq!(r.get("code").map(String::as_str), Some("5"), "{mode:?}: exit code:\n{text}");
    }
    let dir = common::TempDir::new("tty-control");
    let mut w: Vec<String> = std::iter::once("unshare").chain(UNSHARE).map(String::from).collect();
    w.extend(["setsid", "-w"].iter().chain(&bash).map(|s| s.to_string()));
    // Short waits: here the steps are expected to fail.
    let (r, text) = drive(&w, &dir, "2");
    assert!(
        !r.get("flags").is_some_and(|f| f.contains('m')) || r.get("no_tty_warning").map(String::as_str) != Some("1"),
        "control: job control without a terminal hand-over:\n{text}"
    );
}
