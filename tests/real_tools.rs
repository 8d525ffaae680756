//! The account labinit writes, judged by the distribution's own tools: after
//! setup in a copy of a debootstrapped Debian 12 root, `id`, `su`, `sudo`,
//! `visudo -c`, `pwck` and `grpck` inside a chroot (in private mount and PID
//! namespaces) all behave, and the legacy user step an old image still
//! carries does nothing. The root comes from `make debian-root`
//! (LABKIT_TEST_DEBIAN_ROOT); whether the job can become root again is in
//! tests/privileges.rs.

mod common;

use common::debian::{copy_root, in_chroot, labinit_pid1};
use labkit::init::setup::setup;

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
