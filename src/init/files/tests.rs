//! The durability policy (issue 14 §2): decided from the file system type,
//! applied at the edge, counted without strace.

use super::*;
use crate::init::accounts::{Database, Kind};

#[test]
fn the_policy_follows_the_file_system_type() {
    for (name, magic) in [("overlayfs", OVERLAYFS_SUPER_MAGIC), ("tmpfs", TMPFS_MAGIC), ("ramfs", RAMFS_MAGIC)] {
        assert_eq!(durability_for(magic), Durability::RenameOnly, "{name}");
        // statfs's f_type is a signed long on glibc: only the low 32 bits count.
        assert_eq!(durability_for(magic | 0xffff_ffff_0000_0000), Durability::RenameOnly, "{name}, sign-extended");
    }
    // Negative controls: disks, network and FUSE file systems keep the fsyncs.
    for (name, magic) in [
        ("ext4", 0xef53),
        ("xfs", 0x5846_5342),
        ("btrfs", 0x9123_683e),
        ("nfs", 0x6969),
        ("fuse (fuse-overlayfs)", 0x6573_5546),
        ("zfs", 0x2fc1_2fc1),
        ("unknown", 0),
    ] {
        assert_eq!(durability_for(magic), Durability::Flush, "{name}");
    }
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("labkit-files-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("etc")).unwrap();
    for (f, text) in [
        ("passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        ("group", "root:x:0:\n"),
        ("shadow", "root:*:19000:0:99999:7:::\n"),
        ("gshadow", "root:*::\n"),
    ] {
        fs::write(dir.join("etc").join(f), text).unwrap();
    }
    dir
}

/// Add alice to all four files through `transact`; (fsyncs, files after).
fn add_alice(root: &Root) -> (u64, Vec<Vec<u8>>) {
    SYNCS.with(|c| c.set(0));
    let tx = transact(root, Duration::from_secs(1), |db: &Database| -> Result<(Database, ()), ()> {
        let mut new = db.clone();
        new.group.push(&["alice", "x", "1000", ""]);
        new.passwd.push(&["alice", "x", "1000", "1000", "", "/home/alice", "/bin/sh"]);
        if let Some(t) = new.shadow.as_mut() {
            t.push(&["alice", "*", "19000", "0", "99999", "7", "", "", ""]);
        }
        if let Some(t) = new.gshadow.as_mut() {
            t.push(&["alice", "!", "", ""]);
        }
        Ok((new, ()))
    })
    .unwrap_or_else(|_| panic!("transact failed"));
    assert_eq!(tx.written.len(), 4);
    let files = ["passwd", "group", "shadow", "gshadow", "passwd-"]
        .iter()
        .map(|f| fs::read(root.path("/etc").join(f)).unwrap())
        .collect();
    (SYNCS.with(|c| c.get()), files)
}

#[test]
fn flush_syncs_every_file_and_directory_rename_only_none_and_both_write_the_same_bytes() {
    let (a, b) = (scratch("flush"), scratch("rename"));
    let (flushed, files_a) = add_alice(&Root::new(&a).with_durability(Durability::Flush));
    let (renamed, files_b) = add_alice(&Root::new(&b).with_durability(Durability::RenameOnly));
    // Flush: four temp files, the journal and /etc after it, /etc after the
    // renames and after the journal is removed.
    assert_eq!(flushed, 8, "fsyncs with Flush");
    assert_eq!(renamed, 0, "fsyncs with RenameOnly");
    assert_eq!(files_a, files_b, "the policy changes no byte written");
    assert!(String::from_utf8_lossy(&files_a[0]).ends_with("\nalice:x:1000:1000::/home/alice:/bin/sh\n"));
    assert_eq!(files_a[4], b"root:x:0:0:root:/root:/bin/sh\n", "backup holds the old passwd");
    // A second run changes nothing and syncs nothing.
    SYNCS.with(|c| c.set(0));
    let tx = transact(&Root::new(&a).with_durability(Durability::Flush), Duration::from_secs(1), |db: &Database| {
        Ok::<_, ()>((db.clone(), ()))
    })
    .unwrap_or_else(|_| panic!("transact failed"));
    assert!(tx.written.is_empty());
    assert_eq!(SYNCS.with(|c| c.get()), 0);
    for d in [a, b] {
        let _ = fs::remove_dir_all(d);
    }
}

#[test]
fn a_table_as_read_is_kept_under_the_lock_only_while_its_file_holds_the_same_bytes() {
    let dir = scratch("reload");
    let root = Root::new(&dir);
    let db = load(&root).unwrap();
    let kept = reload(&root, db.clone()).unwrap();
    assert!(std::ptr::eq(kept.passwd.as_read().unwrap().as_ptr(), db.passwd.as_read().unwrap().as_ptr()));
    // Same length, one byte changed: read again.
    fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/zh\n").unwrap();
    let again = reload(&root, db.clone()).unwrap();
    assert_eq!(again.passwd.render(), b"root:x:0:0:root:/root:/bin/zh\n");
    // A file that appeared since.
    fs::remove_file(dir.join("etc/gshadow")).unwrap();
    let db = load(&root).unwrap();
    assert!(db.gshadow.is_none());
    fs::write(dir.join("etc/gshadow"), "root:*::\n").unwrap();
    assert_eq!(reload(&root, db).unwrap().gshadow.map(|t| t.kind()), Some(Kind::Gshadow));
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn a_leftover_temp_file_or_link_is_replaced_never_followed() {
    let dir = scratch("leftover");
    let root = Root::new(&dir);
    let victim = dir.join("victim");
    fs::write(&victim, "keep me\n").unwrap();
    // What a start killed mid-write leaves, and what a hostile image could
    // plant: a link at one temp name, a half-written file at another.
    let passwd_tmp = temp_path(&dir.join("etc/passwd"));
    std::os::unix::fs::symlink(&victim, &passwd_tmp).unwrap();
    fs::write(temp_path(&dir.join("etc/group")), "half a line").unwrap();
    // Control: creating the temp file alone refuses the name.
    let refused = create_exact(&passwd_tmp, &[b"x"], 0o600, 0, 0).unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::AlreadyExists);
    let (_, files) = add_alice(&root.with_durability(Durability::RenameOnly));
    assert!(String::from_utf8_lossy(&files[0]).contains("\nalice:x:1000:"), "passwd");
    assert!(String::from_utf8_lossy(&files[1]).contains("\nalice:x:1000:"), "group");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me\n", "written through the link");
    assert!(fs::symlink_metadata(&passwd_tmp).is_err(), "temp name left behind");
    assert!(fs::symlink_metadata(temp_path(&dir.join("etc/group"))).is_err(), "temp name left behind");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn a_large_file_is_compared_past_its_first_chunk() {
    // The comparison under the lock reads in 64 KiB chunks: a change after
    // the first one must still be seen, and equal bytes still kept.
    let dir = scratch("chunks");
    let root = Root::new(&dir);
    let lines: String = (0..8000).map(|i| format!("u{i}:x:{}:{}::/home/u{i}:/bin/sh\n", 2000 + i, 2000 + i)).collect();
    assert!(lines.len() > 3 * (64 << 10), "{}", lines.len());
    fs::write(dir.join("etc/passwd"), &lines).unwrap();
    let db = load(&root).unwrap();
    let kept = reload(&root, db.clone()).unwrap();
    assert!(std::ptr::eq(kept.passwd.as_read().unwrap().as_ptr(), db.passwd.as_read().unwrap().as_ptr()));
    // One byte changed deep in the third chunk, same length: read again.
    let at = lines.find("u7000:x:").unwrap() + 1;
    let mut changed = lines.clone().into_bytes();
    changed[at] = b'v';
    fs::write(dir.join("etc/passwd"), &changed).unwrap();
    let again = reload(&root, db).unwrap();
    assert_eq!(again.passwd.render(), changed);
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn a_fifo_or_link_where_a_file_is_read_is_an_error_not_a_hang() {
    // A FIFO opened for reading blocks until a writer comes: at the journal,
    // a temp name or an account file it would hang a start holding the lock.
    for place in ["etc/.labkit-journal", "etc/shadow"] {
        for kind in ["fifo", "link", "dir"] {
            let dir = scratch(&format!("odd-{kind}-{}", place.replace('/', "_")));
            let root = Root::new(&dir);
            let at = dir.join(place);
            let _ = fs::remove_file(&at);
            match kind {
                "fifo" => nix::unistd::mkfifo(&at, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap(),
                "link" => std::os::unix::fs::symlink(dir.join("etc/passwd"), &at).unwrap(),
                _ => fs::create_dir(&at).unwrap(),
            }
            let before = fs::read(dir.join("etc/passwd")).unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            let r2 = Root::new(&dir);
            std::thread::spawn(move || {
                let res = transact(&r2, Duration::from_secs(1), |db: &Database| -> Result<(Database, ()), ()> {
                    let mut new = db.clone();
                    new.passwd.push(&["alice", "x", "1000", "1000", "", "/home/alice", "/bin/sh"]);
                    Ok((new, ()))
                });
                let _ = tx.send(res.map(|_| ()).map_err(|e| match e {
                    TxError::Io(e) => e.to_string(),
                    TxError::Plan(()) => "plan".to_owned(),
                }));
            });
            let got = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|_| panic!("{place} as a {kind}: hung"));
            let err = got.expect_err(&format!("{place} as a {kind} was used"));
            let name = place.trim_start_matches("etc");
            assert!(err.contains(name), "{place} as a {kind}: {err}");
            assert_eq!(fs::read(dir.join("etc/passwd")).unwrap(), before, "{place} as a {kind}: passwd changed");
            let _ = root;
            let _ = fs::remove_dir_all(&dir);
        }
    }
    // Control: a regular journal-free /etc is written.
    let dir = scratch("odd-control");
    let (_, files) = add_alice(&Root::new(&dir).with_durability(Durability::RenameOnly));
    assert!(String::from_utf8_lossy(&files[0]).contains("\nalice:x:1000:"));
    let _ = fs::remove_dir_all(dir);
}
