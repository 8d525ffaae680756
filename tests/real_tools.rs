//! The account labinit writes, judged by the distribution's own tools: after
//! setup in a copy of a debootstrapped Debian 12 root, `id`, `su`, `sudo` and
//! `visudo -c` inside a chroot (in a private mount namespace) all behave.
//! The root comes from `make debian-root` (LABKIT_TEST_DEBIAN_ROOT).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::ns::Run;

use labkit::init::setup::setup;

fn debian_root() -> PathBuf {
    let p = std::env::var_os("LABKIT_TEST_DEBIAN_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/labkit/debian-12-root"));
    assert!(p.join(".complete").exists(), "no Debian root at {}; run `make debian-root`", p.display());
    p
}

/// A private copy of the Debian root.
fn copy_root() -> common::TempDir {
    let t = common::TempDir::new("debian-root");
    let st = Command::new("cp").arg("-a").arg(format!("{}/.", debian_root().display())).arg(t.path()).status().unwrap();
    assert!(st.success());
    t
}

/// The PATH of the scripts that run the Debian root's tools.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Run `script` in private mount and PID namespaces with /dev and /proc
/// mounted in the root (so PAM and sudo work); the mounts vanish with the
/// namespaces. The exit code (128+N when killed) and stdout then stderr.
fn in_chroot(root: &common::TempDir, script: &str) -> (i32, String) {
    let r = root.path().display().to_string();
    let full = format!("mount --rbind /dev {r}/dev && mount -t proc proc {r}/proc && {script}");
    let mut run = Run::script(&[], &full, &[("ROOT", &r), ("PATH", PATH)], |_| {});
    let code = run.wait();
    (code, run.stdout() + &run.stderr())
}

#[test]
fn debian_tools_accept_the_account() {
    let root = copy_root();
    // Negative control: before setup the tools do not know alice.
    let (code, _) = in_chroot(&root, "chroot \"$ROOT\" id alice");
    assert_ne!(code, 0);

    let out = setup(root.path(), &common::alice_env()).unwrap();
    assert_eq!(out.identity.unwrap().uid, 123456);

    let (code, text) = in_chroot(&root, "chroot \"$ROOT\" id alice");
    assert_eq!(code, 0, "{text}");
    assert_eq!(text.trim(), "uid=123456(alice) gid=11166(CVLAB-unit) groups=11166(CVLAB-unit)");

    let (code, text) = in_chroot(&root, "chroot \"$ROOT\" su alice -c 'id -u; echo $HOME'");
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("123456\n/home/alice\n"), "{text}");

    let (code, text) = in_chroot(&root, "chroot \"$ROOT\" sudo -u alice sudo -n id -u 2>/dev/null");
    assert_eq!(code, 0, "{text}");
    assert_eq!(text.trim(), "0");

    let (code, text) = in_chroot(&root, "chroot \"$ROOT\" visudo -c");
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("/etc/sudoers.d/labkit: parsed OK"), "{text}");

    // Root keeps its own sudo (the legacy replaced /etc/sudoers and lost it).
    let (code, text) = in_chroot(&root, "chroot \"$ROOT\" sudo -n true 2>&1");
    assert_eq!(code, 0, "{text}");
}

#[test]
fn without_sudo_grant_the_user_cannot_become_root() {
    let root = copy_root();
    let mut env = common::alice_env();
    env.push(("LABKIT_SUDO".into(), "0".into()));
    setup(root.path(), &env).unwrap();
    let (code, _) = in_chroot(&root, "chroot \"$ROOT\" sudo -u alice sudo -n id -u 2>/dev/null");
    assert_ne!(code, 0);
    let (code, _) = in_chroot(&root, "chroot \"$ROOT\" id alice");
    assert_eq!(code, 0);
}

#[test]
fn shadow_tools_see_consistent_files() {
    let root = copy_root();
    setup(root.path(), &common::cluster_env("alice", "1000", "users", "100")).unwrap();
    // pwck/grpck in read-only mode. The stock image already draws complaints
    // about missing system homes (/var/www…); nothing may concern our entries.
    let (_, text) = in_chroot(&root, "chroot \"$ROOT\" pwck -r; chroot \"$ROOT\" grpck -r");
    assert!(text.contains("/var/www"), "pwck ran: {text}");
    for bad in ["alice", "users", "no matching", "duplicate", "invalid"] {
        assert!(!text.contains(bad), "{bad}: {text}");
    }
    let (code, text) = in_chroot(&root, "chroot \"$ROOT\" id alice");
    assert_eq!((code, text.trim()), (0, "uid=1000(alice) gid=100(users) groups=100(users)"));
}

/// Run the static labinit as PID 1 of new PID and mount namespaces, chrooted
/// into the root; the exit code and stdout then stderr.
fn labinit_pid1(root: &common::TempDir, args: &str, extra: &[(&str, &str)]) -> (i32, String) {
    let bin = std::env::var_os("LABKIT_TEST_LABINIT").expect("needs the static labinit: run through `make test`");
    std::fs::create_dir_all(root.join("opt/lab")).unwrap();
    common::install_exec(std::path::Path::new(&bin), &root.join("opt/lab/labinit"));
    let r = root.path().display();
    let script =
        format!("mount --rbind /dev {r}/dev && mount -t proc proc {r}/proc && exec chroot {r} /opt/lab/labinit {args}");
    let alice = common::alice_env();
    let mut env: Vec<(&str, &str)> = alice.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("PATH", PATH));
    env.extend(extra);
    let mut run = Run::script(&[], &script, &env, |_| {});
    let code = run.wait();
    (code, run.stdout() + &run.stderr())
}

#[test]
fn the_job_regains_root_only_through_the_sudo_grant() {
    let root = copy_root();
    let (code, text) = labinit_pid1(&root, "run -- sh -c 'id -u; sudo -n id -u'", &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("123456\n0\n"), "{text}");
    // No password to guess: su to root fails without a terminal.
    let (code, text) = labinit_pid1(&root, "run -- su -c 'id -u' root", &[]);
    assert_ne!(code, 0, "{text}");
    // With LABKIT_SUDO=0 there is no way back.
    let (code, text) = labinit_pid1(&root, "run -- sh -c 'id -u; sudo -n id -u'", &[("LABKIT_SUDO", "0")]);
    assert_ne!(code, 0, "{text}");
    assert!(text.starts_with("123456\n"), "{text}");
    assert!(!text.contains("\n0\n"), "{text}");
}

#[test]
fn the_legacy_user_step_left_in_an_image_becomes_a_no_op() {
    // Images built on the legacy base still carry 10_cluster_user.sh in their
    // steps. labinit creates the user first, so the legacy step finds the name
    // and does nothing: /etc/sudoers is not replaced, no password is set.
    let root = copy_root();
    let steps = root.join("opt/lab/setup_steps");
    std::fs::create_dir_all(&steps).unwrap();
    let legacy = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/legacy/setup_steps/10_cluster_user.sh");
    std::fs::copy(legacy, steps.join("10_cluster_user.sh")).unwrap();
    let sudoers = std::fs::read(root.join("etc/sudoers")).unwrap();
    let (code, text) = labinit_pid1(&root, "run -- id", &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("step 10_cluster_user.sh: ok"), "{text}");
    assert_eq!(std::fs::read(root.join("etc/sudoers")).unwrap(), sudoers, "sudoers untouched by the legacy step");
    let shadow = std::fs::read_to_string(root.join("etc/shadow")).unwrap();
    assert!(shadow.lines().any(|l| l.starts_with("alice:*:")), "no password set: {shadow}");
    let (code, text) = in_chroot(&root, "chroot \"$ROOT\" visudo -c");
    assert_eq!(code, 0, "{text}");
}
