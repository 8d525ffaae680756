//! Root's powers around the job: the sudo grant (an exact drop-in, sudoers
//! only gains an include, withdrawn by LABKIT_SUDO=0, nothing without sudo),
//! the no_new_privs flag that would make sudo refuse, and a start as a
//! non-root user, which warns per thing and writes nothing; in a real Debian
//! root (`make debian-root`), the job regains root only through the grant
//! (`sudo`, never `su`) and not at all without it. The job's own identity is
//! in tests/identity.rs.

mod common;
use common::{env_plus, stderr};

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use common::debian::{copy_root, in_chroot, labinit_pid1};
use labkit::init::setup::setup;

#[test]
fn sudo_drop_in_is_exact_and_sudoers_only_gains_an_include() {
    let root = common::fixture_root("debian-12");
    let legacy = "root ALL=(ALL:ALL) ALL\nDefaults secure_path=\"/usr/bin:/bin\"";
    common::add_sudo(&root, legacy);
    setup(root.path(), &common::alice_env()).unwrap();
    let drop_in = root.join("etc/sudoers.d/labkit");
    let m = fs::metadata(&drop_in).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o440, 0, 0));
    let text = fs::read_to_string(&drop_in).unwrap();
    assert!(text.contains("\n#123456 ALL=(ALL:ALL) NOPASSWD: ALL\n"), "{text}");
    let sudoers = fs::read_to_string(root.join("etc/sudoers")).unwrap();
    assert_eq!(sudoers, format!("{legacy}\n#includedir /etc/sudoers.d\n"));
    assert_eq!(fs::metadata(root.join("etc/sudoers")).unwrap().mode() & 0o7777, 0o440);
    // Off switch withdraws the grant on the next start.
    setup(root.path(), &env_plus(&[("LABKIT_SUDO", "0")])).unwrap();
    assert!(!drop_in.exists());
}

#[test]
fn no_sudo_installed_writes_no_sudoers() {
    let root = common::fixture_root("debian-12");
    setup(root.path(), &common::alice_env()).unwrap();
    assert!(!root.join("etc/sudoers.d").exists());
}

#[test]
fn no_new_privs_is_reported_because_sudo_will_refuse() {
    let root = common::fixture_root("debian-12");
    common::add_sudo(&root, "root ALL=(ALL:ALL) ALL\n#includedir /etc/sudoers.d\n");
    let run = |launcher: &[&str]| {
        Command::new(launcher[0])
            .args(&launcher[1..])
            .arg(common::labinit())
            .args(["setup", "--root"])
            .arg(root.path())
            .envs(common::alice_env())
            .output()
            .unwrap()
    };
    let out = run(&["setpriv", "--no-new-privs"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("no_new_privs flag is set"), "{}", stderr(&out));
    // Negative control: without the flag, no such warning.
    let out = run(&["env"]);
    assert!(!stderr(&out).contains("no_new_privs"), "{}", stderr(&out));
}

#[test]
fn a_non_root_start_warns_per_thing_and_writes_nothing() {
    let root = common::fixture_root("debian-12");
    let before = common::snapshot(root.path());
    let out = Command::new("setpriv")
        .args(["--reuid=1010", "--regid=1010", "--clear-groups"])
        .arg(common::labinit())
        .args(["setup", "--root"])
        .arg(root.path())
        .envs(common::alice_env())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("started as uid 1010, not root"), "{err}");
    assert!(err.contains("files it writes on shared volumes will be owned by uid 1010"), "{err}");
    assert_eq!(common::snapshot(root.path()), before);
}

// ---- In a real Debian root: sudo, su ----

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
