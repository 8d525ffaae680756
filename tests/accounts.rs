//! Account files: parser/writer round trips on real distributions' files, and
//! every conflict rule of `provision::plan`, checked on the resulting text.

mod common;

use std::collections::HashSet;
use std::fs;

use labkit::init::accounts::{Database, Kind, Table};
use labkit::init::provision::{self, Limits, Note, Plan, Request};

fn load(distro: &str) -> Database {
    let dir = common::fixtures_dir().join(distro);
    let read = |kind: Kind, name: &str| fs::read(dir.join(name)).ok().map(|d| Table::parse(kind, &d));
    Database {
        passwd: read(Kind::Passwd, "passwd").unwrap(),
        group: read(Kind::Group, "group").unwrap(),
        shadow: read(Kind::Shadow, "shadow"),
        gshadow: read(Kind::Gshadow, "gshadow"),
    }
}

fn text(t: &Table) -> String {
    String::from_utf8_lossy(&t.render()).into_owned()
}

fn lines_named(text: &str, name: &str) -> usize {
    text.lines().filter(|l| l.split(':').next() == Some(name)).count()
}

fn req(user: &str, uid: u32, group: &str, gid: u32) -> Request {
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
fn plan_ok(db: &Database, r: &Request) -> Plan {
    provision::plan(db, r).unwrap_or_else(|e| panic!("refused: {e}"))
}

/// Plan, returning the refusal (for requests that must be refused).
fn refusal(db: &Database, r: &Request) -> String {
    match provision::plan(db, r) {
        Ok(p) => panic!("not refused; notes {:?}", p.notes),
        Err(e) => e.0,
    }
}

fn alice() -> Request {
    req("alice", 123456, "CVLAB-unit", 11166)
}

fn warnings(notes: &[Note]) -> Vec<&str> {
    notes.iter().filter_map(|n| if let Note::Warn(m) = n { Some(m.as_str()) } else { None }).collect()
}

/// No uid or gid appears twice among well-formed entries; no name twice.
fn assert_no_duplicates(db: &Database) {
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
fn assert_untouched_lines_kept(old: &Table, new: &Table, touched: &[&str]) {
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

#[test]
fn every_fixture_round_trips_byte_for_byte() {
    for distro in common::DISTROS {
        for (kind, name) in
            [(Kind::Passwd, "passwd"), (Kind::Group, "group"), (Kind::Shadow, "shadow"), (Kind::Gshadow, "gshadow")]
        {
            let Ok(data) = fs::read(common::fixtures_dir().join(distro).join(name)) else { continue };
            assert_eq!(Table::parse(kind, &data).render(), data, "{distro}/{name}");
        }
    }
}

#[test]
fn quirks_fixture_has_the_oddities_it_claims() {
    // Negative control for the round trip: the fixture really is odd, so the
    // test above would catch a parser that normalises.
    let data = fs::read(common::fixtures_dir().join("quirks/passwd")).unwrap();
    assert!(data.windows(2).any(|w| w == b"\r\n"));
    assert!(!data.ends_with(b"\n"));
    assert!(data.contains(&0xe9));
    let t = Table::parse(Kind::Passwd, &data);
    // What glibc reads: "zero::0:0" is uid 0 (missing fields are empty), the
    // CRLF line is bob; "carol:x:abc" is skipped; NIS lines never match.
    assert_eq!(t.names(), vec!["root", "zero", "bob", "latin", "dave"]);
}

#[test]
fn fresh_user_on_each_distro() {
    for distro in common::DISTROS {
        let db = load(distro);
        let plan = plan_ok(&db, &alice());
        let pw = text(&plan.db.passwd);
        let shadow_field = if db.shadow.is_some() { "x" } else { "*" };
        let line = format!("alice:{shadow_field}:123456:11166::/home/alice:/bin/bash\n");
        if distro == "quirks" {
            // NIS compat lines stay last, as shadow-utils keeps them.
            assert!(pw.contains(&format!("\n{line}+@netgroup::::::\n")), "{distro}: {pw}");
        } else {
            assert!(pw.ends_with(&line), "{distro}: {pw}");
        }
        let group = text(&plan.db.group);
        if distro == "quirks" {
            assert!(group.contains("\n# comment\nCVLAB-unit:x:11166:\n+:::\n"), "{distro}: {group}");
        } else {
            assert!(group.ends_with("CVLAB-unit:x:11166:\n"), "{distro}: {group}");
        }
        if let Some(sh) = &plan.db.shadow {
            assert!(text(sh).ends_with("alice:*:20000:0:99999:7:::\n"), "{distro}");
        }
        if let Some(gs) = &plan.db.gshadow {
            assert!(text(gs).ends_with("CVLAB-unit:!::\n"), "{distro}");
        }
        assert!(warnings(&plan.notes).is_empty(), "{distro}: {:?}", plan.notes);
        assert_untouched_lines_kept(&db.passwd, &plan.db.passwd, &[]);
        assert_untouched_lines_kept(&db.group, &plan.db.group, &[]);
        assert_no_duplicates(&plan.db);
    }
}

#[test]
fn uid_taken_by_ubuntu_is_renamed_in_place() {
    let db = load("ubuntu-24.04");
    let plan = plan_ok(&db, &req("alice", 1000, "CVLAB-unit", 11166));
    let pw = text(&plan.db.passwd);
    assert!(pw.contains("\nalice:x:1000:11166:Ubuntu:/home/alice:/bin/bash\n"), "{pw}");
    assert!(!pw.contains("ubuntu:"), "{pw}");
    let sh = text(plan.db.shadow.as_ref().unwrap());
    assert!(sh.contains("\nalice:*:20000:0:99999:7:::\n") && !sh.contains("ubuntu:"), "{sh}");
    // The ubuntu *group* is another entry and stays.
    assert!(text(&plan.db.group).contains("\nubuntu:x:1000:\n"));
    let w = warnings(&plan.notes);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("uid 1000 belonged to 'ubuntu'") && w[0].contains("/home/ubuntu is left alone"), "{}", w[0]);
    assert_untouched_lines_kept(&db.passwd, &plan.db.passwd, &["ubuntu"]);
    assert_no_duplicates(&plan.db);
}

#[test]
fn renamed_user_keeps_its_group_memberships() {
    let mut db = load("ubuntu-24.04");
    let g = text(&db.group).replace("\nadm:x:4:\n", "\nadm:x:4:syslog,ubuntu\n");
    db.group = Table::parse(Kind::Group, g.as_bytes());
    let gs = text(db.gshadow.as_ref().unwrap()).replace("\nadm:*::\n", "\nadm:*:ubuntu:syslog,ubuntu\n");
    db.gshadow = Some(Table::parse(Kind::Gshadow, gs.as_bytes()));
    assert!(text(&db.group).contains("syslog,ubuntu"), "fixture edit took effect");
    let plan = plan_ok(&db, &req("alice", 1000, "CVLAB-unit", 11166));
    assert!(text(&plan.db.group).contains("\nadm:x:4:syslog,alice\n"));
    assert!(text(plan.db.gshadow.as_ref().unwrap()).contains("\nadm:*:alice:syslog,alice\n"));
}

#[test]
fn gid_taken_by_users_becomes_the_primary_group() {
    let db = load("debian-12");
    let plan = plan_ok(&db, &req("alice", 123456, "CVLAB-unit", 100));
    assert_eq!(plan.group_name, "users");
    assert!(!text(&plan.db.group).contains("CVLAB-unit"), "no duplicate gid 100 group");
    assert!(text(&plan.db.passwd).ends_with("alice:x:123456:100::/home/alice:/bin/bash\n"));
    let w = warnings(&plan.notes);
    assert_eq!(w.len(), 1);
    assert!(w[0].contains("gid 100 already belongs to group 'users'"), "{}", w[0]);
    assert_no_duplicates(&plan.db);
}

#[test]
fn existing_name_with_another_uid_gets_the_cluster_uid() {
    // docker-stacks: jovyan is 1000:100.
    let db = load("docker-stacks");
    let plan = plan_ok(&db, &req("jovyan", 123456, "CVLAB-unit", 11166));
    let pw = text(&plan.db.passwd);
    assert!(pw.contains("\njovyan:x:123456:11166::/home/jovyan:/bin/bash\n"), "{pw}");
    assert!(!pw.contains(":1000:"), "old uid gone: {pw}");
    let w = warnings(&plan.notes);
    assert!(w.iter().any(|m| m.contains("user 'jovyan' existed with uid 1000; changed it to 123456")), "{w:?}");
    // jovyan stays a member of users (gid 100) through the member list.
    assert!(text(&plan.db.group).contains("\nusers:x:100:jovyan\n"));
    assert_no_duplicates(&plan.db);
}

#[test]
fn existing_group_name_with_another_gid_is_renumbered_and_users_follow() {
    let mut db = load("debian-12");
    db.group = Table::parse(Kind::Group, (text(&db.group) + "CVLAB-unit:x:1500:\n").as_bytes());
    db.passwd = Table::parse(Kind::Passwd, (text(&db.passwd) + "bob:x:2000:1500::/home/bob:/bin/sh\n").as_bytes());
    let plan = plan_ok(&db, &alice());
    let g = text(&plan.db.group);
    assert!(g.ends_with("CVLAB-unit:x:11166:\n") && !g.contains(":1500:"), "{g}");
    let pw = text(&plan.db.passwd);
    assert!(pw.contains("\nbob:x:2000:11166::/home/bob:/bin/sh\n"), "bob follows: {pw}");
    let w = warnings(&plan.notes);
    assert!(
        w.iter().any(|m| m.contains("group 'CVLAB-unit' had gid 1500; changed it to 11166") && m.contains("bob")),
        "{w:?}"
    );
    assert_no_duplicates(&plan.db);
}

#[test]
fn name_and_uid_on_two_entries_resolve_deterministically() {
    let mut db = load("debian-12");
    db.passwd = Table::parse(
        Kind::Passwd,
        (text(&db.passwd) + "alice:x:1000:1000::/home/alice:/bin/sh\nbob:x:123456:1000::/home/bob:/bin/sh\n")
            .as_bytes(),
    );
    db.shadow = Some(Table::parse(
        Kind::Shadow,
        (text(db.shadow.as_ref().unwrap()) + "alice:!:1:0:99999:7:::\nbob:$6$x:1:0:99999:7:::\n").as_bytes(),
    ));
    let first = plan_ok(&db, &alice());
    let again = plan_ok(&db, &alice());
    assert_eq!(first.db, again.db, "same input, same output");
    let pw = text(&first.db.passwd);
    assert_eq!(lines_named(&pw, "alice"), 1, "{pw}");
    assert!(pw.ends_with("alice:x:123456:11166::/home/alice:/bin/bash\n"), "the uid's entry is renamed: {pw}");
    assert!(!pw.contains("bob:") && !pw.contains(":1000:1000:"), "{pw}");
    let sh = text(first.db.shadow.as_ref().unwrap());
    assert_eq!(lines_named(&sh, "alice"), 1, "{sh}");
    assert!(!sh.contains("bob:") && !sh.contains("$6$x"), "bob's password is not inherited: {sh}");
    assert_eq!(warnings(&first.notes).len(), 2, "{:?}", first.notes);
    assert_no_duplicates(&first.db);
}

#[test]
fn planning_is_idempotent_on_every_distro_and_conflict() {
    let cases = [
        ("ubuntu-24.04", req("alice", 1000, "CVLAB-unit", 11166)),
        ("debian-12", req("alice", 123456, "CVLAB-unit", 100)),
        ("docker-stacks", req("jovyan", 123456, "CVLAB-unit", 11166)),
        ("alpine-3", alice()),
        ("fedora-40", alice()),
        ("quirks", alice()),
    ];
    for (distro, r) in cases {
        let first = plan_ok(&load(distro), &r);
        let second = plan_ok(&first.db, &r);
        assert_eq!(first.db, second.db, "{distro}");
        assert!(warnings(&second.notes).iter().all(|w| w.contains("already belongs")), "{distro}: {:?}", second.notes);
    }
}

#[test]
fn manual_edit_converges_back() {
    let first = plan_ok(&load("debian-12"), &alice()).db;
    let mut edited = first.clone();
    let pw = text(&edited.passwd)
        .replace("alice:x:123456:11166::/home/alice:/bin/bash", "alice:x:123456:0::/root:/bin/false");
    edited.passwd = Table::parse(Kind::Passwd, pw.as_bytes());
    assert_ne!(edited, first);
    assert_eq!(plan_ok(&edited, &alice()).db, first);
}

#[test]
fn no_supplementary_groups_unless_asked() {
    let plan = plan_ok(&load("debian-12"), &alice());
    assert!(plan.db.group.groups_listing("alice").is_empty());
    let mut r = alice();
    r.extra_groups = vec!["sudo".into(), "adm".into(), "root".into(), "nosuch".into()];
    let plan = plan_ok(&load("debian-12"), &r);
    let mut g = plan.db.group.groups_listing("alice");
    g.sort();
    assert_eq!(g, vec![0, 4, 27]);
    assert!(warnings(&plan.notes).iter().any(|w| w.contains("'nosuch'")));
}

#[test]
fn supplementary_list_keeps_runtime_groups_but_not_roots() {
    // Alpine: root is a member of bin, daemon, sys, adm, disk, wheel...
    let db = plan_ok(&load("alpine-3"), &alice()).db;
    let roots_disk = 6;
    let g = provision::supplementary_groups(&db, "alice", 11166, &[0, 1, roots_disk, 555, 11166]);
    assert_eq!(g, vec![11166, 555]);
}

#[test]
fn alpine_without_shadow_gets_a_locked_passwd_field() {
    let plan = plan_ok(&load("alpine-3"), &alice());
    assert!(plan.db.shadow.is_none() && plan.db.gshadow.is_none());
    assert!(text(&plan.db.passwd).contains("alice:*:123456:"));
}

#[test]
fn duplicate_stale_names_all_go_so_the_name_resolves_to_the_uid() {
    // Found by the provision fuzz target: two stale entries named alice.
    let db = Database {
        passwd: Table::parse(
            Kind::Passwd,
            b"alice:x:1005:5::/h:/bin/sh\nalice:x:1006:6::/h:/bin/sh\nbob:x:1000:1000::/home/bob:/bin/sh\n",
        ),
        group: Table::parse(Kind::Group, b"alice:x:1000:\n"),
        shadow: None,
        gshadow: None,
    };
    let r = req("alice", 1000, "alice", 1000);
    let p = plan_ok(&db, &r);
    assert_eq!(p.db.passwd.find_name("alice"), p.db.passwd.find_id(1000));
    assert_eq!(plan_ok(&p.db, &r).db, p.db, "a second start changes nothing");
}
