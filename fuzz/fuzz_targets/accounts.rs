//! Account files (`/etc/passwd`, `group`, `shadow`, `gshadow`): the input is
//! one file's bytes, parsed as each of the four kinds.
//!
//! Checked on every input and kind:
//! - parse never panics and `render(parse(x)) == x` (the identity);
//! - re-parsing the rendered bytes gives the same table;
//! - a short sequence of edits (`set_field`, `push`, `remove`,
//!   `rename_member`, `add_member`, `remove_member`), chosen by a PRNG seeded
//!   from the input, with values as labinit passes them (validated names,
//!   decimal ids): never panics, and after each edit what the table holds in
//!   memory is what the next start would read back from the rendered bytes;
//!   lines an edit does not touch keep their bytes.
#![no_main]

use labkit::init::accounts::{Kind, Table};
use libfuzzer_sys::fuzz_target;

const KINDS: [(Kind, usize); 4] = [(Kind::Passwd, 7), (Kind::Group, 4), (Kind::Shadow, 9), (Kind::Gshadow, 4)];

/// splitmix64: a tiny deterministic PRNG, so edits follow from the input.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// Lines of the rendered bytes, as `render` joins them.
fn lines(rendered: &[u8]) -> Vec<&[u8]> {
    if rendered.is_empty() {
        return Vec::new();
    }
    let body = rendered.strip_suffix(b"\n").unwrap_or(rendered);
    body.split(|b| *b == b'\n').collect()
}

/// Field `col` of one raw line, split on ':' as the parser does.
fn field_bytes(line: &[u8], col: usize) -> Option<&[u8]> {
    line.split(|b| *b == b':').nth(col)
}

/// A name as labinit's validation admits it (or one already in the file).
fn name(rng: &mut Rng, existing: &[String]) -> String {
    const POOL: [&str; 8] = ["alice", "root", "ubuntu", "jovyan", "sudo", "adm", "users", "a.b-c_d"];
    if !existing.is_empty() && rng.below(2) == 0 {
        let n = existing[rng.below(existing.len())].clone();
        // Existing names may hold bytes labinit would never write (e.g. ','
        // or invalid UTF-8, shown lossily); only reuse clean ones.
        if !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) && !n.starts_with('-') {
            return n;
        }
    }
    POOL[rng.below(POOL.len())].to_owned()
}

/// A value for column `col` of `kind` that labinit could write there.
fn value(rng: &mut Rng, kind: Kind, col: usize, existing: &[String]) -> String {
    let id_col = match kind {
        Kind::Passwd => col == 2 || col == 3,
        Kind::Group => col == 2,
        _ => false,
    };
    if col == 0 {
        name(rng, existing)
    } else if kind == Kind::Shadow && col >= 2 {
        // Day counts: labinit writes numbers (or nothing) there.
        ["", "0", "19000", "99999", "7"][rng.below(5)].to_owned()
    } else if id_col {
        [0u32, 1000, 65534, u32::MAX, rng.next() as u32][rng.below(5)].to_string()
    } else {
        const POOL: [&str; 9] = ["", "x", "*", "!", "/home/alice", "/bin/sh", "19000", "alice,bob", "99999"];
        POOL[rng.below(POOL.len())].to_owned()
    }
}

/// What the table holds must be what a fresh parse of its bytes holds: the
/// same bytes and the same entries in file order. (Field by field by index is
/// not compared: a table's indices are stable handles since the linear
/// account database — a removed line keeps its number, a pushed line gets the
/// next one — while a fresh parse numbers lines by position; the bytes carry
/// every field.)
fn assert_reads_back(t: &Table, kind: Kind, _ncols: usize, what: &str) {
    let bytes = t.render();
    let back = Table::parse(kind, &bytes);
    assert_eq!(back.render(), bytes, "{kind:?}: render(parse(render)) changed after {what}");
    assert_eq!(back.names(), t.names(), "{kind:?}: names differ from a re-read after {what}");
}

fn check(kind: Kind, ncols: usize, data: &[u8]) {
    let mut t = Table::parse(kind, data);
    assert_eq!(t.render(), data, "{kind:?}: render(parse(x)) != x");
    assert_eq!(Table::parse(kind, &t.render()), t, "{kind:?}: parse(render(parse(x))) != parse(x)");
    assert_eq!(t.kind(), kind);
    // Read-only queries on every line and column must not panic.
    let n = lines(data).len();
    for idx in 0..n {
        for col in 0..ncols {
            let _ = t.field(idx, col);
            let _ = t.id_at(idx, col);
        }
    }
    let _ = t.groups_listing("root");
    let _ = t.find_id(0);

    let mut rng = Rng(fnv(data) ^ ncols as u64);
    let mut n = n;
    for step in 0..(1 + rng.below(8)) {
        let existing = t.names();
        let before = t.render();
        let before_lines: Vec<Vec<u8>> = lines(&before).iter().map(|l| l.to_vec()).collect();
        // Lines the edit may change; every other line must keep its bytes.
        let mut touched: Option<Vec<usize>> = Some(Vec::new());
        let what;
        match rng.below(6) {
            0 if n > 0 => {
                let idx = rng.below(n);
                let col = rng.below(ncols);
                let v = value(&mut rng, kind, col, &existing);
                let was_entry = !t.field(idx, 0).is_empty();
                t.set_field(idx, col, &v);
                if was_entry {
                    assert_eq!(t.field(idx, col), v, "{kind:?}: set_field did not take");
                }
                touched = Some(vec![idx]);
                what = format!("set_field({idx}, {col}, {v:?})");
            }
            1 => {
                let cols: Vec<String> = (0..ncols).map(|c| value(&mut rng, kind, c, &existing)).collect();
                let refs: Vec<&str> = cols.iter().map(String::as_str).collect();
                t.push(&refs);
                let after = t.render();
                let after_lines = lines(&after);
                let pushed = cols.join(":");
                // The new line goes before the first NIS `+`/`-` line (as
                // shadow-utils keeps them last), else at the end.
                match before_lines.iter().position(|l| matches!(l.first(), Some(b'+') | Some(b'-'))) {
                    Some(nis) => {
                        let mut expect: Vec<&[u8]> = before_lines.iter().map(Vec::as_slice).collect();
                        expect.insert(nis, pushed.as_bytes());
                        assert_eq!(after_lines, expect, "{kind:?}: push before the NIS line {nis}");
                    }
                    None => {
                        assert_eq!(after_lines.last().copied(), Some(pushed.as_bytes()), "{kind:?}: pushed line");
                        // Every earlier line keeps its bytes. (A table whose
                        // last line was removed from a file without a final
                        // newline may hold one empty line that its bytes do
                        // not show; it reappears here as a blank line, which
                        // is harmless.)
                        assert_eq!(
                            &after_lines[..before_lines.len()],
                            &before_lines[..],
                            "{kind:?}: push changed earlier lines"
                        );
                        assert!(
                            after_lines[before_lines.len()..after_lines.len() - 1].iter().all(|l| l.is_empty()),
                            "{kind:?}: push added more than its line"
                        );
                    }
                }
                touched = None;
                what = format!("push({cols:?})");
                // Indices are stable handles (see `assert_reads_back`); this
                // oracle picks lines by position, so it goes on with the table
                // its bytes read as.
                t = Table::parse(kind, &after);
                n = lines(&after).len();
            }
            2 if n > 0 => {
                let idx = rng.below(n);
                t.remove(idx);
                let mut expect = before_lines.clone();
                if idx < expect.len() {
                    expect.remove(idx);
                }
                // Expected bytes: the other lines, joined as `render` does.
                let mut bytes = expect.join(&b'\n');
                if before.ends_with(b"\n") && !expect.is_empty() {
                    bytes.push(b'\n');
                }
                let after = t.render();
                // Same caveat as for push: an empty last line and a final
                // newline look alike in bytes.
                let trimmed = |b: &[u8]| b.strip_suffix(b"\n").map(<[u8]>::to_vec).unwrap_or_else(|| b.to_vec());
                assert!(
                    after == bytes
                        || trimmed(&after) == trimmed(&bytes)
                        || after == [&bytes[..], b"\n"].concat()
                        || bytes == [&after[..], b"\n"].concat(),
                    "{kind:?}: remove({idx}): {:?} != {:?}",
                    String::from_utf8_lossy(&after),
                    String::from_utf8_lossy(&bytes)
                );
                touched = None;
                what = format!("remove({idx})");
                // A table's indices are stable handles: removing a line does
                // not renumber the others (provision removes several lines
                // found in one lookup). This oracle counts lines by position,
                // so it goes on with the table its bytes read as.
                t = Table::parse(kind, &after);
                n = lines(&after).len();
            }
            3 | 4 | 5 if matches!(kind, Kind::Group | Kind::Gshadow) => {
                let col = if kind == Kind::Gshadow && rng.below(2) == 0 { 2 } else { 3 };
                // Pick a real member when there is one, so renames happen.
                let mut members = Vec::new();
                for idx in 0..n {
                    members.extend(t.members(idx, col));
                }
                let old = if !members.is_empty() && rng.below(4) != 0 {
                    members[rng.below(members.len())].clone()
                } else {
                    name(&mut rng, &existing)
                };
                let new = name(&mut rng, &existing);
                // (remove_member is gone: labinit never removes a member.)
                match rng.below(2) {
                    0 => {
                        let changed = t.rename_member(col, &old, &new);
                        assert!(changed <= n);
                        what = format!("rename_member({col}, {old:?}, {new:?})");
                    }
                    _ if n > 0 => {
                        let idx = rng.below(n);
                        let was_entry = !t.field(idx, 0).is_empty();
                        let added = t.add_member(idx, col, &new);
                        if was_entry {
                            assert!(t.members(idx, col).contains(&new), "{kind:?}: add_member did not take");
                        }
                        touched = Some(vec![idx]);
                        what = format!("add_member({idx}, {col}, {new:?}) -> {added}");
                    }
                    _ => continue,
                }
                if touched.as_ref().is_some_and(Vec::is_empty) {
                    let op = what.split('(').next().unwrap_or("");
                    // Byte level: every other member keeps its bytes (names
                    // in the file may be Latin-1 or hold odd bytes).
                    let after = t.render();
                    for (i, line) in lines(&after).iter().enumerate() {
                        let old_field = field_bytes(&before_lines[i], col);
                        let (Some(old_field), Some(new_field)) = (old_field, field_bytes(line, col)) else { continue };
                        if Table::parse(kind, &before_lines[i]).field(0, 0).is_empty() {
                            continue; // not an entry: never edited
                        }
                        // A line glibc reads differently from a plain ':'
                        // split (leading blanks, a NUL, more fields, a member
                        // with leading blanks) is written anew from glibc's
                        // reading when edited; its bytes are not compared.
                        let raw = &before_lines[i];
                        let blank = |b: &u8| b" \t\n\x0b\x0c\r".contains(b);
                        let plain = !raw.contains(&0)
                            && !raw.first().is_some_and(blank)
                            && raw.split(|b| *b == b':').count() == ncols
                            && old_field.split(|b| *b == b',').all(|m| !m.first().is_some_and(blank));
                        if !plain {
                            continue;
                        }
                        let mut expect: Vec<&[u8]> = Vec::new();
                        for m in old_field.split(|b| *b == b',').filter(|m| !m.is_empty()) {
                            let m = if m == old.as_bytes() {
                                if op == "remove_member" {
                                    continue;
                                } else {
                                    new.as_bytes()
                                }
                            } else {
                                m
                            };
                            // rename and add dedup the list; remove keeps the rest as is.
                            if op == "remove_member" || !expect.contains(&m) {
                                expect.push(m);
                            }
                        }
                        let listed = old_field.split(|b| *b == b',').any(|m| m == old.as_bytes());
                        if listed {
                            assert_eq!(
                                String::from_utf8_lossy(new_field),
                                String::from_utf8_lossy(&expect.join(&b',')),
                                "{kind:?}: {what} on line {i}: members must keep their bytes (bytes {:?} -> {:?})",
                                old_field,
                                new_field
                            );
                            assert_eq!(
                                new_field,
                                &expect.join(&b',')[..],
                                "{kind:?}: {what} on line {i}: members must keep their bytes"
                            );
                        }
                    }
                    // Member edits touch only lines that list `old`.
                    let after = t.render();
                    let after_lines = lines(&after);
                    touched = Some(
                        (0..before_lines.len().min(after_lines.len()))
                            .filter(|&i| before_lines[i] != after_lines[i])
                            .collect(),
                    );
                    for &i in touched.as_ref().unwrap() {
                        let listed = Table::parse(kind, &before).members(i, col).contains(&old);
                        assert!(listed, "{kind:?}: {what} changed line {i}, which does not list {old:?}");
                    }
                }
            }
            _ => continue,
        }
        if let Some(touched) = touched {
            let after = t.render();
            let after_lines = lines(&after);
            assert_eq!(after_lines.len(), before_lines.len(), "{kind:?}: {what} changed the line count");
            for i in 0..after_lines.len() {
                if !touched.contains(&i) {
                    assert_eq!(after_lines[i], &before_lines[i][..], "{kind:?}: {what} changed untouched line {i}");
                }
            }
        }
        assert_reads_back(&t, kind, ncols, &format!("step {step}: {what}"));
    }
}

fuzz_target!(|data: &[u8]| {
    for (kind, ncols) in KINDS {
        check(kind, ncols, data);
    }
});
