//! Account planning (`labkit::init::provision::plan`) on fuzzed account
//! files with fixed, valid requests (as `config` validates them).
//!
//! Input: up to four files separated by a NUL byte pair: passwd, group, then
//! shadow and gshadow when present (absent = the image has none, as on
//! Alpine). Checked for each request:
//! - plan never panics, and every table of the plan parse→renders to itself;
//! - plan either refuses, or:
//! - planning again on what the next start would read (the rendered files,
//!   parsed anew) changes nothing: plan(plan(db)) == plan(db);
//! - the result holds the request: a user entry with the uid, named as asked,
//!   with the requested gid, and a group with that gid named as the plan says.
#![no_main]

use labkit::init::accounts::{Database, Kind, Table};
use labkit::init::provision::{plan, Limits, Request};
use libfuzzer_sys::fuzz_target;

fn request(user: &str, uid: u32, group: &str, gid: u32, extra: &[&str]) -> Request {
    Request {
        user: user.into(),
        uid,
        group: group.into(),
        gid,
        home: format!("/home/{user}"),
        shell: "/bin/bash".into(),
        extra_groups: extra.iter().map(|s| s.to_string()).collect(),
        today: 20000,
        limits: Limits::default(),
    }
}

fn reread(db: &Database) -> Database {
    let again = |t: &Table| {
        let bytes = t.render();
        let back = Table::parse(t.kind(), &bytes);
        assert_eq!(back.render(), bytes, "{:?}: the plan does not read back as written", t.kind());
        back
    };
    Database {
        passwd: again(&db.passwd),
        group: again(&db.group),
        shadow: db.shadow.as_ref().map(again),
        gshadow: db.gshadow.as_ref().map(again),
    }
}

fn renders(db: &Database) -> Vec<Vec<u8>> {
    vec![
        db.passwd.render(),
        db.group.render(),
        db.shadow.as_ref().map(Table::render).unwrap_or_default(),
        db.gshadow.as_ref().map(Table::render).unwrap_or_default(),
    ]
}

fn show(db: &Database) -> String {
    renders(db).iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect::<Vec<_>>().join("\n--\n")
}

fn check(db: &Database, req: &Request) {
    // A refusal (a system account or privileged group is involved) is a
    // valid outcome: nothing is written.
    let Ok(first) = plan(db, req) else { return };
    let read = reread(&first.db);
    let second = plan(&read, req).unwrap_or_else(|e| panic!("the second plan refused what the first did: {e}"));
    assert_eq!(
        renders(&second.db),
        renders(&first.db),
        "planning twice is not idempotent for {} ({}/{}):\nfirst:\n{}\n==== second:\n{}\nnotes: {:?}",
        req.user,
        req.uid,
        req.gid,
        show(&first.db),
        show(&second.db),
        second.notes
    );
    assert_eq!(second.group_name, first.group_name, "primary group name changed on the second plan");

    let pw = &read.passwd;
    let u = pw.find_id(req.uid).unwrap_or_else(|| panic!("no passwd entry with uid {}:\n{}", req.uid, show(&read)));
    assert_eq!(pw.field(u, 0), req.user, "uid {} is not named {}:\n{}", req.uid, req.user, show(&read));
    assert_eq!(
        pw.find_name(&req.user),
        Some(u),
        "name {} resolves to another entry than uid {}:\n{}",
        req.user,
        req.uid,
        show(&read)
    );
    assert_eq!(pw.id_at(u, 3), Some(req.gid), "primary gid");
    assert_eq!(pw.field(u, 5), req.home);
    assert_eq!(pw.field(u, 6), req.shell);
    let g = read.group.find_id(req.gid).unwrap_or_else(|| panic!("no group with gid {}:\n{}", req.gid, show(&read)));
    assert_eq!(read.group.field(g, 0), first.group_name, "group of gid {}", req.gid);
    if let Some(sh) = &read.shadow {
        assert!(sh.find_name(&req.user).is_some(), "no shadow line for {}:\n{}", req.user, show(&read));
    }
    if let Some(gs) = &read.gshadow {
        assert!(gs.find_name(&first.group_name).is_some(), "no gshadow line for {}", first.group_name);
    }
}

fuzz_target!(|data: &[u8]| {
    let files: Vec<&[u8]> = split2(data);
    let get = |i: usize| files.get(i).copied();
    let db = Database {
        passwd: Table::parse(Kind::Passwd, get(0).unwrap_or(b"")),
        group: Table::parse(Kind::Group, get(1).unwrap_or(b"")),
        shadow: get(2).map(|d| Table::parse(Kind::Shadow, d)),
        gshadow: get(3).map(|d| Table::parse(Kind::Gshadow, d)),
    };
    for t in db.in_write_order() {
        let _ = t.kind();
    }
    // The legacy cluster request, a name that images often have with another
    // uid, and one whose ids collide with system accounts.
    check(&db, &request("alice", 1000, "alice", 1000, &["sudo", "adm", "root"]));
    check(&db, &request("ubuntu", 2000, "users", 100, &[]));
    check(&db, &request("jovyan", 1, "daemon", 1, &["users", "jovyan"]));
    check(&db, &request("carol", 5000, "lab", 5000, &["users"]));
});

/// Split on each "\0\0" (at most four parts; the last keeps the rest).
fn split2(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while out.len() < 3 {
        match rest.windows(2).position(|w| w == b"\0\0") {
            Some(p) => {
                out.push(&rest[..p]);
                rest = &rest[p + 2..];
            }
            None => break,
        }
    }
    out.push(rest);
    out
}
