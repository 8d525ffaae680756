//! Account files as glibc reads them: parser/writer round trips on real
//! distributions' files, every line read the way the host's glibc reads it
//! (checked against glibc itself), and odd lines that hold a uid. The
//! conflict rules of `provision::plan` are in tests/account_conflicts.rs.

mod common;
#[path = "accounts/support.rs"]
mod support;

use std::fs;

use labkit::init::accounts::{Database, Kind, Table};

use support::{lines_named, load, plan_ok, req, text, warnings};

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
