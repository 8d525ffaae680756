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
//! **Linear in the size of the files.** A table keeps the file's bytes as
//! read, shared by every copy (`clone` is cheap), plus its edits; lookups by
//! name and id go through an index built once per file ([`index`]), and the
//! new content is streamed as the unchanged spans of the old bytes around
//! the edited lines ([`Table::pieces`]). Nothing is copied per line.
//!
//! Every line keeps its original bytes until it is edited. An edited line is
//! serialised anew from the fields glibc read (so a CRLF line that is renamed
//! keeps glibc's meaning of every field it does not change), and a new line is
//! inserted before the first NIS `+`/`-` line, as shadow-utils does.

mod base;
mod edit;
mod glibc;
pub(crate) use glibc::same_bytes;
mod index;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use base::Base;
pub(crate) use glibc::glibc_number;
use glibc::{contains, effective, glibc_fields, Fields};
use index::{hash_bytes, hash_id};

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

    /// Whether column 2 is an id that lookups by id use (uid, gid).
    fn has_ids(self) -> bool {
        matches!(self, Kind::Passwd | Kind::Group)
    }
}

#[cfg(test)]
thread_local! {
    /// Lines parsed on this thread: tests prove planning reads each line of
    /// the files O(1) times, whatever their size.
    pub(crate) static LINES_READ: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn count_line_read() {
    #[cfg(test)]
    LINES_READ.with(|c| c.set(c.get() + 1));
}

/// A line labinit added.
#[derive(Clone)]
struct Added {
    /// Its handle is the base's line count plus this.
    id: u32,
    /// It stands before this line of the base (its line count: at the end).
    anchor: u32,
    /// `None` once removed.
    raw: Option<Box<[u8]>>,
}

/// One stretch of the table in file order.
enum Seg<'a> {
    /// Base lines `a..b`, unedited.
    Run(usize, usize),
    /// One edited or added line: its handle and bytes.
    Line(usize, &'a [u8]),
}

/// A parsed account file: the bytes as read plus the edits made since.
/// `render()` of an unedited table returns the input.
///
/// Lines are named by handles (`usize`): for a table as parsed, the line
/// number from 0; a line keeps its handle when others are added or removed.
#[derive(Clone)]
pub struct Table {
    kind: Kind,
    base: Arc<Base>,
    /// Base lines edited (`Some`: the new bytes) or removed (`None`).
    changed: BTreeMap<u32, Option<Box<[u8]>>>,
    /// Lines added, in file order.
    added: Vec<Added>,
    /// Whether the rendering ends with a newline (kept as it was read; an
    /// added last line gets one).
    final_newline: bool,
}

impl Table {
    /// Parse `data` (see [`Table::from_vec`]).
    pub fn parse(kind: Kind, data: &[u8]) -> Table {
        Table::from_vec(kind, data.to_vec())
    }

    /// Parse a file's bytes, which the table keeps (no copy). Files of 4 GiB
    /// and more are not account files; the caller refuses them.
    pub(crate) fn from_vec(kind: Kind, data: Vec<u8>) -> Table {
        let final_newline = data.last() == Some(&b'\n');
        let body = data.len() - usize::from(final_newline);
        let (starts, nul_bytes) = glibc::line_starts(&data);
        let nis = (starts.iter().enumerate())
            .filter(|(_, s)| matches!(data.get(**s as usize), Some(b'+') | Some(b'-')) && (**s as usize) < body)
            .map(|(k, _)| k as u32)
            .collect();
        let mut base = Base {
            kind,
            data,
            starts,
            final_newline,
            nis,
            nul: Vec::new(),
            names: OnceLock::new(),
            ids: OnceLock::new(),
        };
        let mut nul: Vec<u32> = nul_bytes.iter().map(|p| base.line_at(*p) as u32).collect();
        nul.dedup();
        base.nul = nul;
        Table {
            kind,
            final_newline: final_newline || base.data.is_empty(),
            base: Arc::new(base),
            changed: BTreeMap::new(),
            added: Vec::new(),
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The bytes as read, when nothing was edited since.
    pub(crate) fn as_read(&self) -> Option<&[u8]> {
        (self.changed.is_empty() && self.added.is_empty() && self.final_newline == self.read_final_newline())
            .then_some(&self.base.data[..])
    }

    fn read_final_newline(&self) -> bool {
        self.base.final_newline || self.base.data.is_empty()
    }

    /// The table in file order, as stretches of unedited lines and single
    /// edited or added lines: O(edits), whatever the size of the file.
    fn segments(&self) -> Vec<Seg<'_>> {
        let n = self.base.len();
        let mut out = Vec::new();
        let mut changed = self.changed.iter().peekable();
        let mut added = self.added.iter().peekable();
        let mut k = 0;
        loop {
            let next_changed = changed.peek().map_or(n, |(c, _)| **c as usize);
            let next_added = added.peek().map_or(n, |a| a.anchor as usize);
            let stop = next_changed.min(next_added).min(n);
            if k < stop {
                out.push(Seg::Run(k, stop));
                k = stop;
            }
            while let Some(a) = added.next_if(|a| a.anchor as usize == k) {
                if let Some(raw) = &a.raw {
                    out.push(Seg::Line(n + a.id as usize, raw));
                }
            }
            if k >= n {
                return out;
            }
            if next_changed == k {
                if let Some((_, Some(raw))) = changed.next() {
                    out.push(Seg::Line(k, raw));
                }
                k += 1;
            }
        }
    }

    /// The content as slices whose concatenation is [`Table::render`]: the
    /// unchanged stretches of the file as read, and the edited lines.
    pub(crate) fn pieces(&self) -> Vec<&[u8]> {
        let segs = self.segments();
        let mut out = Vec::with_capacity(segs.len() * 2);
        for (i, seg) in segs.iter().enumerate() {
            let newline = i + 1 < segs.len() || self.final_newline;
            let extra = match *seg {
                Seg::Run(a, b) => {
                    let (span, extra) = self.base.span(a, b, newline);
                    out.push(span);
                    extra
                }
                Seg::Line(_, raw) => {
                    out.push(raw);
                    newline
                }
            };
            if extra {
                out.push(b"\n");
            }
        }
        out
    }

    pub fn render(&self) -> Vec<u8> {
        self.pieces().concat()
    }

    /// Whether both tables render the same bytes (without rendering them).
    pub(crate) fn same_content(&self, other: &Table) -> bool {
        if Arc::ptr_eq(&self.base, &other.base) && self.as_read().is_some() && other.as_read().is_some() {
            return true;
        }
        let (a, b) = (self.pieces(), other.pieces());
        if a.iter().map(|p| p.len()).sum::<usize>() != b.iter().map(|p| p.len()).sum::<usize>() {
            return false;
        }
        let (mut a, mut b) = (a.into_iter().flat_map(|p| p.chunks(4096)), b.into_iter().flat_map(|p| p.chunks(4096)));
        let (mut x, mut y): (&[u8], &[u8]) = (&[], &[]);
        loop {
            if x.is_empty() {
                x = a.next().unwrap_or_default();
            }
            if y.is_empty() {
                y = b.next().unwrap_or_default();
            }
            if x.is_empty() || y.is_empty() {
                return x.is_empty() && y.is_empty();
            }
            let m = x.len().min(y.len());
            if !glibc::same_bytes(&x[..m], &y[..m]) {
                return false;
            }
            (x, y) = (&x[m..], &y[m..]);
        }
    }

    /// Calls `f(handle, bytes, has_newline)` for every line in file order.
    fn each_line(&self, mut f: impl FnMut(usize, &[u8], bool)) {
        let segs = self.segments();
        for (i, seg) in segs.iter().enumerate() {
            let more = i + 1 < segs.len();
            match *seg {
                Seg::Run(a, b) => {
                    for k in a..b {
                        count_line_read();
                        f(k, self.base.line(k), more || k + 1 < b || self.final_newline);
                    }
                }
                Seg::Line(h, raw) => {
                    count_line_read();
                    f(h, raw, more || self.final_newline)
                }
            }
        }
    }

    /// Calls `f(handle, fields)` for every entry (in file order) whose bytes
    /// contain `needle`. The unedited stretches are searched as a whole (one
    /// pass over the bytes, not a parse of every line); only the lines that
    /// hold `needle`, have a NUL, or end a stretch are parsed.
    fn each_entry_with(&self, needle: &[u8], mut f: impl FnMut(usize, &Fields)) {
        let kind = self.kind;
        let mut visit = |h: usize, raw: &[u8], newline: bool| {
            count_line_read();
            let Some(eff) = effective(raw, newline, true) else { return };
            if contains(&eff, needle) {
                if let Some(fields) = glibc_fields(kind, &eff) {
                    f(h, &fields);
                }
            }
        };
        let base = &self.base;
        let segs = self.segments();
        for (i, seg) in segs.iter().enumerate() {
            let more = i + 1 < segs.len();
            match *seg {
                Seg::Run(a, b) if !needle.is_empty() => {
                    let (start, end) = (base.starts[a] as usize, base.line_end(b - 1));
                    let mut lines = Vec::new();
                    glibc::find_all(&base.data[start..end], needle, |at| lines.push(base.line_at(start + at)));
                    let nul = &base.nul[base.nul.partition_point(|k| (*k as usize) < a)..];
                    lines.extend(nul.iter().map(|k| *k as usize).take_while(|k| *k < b));
                    lines.push(b - 1);
                    lines.sort_unstable();
                    lines.dedup();
                    for k in lines {
                        visit(k, base.line(k), more || k + 1 < b || self.final_newline);
                    }
                }
                Seg::Run(a, b) => {
                    for k in a..b {
                        visit(k, base.line(k), more || k + 1 < b || self.final_newline);
                    }
                }
                Seg::Line(h, raw) => visit(h, raw, more || self.final_newline),
            }
        }
    }

    /// The bytes of the line with handle `h` (`None`: removed or unknown).
    fn raw(&self, h: usize) -> Option<&[u8]> {
        let n = self.base.len();
        if h < n {
            match self.changed.get(&(h as u32)) {
                Some(edited) => edited.as_deref(),
                None => Some(self.base.line(h)),
            }
        } else {
            self.added.iter().find(|a| a.id as usize == h - n)?.raw.as_deref()
        }
    }

    /// The handle of the last line in file order.
    fn last(&self) -> Option<usize> {
        let n = self.base.len();
        let added_at = |k: usize| self.added.iter().rev().find(|a| a.anchor as usize == k && a.raw.is_some());
        if let Some(a) = added_at(n) {
            return Some(n + a.id as usize);
        }
        for k in (0..n).rev() {
            if !matches!(self.changed.get(&(k as u32)), Some(None)) {
                return Some(k);
            }
            if let Some(a) = added_at(k) {
                return Some(n + a.id as usize);
            }
        }
        None
    }

    /// Where the line with handle `h` stands, for ordering handles.
    fn position(&self, h: usize) -> (usize, u8, usize) {
        let n = self.base.len();
        match self.added.iter().position(|a| a.id as usize + n == h) {
            Some(i) if h >= n => (self.added[i].anchor as usize, 0, i),
            _ => (h, 1, 0),
        }
    }

    /// `f` of the fields glibc reads from line `h`; `None` if it is no entry.
    fn read<R>(&self, h: usize, f: impl FnOnce(&Fields) -> R) -> Option<R> {
        count_line_read();
        let raw = self.raw(h)?;
        let newline = self.final_newline || self.last() != Some(h);
        let eff = effective(raw, newline, true)?;
        glibc_fields(self.kind, &eff).map(|fields| f(&fields))
    }

    /// The lines that may match a lookup: `indexed` (from the index of the
    /// file as read) and every line read differently since (edited, added,
    /// or whose newline came or went), in file order.
    fn candidates(&self, indexed: impl Iterator<Item = u32>) -> Vec<usize> {
        let n = self.base.len();
        let mut c: Vec<usize> = indexed.map(|l| l as usize).collect();
        c.extend(self.changed.iter().filter(|(_, v)| v.is_some()).map(|(k, _)| *k as usize));
        c.extend(self.added.iter().filter(|a| a.raw.is_some()).map(|a| n + a.id as usize));
        c.extend(n.checked_sub(1));
        c.extend(self.last());
        c.sort_by_key(|&h| self.position(h));
        c.dedup();
        c
    }

    /// Handles of the entries named `name`, in file order (through the index).
    fn named(&self, name: &[u8]) -> impl Iterator<Item = usize> + '_ {
        let name = name.to_vec();
        let c = self.candidates(self.base.names().get(hash_bytes(&name)));
        c.into_iter().filter(move |&h| self.read(h, |f| f[0] == name[..]) == Some(true))
    }

    /// Handles of the entries whose id column (2) is `id`, in file order.
    fn with_id(&self, id: u32) -> Vec<usize> {
        let matches = |h: usize| self.read(h, |f| glibc_number(&f[2]) == Some(id)) == Some(true);
        if self.kind.has_ids() {
            self.candidates(self.base.ids().get(hash_id(id))).into_iter().filter(|&h| matches(h)).collect()
        } else {
            self.scan_id(2, id)
        }
    }

    fn scan_id(&self, col: usize, id: u32) -> Vec<usize> {
        let mut out = Vec::new();
        let kind = self.kind;
        self.each_line(|h, raw, newline| {
            let eff = effective(raw, newline, true);
            if eff.and_then(|e| glibc_fields(kind, &e).map(|f| glibc_number(&f[col]) == Some(id))) == Some(true) {
                out.push(h);
            }
        });
        out
    }

    /// Index of the first entry named `name` (first match wins, as in libc).
    pub fn find_name(&self, name: &str) -> Option<usize> {
        self.named(name.as_bytes()).next()
    }

    /// Index of the first entry whose id column (uid for passwd, gid for
    /// group) equals `id`.
    pub fn find_id(&self, id: u32) -> Option<usize> {
        self.with_id(id).first().copied()
    }

    /// The entries (handle, id) whose id column satisfies `pred`, in file
    /// order: through the index, so only the matching lines are read.
    pub(crate) fn ids_where(&self, pred: impl Fn(u32) -> bool) -> Vec<(usize, u32)> {
        let c = self.candidates(self.base.ids().all_ids().filter(|(_, id)| pred(*id)).map(|(l, _)| l));
        c.into_iter().filter_map(|h| self.id_at(h, 2).filter(|id| pred(*id)).map(|id| (h, id))).collect()
    }

    /// Field `col` of the entry at `idx` as bytes.
    pub(crate) fn field_bytes(&self, idx: usize, col: usize) -> Option<Vec<u8>> {
        self.read(idx, |f| f[col].to_vec())
    }

    /// The first entry named `name`, for a name as read from a file.
    pub(crate) fn find_name_bytes(&self, name: &[u8]) -> Option<usize> {
        self.named(name).next()
    }

    /// Field `col` of the entry at line `idx` as text (lossy for odd bytes).
    pub fn field(&self, idx: usize, col: usize) -> String {
        self.read(idx, |f| String::from_utf8_lossy(&f[col]).into_owned()).unwrap_or_default()
    }

    /// The id in column `col` of the entry at `idx`, as glibc reads it.
    pub fn id_at(&self, idx: usize, col: usize) -> Option<u32> {
        self.read(idx, |f| glibc_number(&f[col])).flatten()
    }

    /// Whether line `idx` is an entry.
    pub fn is_entry(&self, idx: usize) -> bool {
        self.read(idx, |_| ()).is_some()
    }

    /// The number of handles: lines are `0..len()` (in file order for a
    /// table as parsed; removed lines are no entries).
    pub fn len(&self) -> usize {
        self.base.len() + self.added.len()
    }

    /// Whether the table has no line at all.
    pub fn is_empty(&self) -> bool {
        self.segments().is_empty()
    }

    /// The line at `idx` for a message: 1-based number and its text, escaped
    /// and cut to 80 characters.
    pub(crate) fn describe(&self, idx: usize) -> String {
        let mut number = 0;
        for seg in self.segments() {
            match seg {
                Seg::Run(a, b) if (a..b).contains(&idx) => {
                    number += idx - a;
                    break;
                }
                Seg::Run(a, b) => number += b - a,
                Seg::Line(h, _) if h == idx => break,
                Seg::Line(..) => number += 1,
            }
        }
        let raw: Cow<[u8]> = self.raw(idx).map_or(Cow::Borrowed(&[]), Cow::Borrowed);
        let mut text: String =
            raw.iter().take(80).flat_map(|b| std::ascii::escape_default(*b)).map(char::from).collect();
        if raw.len() > 80 {
            text.push('…');
        }
        format!("{} line {} (\"{text}\")", self.kind.path(), number + 1)
    }
}

impl PartialEq for Table {
    /// Same kind, same bytes.
    fn eq(&self, other: &Table) -> bool {
        self.kind == other.kind && self.same_content(other)
    }
}

impl Eq for Table {}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("kind", &self.kind)
            .field("text", &String::from_utf8_lossy(&self.render()))
            .finish()
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
