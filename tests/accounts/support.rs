//! Shared by tests/accounts.rs and tests/account_conflicts.rs: the fixture
//! databases, requests, and checks on the planned account files.
#![allow(dead_code)]

use std::collections::HashSet;
use std::fs;

use labkit::init::accounts::{Database, Kind, Table};
use labkit::init::provision::{self, Limits, Note, Plan, Request};

use crate::common;

pub fn load(distro: &str) -> Database {
    let dir = common::fixtures_dir().join(distro);
    let read = |kind: Kind, name: &str| fs::read(dir.join(name)).ok().map(|d| Table::parse(kind, &d));
    Database {
        passwd: read(Kind::Passwd, "passwd").unwrap(),
        group: read(Kind::Group, "group").unwrap(),
        shadow: read(Kind::Shadow, "shadow"),
        gshadow: read(Kind::Gshadow, "gshadow"),
    }
}

pub fn text(t: &Table) -> String {
    String::from_utf8_lossy(&t.render()).into_owned()
}

pub fn lines_named(text: &str, name: &str) -> usize {
    text.lines().filter(|l| l.split(':').next() == Some(name)).count()
}

pub fn req(user: &str, uid: u32, group: &str, gid: u32) -> Request {
    Request {
        user: user.into(),
        uid,
        group: group.into(),
        gid,
        home: format!("/home/{user}"),
        shell: "/bin/bash".into(),
        extra_groups: vec![],
        today: 20000,
        limits: Limits::default(),
    }
}

/// Plan, panicking with the refusal (for requests that must succeed).
pub fn plan_ok(db: &Database, r: &Request) -> Plan {
    provision::plan(db, r).unwrap_or_else(|e| panic!("refused: {e}"))
}

/// Plan, returning the refusal (for requests that must be refused).
pub fn refusal(db: &Database, r: &Request) -> String {
    match provision::plan(db, r) {
        Ok(p) => panic!("not refused; notes {:?}", p.notes),
        Err(e) => e.0,
    }
}

pub fn alice() -> Request {
    req("alice", 123456, "CVLAB-unit", 11166)
}

pub fn warnings(notes: &[Note]) -> Vec<&str> {
    notes.iter().filter_map(|n| if let Note::Warn(m) = n { Some(m.as_str()) } else { None }).collect()
}

/// No uid or gid appears twice among well-formed entries; no name twice.
pub fn assert_no_duplicates(db: &Database) {
    for (t, col, nfields) in [(&db.passwd, 2, 7), (&db.group, 2, 4)] {
        let text = text(t);
        let mut ids = HashSet::new();
        let mut names = HashSet::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split(':').collect();
            // Same notion of "entry" as glibc minus what labinit never matches.
            if f.len() != nfields || line.starts_with(['#', '+', '-']) || f[col].parse::<u32>().is_err() {
                continue;
            }
            assert!(ids.insert(f[col].to_owned()), "duplicate id {} in\n{text}", f[col]);
            assert!(names.insert(f[0].to_owned()), "duplicate name {} in\n{text}", f[0]);
        }
    }
}

/// Every line of `old` that does not mention any of `touched` is still in
/// `new`, byte for byte and in the same order.
pub fn assert_untouched_lines_kept(old: &Table, new: &Table, touched: &[&str]) {
    let new_text = new.render();
    let new_lines: Vec<&[u8]> = new_text.split(|b| *b == b'\n').collect();
    let mut pos = 0;
    for line in old.render().split(|b| *b == b'\n') {
        let s = String::from_utf8_lossy(line);
        if touched.iter().any(|t| s.split([':', ',']).any(|f| f == *t)) {
            continue;
        }
        let found = new_lines[pos..].iter().position(|l| *l == line);
        assert!(found.is_some(), "line {s:?} lost or reordered");
        pos += found.unwrap() + 1;
    }
}
