//! The Debian 12 test root (`make debian-root`, LABKIT_TEST_DEBIAN_ROOT): a
//! private copy per test, its tools run in a chroot, and labinit as PID 1
//! chrooted into it, each through the one runner (`ns::Run::script`).

use std::path::PathBuf;
use std::process::Command;

use super::ns::Run;
use super::TempDir;

/// The debootstrapped Debian 12 root, read-only for the tests.
pub fn debian_root() -> PathBuf {
    let p = std::env::var_os("LABKIT_TEST_DEBIAN_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/labkit/debian-12-root"));
    assert!(p.join(".complete").exists(), "no Debian root at {}; run `make debian-root`", p.display());
    p
}

/// A private copy of the Debian root.
pub fn copy_root() -> TempDir {
    let t = TempDir::new("debian-root");
    let st = Command::new("cp").arg("-a").arg(format!("{}/.", debian_root().display())).arg(t.path()).status().unwrap();
    assert!(st.success());
    t
}

/// The PATH of the scripts that run the Debian root's tools.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Run `script` in private mount and PID namespaces with /dev and /proc
/// mounted in the root (so PAM and sudo work); the mounts vanish with the
/// namespaces. The exit code (128+N when killed) and stdout then stderr.
pub fn in_chroot(root: &TempDir, script: &str) -> (i32, String) {
    let r = root.path().display().to_string();
    let full = format!("mount --rbind /dev {r}/dev && mount -t proc proc {r}/proc && {script}");
    let mut run = Run::script(&[], &full, &[("ROOT", &r), ("PATH", PATH)], |_| {});
    let code = run.wait();
    (code, run.stdout() + &run.stderr())
}

/// Run the static labinit as PID 1 of new PID and mount namespaces, chrooted
/// into the root; the exit code and stdout then stderr.
pub fn labinit_pid1(root: &TempDir, args: &str, extra: &[(&str, &str)]) -> (i32, String) {
    let bin = std::env::var_os("LABKIT_TEST_LABINIT").expect("needs the static labinit: run through `make test`");
    std::fs::create_dir_all(root.join("opt/lab")).unwrap();
    super::install_exec(std::path::Path::new(&bin), &root.join("opt/lab/labinit"));
    let r = root.path().display();
    let script =
        format!("mount --rbind /dev {r}/dev && mount -t proc proc {r}/proc && exec chroot {r} /opt/lab/labinit {args}");
    let alice = super::alice_env();
    let mut env: Vec<(&str, &str)> = alice.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("PATH", PATH));
    env.extend(extra);
    let mut run = Run::script(&[], &script, &env, |_| {});
    let code = run.wait();
    (code, run.stdout() + &run.stderr())
}
