//! Unit tests of the account tables (what glibc reads, edits, round trips).

use super::*;

#[test]
fn quirks_survive_round_trip_and_glibc_entries_are_seen() {
    let data = b"# c\nroot:x:0:0:root:/root:/bin/sh\n+@ng::::::\n-x::::::\nzero::0:0\nbob:x:1:1::/h:/bin/sh\r\nbad:x:1e3:0::/:/bin/sh\nend:x:7:7::/:/bin/sh";
    let t = Table::parse(Kind::Passwd, data);
    assert_eq!(t.render(), data.to_vec());
    assert_eq!(t.names(), vec!["root", "zero", "bob", "end"]);
    assert_eq!(t.find_id(1).map(|i| t.field(i, 0)), Some("bob".into()), "CRLF line is an entry");
    assert_eq!(t.field(t.find_id(1).unwrap(), 6), "/bin/sh\r", "glibc keeps the CR in the shell");
    assert_eq!(t.find_name("zero").and_then(|i| t.id_at(i, 2)), Some(0), "short line is uid 0 for glibc");
    assert_eq!(t.find_id(0).map(|i| t.field(i, 0)), Some("root".into()), "first match wins");
    assert_eq!(t.find_name("bad"), None, "1e3 is not a number for strtoul");
    assert_eq!(t.find_name("+@ng"), None, "NIS lines are never looked up");
}

#[test]
fn ids_glibc_reads() {
    for (text, want) in [
        (&b"1000"[..], Some(1000)),
        (b" 1000", Some(1000)),
        (b"\t+1000", Some(1000)),
        (b"-0", Some(0)),
        (b"010", Some(10)),
        (b"4294967295", Some(u32::MAX)),
        (b"4294967296", None),
        (b"99999999999999999999999", None),
        (b"-1", None),
        (b"1000 ", None),
        (b"", None),
        (b" ", None),
        (b"+", None),
        (b"1e3", None),
        (b"0x10", None),
    ] {
        assert_eq!(glibc_number(text), want, "{:?}", String::from_utf8_lossy(text));
    }
}

#[test]
fn editing_an_odd_line_keeps_glibcs_meaning_of_the_other_fields() {
    for (data, want) in [
        (&b"  u:x: 1000:1000:G:/h\n"[..], &b"alice:x: 1000:1000:G:/h:\n"[..]),
        (b"u:x:1000:1000:G:/h:/bin/sh\0junk\n", b"alice:x:1000:1000:G:/h:/bin/sh\n"),
        (b"u:x:1000:1000:G:/h:/bin/sh\r\n", b"alice:x:1000:1000:G:/h:/bin/sh\r\n"),
    ] {
        let mut t = Table::parse(Kind::Passwd, data);
        let i = t.find_id(1000).unwrap();
        t.set_field(i, 0, "alice");
        assert_eq!(t.render(), want.to_vec());
        assert_eq!(Table::parse(Kind::Passwd, &t.render()).find_name("alice"), Some(0));
    }
}

#[test]
fn new_lines_go_before_nis_lines() {
    let mut t = Table::parse(Kind::Passwd, b"root:x:0:0::/root:/bin/sh\n+@staff::::::\n+\n");
    t.push(&["alice", "x", "5", "5", "", "/home/alice", "/bin/sh"]);
    assert_eq!(t.render(), b"root:x:0:0::/root:/bin/sh\nalice:x:5:5::/home/alice:/bin/sh\n+@staff::::::\n+\n".to_vec());
    // Negative control: without NIS lines the entry goes last.
    let mut t = Table::parse(Kind::Group, b"root:x:0:\n");
    t.push(&["g", "x", "5", ""]);
    assert_eq!(t.render(), b"root:x:0:\ng:x:5:\n".to_vec());
}

#[test]
fn append_after_missing_final_newline_keeps_lines_apart() {
    let mut t = Table::parse(Kind::Group, b"root:x:0:");
    t.push(&["alice", "x", "5", ""]);
    assert_eq!(t.render(), b"root:x:0:\nalice:x:5:\n".to_vec());
}

#[test]
fn empty_file_gets_one_line() {
    let mut t = Table::parse(Kind::Group, b"");
    assert_eq!(t.render(), b"".to_vec());
    t.push(&["g", "x", "5", ""]);
    assert_eq!(t.render(), b"g:x:5:\n".to_vec());
}

#[test]
fn set_field_only_touches_the_edited_line() {
    let data = b"a:x:1:1:Jos\xe9:/h:/bin/sh\nb:x:2:2::/h:/bin/sh\n";
    let mut t = Table::parse(Kind::Passwd, data);
    let i = t.find_name("b").unwrap();
    t.set_field(i, 2, "3");
    assert_eq!(t.render(), b"a:x:1:1:Jos\xe9:/h:/bin/sh\nb:x:3:2::/h:/bin/sh\n".to_vec());
}

#[test]
fn rename_member_dedups() {
    let mut t = Table::parse(Kind::Group, b"adm:x:4:syslog,ubuntu,alice\n");
    assert_eq!(t.rename_member(3, "ubuntu", "alice"), 1);
    assert_eq!(t.render(), b"adm:x:4:syslog,alice\n".to_vec());
}

#[test]
fn members_are_read_as_glibc_reads_them() {
    let t = Table::parse(Kind::Group, b"video:x:44:bob, alice\nadm:x:4:alice\r\n");
    assert_eq!(t.groups_listing("alice"), vec![44], "leading blank skipped; 'alice\\r' is another name");
}

#[test]
fn member_edits_keep_other_members_bytes() {
    for edit in 0..2 {
        let mut t = Table::parse(Kind::Group, b"adm:x:4:caf\xe9,ubuntu\n");
        match edit {
            0 => assert_eq!(t.rename_member(3, "ubuntu", "alice"), 1),
            _ => assert!(t.add_member(0, 3, "alice")),
        }
        let want: &[u8] = match edit {
            0 => b"adm:x:4:caf\xe9,alice\n",
            _ => b"adm:x:4:caf\xe9,ubuntu,alice\n",
        };
        assert_eq!(t.render(), want.to_vec(), "edit {edit}");
    }
}

#[test]
fn shadow_lines_glibc_skips() {
    let t = Table::parse(
        Kind::Shadow,
        b"a:*:19000:0:99999:7:::\r\nb:*:1:2:3\nc:*:::\nd:*:1:2:3:4:5:6:7:\ne:$6$h:19000:0:99999:7:::\n",
    );
    assert_eq!(t.names(), vec!["b", "e"]);
}

// ---- Planning is linear in the account database (issue 14 §3) ----
//
// Proved by counting, not timing: every line parse and every probe of an
// index is counted on this thread, and planning must read each line of the
// four files O(1) times and probe a bounded number of index slots,
// whatever the number of accounts.

use crate::init::accounts::index::PROBES;
use crate::init::provision::{self, Limits, Request};

/// A Debian-like database plus `n` site accounts (one group each), as sites
/// bake their directory into images.
fn site_db(n: usize) -> Database {
    let mut pw = String::from("root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\nubuntu:x:1000:1000::/home/ubuntu:/bin/bash\n");
    let mut sh = String::from("root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\nubuntu:!:19000:0:99999:7:::\n");
    let mut gr =
        String::from("root:x:0:\nadm:x:4:ubuntu\nsudo:x:27:ubuntu\nusers:x:100:\nnogroup:x:65534:\nubuntu:x:1000:\n");
    let mut gs = String::from("root:*::\nadm:*::ubuntu\nsudo:*::ubuntu\nusers:*::\nnogroup:*::\nubuntu:!::\n");
    for i in 0..n {
        let id = 200_000 + i;
        pw.push_str(&format!("u{id}:x:{id}:{id}:Site user {i}:/nfs/home/u{id}:/bin/bash\n"));
        sh.push_str(&format!("u{id}:*:19000:0:99999:7:::\n"));
        gr.push_str(&format!("u{id}:x:{id}:\n"));
        gs.push_str(&format!("u{id}:!::\n"));
    }
    Database {
        passwd: Table::parse(Kind::Passwd, pw.as_bytes()),
        group: Table::parse(Kind::Group, gr.as_bytes()),
        shadow: Some(Table::parse(Kind::Shadow, sh.as_bytes())),
        gshadow: Some(Table::parse(Kind::Gshadow, gs.as_bytes())),
    }
}

fn request(user: &str, uid: u32) -> Request {
    Request {
        user: user.into(),
        uid,
        group: "CVLAB-unit".into(),
        gid: 11166,
        home: format!("/home/{user}"),
        shell: "/bin/bash".into(),
        extra_groups: vec!["users".into()],
        today: 20000,
        limits: Limits::default(),
    }
}

fn lines(db: &Database) -> u64 {
    db.in_write_order().iter().map(|t| t.len() as u64).sum()
}

/// (lines parsed, index slots probed) by one plan, and the plan.
fn cost(db: &Database, req: &Request) -> (u64, u64, provision::Plan) {
    LINES_READ.with(|c| c.set(0));
    PROBES.with(|c| c.set(0));
    let plan = provision::plan(db, req).unwrap_or_else(|e| panic!("refused: {e}"));
    // What the transaction then does with it: which files changed, and the
    // pieces it writes.
    let changed: Vec<&Table> = plan.db.in_write_order().into_iter().filter(|t| t.as_read().is_none()).collect();
    assert!(!changed.is_empty());
    let written: usize = changed.iter().map(|t| t.pieces().len()).sum();
    assert!(written < 40, "{written} pieces: the new files are the old bytes around a few edits");
    (LINES_READ.with(|c| c.get()), PROBES.with(|c| c.get()), plan)
}

#[test]
fn planning_reads_each_line_a_bounded_number_of_times_whatever_the_size() {
    // A new user, and a conflict: the uid belongs to a site account, which
    // is renamed (its shadow line and memberships follow).
    for (user, uid) in [("alice", 123_456), ("alice", 200_017)] {
        let mut seen = Vec::new();
        for n in [1_000, 10_000, 100_000] {
            let db = site_db(n);
            let (read, probes, plan) = cost(&db, &request(user, uid));
            let total = lines(&db);
            // Each line is read for the name index and (passwd, group) the
            // id index once, plus a bounded number of lookups.
            assert!(read <= 2 * total + 300, "{user}/{uid} n={n}: {read} line reads for {total} lines");
            assert!(probes <= 2_000, "{user}/{uid} n={n}: {probes} probes: lookups must not scan");
            // No table was copied: the plan shares the bytes read.
            assert!(Arc::ptr_eq(&db.passwd.base, &plan.db.passwd.base));
            assert!(plan.db.passwd.find_name(user).is_some());
            seen.push((n, read, probes));
        }
        // Ten times the accounts, at most about ten times the reads; the
        // probes do not grow with the size.
        for w in seen.windows(2) {
            let ((n0, r0, p0), (n1, r1, p1)) = (w[0], w[1]);
            assert!(r1 * n0 as u64 <= r0 * n1 as u64 * 11 / 10 + 1000, "{user}: reads {r0} -> {r1} for {n0} -> {n1}");
            assert!(p1 <= p0 * 2 + 200, "{user}: probes {p0} -> {p1} for {n0} -> {n1}");
        }
        eprintln!("{user}/{uid}: (accounts, line reads, probes) {seen:?}");
    }
}

#[test]
fn the_counters_see_a_scan() {
    // Negative control: a lookup that scans (by a column without an index)
    // reads every line, so a planner that scanned per lookup would exceed
    // the bounds above.
    let db = site_db(10_000);
    LINES_READ.with(|c| c.set(0));
    assert_eq!(db.passwd.all_with_id(3, 200_005).len(), 1);
    assert!(LINES_READ.with(|c| c.get()) >= 10_000);
    // And a lookup through the index reads a handful.
    let db = site_db(10_000);
    let _ = db.passwd.find_id(0); // builds the index: one read per line
    LINES_READ.with(|c| c.set(0));
    PROBES.with(|c| c.set(0));
    assert_eq!(db.passwd.find_id(200_005).map(|i| db.passwd.field(i, 0)), Some("u200005".into()));
    assert!(LINES_READ.with(|c| c.get()) < 20, "{}", LINES_READ.with(|c| c.get()));
    assert!(PROBES.with(|c| c.get()) < 20);
}
