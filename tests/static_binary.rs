//! The static labinit that `make` builds (LABKIT_TEST_LABINIT): statically
//! linked and stripped, and running alone in a root that holds nothing but
//! busybox.

mod common;
use common::stderr;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The static build made by `make` (cargo's own build is dynamically linked).
fn static_labinit() -> std::path::PathBuf {
    std::env::var_os("LABKIT_TEST_LABINIT")
        .map(Into::into)
        .expect("this test needs the static labinit: run it through `make test` (LABKIT_TEST_LABINIT)")
}

#[test]
fn the_static_binary_runs_alone_in_a_busybox_root() {
    let root = common::TempDir::new("busybox-root");
    for d in ["bin", "etc"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    common::install_exec(Path::new("/bin/busybox"), &root.join("bin/busybox"));
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    common::install_exec(&static_labinit(), &root.join("labinit"));
    let out = Command::new("/usr/sbin/chroot")
        .arg(root.path())
        .args(["/labinit", "setup"])
        .env_clear()
        .envs(common::alice_env())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert_eq!(passwd, "alice:*:123456:11166::/home/alice:/bin/sh\n");
    assert_eq!(fs::read_to_string(root.join("etc/group")).unwrap(), "CVLAB-unit:x:11166:\n");
    assert_eq!(fs::metadata(root.join("home/alice")).unwrap().uid(), 123456);
    let out = Command::new("/usr/sbin/chroot")
        .arg(root.path())
        .args(["/bin/sh", "-c", "/labinit --version"])
        .output()
        .unwrap();
    assert!(out.status.success() && stdout(&out).starts_with("labinit "), "{}", stdout(&out));
}

#[test]
fn make_builds_a_static_binary() {
    let out = Command::new("file").arg(static_labinit()).output().unwrap();
    let text = stdout(&out);
    assert!(text.contains("statically linked") || text.contains("static-pie linked"), "{text}");
    assert!(text.contains("stripped") && !text.contains("not stripped"), "{text}");
}
