//! The account database: `/etc/passwd`, `/etc/group`, `/etc/shadow` and
//! `/etc/gshadow` as text, parsed and edited without libc (no NSS, no
//! `getpwnam`). Owns parsing and serialising only; deciding what to change is
//! `provision`'s job and writing files is `files`'.
//!
//! **What is an entry: exactly what glibc reads.** Each line is read the way
//! glibc's `nss_files` and `fgetpwent`/`fgetgrent`/`fgetspent`/`fgetsgent`
//! read it (glibc 2.32+: `__nss_readline` and the `LINE_PARSER`s of
//! `files-parse.c`), so labinit never misses an account the C library would
//! resolve:
//! - leading white space is skipped, blank lines and `#` comments are not
//!   entries, and the line ends at its first NUL byte;
//! - fields are split on `:`; fields missing at the end of the line are
//!   empty (`bob:x:1001:1001` is an entry), and the last text field (passwd's
//!   shell, group's member list) runs to the end of the line, colons and a
//!   trailing carriage return included;
//! - an id is what `strtoul` reads (leading white space, `+`, and `-0` are
//!   accepted; `" 1000"` is 1000), must be followed directly by `:` or the end
//!   of the line, and must fit in 32 bits; otherwise the line is skipped;
//! - shadow's day counts follow the same rule but may be empty;
//! - member lists are split on `,`; empty members are dropped and each
//!   member's leading white space is skipped;
//! - names starting with `+` or `-` are NIS compat lines: `nss_files` never
//!   returns them for a lookup, and neither does labinit.
//!
//! This is checked against the host's glibc in `tests/accounts.rs`.
//!
//! Every line keeps its original bytes until it is edited. An edited line is
//! serialised anew from the fields glibc read (so a CRLF line that is renamed
//! keeps glibc's meaning of every field it does not change), and a new line is
//! inserted before the first NIS `+`/`-` line, as shadow-utils does.

/// Which account file a table holds; fixes the field count and id columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Passwd,
    Group,
    Shadow,
    Gshadow,
}

impl Kind {
    fn field_count(self) -> usize {
        match self {
            Kind::Passwd => 7,
            Kind::Group => 4,
            Kind::Shadow => 9,
            Kind::Gshadow => 4,
        }
    }

    /// Path of the file inside the container.
    pub fn path(self) -> &'static str {
        match self {
            Kind::Passwd => "/etc/passwd",
            Kind::Group => "/etc/group",
            Kind::Shadow => "/etc/shadow",
            Kind::Gshadow => "/etc/gshadow",
        }
    }

    /// Column of the member list (group, gshadow).
    fn member_columns(self) -> &'static [usize] {
        match self {
            Kind::Group => &[3],
            Kind::Gshadow => &[2, 3],
            _ => &[],
        }
    }
}

/// One line of an account file: its bytes, and the fields glibc reads from
/// it when it is an entry (`None`: glibc skips it, or it is a NIS line).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    raw: Vec<u8>,
    fields: Option<Vec<Vec<u8>>>,
}

/// A parsed account file. `render()` of an unedited table returns the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    kind: Kind,
    lines: Vec<Line>,
    /// Whether the input ended with a newline (kept as it was).
    final_newline: bool,
}

/// C's `isspace` in the C locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// Parse a decimal id the way labinit writes it: ASCII digits only, no sign,
/// no whitespace, within u32. (Reading uses [`glibc_number`].)
pub fn parse_id(field: &[u8]) -> Option<u32> {
    if field.is_empty() || field.len() > 10 || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// A whole field read as glibc's `INT_FIELD` reads it: `strtoul` in base 10
/// (leading C white space, an optional sign, at least one digit) consuming
/// the whole field, and a value within 32 bits (`-0` is 0; any other negative
/// number wraps above it and is refused, like an overflow).
pub fn glibc_number(field: &[u8]) -> Option<u32> {
    let mut i = 0;
    while i < field.len() && is_c_space(field[i]) {
        i += 1;
    }
    let negative = match field.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let digits = &field[i..];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut value: u64 = 0;
    for d in digits {
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        if value > u64::from(u32::MAX) && !negative {
            return None;
        }
    }
    match (negative, value) {
        (true, 0) => Some(0),
        (true, _) => None,
        (false, v) => u32::try_from(v).ok(),
    }
}

/// glibc's `INT_FIELD_MAYBE_NULL` on a whole field: empty is allowed (the
/// default), anything else must be a number as above.
fn glibc_number_or_empty(field: &[u8]) -> bool {
    field.is_empty() || glibc_number(field).is_some()
}

/// The bytes glibc parses for one line (`__nss_readline`): cut at the first
/// NUL, leading white space skipped, `None` for blank lines and comments.
/// Skipping the white space moves the text without its terminating NUL, so
/// on a last line without a newline the final bytes appear twice; glibc
/// really reads that, so it is mirrored.
fn effective(raw: &[u8], has_newline: bool) -> Option<Vec<u8>> {
    let mut c: Vec<u8> = raw.to_vec();
    if has_newline {
        c.push(b'\n');
    }
    if let Some(nul) = c.iter().position(|b| *b == 0) {
        c.truncate(nul);
    }
    let k = c.iter().take_while(|b| is_c_space(**b)).count();
    let s = &c[k..];
    if s.is_empty() || s[0] == b'#' {
        return None;
    }
    let mut buf = s.to_vec();
    buf.extend_from_slice(&c[s.len()..]);
    if let Some(nl) = buf.iter().position(|b| *b == b'\n') {
        buf.truncate(nl);
    }
    Some(buf)
}

/// A cursor over one line, with glibc's `STRING_FIELD` semantics.
struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    /// Up to the next `:` (consumed) or the end of the line.
    fn field(&mut self) -> &'a [u8] {
        let rest = &self.s[self.pos.min(self.s.len())..];
        match rest.iter().position(|b| *b == b':') {
            Some(p) => {
                self.pos += p + 1;
                &rest[..p]
            }
            None => {
                self.pos = self.s.len();
                rest
            }
        }
    }

    /// The rest of the line.
    fn rest(&mut self) -> &'a [u8] {
        let rest = &self.s[self.pos.min(self.s.len())..];
        self.pos = self.s.len();
        rest
    }
}

/// glibc's reading of one effective line: the kind's fields, or `None` when
/// glibc skips the line. NIS lines (`+`/`-` names) are `None` too: no lookup
/// ever returns them.
fn glibc_fields(kind: Kind, line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut c = Cursor { s: line, pos: 0 };
    let name = c.field();
    if name.first().is_some_and(|b| *b == b'+' || *b == b'-') {
        return None;
    }
    let mut f: Vec<&[u8]> = vec![name];
    match kind {
        Kind::Passwd => {
            f.push(c.field());
            for _ in 0..2 {
                // INT_FIELD: an empty rest is "no digits" and refused.
                f.push(c.field());
                glibc_number(f.last()?)?;
            }
            f.push(c.field());
            f.push(c.field());
            f.push(c.rest());
        }
        Kind::Group => {
            f.push(c.field());
            f.push(c.field());
            glibc_number(f.last()?)?;
            f.push(c.rest());
        }
        Kind::Shadow => {
            f.push(c.field());
            // lstchg, min, max: there must be more input for each.
            for _ in 0..3 {
                if c.at_end() {
                    return None;
                }
                let v = c.field();
                if !glibc_number_or_empty(v) {
                    return None;
                }
                f.push(v);
            }
            while !c.at_end() && is_c_space(c.s[c.pos]) {
                c.pos += 1;
            }
            if !c.at_end() {
                for _ in 0..3 {
                    if c.at_end() {
                        return None;
                    }
                    let v = c.field();
                    if !glibc_number_or_empty(v) {
                        return None;
                    }
                    f.push(v);
                }
                if !c.at_end() {
                    // The flag field ends the line: no `:` after it.
                    let v = c.rest();
                    glibc_number(v)?;
                    f.push(v);
                }
            }
        }
        Kind::Gshadow => {
            f.push(c.field());
            f.push(c.field());
            f.push(c.rest());
        }
    }
    let mut fields: Vec<Vec<u8>> = f.into_iter().map(<[u8]>::to_vec).collect();
    fields.resize(kind.field_count(), Vec::new());
    Some(fields)
}

/// Members of a list field as glibc reads them: split on `,`, leading white
/// space skipped, empty members dropped.
fn split_members(field: &[u8]) -> Vec<Vec<u8>> {
    field
        .split(|b| *b == b',')
        .map(|m| {
            let k = m.iter().take_while(|b| is_c_space(**b)).count();
            m[k..].to_vec()
        })
        .filter(|m| !m.is_empty())
        .collect()
}

impl Table {
    pub fn parse(kind: Kind, data: &[u8]) -> Table {
        let final_newline = data.last() == Some(&b'\n');
        let body = if final_newline { &data[..data.len() - 1] } else { data };
        let mut t = Table { kind, lines: Vec::new(), final_newline: final_newline || data.is_empty() };
        if !data.is_empty() {
            t.lines = body.split(|b| *b == b'\n').map(|raw| Line { raw: raw.to_vec(), fields: None }).collect();
            for i in 0..t.lines.len() {
                t.reread(i);
            }
        }
        t
    }

    /// Recompute line `i`'s fields from its bytes (its newline may have come
    /// or gone, which matters on the last line).
    fn reread(&mut self, i: usize) {
        let has_newline = i + 1 < self.lines.len() || self.final_newline;
        let line = &mut self.lines[i];
        line.fields = effective(&line.raw, has_newline).and_then(|e| glibc_fields(self.kind, &e));
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, line) in self.lines.iter().enumerate() {
            if i > 0 {
                out.push(b'\n');
            }
            out.extend_from_slice(&line.raw);
        }
        if self.final_newline && !self.lines.is_empty() {
            out.push(b'\n');
        }
        out
    }

    /// Entries, in file order, with their line index.
    fn entries(&self) -> impl Iterator<Item = (usize, &Vec<Vec<u8>>)> {
        self.lines.iter().enumerate().filter_map(|(i, l)| l.fields.as_ref().map(|f| (i, f)))
    }

    /// Index of the first entry named `name` (first match wins, as in libc).
    pub fn find_name(&self, name: &str) -> Option<usize> {
        self.entries().find(|(_, f)| f[0] == name.as_bytes()).map(|(i, _)| i)
    }

    /// Index of the first entry whose id column (uid for passwd, gid for
    /// group) equals `id`.
    pub fn find_id(&self, id: u32) -> Option<usize> {
        self.entries().find(|(_, f)| glibc_number(&f[2]) == Some(id)).map(|(i, _)| i)
    }

    /// Field `col` of the entry at line `idx` as text (lossy for odd bytes).
    pub fn field(&self, idx: usize, col: usize) -> String {
        match &self.lines[idx].fields {
            Some(f) => String::from_utf8_lossy(&f[col]).into_owned(),
            None => String::new(),
        }
    }

    /// The id in column `col` of the entry at `idx`, as glibc reads it.
    pub fn id_at(&self, idx: usize, col: usize) -> Option<u32> {
        self.lines[idx].fields.as_ref().and_then(|f| glibc_number(&f[col]))
    }

    /// Whether line `idx` is an entry.
    pub fn is_entry(&self, idx: usize) -> bool {
        self.lines.get(idx).is_some_and(|l| l.fields.is_some())
    }

    /// Number of lines (entries or not).
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Serialise line `idx` anew from its fields.
    fn reserialise(&mut self, idx: usize) {
        if let Some(fields) = &self.lines[idx].fields {
            self.lines[idx].raw = fields.join(&b':');
        }
        debug_assert_eq!(
            effective(&self.lines[idx].raw, true).and_then(|e| glibc_fields(self.kind, &e)),
            self.lines[idx].fields,
            "a re-serialised line must read back as its fields"
        );
    }

    /// Replace one field of the entry at `idx`; the line is re-serialised only
    /// if the value actually changes.
    pub fn set_field(&mut self, idx: usize, col: usize, value: &str) {
        let Some(fields) = self.lines[idx].fields.as_mut() else { return };
        if fields[col] == value.as_bytes() {
            return;
        }
        fields[col] = value.as_bytes().to_vec();
        self.reserialise(idx);
    }

    /// Insert a new entry before the first NIS `+`/`-` line (shadow-utils
    /// keeps them last), else at the end. Fields must already be validated
    /// (no `:`/newline).
    pub fn push(&mut self, fields: &[&str]) {
        debug_assert_eq!(fields.len(), self.kind.field_count());
        let fields: Vec<Vec<u8>> = fields.iter().map(|f| f.as_bytes().to_vec()).collect();
        let raw = fields.join(&b':');
        let line = Line { raw, fields: Some(fields) };
        match self.lines.iter().position(|l| matches!(l.raw.first(), Some(b'+') | Some(b'-'))) {
            Some(nis) => self.lines.insert(nis, line),
            None => {
                // `render` joins lines with '\n', so a file that had no final
                // newline gets one between its last line and ours, and ends
                // with one now; that last line is read again with it.
                self.final_newline = true;
                self.lines.push(line);
                if self.lines.len() >= 2 {
                    let prev = self.lines.len() - 2;
                    self.reread(prev);
                }
            }
        }
    }

    /// Remove the line at `idx`.
    pub fn remove(&mut self, idx: usize) {
        self.lines.remove(idx);
        if idx == self.lines.len() && idx > 0 {
            self.reread(idx - 1);
        }
    }

    /// Names of every entry, in file order.
    pub fn names(&self) -> Vec<String> {
        self.entries().map(|(_, f)| String::from_utf8_lossy(&f[0]).into_owned()).collect()
    }

    /// Indices of every entry named `name`, in file order.
    pub fn entries_named(&self, name: &str) -> Vec<usize> {
        self.entries().filter(|(_, f)| f[0] == name.as_bytes()).map(|(i, _)| i).collect()
    }

    /// Indices of every entry whose id column equals `id`.
    pub fn all_with_id(&self, col: usize, id: u32) -> Vec<usize> {
        self.entries().filter(|(_, f)| glibc_number(&f[col]) == Some(id)).map(|(i, _)| i).collect()
    }

    /// Member list of a group or gshadow entry (column 3; gshadow admins are
    /// column 2) as glibc reads it, as raw bytes: member names of other users
    /// may not be UTF-8 and must survive an edit of the list byte for byte.
    fn member_bytes(&self, idx: usize, col: usize) -> Vec<Vec<u8>> {
        match &self.lines[idx].fields {
            Some(f) if self.kind.member_columns().contains(&col) => split_members(&f[col]),
            _ => Vec::new(),
        }
    }

    /// Member names (lossy for odd bytes), for reading only.
    pub fn members(&self, idx: usize, col: usize) -> Vec<String> {
        self.member_bytes(idx, col).iter().map(|m| String::from_utf8_lossy(m).into_owned()).collect()
    }

    /// Replace a member column with `members` (bytes joined by commas).
    fn set_members(&mut self, idx: usize, col: usize, members: &[Vec<u8>]) {
        let Some(fields) = self.lines[idx].fields.as_mut() else { return };
        let joined = members.join(&b',');
        if fields[col] != joined {
            fields[col] = joined;
            self.reserialise(idx);
        }
    }

    /// Rename `old` to `new` in the member column `col` of every entry (group
    /// members, gshadow admins and members). Returns how many lines changed.
    pub fn rename_member(&mut self, col: usize, old: &str, new: &str) -> usize {
        let mut changed = 0;
        for idx in 0..self.lines.len() {
            let members = self.member_bytes(idx, col);
            if !members.iter().any(|m| m == old.as_bytes()) {
                continue;
            }
            let mut renamed: Vec<Vec<u8>> = Vec::new();
            for m in members {
                let m = if m == old.as_bytes() { new.as_bytes().to_vec() } else { m };
                if !renamed.contains(&m) {
                    renamed.push(m);
                }
            }
            self.set_members(idx, col, &renamed);
            changed += 1;
        }
        changed
    }

    /// Remove `name` from the member column `col` of every entry.
    pub fn remove_member(&mut self, col: usize, name: &str) {
        for idx in 0..self.lines.len() {
            let members = self.member_bytes(idx, col);
            if members.iter().any(|m| m == name.as_bytes()) {
                let kept: Vec<Vec<u8>> = members.into_iter().filter(|m| m != name.as_bytes()).collect();
                self.set_members(idx, col, &kept);
            }
        }
    }

    /// Add `name` to the member list (column `col`) of the entry at `idx`.
    pub fn add_member(&mut self, idx: usize, col: usize, name: &str) -> bool {
        let mut members = self.member_bytes(idx, col);
        if self.lines[idx].fields.is_none() || members.iter().any(|m| m == name.as_bytes()) {
            return false;
        }
        members.push(name.as_bytes().to_vec());
        self.set_members(idx, col, &members);
        true
    }

    /// Gids of every group whose member list names `user` (as glibc's
    /// `initgroups` finds them).
    pub fn groups_listing(&self, user: &str) -> Vec<u32> {
        if user.is_empty() || self.kind != Kind::Group {
            return Vec::new(); // an empty member list must not "name" anyone
        }
        self.entries()
            .filter(|(_, f)| split_members(&f[3]).iter().any(|m| m == user.as_bytes()))
            .filter_map(|(_, f)| glibc_number(&f[2]))
            .collect()
    }

    /// The line at `idx` for a message: 1-based number and its text, escaped
    /// and cut to 80 characters.
    pub fn describe(&self, idx: usize) -> String {
        let raw = &self.lines[idx].raw;
        let mut text: String =
            raw.iter().take(80).flat_map(|b| std::ascii::escape_default(*b)).map(char::from).collect();
        if raw.len() > 80 {
            text.push('…');
        }
        format!("{} line {} (\"{text}\")", self.kind.path(), idx + 1)
    }
}

/// The four files as read from one root. Shadow files are optional (Alpine
/// without shadow, distroless trees).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    pub passwd: Table,
    pub group: Table,
    pub shadow: Option<Table>,
    pub gshadow: Option<Table>,
}

impl Database {
    /// The tables in write order: group, gshadow, passwd, shadow. (Files are
    /// committed together through a journal, see `files`; the order only
    /// matters to a reader between two renames.)
    pub fn in_write_order(&self) -> Vec<&Table> {
        let mut v = vec![&self.group];
        v.extend(self.gshadow.as_ref());
        v.push(&self.passwd);
        v.extend(self.shadow.as_ref());
        v
    }
}

#[cfg(test)]
mod tests {
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
    fn plain_ids_for_writing() {
        for bad in [&b""[..], b"-1", b"+5", b" 5", b"1e3", b"0x10", b"99999999999"] {
            assert_eq!(parse_id(bad), None, "{bad:?}");
        }
        assert_eq!(parse_id(b"4294967295"), Some(u32::MAX));
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
        assert_eq!(
            t.render(),
            b"root:x:0:0::/root:/bin/sh\nalice:x:5:5::/home/alice:/bin/sh\n+@staff::::::\n+\n".to_vec()
        );
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
        for edit in 0..3 {
            let mut t = Table::parse(Kind::Group, b"adm:x:4:caf\xe9,ubuntu\n");
            match edit {
                0 => assert_eq!(t.rename_member(3, "ubuntu", "alice"), 1),
                1 => t.remove_member(3, "ubuntu"),
                _ => assert!(t.add_member(0, 3, "alice")),
            }
            let want: &[u8] = match edit {
                0 => b"adm:x:4:caf\xe9,alice\n",
                1 => b"adm:x:4:caf\xe9\n",
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
}
