//! The account database: `/etc/passwd`, `/etc/group`, `/etc/shadow` and
//! `/etc/gshadow` as text, parsed and edited without libc (no NSS, no
//! `getpwnam`). Owns parsing and serialising only; deciding what to change is
//! `provision`'s job and writing files is `files`'.
//!
//! Every line keeps its original bytes. Only lines that are edited or added are
//! serialised anew, so comments, NIS `+`/`-` entries, CRLF endings, Latin-1
//! GECOS fields and malformed lines survive byte for byte. A line is an entry
//! only if it has exactly the kind's field count, a valid name, and (for
//! passwd/group) ids of plain ASCII digits; anything else never matches a
//! lookup, so a malformed line can never be read as id 0.

/// Which account file a table holds; fixes the field count and id columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

    /// Columns that must hold a numeric id.
    fn id_columns(self) -> &'static [usize] {
        match self {
            Kind::Passwd => &[2, 3],
            Kind::Group => &[2],
            Kind::Shadow | Kind::Gshadow => &[],
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
}

/// One line of an account file: its original bytes, and its fields when it
/// is a well-formed entry.
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

/// Parse a decimal id the way labinit accepts it: ASCII digits only, no sign,
/// no whitespace, within u32.
pub fn parse_id(field: &[u8]) -> Option<u32> {
    if field.is_empty() || field.len() > 10 || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(field).ok()?.parse().ok()
}

fn is_entry_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name[0] != b'+'
        && name[0] != b'-'
        && name[0] != b'#'
        && !name.iter().any(|b| b.is_ascii_whitespace())
}

fn parse_line(kind: Kind, raw: &[u8]) -> Option<Vec<Vec<u8>>> {
    if raw.contains(&b'\r') || raw.contains(&0) {
        return None;
    }
    let fields: Vec<Vec<u8>> = raw.split(|b| *b == b':').map(<[u8]>::to_vec).collect();
    if fields.len() != kind.field_count() || !is_entry_name(&fields[0]) {
        return None;
    }
    if kind.id_columns().iter().any(|&c| parse_id(&fields[c]).is_none()) {
        return None;
    }
    Some(fields)
}

impl Table {
    pub fn parse(kind: Kind, data: &[u8]) -> Table {
        let final_newline = data.last() == Some(&b'\n');
        let body = if final_newline { &data[..data.len() - 1] } else { data };
        let lines = if data.is_empty() {
            Vec::new()
        } else {
            body.split(|b| *b == b'\n').map(|raw| Line { raw: raw.to_vec(), fields: parse_line(kind, raw) }).collect()
        };
        Table { kind, lines, final_newline: final_newline || data.is_empty() }
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

    /// Well-formed entries, in file order, with their line index.
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
        self.entries().find(|(_, f)| parse_id(&f[2]) == Some(id)).map(|(i, _)| i)
    }

    /// Field `col` of the entry at line `idx` as text (lossy for odd bytes).
    pub fn field(&self, idx: usize, col: usize) -> String {
        match &self.lines[idx].fields {
            Some(f) => String::from_utf8_lossy(&f[col]).into_owned(),
            None => String::new(),
        }
    }

    pub fn id_at(&self, idx: usize, col: usize) -> Option<u32> {
        self.lines[idx].fields.as_ref().and_then(|f| parse_id(&f[col]))
    }

    /// Replace one field of the entry at `idx`; the line is re-serialised only
    /// if the value actually changes.
    pub fn set_field(&mut self, idx: usize, col: usize, value: &str) {
        let line = &mut self.lines[idx];
        let Some(fields) = line.fields.as_mut() else { return };
        if fields[col] == value.as_bytes() {
            return;
        }
        fields[col] = value.as_bytes().to_vec();
        line.raw = fields.join(&b':');
    }

    /// Append a new entry. Fields must already be validated (no `:`/newline).
    pub fn push(&mut self, fields: &[&str]) {
        debug_assert_eq!(fields.len(), self.kind.field_count());
        let fields: Vec<Vec<u8>> = fields.iter().map(|f| f.as_bytes().to_vec()).collect();
        let raw = fields.join(&b':');
        // `render` joins lines with '\n', so a file that had no final newline
        // gets one between its last line and ours, and ends with one now.
        self.final_newline = true;
        self.lines.push(Line { raw, fields: Some(fields) });
    }

    /// Remove the entry at `idx`.
    pub fn remove(&mut self, idx: usize) {
        self.lines.remove(idx);
    }

    /// Names of every entry, in file order.
    pub fn names(&self) -> Vec<String> {
        self.entries().map(|(_, f)| String::from_utf8_lossy(&f[0]).into_owned()).collect()
    }

    /// Line indices of the entries whose name is not in `names`.
    pub fn entries_not_named(&self, names: &[String]) -> Vec<usize> {
        self.entries().filter(|(_, f)| !names.iter().any(|n| n.as_bytes() == f[0].as_slice())).map(|(i, _)| i).collect()
    }

    /// Indices of every entry whose id column equals `id`.
    pub fn all_with_id(&self, col: usize, id: u32) -> Vec<usize> {
        self.entries().filter(|(_, f)| parse_id(&f[col]) == Some(id)).map(|(i, _)| i).collect()
    }

    /// Member list of a group or gshadow entry (column 3; gshadow admins are
    /// column 2), as raw bytes: member names of other users may not be UTF-8
    /// and must survive an edit of the list byte for byte.
    fn member_bytes(&self, idx: usize, col: usize) -> Vec<Vec<u8>> {
        match &self.lines[idx].fields {
            Some(f) => f[col].split(|b| *b == b',').filter(|m| !m.is_empty()).map(<[u8]>::to_vec).collect(),
            None => Vec::new(),
        }
    }

    /// Member names (lossy for odd bytes), for reading only.
    pub fn members(&self, idx: usize, col: usize) -> Vec<String> {
        self.member_bytes(idx, col).iter().map(|m| String::from_utf8_lossy(m).into_owned()).collect()
    }

    /// Replace a member column with `members` (bytes joined by commas).
    fn set_members(&mut self, idx: usize, col: usize, members: &[Vec<u8>]) {
        let line = &mut self.lines[idx];
        let Some(fields) = line.fields.as_mut() else { return };
        let joined = members.join(&b',');
        if fields[col] != joined {
            fields[col] = joined;
            line.raw = fields.join(&b':');
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

    /// Gids of every group whose member list names `user`.
    pub fn groups_listing(&self, user: &str) -> Vec<u32> {
        if user.is_empty() {
            return Vec::new(); // an empty member list must not "name" anyone
        }
        self.entries()
            .filter(|(_, f)| f[3].split(|b| *b == b',').any(|m| m == user.as_bytes()))
            .filter_map(|(_, f)| parse_id(&f[2]))
            .collect()
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
    /// The tables in write order: group, gshadow, passwd, shadow. A crash
    /// between two writes then leaves a group without its user, which the
    /// next start completes, never a user whose group is missing.
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
    fn quirks_survive_round_trip_and_never_match() {
        let data = b"# c\nroot:x:0:0:root:/root:/bin/sh\n+@ng::::::\n-x::::::\nzero::0:0\nbob:x:1:1::/h:/bin/sh\r\nbad:x:1e3:0::/:/bin/sh\nend:x:7:7::/:/bin/sh";
        let t = Table::parse(Kind::Passwd, data);
        assert_eq!(t.render(), data.to_vec());
        assert_eq!(t.names(), vec!["root", "end"]);
        assert_eq!(t.find_id(1), None, "CRLF line must not match");
        assert_eq!(t.find_name("zero"), None, "short line must not match");
        assert_eq!(t.find_id(0).map(|i| t.field(i, 0)), Some("root".into()));
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
    fn ids_are_plain_decimal() {
        for bad in [&b""[..], b"-1", b"+5", b" 5", b"1e3", b"0x10", b"99999999999"] {
            assert_eq!(parse_id(bad), None, "{bad:?}");
        }
        assert_eq!(parse_id(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_id(b"4294967296"), None);
    }
}
