//! The account files as one transaction: a journal names the new content of
//! every file before the first rename, so a start killed between two renames
//! is completed by the next one; and [`transact`], the locked read, plan and
//! write that every account update goes through.

use std::fs;
use std::io;
use std::path::Path;
use std::time::Duration;

use super::{
    create_temp, fsync_dir, load, lock, read_regular, reload, replace_all_with, rewrite_in_place, sync, temp_path,
    Durability, Root, Update, Written,
};
use crate::init::accounts::{Database, Kind, Table};

/// The journal of a commit in progress: one line per account file,
/// `<container path> <fingerprint before> <fingerprint after>` (see
/// [`fingerprint`]).
pub(crate) const JOURNAL: &str = "/etc/.labkit-journal";

const K: u64 = 0x9e37_79b9_7f4a_7c15;

/// One 32-byte block into the four lanes of [`fingerprint`] (four
/// independent little-endian words: the loop compiles to four loads and
/// multiplications per block).
#[inline(always)]
fn mix(block: &[u8; 32], lanes: &mut [u64; 4]) {
    let word = |i: usize| {
        u64::from_le_bytes([
            block[i],
            block[i + 1],
            block[i + 2],
            block[i + 3],
            block[i + 4],
            block[i + 5],
            block[i + 6],
            block[i + 7],
        ])
    };
    lanes[0] = (lanes[0] ^ word(0)).wrapping_mul(K).rotate_left(29);
    lanes[1] = (lanes[1] ^ word(8)).wrapping_mul(K).rotate_left(29);
    lanes[2] = (lanes[2] ^ word(16)).wrapping_mul(K).rotate_left(29);
    lanes[3] = (lanes[3] ^ word(24)).wrapping_mul(K).rotate_left(29);
}

/// A fast 64-bit fingerprint of the concatenated `pieces`, four lanes of
/// eight bytes at a time: `fx<hex>-<length>`, or `absent` for a missing file.
/// Only tells "still the content we planned from" apart from "changed since";
/// the files are root's, so no adversary chooses collisions.
pub(crate) fn fingerprint(pieces: Option<&[&[u8]]>) -> String {
    let Some(pieces) = pieces else { return "absent".to_owned() };
    let mut lanes = [0x243f_6a88_85a3_08d3u64, 0x1319_8a2e_0370_7344, 0xa409_3822_299f_31d0, 0x082e_fa98_ec4e_6c89];
    let mut block = [0u8; 32];
    let mut fill = 0;
    let mut len = 0u64;
    for p in pieces {
        len += p.len() as u64;
        let mut p: &[u8] = p;
        if fill > 0 {
            let take = (32 - fill).min(p.len());
            block[fill..fill + take].copy_from_slice(&p[..take]);
            fill += take;
            p = &p[take..];
            if fill < 32 {
                continue;
            }
            mix(&block, &mut lanes);
        }
        let (blocks, rest) = p.as_chunks::<32>();
        for b in blocks {
            mix(b, &mut lanes);
        }
        block[..rest.len()].copy_from_slice(rest);
        fill = rest.len();
    }
    block[fill..].fill(0);
    mix(&block, &mut lanes);
    let h = lanes.iter().fold(len, |h, l| (h ^ l).wrapping_mul(K).rotate_left(31));
    format!("fx{h:016x}-{len}")
}

/// The fingerprint journals written before `fx` used (FNV-1a, 64 bit), so a
/// journal left by an older labinit is still completed.
fn fnv_fingerprint(data: Option<&[u8]>) -> String {
    match data {
        None => "absent".to_owned(),
        Some(d) => {
            let h = d.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
            format!("{h:016x}-{}", d.len())
        }
    }
}

/// Whether `data` has the fingerprint `recorded` (in its scheme).
fn has_fingerprint(data: Option<&[u8]>, recorded: &str) -> bool {
    if recorded.starts_with("fx") {
        fingerprint(data.map(|d| [d]).as_ref().map(|d| &d[..])) == recorded
    } else {
        fnv_fingerprint(data) == recorded
    }
}

/// Write `data` to `path` through a temp file and a rename, durably as
/// `durability` asks.
fn write_durably(path: &Path, data: &[u8], durability: Durability) -> io::Result<()> {
    let tmp = temp_path(path);
    let f = create_temp(&tmp, &[data], 0o600, 0, 0)?;
    sync(&f, durability)?;
    drop(f);
    fs::rename(&tmp, path)?;
    if let Some(d) = path.parent() {
        fsync_dir(d, durability)?;
    }
    Ok(())
}

/// Replace the changed account files as one transaction: every temp file is
/// written and flushed, then the journal naming them is made durable, then
/// they are renamed in order, then the journal is removed. A start killed
/// anywhere after the journal exists is completed by the next one
/// ([`recover`]), so the four files never stay half-updated. The caller
/// holds the account lock and read `before` under it. The new files are
/// streamed from the tables' pieces (the unchanged bytes around the edits).
pub(crate) fn commit(root: &Root, before: &Database, tables: &[&Table]) -> io::Result<Vec<(Kind, Written)>> {
    let mut journal = String::new();
    let mut updates = Vec::new();
    for t in tables {
        let kind = t.kind();
        let old = match kind {
            Kind::Passwd => Some(&before.passwd),
            Kind::Group => Some(&before.group),
            Kind::Shadow => before.shadow.as_ref(),
            Kind::Gshadow => before.gshadow.as_ref(),
        };
        let new = t.pieces();
        let old = old.map(Table::pieces);
        journal.push_str(&format!("{} {} {}\n", kind.path(), fingerprint(old.as_deref()), fingerprint(Some(&new))));
        updates.push(Update { path: kind.path(), data: new, default_mode: super::default_mode(kind), old });
    }
    let journal_path = root.path(JOURNAL);
    let durability = root.durability(&root.path("/etc")).0;
    let write_journal = || {
        write_durably(&journal_path, journal.as_bytes(), durability)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot write the journal {JOURNAL}: {e}")))
    };
    let written = replace_all_with(root, &updates, Some(&write_journal))?;
    fs::remove_file(&journal_path)
        .and_then(|()| fsync_dir(&root.path("/etc"), durability))
        .map_err(|e| io::Error::new(e.kind(), format!("cannot remove the journal {JOURNAL}: {e}")))?;
    Ok(tables.iter().map(|t| t.kind()).zip(written).collect())
}

/// Complete a commit that was interrupted (the journal exists): each file
/// whose temp file is still there and whose content is still what the commit
/// planned from gets its temp file; a file that changed since (another tool
/// wrote it) keeps its content and the temp file goes, so nothing written
/// under the lock in between is lost. Call with the account lock held.
/// Returns notes for the log.
pub(crate) fn recover(root: &Root) -> io::Result<Vec<String>> {
    let journal_path = root.path(JOURNAL);
    let text = match read_regular(&journal_path) {
        Ok(Some(t)) => String::from_utf8_lossy(&t).into_owned(),
        Ok(None) => return Ok(Vec::new()),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot read the journal {JOURNAL}: {e}; it is labinit's alone: remove it and start again"),
            ))
        }
    };
    let mut notes = Vec::new();
    let mut completed = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        let [path, old, new] = parts[..] else { continue };
        let Some(kind) =
            [Kind::Passwd, Kind::Group, Kind::Shadow, Kind::Gshadow].into_iter().find(|k| k.path() == path)
        else {
            continue;
        };
        let target = root.path(kind.path());
        let tmp = temp_path(&target);
        let staged = match read_regular(&tmp) {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            // Not a file labinit wrote: not staged; its place is cleared.
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let _ = fs::remove_file(&tmp);
                continue;
            }
            Err(e) => return Err(e),
        };
        let current =
            read_regular(&target).map_err(|e| io::Error::new(e.kind(), format!("cannot read {path}: {e}")))?;
        if !has_fingerprint(Some(&staged), new) {
            let _ = fs::remove_file(&tmp);
            continue;
        }
        let mounted = current.is_some() && is_mount_point(&target);
        if has_fingerprint(current.as_deref(), old) || has_fingerprint(current.as_deref(), new) || mounted {
            match fs::rename(&tmp, &target) {
                Ok(()) => {}
                Err(e) if matches!(e.raw_os_error(), Some(nix::libc::EBUSY) | Some(nix::libc::EXDEV)) => {
                    rewrite_in_place(root, &target, &[&staged])
                        .map_err(|e| io::Error::new(e.kind(), format!("cannot rewrite in place {path}: {e}")))?;
                    let _ = fs::remove_file(&tmp);
                }
                Err(e) => return Err(io::Error::new(e.kind(), format!("cannot replace {path}: {e}"))),
            }
            completed.push(path.to_owned());
        } else {
            let _ = fs::remove_file(&tmp);
            notes.push(format!(
                "{path} changed since an interrupted start planned its update; kept the current content"
            ));
        }
    }
    let etc = root.path("/etc");
    let durability = root.durability(&etc).0;
    let ctx = |e: io::Error, what: &str| io::Error::new(e.kind(), format!("{what} {JOURNAL}: {e}"));
    fsync_dir(&etc, durability).map_err(|e| ctx(e, "cannot sync /etc before removing"))?;
    fs::remove_file(&journal_path).map_err(|e| ctx(e, "cannot remove"))?;
    fsync_dir(&etc, durability).map_err(|e| ctx(e, "cannot sync /etc after removing"))?;
    if !completed.is_empty() {
        notes.insert(0, format!("completed the account update of an interrupted start ({})", completed.join(", ")));
    }
    Ok(notes)
}

/// Whether `path` is a mount point of its own (a bind-mounted file).
fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &Path| fs::symlink_metadata(p).map(|m| m.dev()).ok();
    match (dev(path), path.parent().and_then(dev)) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    }
}

/// Why an account update did not happen.
#[derive(Debug)]
pub(crate) enum TxError<E> {
    /// The planner refused (nothing was written).
    Plan(E),
    /// Reading, locking or writing failed (errno kept in the kind).
    Io(io::Error),
}

/// The result of [`transact`].
pub(crate) struct Tx<T> {
    /// What the planner returned (from the read under the lock when a write
    /// was needed).
    pub value: T,
    /// The database as it is now.
    pub after: Database,
    /// The files written, in order (empty: nothing needed to change).
    pub written: Vec<(Kind, Written)>,
    /// Notes of an interrupted earlier start that was completed.
    pub recovered: Vec<String>,
}

/// Read, plan and write the account files as one locked transaction.
///
/// A first, lock-free read and plan decides whether anything must change:
/// when nothing must (a restart), or the planner refuses, nothing is locked or
/// written. Otherwise the glibc lock `/etc/.pwd.lock` is taken (waiting up to
/// `timeout`, as `lckpwdf`), an interrupted earlier commit is completed, and
/// the files are read and planned again under the lock and committed before
/// the lock is released: an account another tool (`useradd`, a second
/// labinit) adds while holding the lock is never lost. (A file that still
/// holds the bytes of the first read is compared, not parsed again.)
///
/// `plan` must be a pure function of the database: it runs twice.
pub(crate) fn transact<T, E>(
    root: &Root,
    timeout: Duration,
    plan: impl Fn(&Database) -> Result<(Database, T), E>,
) -> Result<Tx<T>, TxError<E>> {
    let mut first = None;
    if fs::symlink_metadata(root.path(JOURNAL)).is_err() {
        let db = super::load(root).map_err(TxError::Io)?;
        let (after, value) = plan(&db).map_err(TxError::Plan)?;
        if changed(&db, &after).is_empty() {
            return Ok(Tx { value, after, written: Vec::new(), recovered: Vec::new() });
        }
        first = Some(db);
    }
    let _lock = lock(root, timeout).map_err(TxError::Io)?;
    let recovered = recover(root).map_err(TxError::Io)?;
    let db = match first {
        Some(db) => reload(root, db),
        None => load(root),
    }
    .map_err(TxError::Io)?;
    let (after, value) = plan(&db).map_err(TxError::Plan)?;
    let tables = changed(&db, &after);
    let written = if tables.is_empty() { Vec::new() } else { commit(root, &db, &tables).map_err(TxError::Io)? };
    Ok(Tx { value, after, written, recovered })
}

/// The account files that differ between `old` and `new`, in write order.
pub(crate) fn changed<'a>(old: &Database, new: &'a Database) -> Vec<&'a Table> {
    let olds = old.in_write_order();
    new.in_write_order()
        .into_iter()
        .filter(|t| !olds.iter().any(|o| o.kind() == t.kind() && o.same_content(t)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PINNED_1000: &str = "fx3a17641f7c62d988-1000";
    const PINNED_ROOT: &str = "fxa980eedb2b310c0b-10";
    const PINNED_EMPTY: &str = "fx1a55cc114efeea4a-0";

    #[test]
    fn fingerprints_do_not_depend_on_how_the_content_is_cut() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let whole = fingerprint(Some(&[&data[..]]));
        for cut in [0, 1, 7, 31, 32, 33, 500, 999, 1000] {
            for cut2 in [cut, (cut + 5).min(1000), 1000] {
                let pieces = [&data[..cut], &data[cut..cut2], &data[cut2..]];
                assert_eq!(fingerprint(Some(&pieces)), whole, "cut at {cut}/{cut2}");
            }
        }
        // Negative controls: one byte changed, one byte more, or absent.
        let mut other = data.clone();
        other[500] ^= 1;
        assert_ne!(fingerprint(Some(&[&other[..]])), whole);
        assert_ne!(fingerprint(Some(&[&data[..], b"\0"])), whole);
        assert_eq!(fingerprint(None), "absent");
        assert!(whole.starts_with("fx") && whole.ends_with("-1000"), "{whole}");
    }

    #[test]
    fn fingerprints_keep_their_values() {
        // Journals on disk name these values: a change of the function (not
        // of its speed) would leave an interrupted commit unrecognised.
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        assert_eq!(fingerprint(Some(&[&data[..]])), PINNED_1000);
        assert_eq!(fingerprint(Some(&[b"root:x:0:\n"])), PINNED_ROOT);
        assert_eq!(fingerprint(Some(&[])), PINNED_EMPTY);
    }

    #[test]
    fn a_journal_of_the_older_scheme_is_still_read() {
        let data = b"root:x:0:\n";
        let recorded = fnv_fingerprint(Some(data));
        assert!(has_fingerprint(Some(data), &recorded));
        assert!(!has_fingerprint(Some(b"root:x:1:\n"), &recorded));
        assert!(has_fingerprint(Some(data), &fingerprint(Some(&[data]))));
        assert!(has_fingerprint(None, "absent"));
    }
}
