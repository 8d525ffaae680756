//! Root at the boundary with what the user (or an odd image) controls
//! (issue 11 §1 and §5): the home's path is never followed through a link,
//! `~/.bashrc` is never written or chmodded through a link the user swaps in
//! while setup runs again, and sudo's messages say what happened. Every path
//! is under a throwaway root; nothing outside it is touched (links point
//! inside the root).

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};

use labkit::init::files::Root;
use labkit::init::home::{self, HomeAction};

fn setup_output(root: &common::TempDir, env: &[(String, String)]) -> std::process::Output {
    Command::new(common::labinit())
        .arg("setup")
        .arg("--root")
        .arg(root.path())
        .env_clear()
        .envs(env.iter().cloned())
        .output()
        .unwrap()
}

#[test]
fn a_symlinked_home_parent_is_never_followed() {
    // /home -> / with CLUSTER_USER=etc chowned /etc. Inside the throwaway
    // root the link is "home -> ." (the root itself).
    let root = common::fixture_root("debian-12");
    std::os::unix::fs::symlink(".", root.join("home")).unwrap();
    let etc = fs::metadata(root.join("etc")).unwrap();
    let out = setup_output(&root, &common::cluster_env("etc", "123456", "CVLAB-unit", "11166"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let now = fs::metadata(root.join("etc")).unwrap();
    assert_eq!((now.uid(), now.gid(), now.mode()), (etc.uid(), etc.gid(), etc.mode()), "/etc untouched: {err}");
    assert!(!root.join("etc/.bashrc").exists(), "no .bashrc written into /etc");
    assert!(err.contains("home /home/etc: /home is a symbolic link"), "{err}");
    // Negative control: with a real /home the same name gets its home.
    let root = common::fixture_root("debian-12");
    let out = setup_output(&root, &common::cluster_env("etc", "123456", "CVLAB-unit", "11166"));
    assert!(out.status.success());
    assert_eq!(fs::metadata(root.join("home/etc")).unwrap().uid(), 123456);
    assert_eq!(fs::metadata(root.join("etc")).unwrap().uid(), 0);
}

#[test]
fn a_symlinked_home_is_left_alone() {
    let root = common::fixture_root("debian-12");
    fs::create_dir_all(root.join("home")).unwrap();
    std::os::unix::fs::symlink("../etc", root.join("home/alice")).unwrap();
    let (action, _) = home::ensure(&Root::new(root.path()), "/home/alice", 123456, 11166).unwrap();
    assert_eq!(action, HomeAction::Foreign);
    assert_eq!(fs::metadata(root.join("etc")).unwrap().uid(), 0);
    assert!(!root.join("etc/.bashrc").exists());
}

/// The racer process; killed and reaped when dropped (also on a failed
/// assertion).
struct Racer(std::process::Child);

impl Drop for Racer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The racer: as the user, flip `link` between absent and a symlink to
/// `target` as fast as it can (case 10's flipper).
fn start_racer(link: &std::path::Path, target: &std::path::Path) -> Racer {
    // perl-base is essential in Debian; the loop has no fork per flip.
    Command::new("setpriv")
        .args(["--reuid=123456", "--regid=11166", "--clear-groups", "/usr/bin/perl", "-e"])
        .arg("my ($t, $l) = @ARGV; while (1) { symlink($t, $l); unlink($l); }")
        .arg(target)
        .arg(link)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Racer)
        .expect("setpriv and perl")
}

/// The check-then-write that labinit used to do (a negative control: the
/// racer must be able to beat it, or the test below proves nothing).
fn naive_ensure_bashrc(rc: &std::path::Path) {
    if fs::symlink_metadata(rc).is_ok() {
        return;
    }
    let _ = fs::write(rc, "# skel bashrc\n");
    let _ = fs::set_permissions(rc, fs::Permissions::from_mode(0o644));
}

#[test]
fn bashrc_is_never_written_or_chmodded_through_a_racing_link() {
    const TRIALS: usize = 20_000;
    let root = common::fixture_root("debian-12");
    let r = Root::new(root.path());
    let (action, _) = home::ensure(&r, "/home/alice", 123456, 11166).unwrap();
    assert_eq!(action, HomeAction::Created);
    let rc = root.join("home/alice/.bashrc");
    let victim = root.join("victim");
    let reset = || {
        fs::write(&victim, "root-only secret\n").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
    };
    let touched = || {
        fs::read_to_string(&victim).unwrap() != "root-only secret\n"
            || fs::metadata(&victim).unwrap().mode() & 0o777 != 0o600
    };
    reset();
    let _ = fs::remove_file(&rc);
    let racer = start_racer(&rc, &victim);
    // Negative control first: the racer beats a check-then-write by path.
    let mut naive_hits = 0;
    let mut naive_trials = 0;
    while naive_hits < 3 && naive_trials < 200_000 {
        naive_trials += 1;
        naive_ensure_bashrc(&rc);
        if touched() {
            naive_hits += 1;
            reset();
        }
        if fs::symlink_metadata(&rc).is_ok_and(|m| m.is_file()) {
            let _ = fs::remove_file(&rc);
        }
    }
    let mut hits = 0;
    let mut created = 0;
    for _ in 0..TRIALS {
        home::ensure(&r, "/home/alice", 123456, 11166).unwrap();
        if touched() {
            hits += 1;
            reset();
        }
        // One lstat: the racer may swap the file for its link right after.
        if let Ok(m) = fs::symlink_metadata(&rc) {
            if m.is_file() {
                created += 1;
                assert_eq!(m.uid(), 123456, "the .bashrc labinit created is the user's");
                let _ = fs::remove_file(&rc);
            }
        }
    }
    drop(racer);
    eprintln!(
        ".bashrc race: a path-based write hit the victim {naive_hits} times in {naive_trials} trials; labinit {hits} times in {TRIALS} (it created .bashrc {created} times, found the link the other times)"
    );
    assert!(naive_hits > 0, "the racer never won against a path-based write; the test proves nothing");
    assert!(created > 0, "labinit never got to create .bashrc; the race was not exercised");
    assert_eq!(hits, 0, "root wrote or chmodded the victim through the user's link");
}

#[test]
fn sudo_messages_say_what_happened() {
    // A dangling /etc/sudoers.d used to give "sudo was not granted: File
    // exists (os error 17)".
    let root = common::fixture_root("debian-12");
    common::add_sudo(&root, "root ALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n");
    std::os::unix::fs::symlink("nowhere", root.join("etc/sudoers.d")).unwrap();
    let err = String::from_utf8_lossy(&setup_output(&root, &common::alice_env()).stderr).into_owned();
    assert!(
        err.contains("sudo was not granted: /etc/sudoers.d is a symbolic link to nowhere, which does not exist"),
        "{err}"
    );
    assert!(!err.contains("File exists"), "{err}");
    // The drop-in written but /etc/sudoers not updatable: not "not granted".
    let root = common::fixture_root("debian-12");
    common::add_sudo(&root, "root ALL=(ALL:ALL) ALL\n");
    fs::rename(root.join("etc/sudoers"), root.join("etc/sudoers.real")).unwrap();
    std::os::unix::fs::symlink("sudoers.real", root.join("etc/sudoers")).unwrap();
    let err = String::from_utf8_lossy(&setup_output(&root, &common::alice_env()).stderr).into_owned();
    assert!(root.join("etc/sudoers.d/labkit").is_file());
    assert!(!err.contains("not granted"), "{err}");
    assert!(
        err.contains("wrote the sudo grant /etc/sudoers.d/labkit, but /etc/sudoers could not be made to include"),
        "{err}"
    );
    assert!(err.contains("/etc/sudoers is a symbolic link"), "{err}");
    // Negative control: a plain image gets its grant and one info line.
    let root = common::fixture_root("debian-12");
    common::add_sudo(&root, "root ALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n");
    let err = String::from_utf8_lossy(&setup_output(&root, &common::alice_env()).stderr).into_owned();
    assert!(err.contains("sudo: passwordless for uid 123456"), "{err}");
    assert!(!err.contains("warning"), "{err}");
}
