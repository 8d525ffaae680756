//! No lost update (issue 11 §2): labinit reads, plans and writes the account
//! files under the glibc lock `/etc/.pwd.lock`, so an account another tool
//! adds while holding the lock survives. Checked deterministically (a lock
//! holder adds `carol` while labinit waits) and with 100 parallel trials each
//! of two labinit starts and of labinit against shadow-utils' `useradd`
//! (`useradd --root`, which chroots: it never touches the host's /etc).
//! Every trial's root is a throwaway fixture copy. In-process, `setup` waits
//! while another process holds the lock.

mod common;

use std::fs;
use std::io::BufRead;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use labkit::init::setup::setup;

fn labinit_setup(root: &Path, env: &[(String, String)]) -> Command {
    let mut c = Command::new(common::labinit());
    c.arg("setup").arg("--root").arg(root).env_clear().envs(env.iter().cloned()).env("LABKIT_QUIET", "1");
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

fn names(root: &Path, file: &str) -> Vec<String> {
    fs::read_to_string(root.join("etc").join(file))
        .unwrap()
        .lines()
        .filter_map(|l| l.split(':').next().map(str::to_owned))
        .collect()
}

fn has_all(root: &Path, users: &[&str]) -> bool {
    let pw = names(root, "passwd");
    let sh = names(root, "shadow");
    users.iter().all(|u| pw.iter().any(|n| n == u) && sh.iter().any(|n| n == u))
}

#[test]
fn an_account_added_under_the_lock_while_labinit_waits_survives() {
    let root = common::fixture_root("debian-12");
    let lock = root.join("etc/.pwd.lock");
    // A lock holder (as useradd does) takes the lock, lets labinit start and
    // read, then adds carol and releases the lock.
    let mut holder = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import fcntl,time,sys\nf=open('{lock}','w')\nfcntl.lockf(f,fcntl.LOCK_EX)\nprint('locked',flush=True)\nsys.stdin.readline()\nopen('{pw}','a').write('carol:x:2001:2001::/home/carol:/bin/sh\\n')\nopen('{sh}','a').write('carol:!:19000:0:99999:7:::\\n')\n",
            lock = lock.display(),
            pw = root.join("etc/passwd").display(),
            sh = root.join("etc/shadow").display()
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(holder.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line, "locked\n");
    let mut labinit = labinit_setup(root.path(), &common::alice_env()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(labinit.try_wait().unwrap().is_none(), "labinit must wait for the lock");
    drop(holder.stdin.take()); // carol is written, the lock released
    assert!(holder.wait().unwrap().success());
    assert!(labinit.wait().unwrap().success());
    assert!(has_all(root.path(), &["carol", "alice"]), "{:?}", names(root.path(), "passwd"));
}

#[test]
fn parallel_labinit_starts_lose_no_account_in_100_trials() {
    let mut lost = 0;
    let trials = 100;
    for _ in 0..trials {
        let root = common::fixture_root("debian-12");
        let a = labinit_setup(root.path(), &common::alice_env()).spawn().unwrap();
        let b = labinit_setup(root.path(), &common::cluster_env("bob", "123457", "BLAB", "11167")).spawn().unwrap();
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
        assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
        if !has_all(root.path(), &["alice", "bob"]) || !names(root.path(), "group").contains(&"BLAB".to_owned()) {
            lost += 1;
        }
    }
    eprintln!("parallel labinit starts: {lost} of {trials} trials lost an account");
    assert_eq!(lost, 0, "{lost} of {trials} trials lost an account");
}

#[test]
fn labinit_and_useradd_in_parallel_lose_no_account_in_100_trials() {
    let mut lost = 0;
    let trials = 100;
    for t in 0..trials {
        let root = common::fixture_root("debian-12");
        // useradd --root chroots into the throwaway root (its lckpwdf takes
        // that root's /etc/.pwd.lock, the lock labinit takes).
        let u = Command::new("useradd")
            .arg("--root")
            .arg(root.path())
            .args(["-M", "-u", "2001", "-U", "carol"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("useradd (passwd package)");
        // Stagger the start so labinit lands before, inside and after
        // useradd's locked window across the trials.
        std::thread::sleep(Duration::from_micros((t % 10) * 2000));
        let l = labinit_setup(root.path(), &common::alice_env()).spawn().unwrap();
        let (u, l) = (u.wait_with_output().unwrap(), l.wait_with_output().unwrap());
        assert!(u.status.success(), "useradd: {}", String::from_utf8_lossy(&u.stderr));
        assert!(l.status.success(), "labinit: {}", String::from_utf8_lossy(&l.stderr));
        if !has_all(root.path(), &["alice", "carol"]) || !names(root.path(), "group").contains(&"carol".to_owned()) {
            lost += 1;
        }
    }
    eprintln!("labinit against useradd: {lost} of {trials} trials lost an account");
    assert_eq!(lost, 0, "{lost} of {trials} trials lost an account");
}

fn mtime_ns(p: &Path) -> (i64, i64) {
    let m = fs::metadata(p).unwrap();
    (m.mtime(), m.mtime_nsec())
}

#[test]
fn account_lock_makes_setup_wait_for_a_concurrent_account_tool() {
    let root = common::fixture_root("debian-12");
    let lock = root.join("etc/.pwd.lock");
    let released = root.join("released");
    // Another process holds the glibc lock (fcntl, like lckpwdf/useradd) for a while.
    let mut holder = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import fcntl,time,sys\nf=open('{}','w')\nfcntl.lockf(f,fcntl.LOCK_EX)\nprint('locked',flush=True)\ntime.sleep(0.5)\nopen('{}','w').close()\n",
            lock.display(),
            released.display()
        ))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert_eq!(line, "locked\n");
    setup(root.path(), &common::alice_env()).unwrap();
    holder.wait().unwrap();
    assert!(released.exists(), "setup finished only after the holder released the lock");
    assert!(mtime_ns(&root.join("etc/passwd")) >= mtime_ns(&released));
}
