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

// ---- Lines as glibc reads them (issue 11 §2) ----

/// The host's glibc (`fgetpwent`, `fgetgrent`, `fgetspent`, `fgetsgent`, the
/// same line parsers `nss_files` uses) reads each of `files` as `kind`; per
/// file, one text line per entry: hex name, then the ids (passwd, group),
/// then hex members (group). NIS `+`/`-` entries are left out (`nss_files`
/// lookups skip them). One python3 process for all files.
fn glibc_reads_all(kind: Kind, files: &[Vec<u8>]) -> Vec<Vec<String>> {
    let dir = common::TempDir::new("glibc-oracle");
    for (i, data) in files.iter().enumerate() {
        fs::write(dir.join(&i.to_string()), data).unwrap();
    }
    let script = r#"
import ctypes, sys
libc = ctypes.CDLL("libc.so.6")
P = ctypes.c_char_p
class Pw(ctypes.Structure): _fields_ = [("n", P), ("p", P), ("u", ctypes.c_uint32), ("g", ctypes.c_uint32), ("c", P), ("d", P), ("s", P)]
class Gr(ctypes.Structure): _fields_ = [("n", P), ("p", P), ("g", ctypes.c_uint32), ("m", ctypes.POINTER(P))]
class Sp(ctypes.Structure): _fields_ = [("n", P), ("p", P)]
class Sg(ctypes.Structure): _fields_ = [("n", P), ("p", P), ("a", ctypes.POINTER(P)), ("m", ctypes.POINTER(P))]
kind, d, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
fn, st = {"passwd": ("fgetpwent", Pw), "group": ("fgetgrent", Gr), "shadow": ("fgetspent", Sp), "gshadow": ("fgetsgent", Sg)}[kind]
libc.fopen.restype = ctypes.c_void_p; libc.fopen.argtypes = [P, P]
libc.fclose.argtypes = [ctypes.c_void_p]
f = getattr(libc, fn); f.restype = ctypes.POINTER(st); f.argtypes = [ctypes.c_void_p]
def mem(m):
    out = []
    i = 0
    while m and m[i] is not None:
        out.append(m[i].hex()); i += 1
    return out
for n in range(count):
    print("=")
    fp = libc.fopen(("%s/%d" % (d, n)).encode(), b"r")
    while True:
        r = f(fp)
        if not r: break
        e = r.contents
        if e.n[:1] in (b"+", b"-"): continue
        if kind == "passwd": print(e.n.hex(), e.u, e.g)
        elif kind == "group": print(e.n.hex(), e.g, ",".join(mem(e.m)))
        else: print(e.n.hex())
    libc.fclose(fp)
"#;
    let name = match kind {
        Kind::Passwd => "passwd",
        Kind::Group => "group",
        Kind::Shadow => "shadow",
        Kind::Gshadow => "gshadow",
    };
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(name)
        .arg(dir.path())
        .arg(files.len().to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "the glibc oracle failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut res: Vec<Vec<String>> = Vec::new();
    for line in text.lines() {
        if line == "=" {
            res.push(Vec::new());
        } else {
            res.last_mut().unwrap().push(line.to_owned());
        }
    }
    assert_eq!(res.len(), files.len());
    res
}

fn glibc_reads(kind: Kind, data: &[u8]) -> Vec<String> {
    glibc_reads_all(kind, &[data.to_vec()]).pop().unwrap()
}

/// labinit's reading of `data`, in the oracle's format.
fn labinit_reads(kind: Kind, data: &[u8]) -> Vec<String> {
    let t = Table::parse(kind, data);
    let hex = |s: &[u8]| s.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let mut out = Vec::new();
    for i in 0..t.len() {
        if !t.is_entry(i) {
            continue;
        }
        // Names are compared as bytes: field() is lossy, so re-read the raw
        // name from a lossless source (the entry's first field).
        let name = t.field(i, 0);
        let name = hex(name.as_bytes());
        out.push(match kind {
            Kind::Passwd => format!("{name} {} {}", t.id_at(i, 2).unwrap(), t.id_at(i, 3).unwrap()),
            Kind::Group => format!(
                "{name} {} {}",
                t.id_at(i, 2).unwrap(),
                t.members(i, 3).iter().map(|m| hex(m.as_bytes())).collect::<Vec<_>>().join(",")
            ),
            _ => name,
        });
    }
    out
}

/// Lines of 1 to 11 `:`-separated fields, each drawn from values parsers trip
/// on (signs, blanks, CR, NUL, overflow, comment and NIS markers, member
/// lists), sometimes with leading blanks: most are entries for some kind.
fn random_lines(seed: u64, count: usize, numeric: bool) -> Vec<Vec<u8>> {
    // Shadow lines need day counts (or nothing) in most fields.
    const NUMBERS: [&[u8]; 10] = [b"", b"", b"", b"19000", b"0", b" 7", b"-0", b"99999999999", b"1\r", b"x"];
    const FIELDS: [&[u8]; 26] = [
        b"",
        b"",
        b"1000",
        b"0",
        b" 1000",
        b"+1000",
        b"-0",
        b"-1",
        b"4294967295",
        b"4294967296",
        b"alice",
        b"x",
        b"*",
        b"a,b",
        b" b,,c ",
        b"\r",
        b"1000\r",
        b"#",
        b"+",
        b"-",
        b"1e3",
        b"\0",
        b"\t5",
        b"5 ",
        b"/bin/sh",
        b"\x0b7",
    ];
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    (0..count)
        .map(|_| {
            let n = 1 + (next() % 11) as usize;
            let mut line: Vec<u8> = if next() % 8 == 0 { b" \t".to_vec() } else { Vec::new() };
            let fields: Vec<&[u8]> = (0..n)
                .map(|i| {
                    let r = next();
                    if numeric && i >= 2 {
                        NUMBERS[(r % NUMBERS.len() as u64) as usize]
                    } else {
                        FIELDS[(r % FIELDS.len() as u64) as usize]
                    }
                })
                .collect();
            line.extend(fields.join(&b':'));
            line
        })
        .collect()
}

#[test]
fn every_line_is_read_as_the_host_glibc_reads_it() {
    let hand: Vec<&[u8]> = vec![
        b"ubuntu:x:1000:1000:Ubuntu:/home/ubuntu:/bin/bash\r",
        b"ubuntu:x:1000:1000:Ubuntu:/home/ubuntu",
        b"ubuntu:x: 1000:1000::/h:/s",
        b"ubuntu:x:+1000:1000::/h:/s",
        b"ubuntu:x:1000:1000::/h:/s\0junk",
        b"  ubuntu:x:1000:1000::/h:/s\0junk",
        b"zero::0:0",
        b"u:x:-0:-0",
        b"u:x:-1:1",
        b"u:x:4294967295:1",
        b"u:x:1000\r",
        b"g:x:100:\r",
        b"g:x:100:a, b ,,c\r",
        b"s:*:19000:0:99999:7:::\r",
        b"s:*:1:2:3",
        b"s:*:1:2:3: ",
        b"s:*:1:2:3:4:5:6:7",
        b"s:*:1:2:3:4:5:6:7:",
        b"+@ng::::::",
        b"#c:x:1:1",
        b"\r",
    ];
    let mut total = 0;
    for (k, kind) in [Kind::Passwd, Kind::Group, Kind::Shadow, Kind::Gshadow].into_iter().enumerate() {
        let mut lines: Vec<Vec<u8>> = hand.iter().map(|l| l.to_vec()).collect();
        lines.extend(random_lines(0x5eed + k as u64, 4000, false));
        lines.extend(random_lines(0x5eed + k as u64, 2000, true));
        // Files of 1 to 5 lines, with and without a final newline (the last
        // line's quirks depend on it).
        let files: Vec<Vec<u8>> = lines
            .chunks(5)
            .enumerate()
            .map(|(n, chunk)| {
                let mut data = chunk.join(&b'\n');
                if n % 2 == 0 {
                    data.push(b'\n');
                }
                data
            })
            .collect();
        let mut entries = 0;
        for (data, glibc) in files.iter().zip(glibc_reads_all(kind, &files)) {
            total += 1;
            entries += glibc.len();
            assert_eq!(labinit_reads(kind, data), glibc, "{kind:?}: {:?}", String::from_utf8_lossy(data));
        }
        // The generated lines are not all rejects: many are entries.
        assert!(entries > 50, "{kind:?}: only {entries} entries among the generated lines");
    }
    assert!(total > 4800, "{total} files compared");
}

#[test]
fn the_glibc_oracle_sees_what_labinits_old_parser_missed() {
    // Negative control for the test above: the oracle itself must report the
    // odd lines as entries (otherwise agreeing with it proves nothing).
    let got =
        glibc_reads(Kind::Passwd, b"ubuntu:x: 1000:1000::/h:/s\nbob:x:1001:1001:Bob:/home/bob\nc:x:1000:1000:::/s\r\n");
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got[0].ends_with(" 1000 1000") && got[1].ends_with(" 1001 1001"), "{got:?}");
    assert!(glibc_reads(Kind::Passwd, b"u:x:1000\n").is_empty(), "a line without a gid is skipped");
}

fn ubuntu_with_passwd_line(line: &str) -> Database {
    let mut db = load("ubuntu-24.04");
    let pw = text(&db.passwd).replace("ubuntu:x:1000:1000:Ubuntu:/home/ubuntu:/bin/bash", line);
    assert!(pw.contains(line));
    db.passwd = Table::parse(Kind::Passwd, pw.as_bytes());
    db
}

/// glibc's uid 1000 holders in `t` (the whole file, not only the first).
fn glibc_holders_of(t: &Table, uid: u32) -> Vec<String> {
    glibc_reads(Kind::Passwd, &t.render())
        .into_iter()
        .filter(|l| l.split(' ').nth(1) == Some(&uid.to_string()))
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect()
}

#[test]
fn odd_lines_holding_the_uid_are_renamed_not_duplicated() {
    // Case 01: CRLF, no shell field ("echo ... >> /etc/passwd"), " 1000",
    // "+1000", a NUL byte: glibc reads uid 1000 in each.
    let alice = hexs("alice");
    for line in [
        "ubuntu:x:1000:1000:Ubuntu:/home/ubuntu:/bin/bash\r",
        "ubuntu:x:1000:1000:Ubuntu:/home/ubuntu",
        "ubuntu:x: 1000:1000:Ubuntu:/home/ubuntu:/bin/bash",
        "ubuntu:x:+1000:1000:Ubuntu:/home/ubuntu:/bin/bash",
        "ubuntu:x:1000:1000:Ubuntu:/home/ubuntu:/bin/bash\0junk",
    ] {
        let db = ubuntu_with_passwd_line(line);
        assert_eq!(glibc_holders_of(&db.passwd, 1000), vec![hexs("ubuntu")], "{line:?}: fixture");
        let p = plan_ok(&db, &req("alice", 1000, "CVLAB-unit", 11166));
        assert_eq!(glibc_holders_of(&p.db.passwd, 1000), vec![alice.clone()], "{line:?}: one holder, alice");
        assert!(warnings(&p.notes).iter().any(|w| w.contains("uid 1000 belonged to 'ubuntu'")), "{line:?}");
        let sh = text(p.db.shadow.as_ref().unwrap());
        assert!(sh.contains("\nalice:*:20000:") && !sh.contains("ubuntu:"), "{line:?}: the shadow line follows");
    }
    // Negative control: a line glibc skips (no gid) holds nothing; alice is
    // added and the line stays as it was.
    let db = ubuntu_with_passwd_line("ubuntu:x:1000");
    let p = plan_ok(&db, &req("alice", 1000, "CVLAB-unit", 11166));
    let pw = text(&p.db.passwd);
    assert!(pw.contains("\nubuntu:x:1000\n") && pw.ends_with("alice:x:1000:11166::/home/alice:/bin/bash\n"), "{pw}");
    assert_eq!(glibc_holders_of(&p.db.passwd, 1000), vec![alice]);
}

fn hexs(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn no_shadow_line_is_taken_over_on_a_guess() {
    // Case 06: bob's passwd line has no shell field, so the old parser missed
    // bob and gave his (seemingly orphaned) shadow line to alice.
    let bob = "bob:$6$bobsalt$BOBSREALPASSWORDHASH:19000:0:99999:7:::";
    let db = Database {
        passwd: Table::parse(Kind::Passwd, b"root:x:0:0:root:/root:/bin/bash\nbob:x:1001:1001:Bob:/home/bob\n"),
        group: Table::parse(Kind::Group, b"root:x:0:\nbob:x:1001:\n"),
        shadow: Some(Table::parse(Kind::Shadow, format!("root:*:19000:0:99999:7:::\n{bob}\n").as_bytes())),
        gshadow: Some(Table::parse(Kind::Gshadow, b"root:*::\nbob:!::\n")),
    };
    let p = plan_ok(&db, &req("alice", 123456, "CVLAB", 11166));
    let sh = text(p.db.shadow.as_ref().unwrap());
    assert!(sh.contains(&format!("\n{bob}\n")), "bob's line is byte-identical: {sh}");
    assert!(sh.ends_with("alice:*:20000:0:99999:7:::\n"), "{sh}");
    // Even a shadow line that names no account at all stays as it is.
    let mut db2 = db.clone();
    db2.passwd = Table::parse(Kind::Passwd, b"root:x:0:0:root:/root:/bin/bash\n");
    let p = plan_ok(&db2, &req("alice", 123456, "CVLAB", 11166));
    assert!(text(p.db.shadow.as_ref().unwrap()).contains(&format!("\n{bob}\n")));
    // The one line that is replaced is a stale one with the requested name
    // (glibc would hand it to the new user): its hash is not inherited.
    let mut db3 = db.clone();
    db3.shadow = Some(Table::parse(
        Kind::Shadow,
        format!("root:*:1:0:99999:7:::\nalice:$6$old:1:0:99999:7:::\n{bob}\n").as_bytes(),
    ));
    let p = plan_ok(&db3, &req("alice", 123456, "CVLAB", 11166));
    let sh = text(p.db.shadow.as_ref().unwrap());
    assert!(!sh.contains("$6$old") && sh.contains(&format!("\n{bob}\n")), "{sh}");
    assert_eq!(lines_named(&sh, "alice"), 1, "{sh}");
}

// ---- System accounts are never taken over (issue 11 §1) ----

#[test]
fn system_accounts_and_privileged_groups_are_refused() {
    let db = load("ubuntu-24.04");
    let cases: Vec<(Request, &str)> = vec![
        // nobody would be renumbered to the cluster uid and get sudo.
        (req("nobody", 123456, "CVLAB-unit", 11166), "system account 'nobody' (uid 65534)"),
        // daemon would be renamed.
        (req("alice", 1, "CVLAB-unit", 11166), "system account 'daemon' (uid 1)"),
        // daemon, exactly: it would get a new home, shell and sudo.
        (req("daemon", 1, "CVLAB-unit", 11166), "system account 'daemon' (uid 1)"),
        // The stale 'daemon' entry would be removed while ubuntu is renamed.
        (req("daemon", 1000, "CVLAB-unit", 11166), "system account 'daemon' (uid 1)"),
        (req("_apt", 123456, "CVLAB-unit", 11166), "system account '_apt'"),
        // Groups: renumbering sudo or nogroup (nobody would follow).
        (req("alice", 123456, "sudo", 11166), "system group 'sudo' (gid 27)"),
        (req("alice", 123456, "nogroup", 11166), "system group 'nogroup' (gid 65534)"),
        (req("alice", 123456, "users", 11166), "system group 'users' (gid 100)"),
        // Privileged groups as the primary group.
        (req("alice", 123456, "CVLAB-unit", 42), "privileged group 'shadow'"),
        (req("alice", 123456, "CVLAB-unit", 27), "privileged group 'sudo'"),
        (req("alice", 123456, "CVLAB-unit", 4), "privileged group 'adm'"),
        (req("alice", 123456, "CVLAB-unit", 6), "privileged group 'disk'"),
        (req("alice", 123456, "sudo", 27), "privileged group 'sudo'"),
    ];
    for (r, want) in cases {
        let msg = refusal(&db, &r);
        assert!(msg.contains(want), "{}/{}/{}/{}: {msg}", r.user, r.uid, r.group, r.gid);
        assert!(!msg.contains('\n'), "one line: {msg}");
    }
    // gid 0 under any name, and a privileged name above GID_MIN.
    let mut db2 = db.clone();
    db2.group = Table::parse(Kind::Group, (text(&db.group) + "docker:x:1001:\n").as_bytes());
    assert!(refusal(&db2, &req("alice", 123456, "CVLAB-unit", 1001)).contains("privileged group 'docker'"));
    assert!(refusal(&db2, &req("alice", 123456, "docker", 11166)).contains("privileged group 'docker'"));
    assert!(refusal(&db2, &req("alice", 123456, "root", 0)).contains("privileged group 'root'"));
}

#[test]
fn regular_accounts_and_harmless_groups_keep_working() {
    // Negative controls of the refusals: Ubuntu's regular `ubuntu` at 1000 is
    // renamed, `users` (100) may be the primary group, a fresh uid below
    // UID_MIN that nobody holds is created.
    let db = load("ubuntu-24.04");
    let p = plan_ok(&db, &req("alice", 1000, "CVLAB-unit", 11166));
    assert_eq!(p.db.passwd.find_id(1000).map(|i| p.db.passwd.field(i, 0)), Some("alice".into()));
    assert_eq!(plan_ok(&db, &req("alice", 123456, "CVLAB-unit", 100)).group_name, "users");
    assert_eq!(plan_ok(&db, &req("alice", 123456, "users", 100)).group_name, "users");
    let p = plan_ok(&db, &req("alice", 500, "CVLAB-unit", 11166));
    assert!(text(&p.db.passwd).ends_with("alice:x:500:11166::/home/alice:/bin/bash\n"));
    // The ubuntu *group* (1000) is regular: renumbering it moves its members.
    let p = plan_ok(&db, &req("alice", 123456, "ubuntu", 11166));
    assert!(text(&p.db.passwd).contains("\nubuntu:x:1000:11166:"));
}

#[test]
fn the_system_range_comes_from_login_defs() {
    let (l, notes) = Limits::from_login_defs("# c\nUID_MIN\t\t 500\nGID_MIN 600\nUID_MAX 60000\n");
    assert_eq!((l.uid_min, l.gid_min), (500, 600));
    assert!(notes.is_empty());
    let (l, notes) = Limits::from_login_defs("UID_MIN 0x3e8\n#GID_MIN 5\n");
    assert_eq!((l.uid_min, l.gid_min), (1000, 1000), "bad and commented values keep the default");
    assert_eq!(notes.len(), 1);
    assert_eq!(Limits::from_login_defs("").0, Limits::default());
    // An account at 700 is regular with UID_MIN 500 (old Red Hat) and a
    // system account with the default.
    let mut db = load("debian-12");
    db.passwd =
        Table::parse(Kind::Passwd, (text(&db.passwd) + "olduser:x:700:700::/home/olduser:/bin/sh\n").as_bytes());
    let mut r = req("alice", 700, "CVLAB-unit", 11166);
    assert!(refusal(&db, &r).contains("'olduser' (uid 700)"));
    r.limits = Limits { uid_min: 500, gid_min: 500 };
    assert!(text(&plan_ok(&db, &r).db.passwd).contains("\nalice:x:700:11166:"));
}

#[test]
fn a_later_duplicate_of_the_users_own_entry_is_not_a_takeover() {
    // alice at her uid comes first; a later line with the name at a system
    // uid is never reached by a lookup and nothing edits it: no refusal.
    let mut db = load("debian-12");
    db.passwd = Table::parse(
        Kind::Passwd,
        (text(&db.passwd) + "alice:x:123456:11166::/home/alice:/bin/bash\nalice:x:5:5::/:/bin/sh\n").as_bytes(),
    );
    let p = plan_ok(&db, &alice());
    assert!(text(&p.db.passwd).ends_with("alice:x:5:5::/:/bin/sh\n"));
    // Negative control: when that system line is the first with the name,
    // the request would renumber it, and is refused.
    let mut db = load("debian-12");
    db.passwd = Table::parse(Kind::Passwd, (text(&db.passwd) + "alice:x:5:5::/:/bin/sh\n").as_bytes());
    assert!(refusal(&db, &alice()).contains("system account 'alice' (uid 5)"));
}

#[test]
fn a_new_account_at_a_free_low_uid_is_created_and_kept_on_restart() {
    // Found by the provision fuzz target: uid 1 free (no daemon), so the
    // account is new; the next start must not mistake it for a system one.
    let mut db = load("debian-12");
    db.passwd = Table::parse(Kind::Passwd, b"root:x:0:0:root:/root:/bin/bash\n");
    let r = req("jovyan", 1, "CVLAB-unit", 11166);
    let first = plan_ok(&db, &r);
    let second = plan_ok(&first.db, &r);
    assert_eq!(second.db, first.db);
    // Negative control: the image's own daemon at uid 1 (another home and
    // shell) is refused.
    let db = load("debian-12");
    assert!(refusal(&db, &req("daemon", 1, "CVLAB-unit", 11166)).contains("system account 'daemon'"));
}
