//! How labinit writes /etc: the account files with their owners, modes and
//! backups, no temp file left, a second start that changes nothing, a changed
//! request that converges, a symbolic link refused; and the kernel-facing
//! cases in a private mount namespace: a bind-mounted /etc/passwd, a
//! read-only /etc, a full disk. Every path is under a throwaway root, never
//! the host's /etc; every mount vanishes with its namespace. The lock is in
//! tests/locking.rs, kills at any point in tests/torture.rs.

mod common;
use common::stderr;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Output;

use common::ns::in_ns;
use labkit::init::setup::setup;

fn mtime_ns(p: &Path) -> (i64, i64) {
    let m = fs::metadata(p).unwrap();
    (m.mtime(), m.mtime_nsec())
}

fn temp_files(etc: &Path) -> Vec<String> {
    fs::read_dir(etc)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("labkit-tmp") || n.ends_with('+'))
        .collect()
}

fn add_sudo_default(root: &common::TempDir) {
    common::add_sudo(root, "Defaults\tenv_reset\nroot\tALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n");
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn fresh_ubuntu_root_gets_the_account_with_owners_modes_and_backups() {
    let root = common::fixture_root("ubuntu-24.04");
    let old_passwd = fs::read(root.join("etc/passwd")).unwrap();
    let out = setup(root.path(), &common::alice_env()).unwrap();
    let id = out.identity.expect("identity");
    assert_eq!((id.name.as_str(), id.uid, id.gid, id.groups.clone()), ("alice", 123456, 11166, vec![11166]));
    assert_eq!(id.home, Path::new("/home/alice"));
    assert_eq!(id.shell, Path::new("/bin/bash"));

    let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.starts_with(std::str::from_utf8(&old_passwd).unwrap()), "old lines first, unchanged");
    assert!(passwd.ends_with("alice:x:123456:11166::/home/alice:/bin/bash\n"));
    let shadow = root.join("etc/shadow");
    let m = fs::metadata(&shadow).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o640, 0, 42), "shadow keeps 0640 root:shadow");
    assert!(fs::read_to_string(&shadow).unwrap().ends_with(&format!("alice:*:{}:0:99999:7:::\n", common::today())));
    assert_eq!(fs::read(root.join("etc/passwd-")).unwrap(), old_passwd, "backup holds the old file");
    let bm = fs::metadata(root.join("etc/shadow-")).unwrap();
    assert_eq!((bm.mode() & 0o7777, bm.gid()), (0o640, 42), "backup keeps owner and mode");
    assert!(temp_files(&root.join("etc")).is_empty());

    let home = fs::metadata(root.join("home/alice")).unwrap();
    assert_eq!((home.uid(), home.gid(), home.mode() & 0o777), (123456, 11166, 0o750));
    let rc = root.join("home/alice/.bashrc");
    assert_eq!(fs::read_to_string(&rc).unwrap(), "# skel bashrc\n");
    assert_eq!(fs::metadata(&rc).unwrap().uid(), 123456);
    assert_eq!(fs::metadata(root.join("home/alice/.profile")).unwrap().uid(), 123456);
}

#[test]
fn fedora_shadow_mode_0000_is_kept() {
    let root = common::fixture_root("fedora-40");
    setup(root.path(), &common::alice_env()).unwrap();
    for f in ["etc/shadow", "etc/gshadow"] {
        assert_eq!(fs::metadata(root.join(f)).unwrap().mode() & 0o7777, 0, "{f}");
        assert!(fs::read_to_string(root.join(f)).unwrap().contains("\nalice:") || f.ends_with("gshadow"));
    }
}

#[test]
fn second_start_changes_nothing() {
    let root = common::fixture_root("debian-12");
    add_sudo_default(&root);
    setup(root.path(), &common::alice_env()).unwrap();
    let files =
        ["etc/passwd", "etc/group", "etc/shadow", "etc/gshadow", "etc/passwd-", "etc/sudoers", "etc/sudoers.d/labkit"];
    let before: Vec<_> = files.iter().map(|f| mtime_ns(&root.join(f))).collect();
    let snap = common::snapshot(root.path());
    std::thread::sleep(std::time::Duration::from_millis(20));
    setup(root.path(), &common::alice_env()).unwrap();
    let after: Vec<_> = files.iter().map(|f| mtime_ns(&root.join(f))).collect();
    assert_eq!(before, after);
    assert_eq!(common::snapshot(root.path()), snap);
}

#[test]
fn a_changed_request_converges_on_restart() {
    let root = common::fixture_root("debian-12");
    setup(root.path(), &common::alice_env()).unwrap();
    let env = common::cluster_env("alice", "200000", "CVLAB-unit", "11166");
    let out = setup(root.path(), &env).unwrap();
    assert_eq!(out.identity.unwrap().uid, 200000);
    let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.ends_with("alice:x:200000:11166::/home/alice:/bin/bash\n"), "{passwd}");
    assert_eq!(passwd.matches("\nalice:").count(), 1);
}

#[test]
fn symlinked_account_file_is_refused_and_nothing_is_written() {
    let root = common::fixture_root("debian-12");
    fs::rename(root.join("etc/group"), root.join("etc/group.real")).unwrap();
    std::os::unix::fs::symlink("group.real", root.join("etc/group")).unwrap();
    let before = common::snapshot(root.path());
    let err = setup(root.path(), &common::alice_env()).unwrap_err();
    assert_eq!(err.code, 125);
    assert!(err.message.contains("/etc/group is a symbolic link"), "{}", err.message);
    assert_eq!(common::snapshot(root.path()), before);
}

#[test]
fn stale_temp_file_from_a_killed_run_does_not_block() {
    let root = common::fixture_root("debian-12");
    fs::write(root.join("etc/.passwd.labkit-tmp"), "half written").unwrap();
    setup(root.path(), &common::alice_env()).unwrap();
    assert!(temp_files(&root.join("etc")).is_empty());
    assert!(fs::read_to_string(root.join("etc/passwd")).unwrap().contains("\nalice:"));
}

#[test]
fn a_bind_mounted_passwd_is_rewritten_in_place() {
    let root = common::fixture_root("debian-12");
    fs::copy(root.join("etc/passwd"), root.join("outer-passwd")).unwrap();
    let out = in_ns(
        &root,
        r#"mount --bind "$ROOT/outer-passwd" "$ROOT/etc/passwd"
           "$LABINIT" setup --root "$ROOT"
           ls -A "$ROOT/etc""#,
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/etc/passwd is a mount point; rewrote it in place (not atomic)"),
        "{}",
        stderr(&out)
    );
    // The namespace is gone; the file that was mounted holds the new entry.
    assert!(fs::read_to_string(root.join("outer-passwd"))
        .unwrap()
        .ends_with("alice:x:123456:11166::/home/alice:/bin/bash\n"));
    assert!(!stdout(&out).contains("labkit-tmp"), "no temp file left: {}", stdout(&out));
}

/// `labinit setup` with the root's /etc bind-mounted read-only over itself.
const READ_ONLY_ETC_SETUP: &str = r#"mount --bind "$ROOT/etc" "$ROOT/etc" && mount -o remount,ro,bind "$ROOT/etc"
           "$LABINIT" setup --root "$ROOT""#;

#[test]
fn a_read_only_etc_degrades_with_one_clear_warning_and_no_partial_file() {
    let root = common::fixture_root("debian-12");
    let before = common::snapshot(&root.join("etc"));
    let out = in_ns(&root, READ_ONLY_ETC_SETUP, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("Read-only file system")
            && err.contains("will not know it")
            && err.contains("uid 123456 gid 11166"),
        "{err}"
    );
    assert_eq!(common::snapshot(&root.join("etc")), before);
}

#[test]
fn a_read_only_etc_that_already_has_the_account_is_silent() {
    let root = common::fixture_root("debian-12");
    let first = in_ns(&root, r#""$LABINIT" setup --root "$ROOT""#, &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let out = in_ns(&root, READ_ONLY_ETC_SETUP, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}

#[test]
fn a_full_disk_gives_a_clear_error_and_no_partial_file() {
    let root = common::fixture_root("debian-12");
    fs::rename(root.join("etc"), root.join("etc.orig")).unwrap();
    fs::create_dir(root.join("etc")).unwrap();
    let out = in_ns(
        &root,
        r#"mount -t tmpfs -o size=64k full "$ROOT/etc"
           cp -a "$ROOT/etc.orig/." "$ROOT/etc/"
           dd if=/dev/zero of="$ROOT/etc/filler" bs=1k 2>/dev/null || true
           ls -A "$ROOT/etc" | sort > "$ROOT/before.list"
           md5sum "$ROOT"/etc/passwd "$ROOT"/etc/group "$ROOT"/etc/shadow "$ROOT"/etc/gshadow > "$ROOT/before.sum"
           set +e; "$LABINIT" setup --root "$ROOT"; echo "rc=$?" >&2; set -e
           ls -A "$ROOT/etc" | grep -vx .pwd.lock | sort > "$ROOT/after.list"
           md5sum -c --quiet "$ROOT/before.sum" >&2"#,
        &[],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("rc=125"), "exit 125: {err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("labinit: error:")).count(), 1, "{err}");
    assert_eq!(
        fs::read_to_string(root.join("before.list")).unwrap(),
        fs::read_to_string(root.join("after.list")).unwrap(),
        "no temp file, no truncated backup left (only glibc's lock file, as after any account tool)"
    );
}

/// Review r14 (temp files now created first with O_EXCL, cleared only on
/// EEXIST): whatever a killed start or anyone else left at a temp name
/// labinit owns — a FIFO, a socket, a link to a file elsewhere, a dangling
/// link, a hard link to a file elsewhere, a plain file — at each account
/// file's temp and backup temp, the journal's temp and PID 1's record temp:
/// the start never blocks on it, never writes through it, succeeds and
/// leaves nothing at that name. Control: the same start with nothing
/// planted writes the same account files.
#[test]
fn anything_at_a_temp_name_is_replaced_never_opened_or_followed() {
    use std::os::unix::net::UnixListener;
    use std::time::{Duration, Instant};
    let control = common::fixture_root("debian-12");
    let mut quiet = common::alice_env();
    quiet.push(("LABKIT_QUIET".into(), "1".into()));
    setup(control.path(), &quiet).unwrap();
    let expected: Vec<Vec<u8>> = ["passwd", "group", "shadow", "gshadow"]
        .iter()
        .map(|f| fs::read(control.join("etc").join(f)).unwrap())
        .collect();
    let mut names: Vec<String> = Vec::new();
    for f in ["passwd", "group", "shadow", "gshadow"] {
        names.push(format!("etc/.{f}.labkit-tmp"));
        names.push(format!("etc/.{f}-.labkit-tmp"));
    }
    names.push("etc/..labkit-journal.labkit-tmp".into());
    names.push("run/labkit/.job.tmp".into());
    for name in &names {
        for kind in ["fifo", "socket", "symlink", "dangling", "hardlink", "file"] {
            let root = common::fixture_root("debian-12");
            let victim = root.join("victim");
            fs::write(&victim, "keep me\n").unwrap();
            let at = root.join(name);
            fs::create_dir_all(at.parent().unwrap()).unwrap();
            match kind {
                "fifo" => assert!(std::process::Command::new("mkfifo").arg(&at).status().unwrap().success()),
                "socket" => drop(UnixListener::bind(&at).unwrap()),
                "symlink" => std::os::unix::fs::symlink(&victim, &at).unwrap(),
                "dangling" => std::os::unix::fs::symlink(root.join("nowhere"), &at).unwrap(),
                "hardlink" => fs::hard_link(&victim, &at).unwrap(),
                _ => fs::write(&at, "half written").unwrap(),
            }
            let mut child = std::process::Command::new(common::labinit())
                .arg("setup")
                .arg("--root")
                .arg(root.path())
                .env_clear()
                .envs(common::alice_env())
                .env("LABKIT_QUIET", "1")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let t0 = Instant::now();
            let status = loop {
                if let Some(s) = child.try_wait().unwrap() {
                    break s;
                }
                if t0.elapsed() > Duration::from_secs(20) {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("{name} as a {kind}: labinit setup hangs");
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            let out = child.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(status.success(), "{name} as a {kind}: {status}\n{err}");
            assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me\n", "{name} as a {kind}: written through");
            assert!(fs::symlink_metadata(&at).is_err(), "{name} as a {kind}: still there");
            for (f, want) in ["passwd", "group", "shadow", "gshadow"].iter().zip(&expected) {
                assert_eq!(&fs::read(root.join("etc").join(f)).unwrap(), want, "{name} as a {kind}: /etc/{f}");
            }
            assert!(
                temp_files(&root.join("etc")).is_empty(),
                "{name} as a {kind}: {:?}",
                temp_files(&root.join("etc"))
            );
            assert!(
                fs::read_to_string(root.join("run/labkit/job")).unwrap().contains("user alice\n"),
                "{name} as a {kind}"
            );
        }
    }
}
