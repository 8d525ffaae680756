//! The durability policy at the edge (issue 14 §2; README, "How labinit
//! writes /etc"): `labinit setup` fsyncs nothing of /etc on a container's
//! overlay layer or a tmpfs, and syncs every file and /etc itself on a disk.
//! Each case runs in a private mount namespace (`unshare -m`) under
//! `strace -f -y`, which names the file of every fsync; the account files
//! written are the same bytes in every case.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use labkit::init::files::{durability_for, Durability};

const FILES: [&str; 4] = ["passwd", "group", "shadow", "gshadow"];

/// Run `labinit setup` on `root` after `mount` (a shell command, may be
/// empty) in a private mount namespace; returns the number of fsync-family
/// calls on files under `root`/etc and the account files written.
fn setup_counting_syncs(root: &Path, mount: &str, tag: &str) -> (usize, Vec<Vec<u8>>) {
    let out = root.join(format!("out-{tag}"));
    fs::create_dir_all(&out).unwrap();
    let trace = out.join("trace");
    let etc = root.join("etc");
    let copy_out: String =
        FILES.iter().map(|f| format!(" && cp {}/{f} {}/{f}", etc.display(), out.display())).collect();
    let script = format!(
        "set -e; {mount}\nstrace -f -qq -y -o {trace} -e trace=fsync,fdatasync,syncfs,sync,sync_file_range {labinit} setup --root {root}{copy_out}",
        trace = trace.display(),
        labinit = common::labinit().display(),
        root = root.display(),
    );
    let st = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .env_clear()
        .envs(common::alice_env())
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LABKIT_QUIET", "1")
        .status()
        .expect("unshare and strace must be installed (tests/tools/deps.sh)");
    assert!(st.success(), "{tag}: setup in the mount namespace failed ({st})");
    let text = fs::read_to_string(&trace).unwrap();
    let syncs = text.lines().filter(|l| l.contains("sync") && l.contains(&format!("{}", etc.display()))).count();
    let files = FILES.iter().map(|f| fs::read(out.join(f)).unwrap()).collect();
    (syncs, files)
}

#[test]
fn no_fsync_on_an_overlay_or_tmpfs_etc_and_every_fsync_on_a_disk() {
    // tmpfs: /etc copied into a fresh tmpfs.
    let tmpfs = common::fixture_root("debian-12");
    let keep = tmpfs.join("etc.image");
    assert!(Command::new("cp").arg("-a").arg(tmpfs.join("etc")).arg(&keep).status().unwrap().success());
    let mount = format!(
        "mount -t tmpfs tmpfs {etc} && cp -a {keep}/. {etc}/",
        etc = tmpfs.join("etc").display(),
        keep = keep.display()
    );
    let (on_tmpfs, files_tmpfs) = setup_counting_syncs(tmpfs.path(), &mount, "tmpfs");

    // overlayfs: the image's /etc as the lower layer, the container's
    // writable layer as the upper one (on the test's disk, as a runtime's).
    let ovl = common::fixture_root("debian-12");
    let lower = ovl.join("etc.image");
    assert!(Command::new("cp").arg("-a").arg(ovl.join("etc")).arg(&lower).status().unwrap().success());
    for d in ["upper", "work"] {
        fs::create_dir_all(ovl.join(d)).unwrap();
    }
    let mount = format!(
        "mount -t overlay overlay -o lowerdir={},upperdir={},workdir={} {}",
        lower.display(),
        ovl.join("upper").display(),
        ovl.join("work").display(),
        ovl.join("etc").display()
    );
    let (on_overlay, files_overlay) = setup_counting_syncs(ovl.path(), &mount, "overlay");

    // The test's own file system, no mount: on a disk (ext4, xfs...) every
    // file and /etc are synced.
    let disk = common::fixture_root("debian-12");
    let (on_disk, files_disk) = setup_counting_syncs(disk.path(), "", "disk");
    let f_type = nix::sys::statfs::statfs(disk.path()).unwrap().filesystem_type().0 as u64;

    assert_eq!(on_tmpfs, 0, "fsyncs of /etc on tmpfs");
    assert_eq!(on_overlay, 0, "fsyncs of /etc on overlayfs");
    match durability_for(f_type) {
        // Four temp files, the journal and /etc after it, /etc after the
        // renames and after the journal is removed.
        Durability::Flush => assert!(on_disk >= 8, "{on_disk} fsyncs of /etc on a disk (f_type {f_type:#x})"),
        Durability::RenameOnly => assert_eq!(on_disk, 0, "the test's file system (f_type {f_type:#x}) is memory"),
    }
    assert_eq!(files_tmpfs, files_disk, "the policy changes no byte written");
    assert_eq!(files_overlay, files_disk, "the policy changes no byte written");
    assert!(String::from_utf8_lossy(&files_disk[0]).contains("\nalice:x:123456:11166:"));
}
