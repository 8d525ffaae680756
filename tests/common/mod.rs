//! Helpers shared by the integration tests: the one temporary directory
//! (`TempDir`), throwaway roots built from the account fixtures, and the path
//! of the labinit binary under test; `ns` is the one namespace runner,
//! `debian` the Debian test root. Nothing here touches the host's own /etc.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

mod tempdir;
pub use tempdir::TempDir;

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/etc")
}

/// The fixture distributions.
pub const DISTROS: [&str; 6] = ["debian-12", "ubuntu-24.04", "alpine-3", "fedora-40", "docker-stacks", "quirks"];

/// A throwaway root whose /etc holds the account files of `distro`, with the
/// owners and modes the real systems use, plus an executable /bin/bash stub
/// (only its presence matters to shell selection) unless `distro` is Alpine.
pub fn fixture_root(distro: &str) -> TempDir {
    let t = TempDir::new(distro);
    let etc = t.join("etc");
    fs::create_dir_all(&etc).unwrap();
    for entry in fs::read_dir(fixtures_dir().join(distro)).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let dest = etc.join(&name);
        fs::copy(entry.path(), &dest).unwrap();
        let mode = match (distro, name.to_str().unwrap()) {
            ("fedora-40", "shadow" | "gshadow") => 0o000,
            (_, "shadow" | "gshadow") => 0o640,
            ("docker-stacks", "passwd" | "group") => 0o664,
            _ => 0o644,
        };
        fs::set_permissions(&dest, fs::Permissions::from_mode(mode)).unwrap();
        if mode == 0o640 {
            // Debian's shadow group.
            std::os::unix::fs::chown(&dest, Some(0), Some(42)).unwrap();
        }
    }
    fs::create_dir_all(t.join("bin")).unwrap();
    let shell = if distro == "alpine-3" { "bin/sh" } else { "bin/bash" };
    fs::write(t.join(shell), "#!/bin/sh\n").unwrap();
    fs::set_permissions(t.join(shell), fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir_all(t.join("etc/skel")).unwrap();
    fs::write(t.join("etc/skel/.bashrc"), "# skel bashrc\n").unwrap();
    fs::write(t.join("etc/skel/.profile"), "# skel profile\n").unwrap();
    t
}

/// Install a fake sudo (presence is what labinit checks) and a sudoers file.
pub fn add_sudo(root: &TempDir, sudoers: &str) {
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::write(root.join("usr/bin/sudo"), "").unwrap();
    fs::set_permissions(root.join("usr/bin/sudo"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("etc/sudoers"), sudoers).unwrap();
    fs::set_permissions(root.join("etc/sudoers"), fs::Permissions::from_mode(0o440)).unwrap();
}

/// A setup step `name` in the image's /opt/lab/setup_steps with `body` and `mode`.
pub fn write_step(root: &TempDir, name: &str, body: &str, mode: u32) {
    let dir = root.join("opt/lab/setup_steps");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(name), body).unwrap();
    fs::set_permissions(dir.join(name), fs::Permissions::from_mode(mode)).unwrap();
}

/// The environment of a cluster job for alice.
/// alice's environment plus `extra` (later values win, as in a process).
pub fn env_plus(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = alice_env();
    for (k, v) in extra {
        env.push(((*k).into(), (*v).into()));
    }
    env
}

/// A finished command's stderr, as text.
pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn alice_env() -> Vec<(String, String)> {
    cluster_env("alice", "123456", "CVLAB-unit", "11166")
}

pub fn cluster_env(user: &str, uid: &str, group: &str, gid: &str) -> Vec<(String, String)> {
    vec![
        ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
        ("CLUSTER_USER".into(), user.into()),
        ("CLUSTER_USER_ID".into(), uid.into()),
        ("CLUSTER_GROUP_NAME".into(), group.into()),
        ("CLUSTER_GROUP_ID".into(), gid.into()),
    ]
}

/// Every file under `dir` with its bytes, for "byte-identical" assertions.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>, u32)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() {
                out.push((p.clone(), fs::read(&p).unwrap(), m.permissions().mode()));
            }
        }
    }
    out.sort();
    out
}

/// The labinit binary under test: the static build when the Makefile says
/// where it is, else cargo's own build of it.
pub fn labinit() -> PathBuf {
    match std::env::var_os("LABKIT_TEST_LABINIT") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_labinit")),
    }
}

/// Days since the epoch, as shadow's lastchg.
pub fn today() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 86400
}

pub mod debian;
pub mod ns;
pub mod watchdog;

/// Copy an executable that a test will then run. A plain `fs::copy` keeps a
/// writable fd open in this process for a moment; a fork by another test
/// thread in that moment inherits it, and exec of the copy then fails with
/// ETXTBSY. `cp` writes it in a process of its own, which exits first.
pub fn install_exec(src: &Path, dst: &Path) {
    let st = std::process::Command::new("cp").arg(src).arg(dst).status().expect("run cp");
    assert!(st.success(), "cp {} {}", src.display(), dst.display());
}
