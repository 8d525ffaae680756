//! The researcher's home: created and owned by the cluster user with the
//! skeleton files; an existing root-owned home gets only its top directory;
//! a home someone else owns, or a mounted volume (another file system, in a
//! private mount namespace), is never chowned or written. Symbolic links in
//! the home's path are in tests/boundary.rs.

mod common;
use common::stderr;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::Output;

use common::ns::in_ns;
use labkit::init::setup::setup;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
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

#[test]
fn a_home_on_another_file_system_is_never_chowned() {
    let root = common::fixture_root("debian-12");
    fs::create_dir_all(root.join("home/alice")).unwrap();
    let out = in_ns(
        &root,
        r#"mount -t tmpfs -o mode=0755 vol "$ROOT/home/alice"
           echo data > "$ROOT/home/alice/results.csv"
           "$LABINIT" setup --root "$ROOT"
           stat -c '%u %a' "$ROOT/home/alice" "$ROOT/home/alice/results.csv"
           ls -A "$ROOT/home/alice""#,
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "0 755\n0 644\nresults.csv\n", "untouched: no chown, no skel, no .bashrc");
    assert!(
        stderr(&out).contains("home /home/alice is a mounted volume") && stderr(&out).contains("cannot write"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn negative_control_same_directory_not_mounted_is_chowned() {
    let root = common::fixture_root("debian-12");
    fs::create_dir_all(root.join("home/alice")).unwrap();
    let out = in_ns(&root, r#""$LABINIT" setup --root "$ROOT"; stat -c '%u' "$ROOT/home/alice""#, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "123456\n");
}
