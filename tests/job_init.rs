//! `labkit job init`: ids from this machine (or given), the profile it
//! writes, and never overwriting one by accident.

#[path = "job/support.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use support::*;

/// `labkit job init` run as a system account that is not root: as
/// `daemon` through setpriv when the suite runs as root (its ids then come
/// from /etc/passwd, independently of `id`), else as the caller.
fn init_as_non_root(scratch: &Scratch, args: &[&str]) -> std::process::Output {
    let mut c = if nix::unistd::getuid().is_root() {
        // A copy daemon can execute wherever the checkout lives (/root is 0700).
        // Copied by `cp` in a process of its own: a plain `fs::copy` holds a
        // writable fd for a moment, a fork by another test thread inherits it
        // and exec of the copy fails with ETXTBSY ("Text file busy").
        let bin = scratch.join("labkit");
        let st = Command::new("cp").arg(env!("CARGO_BIN_EXE_labkit")).arg(&bin).status().unwrap();
        assert!(st.success(), "cp labkit to {}", bin.display());
        let mut c = Command::new("setpriv");
        c.args(["--reuid=daemon", "--regid=daemon", "--clear-groups"]).arg(bin);
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_labkit"))
    };
    c.arg("job").args(args).env_clear().env("PATH", "/usr/bin:/bin").env("HOME", "/nonexistent").output().unwrap()
}

#[test]
fn init_takes_ids_from_this_machine_and_refuses_to_overwrite() {
    let s = Scratch::new("init");
    std::fs::set_permissions(s.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = s.join("cfg/labkit/job.toml");
    let ps = path.to_str().unwrap();
    let o = init_as_non_root(
        &s,
        &[
            "init",
            "--profile",
            ps,
            "--image",
            "img:1",
            "--workdir",
            "/data/me",
            "--namespace",
            "runai-cvlab",
            "--project",
            "cvlab",
            "--volume",
            "pv-cvlabdata2:runai-pv-cvlabdata2:/cvlabdata2",
            "--env",
            "TORCH_HOME=/models",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("wrote"), "{}", stdout(&o));
    let p = labkit::job::profile::load(&path).unwrap();
    // The ids of the account that ran it, from the account database, not from `id`.
    let me = if nix::unistd::getuid().is_root() {
        nix::unistd::User::from_name("daemon").unwrap().unwrap()
    } else {
        nix::unistd::User::from_uid(nix::unistd::getuid()).unwrap().unwrap()
    };
    let group = nix::unistd::Group::from_gid(me.gid).unwrap().unwrap();
    assert_eq!((p.user.name.as_str(), p.user.uid, p.user.gid), (me.name.as_str(), me.uid.as_raw(), me.gid.as_raw()));
    assert_eq!(p.user.group, group.name);
    assert_eq!(p.job.image, "img:1");
    assert_eq!(p.volumes[0].runai_claim.as_deref(), Some("runai-pv-cvlabdata2"));
    assert_eq!(p.env, vec![("TORCH_HOME".to_string(), "/models".to_string())]);
    // The written profile renders.
    ok(&["render", "x", "--profile", ps]);
    let before = std::fs::read(&path).unwrap();
    let ids = ["--user", "alice", "--uid", "123456", "--group", "CVLAB-unit", "--gid", "11166"];
    // Again without --force: refused, file unchanged.
    let mut a = vec!["init", "--profile", ps, "--image", "other", "--workdir", "/x"];
    a.extend(ids);
    let o = labkit_job(&a);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // Bad input with --force: refused, file unchanged.
    let mut a = vec!["init", "--profile", ps, "--force", "--image", "i", "--workdir", "relative"];
    a.extend(ids);
    let o = labkit_job(&a);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // With --force and explicit cluster ids (a laptop's ids are not the cluster's).
    let mut a = vec!["init", "--profile", ps, "--force", "--image", "other", "--workdir", "/x"];
    a.extend(ids);
    ok(&a);
    let p = labkit::job::profile::load(&path).unwrap();
    assert_eq!(
        (p.user.name.as_str(), p.user.uid, p.user.group.as_str(), p.user.gid),
        ("alice", 123456, "CVLAB-unit", 11166)
    );
    assert_eq!(p.job.image, "other");
    assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1, "no temp file left");
}

/// Root on the machine running init is not a cluster account: refused
/// unless the ids are given. (Needs root, as `make unit` and CI run.)
#[test]
fn init_as_root_needs_explicit_ids() {
    let s = Scratch::new("init-root");
    let ps = s.join("job.toml");
    let o = labkit_job(&["init", "--profile", ps.to_str().unwrap(), "--image", "i", "--workdir", "/w"]);
    if nix::unistd::getuid().is_root() {
        assert_eq!(o.status.code(), Some(2));
        assert!(stderr(&o).contains("you are root"), "{}", stderr(&o));
        assert!(!ps.exists());
    } else {
        // Control for a non-root run: the caller's own ids are accepted.
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        std::fs::remove_file(&ps).unwrap();
    }
    // Explicit ids are written whoever runs it.
    ok(&[
        "init",
        "--profile",
        ps.to_str().unwrap(),
        "--image",
        "i",
        "--workdir",
        "/w",
        "--user",
        "alice",
        "--uid",
        "123456",
        "--group",
        "g",
        "--gid",
        "5",
    ]);
    assert!(ps.exists());
}
