//! Steps and services run as root, so labinit runs only what nobody but root
//! can change: the directory, every directory above it, and the file (a link
//! followed) must be owned by root and writable by no one else (sshd's
//! StrictModes rule). What fails is refused with a warning naming the path,
//! its owner and mode; the rest still runs. Each case has a control where the
//! same layout owned by root runs. Needs root (chown); uses `--root` in a
//! temp directory, never the host's /etc.

mod common;
use common::stderr;

use std::fs;
use std::os::unix::fs::{chown, symlink, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::TempDir;

const USER: u32 = 123456;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// A root at `{t}/r` with the steps directory `/steps` and a marker step
/// `50_x.sh` that records its uid in `{t}/out/NAME`.
fn layout(t: &TempDir) {
    fs::create_dir_all(t.join("r/steps")).unwrap();
    fs::create_dir_all(t.join("out")).unwrap();
    chmod(&t.join("out"), 0o1777);
    step(t, "r/steps/50_x.sh", "x");
}

fn step(t: &TempDir, rel: &str, marker: &str) {
    let p = t.join(rel);
    fs::write(&p, format!("#!/bin/sh\nid -u > {}/out/{marker}\n", t.path().display())).unwrap();
    chmod(&p, 0o755);
}

fn start(t: &TempDir, extra: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(common::labinit());
    cmd.args(["--root"])
        .arg(t.join("r"))
        .args(["run", "--", "/bin/true"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LABKIT_STEPS_DIR", "/steps")
        .env("LABKIT_SERVICES_DIR", "/svc")
        .envs(extra.iter().copied())
        .stdin(Stdio::null());
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn ran(t: &TempDir, marker: &str) -> bool {
    t.join(&format!("out/{marker}")).exists()
}

/// The planted-step attack of issue 11: a steps directory owned by the user.
#[test]
fn a_steps_directory_the_user_owns_is_refused() {
    assert!(is_root(), "needs root (chown), as CI runs it");
    for owner in [USER, 0] {
        let t = TempDir::new("trust-dir");
        layout(&t);
        chown(t.join("r/steps"), Some(owner), None).unwrap();
        let err = stderr(&start(&t, &[]));
        if owner == USER {
            assert!(!ran(&t, "x"), "a step in a user-owned directory ran as root:\n{err}");
            assert!(
                err.contains(&format!(
                    "setup steps refused: {} is owned by uid 123456 with mode 0755 (not owned by root)",
                    t.join("r/steps").display()
                )),
                "{err}"
            );
        } else {
            assert!(ran(&t, "x"), "control: the root-owned directory's step did not run:\n{err}");
            assert!(!err.contains("refused"), "{err}");
        }
    }
}

/// Group- or world-writable: the directory, a directory above it, the step.
#[test]
fn writable_by_group_or_others_is_refused_at_every_level() {
    assert!(is_root(), "needs root (chown), as CI runs it");
    for (what, rel, mode) in [
        ("dir", "r/steps", 0o775),
        ("dir", "r/steps", 0o1777),
        ("parent", "r", 0o757),
        ("file", "r/steps/50_x.sh", 0o775),
    ] {
        let t = TempDir::new("trust-mode");
        layout(&t);
        step(&t, "r/steps/60_ok.sh", "ok");
        chmod(&t.join(rel), mode);
        let err = stderr(&start(&t, &[]));
        assert!(!ran(&t, "x"), "{what} {mode:o}: the step ran:\n{err}");
        let shown =
            format!("{} is owned by uid 0 with mode {mode:04o} (writable by group or others)", t.join(rel).display());
        assert!(err.contains(&shown), "{what} {mode:o}: expected {shown:?} in:\n{err}");
        // Only the file itself: the other step still runs.
        assert_eq!(ran(&t, "ok"), what == "file", "{what}: {err}");
        // Control: the same layout with mode 0755 runs.
        chmod(&t.join(rel), 0o755);
        let err = stderr(&start(&t, &[]));
        assert!(ran(&t, "x"), "control {what}: {err}");
    }
}

/// A step that is a link: where it leads is checked from `/`. A link into a
/// directory the user can write is refused; into a root-owned one it runs.
/// A step file the user owns is refused; with abort, the start stops (125).
#[test]
fn linked_and_user_owned_steps() {
    assert!(is_root(), "needs root (chown), as CI runs it");
    for shared_owner in [USER, 0] {
        let t = TempDir::new("trust-link");
        layout(&t);
        fs::remove_file(t.join("r/steps/50_x.sh")).unwrap();
        fs::create_dir_all(t.join("shared")).unwrap();
        step(&t, "shared/x.sh", "x");
        chown(t.join("shared"), Some(shared_owner), None).unwrap();
        symlink(t.join("shared/x.sh"), t.join("r/steps/50_x.sh")).unwrap();
        let err = stderr(&start(&t, &[]));
        assert_eq!(ran(&t, "x"), shared_owner == 0, "owner {shared_owner}: {err}");
        if shared_owner == USER {
            assert!(
                err.contains(&format!("step 50_x.sh refused: {} is owned by uid 123456", t.join("shared").display())),
                "{err}"
            );
        }
    }
    let t = TempDir::new("trust-file");
    layout(&t);
    chown(t.join("r/steps/50_x.sh"), Some(USER), None).unwrap();
    let err = stderr(&start(&t, &[]));
    assert!(!ran(&t, "x") && err.contains("step 50_x.sh refused") && err.contains("uid 123456"), "{err}");
    let out = Command::new(common::labinit())
        .arg("--root")
        .arg(t.join("r"))
        .args(["run", "--", "/bin/true"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LABKIT_STEPS_DIR", "/steps")
        .env("LABKIT_SERVICES_DIR", "/svc")
        .env("LABKIT_STEP_FAILURE", "abort")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "abort: {}", stderr(&out));
}

/// A link placed by a user in a sticky world-writable directory (`/tmp`) is
/// not followed, even to a root-owned directory; the same link owned by root
/// is (the kernel's protected_symlinks rule).
#[test]
fn a_users_link_in_a_sticky_directory_is_not_followed() {
    assert!(is_root(), "needs root (chown), as CI runs it");
    for link_owner in [USER, 0] {
        let t = TempDir::new("trust-sticky");
        layout(&t);
        fs::create_dir_all(t.join("r/tmp")).unwrap();
        chmod(&t.join("r/tmp"), 0o1777);
        symlink(t.join("r/steps"), t.join("r/tmp/steps")).unwrap();
        std::os::unix::fs::lchown(t.join("r/tmp/steps"), Some(link_owner), None).unwrap();
        let err = stderr(&start(&t, &[("LABKIT_STEPS_DIR", "/tmp/steps")]));
        assert_eq!(ran(&t, "x"), link_owner == 0, "link owner {link_owner}: {err}");
        if link_owner == USER {
            assert!(err.contains("a symbolic link others could have placed"), "{err}");
        }
    }
}

/// What runs is the file that was checked: a step that replaces a later
/// step's file by a new one (another inode) does not change what runs.
/// Control: the replacement is really there afterwards.
#[test]
fn the_checked_file_is_what_runs() {
    assert!(is_root(), "needs root (chown), as CI runs it");
    let t = TempDir::new("trust-fd");
    layout(&t);
    let later = t.join("r/steps/60_later.sh");
    step(&t, "r/steps/60_later.sh", "old");
    let swap = format!(
        "#!/bin/sh\nrm -f {p}\nprintf '#!/bin/sh\\nid -u > {o}/out/new\\n' > {p}\nchmod 755 {p}\n",
        p = later.display(),
        o = t.path().display()
    );
    fs::write(t.join("r/steps/10_swap.sh"), swap).unwrap();
    chmod(&t.join("r/steps/10_swap.sh"), 0o755);
    let err = stderr(&start(&t, &[]));
    assert!(ran(&t, "old") && !ran(&t, "new"), "{err}");
    assert!(fs::read_to_string(&later).unwrap().contains("/out/new"), "control: the file was not replaced");
}

/// Services follow the same rule: a services directory or service the user
/// owns is refused and never started; the root-owned control starts.
#[test]
fn services_the_user_can_change_are_refused() {
    assert!(is_root(), "needs root (chown), as CI runs it");
    for (what, owner) in [("dir", USER), ("file", USER), ("dir", 0)] {
        let t = TempDir::new("trust-svc");
        layout(&t);
        fs::create_dir_all(t.join("r/svc")).unwrap();
        let svc = t.join("r/svc/hello.sh");
        fs::write(&svc, format!("#!/bin/sh\nid -u > {}/out/svc\n", t.path().display())).unwrap();
        chmod(&svc, 0o755);
        let target = if what == "dir" { t.join("r/svc") } else { svc.clone() };
        chown(&target, Some(owner), None).unwrap();
        let out = Command::new(common::labinit())
            .arg("--root")
            .arg(t.join("r"))
            .args(["run", "-c", "sleep 1"])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("LABKIT_STEPS_DIR", "/steps")
            .env("LABKIT_SERVICES_DIR", "/svc")
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{err}");
        assert_eq!(ran(&t, "svc"), owner == 0, "{what} owned by {owner}: {err}");
        if owner == USER {
            let name = if what == "dir" { "services refused: " } else { "service hello.sh refused" };
            assert!(err.contains(name) && err.contains("uid 123456"), "{what}: {err}");
        }
    }
}

/// Entries that are not files (a FIFO, a directory, a dangling link) are
/// skipped without blocking; the ordinary step beside them runs (control).
#[test]
fn fifos_directories_and_dangling_links_are_skipped() {
    assert!(is_root(), "needs root (chown), as CI runs it");
    let t = TempDir::new("trust-odd");
    layout(&t);
    nix::unistd::mkfifo(&t.join("r/steps/40_fifo.sh"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    fs::create_dir(t.join("r/steps/41_dir.sh")).unwrap();
    symlink(t.join("nowhere"), t.join("r/steps/42_dangling.sh")).unwrap();
    let err = stderr(&start(&t, &[]));
    assert!(ran(&t, "x"), "{err}");
    assert!(err.contains("step 40_fifo.sh: skipped (not a regular file)"), "{err}");
    assert!(err.contains("step 41_dir.sh: skipped (not a regular file)"), "{err}");
    assert!(err.contains("step 42_dangling.sh: skipped (dangling link)"), "{err}");
}
