//! `setup` against throwaway roots: how account files are written (owner,
//! mode, backups, no temp files, idempotence, symlinks, the lock), the home,
//! sudo, and setup steps. Runs in-process as root; every path is under a temp
//! root, never the host's /etc.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use labkit::init::setup::setup;

fn mtime_ns(p: &Path) -> (i64, i64) {
    let m = fs::metadata(p).unwrap();
    (m.mtime(), m.mtime_nsec())
}

fn env_plus(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = common::alice_env();
    for (k, v) in extra {
        env.push(((*k).into(), (*v).into()));
    }
    env
}

fn temp_files(etc: &Path) -> Vec<String> {
    fs::read_dir(etc)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("labkit-tmp") || n.ends_with('+'))
        .collect()
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
fn root_owned_existing_home_gets_only_its_top_directory() {
    let root = common::fixture_root("debian-12");
    fs::create_dir_all(root.join("home/alice/data")).unwrap();
    fs::write(root.join("home/alice/data/f"), "x").unwrap();
    setup(root.path(), &common::alice_env()).unwrap();
    assert_eq!(fs::metadata(root.join("home/alice")).unwrap().uid(), 123456);
    assert_eq!(fs::metadata(root.join("home/alice/data")).unwrap().uid(), 0, "not recursive");
    assert_eq!(fs::metadata(root.join("home/alice/data/f")).unwrap().uid(), 0, "not recursive");
    assert!(root.join("home/alice/.bashrc").exists(), ".bashrc ensured");
}

#[test]
fn foreign_owned_home_is_left_alone() {
    let root = common::fixture_root("debian-12");
    fs::create_dir_all(root.join("home/alice")).unwrap();
    std::os::unix::fs::chown(root.join("home/alice"), Some(4242), Some(4242)).unwrap();
    setup(root.path(), &common::alice_env()).unwrap();
    assert_eq!(fs::metadata(root.join("home/alice")).unwrap().uid(), 4242);
    assert!(!root.join("home/alice/.bashrc").exists());
}

fn add_sudo_default(root: &common::TempDir) {
    common::add_sudo(root, "Defaults\tenv_reset\nroot\tALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n");
}

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

fn write_step(root: &common::TempDir, name: &str, body: &str, mode: u32) {
    let dir = root.join("opt/lab/setup_steps");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(name), body).unwrap();
    fs::set_permissions(dir.join(name), fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn steps_run_in_byte_order_see_the_account_and_export_variables() {
    let root = common::fixture_root("debian-12");
    // The fixture's /bin/bash is a stub; non-executable .sh steps need a real shell.
    fs::copy("/bin/sh", root.join("bin/bash")).unwrap();
    let log = root.join("order.log");
    let lg = log.display();
    write_step(&root, "9_last", &format!("#!/bin/sh\necho 9 >> {lg}\necho LATE=1 >> \"$LABKIT_ENV\"\n"), 0o755);
    write_step(&root, "01_first.sh", &format!("echo 01 $LABKIT_USER $LABKIT_UID $LABKIT_GID $LABKIT_HOME $(id -u) >> {lg}\necho FOO=one >> \"$LABKIT_ENV\"\necho 'not a line' >> \"$LABKIT_ENV\"\n"), 0o644);
    write_step(
        &root,
        "10_fails",
        &format!("#!/bin/sh\necho 10 >> {lg}\necho FOO=two >> \"$LABKIT_ENV\"\nexit 3\n"),
        0o755,
    );
    write_step(&root, "A_upper", &format!("#!/bin/sh\necho A >> {lg}\n"), 0o755);
    write_step(&root, "README", "not a step", 0o644);
    let out = setup(root.path(), &common::alice_env()).unwrap();
    assert_eq!(fs::read_to_string(&log).unwrap(), "01 alice 123456 11166 /home/alice 0\n10\n9\nA\n");
    assert_eq!(out.exports, vec![("FOO".to_string(), "two".to_string()), ("LATE".to_string(), "1".to_string())]);
}

#[test]
fn step_failure_abort_stops_with_the_steps_code() {
    let root = common::fixture_root("debian-12");
    let marker = root.join("second-ran");
    write_step(&root, "10_fails", "#!/bin/sh\nexit 7\n", 0o755);
    write_step(&root, "20_next", &format!("#!/bin/sh\ntouch {}\n", marker.display()), 0o755);
    let err = setup(root.path(), &env_plus(&[("LABKIT_STEP_FAILURE", "abort")])).unwrap_err();
    assert_eq!(err.code, 7);
    assert!(err.message.contains("10_fails") && err.message.contains('7'));
    assert!(!marker.exists());
    // Negative control: the default policy runs the next step.
    setup(root.path(), &common::alice_env()).unwrap();
    assert!(marker.exists());
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

#[test]
fn shell_sees_the_same_identity_and_exports_as_the_job() {
    let root = common::fixture_root("debian-12");
    write_step(&root, "10_export", "#!/bin/sh\necho CONDA=/opt/conda >> \"$LABKIT_ENV\"\n", 0o755);
    let out = setup(root.path(), &common::alice_env()).unwrap();
    let resolved = labkit::init::setup::resolve_identity(root.path(), &common::alice_env()).unwrap();
    assert_eq!(resolved, out.identity);
    assert_eq!(labkit::init::setup::load_exports(root.path()), out.exports);
    assert_eq!(out.exports, vec![("CONDA".to_string(), "/opt/conda".to_string())]);
    let m = fs::metadata(root.join("run/labkit/job")).unwrap();
    assert_eq!(m.mode() & 0o777, 0o600);
}
