//! Editing a table (fields, lines, member lists) and reading member lists.
//! An edited line is serialised anew from the fields glibc read; the file's
//! other bytes stay.

use std::collections::HashSet;

#[cfg(debug_assertions)]
use super::glibc::{effective, glibc_fields};
use super::glibc::{glibc_number, members};
use super::{Added, Kind, Table};

impl Table {
    fn set_raw(&mut self, h: usize, raw: Vec<u8>) {
        let n = self.base.len();
        if h < n {
            self.changed.insert(h as u32, Some(raw.into()));
        } else if let Some(a) = self.added.iter_mut().find(|a| a.id as usize + n == h) {
            a.raw = Some(raw.into());
        }
    }

    /// Set column `col` of entry `idx` to `value`, serialising the line anew
    /// from the fields glibc read, if the value changes.
    fn set_bytes(&mut self, idx: usize, col: usize, value: &[u8]) {
        let kind = self.kind;
        let Some(Some(line)) = self.read(idx, |f| (f[col] != *value).then(|| f.join_with(kind, col, value))) else {
            return;
        };
        #[cfg(debug_assertions)]
        let want = self.read(idx, |f| {
            let mut v = f.to_vecs(kind);
            v[col] = value.to_vec();
            v
        });
        self.set_raw(idx, line);
        #[cfg(debug_assertions)]
        {
            let raw = self.raw(idx).unwrap_or_default();
            let got = effective(raw, true, true).and_then(|e| glibc_fields(kind, &e).map(|f| f.to_vecs(kind)));
            debug_assert_eq!(got, want, "a re-serialised line must read back as its fields");
        }
    }

    /// Replace one field of the entry at `idx`; the line is re-serialised only
    /// if the value actually changes.
    pub fn set_field(&mut self, idx: usize, col: usize, value: &str) {
        self.set_bytes(idx, col, value.as_bytes());
    }

    /// The first line in file order that starts with `+` or `-`.
    fn first_nis(&self) -> Option<usize> {
        let is_nis = |raw: &[u8]| matches!(raw.first(), Some(b'+') | Some(b'-'));
        let mut c: Vec<usize> = self.base.nis.iter().map(|k| *k as usize).collect();
        c.extend(self.changed.keys().map(|k| *k as usize));
        c.extend(self.added.iter().map(|a| self.base.len() + a.id as usize));
        c.into_iter().filter(|&h| self.raw(h).is_some_and(is_nis)).min_by_key(|&h| self.position(h))
    }

    /// Insert a new entry before the first NIS `+`/`-` line (shadow-utils
    /// keeps them last), else at the end. Fields must already be validated
    /// (no `:`/newline).
    pub fn push(&mut self, fields: &[&str]) {
        debug_assert_eq!(fields.len(), self.kind.field_count());
        let raw: Box<[u8]> = fields.join(":").into_bytes().into();
        let n = self.base.len();
        let id = self.added.len() as u32;
        let (at, anchor) = match self.first_nis() {
            Some(h) if h < n => (self.added.iter().position(|a| a.anchor as usize > h).unwrap_or(self.added.len()), h),
            Some(h) => {
                let i = self.position(h).2;
                (i, self.added[i].anchor as usize)
            }
            None => {
                // The rendering joins lines with '\n', so a file that had no
                // final newline gets one between its last line and ours, and
                // ends with one now.
                self.final_newline = true;
                (self.added.len(), n)
            }
        };
        self.added.insert(at, Added { id, anchor: anchor as u32, raw: Some(raw) });
    }

    /// Remove the line at `idx`.
    pub fn remove(&mut self, idx: usize) {
        let n = self.base.len();
        if idx < n {
            self.changed.insert(idx as u32, None);
        } else if let Some(a) = self.added.iter_mut().find(|a| a.id as usize + n == idx) {
            a.raw = None;
        }
    }

    /// Names of every entry, in file order.
    pub fn names(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.each_entry_with(b"", |_, f| out.push(String::from_utf8_lossy(&f[0]).into_owned()));
        out
    }

    /// Indices of every entry named `name`, in file order.
    pub(crate) fn entries_named(&self, name: &str) -> Vec<usize> {
        self.named(name.as_bytes()).collect()
    }

    /// Indices of every entry whose id column equals `id` (column 2 through
    /// the index; another column by reading every line).
    pub(crate) fn all_with_id(&self, col: usize, id: u32) -> Vec<usize> {
        if col == 2 && self.kind.has_ids() {
            self.with_id(id)
        } else {
            self.scan_id(col, id)
        }
    }

    /// Member list of a group or gshadow entry (column 3; gshadow admins are
    /// column 2) as glibc reads it, as raw bytes: member names of other users
    /// may not be UTF-8 and must survive an edit of the list byte for byte.
    fn member_bytes(&self, idx: usize, col: usize) -> Vec<Vec<u8>> {
        let list = self.kind.member_columns().contains(&col);
        self.read(idx, |f| if list { members(&f[col]).map(<[u8]>::to_vec).collect() } else { Vec::new() })
            .unwrap_or_default()
    }

    /// Member names (lossy for odd bytes), for reading only.
    pub fn members(&self, idx: usize, col: usize) -> Vec<String> {
        self.member_bytes(idx, col).iter().map(|m| String::from_utf8_lossy(m).into_owned()).collect()
    }

    /// Every entry whose member column `col` names `name`, with its members.
    fn listing(&self, col: usize, name: &[u8]) -> Vec<(usize, Vec<Vec<u8>>)> {
        let mut out = Vec::new();
        if !self.kind.member_columns().contains(&col) || name.is_empty() {
            return out;
        }
        self.each_entry_with(name, |h, f| {
            if members(&f[col]).any(|m| m == name) {
                out.push((h, members(&f[col]).map(<[u8]>::to_vec).collect()));
            }
        });
        out
    }

    /// Rename `old` to `new` in the member column `col` of every entry (group
    /// members, gshadow admins and members). Returns how many lines changed.
    pub fn rename_member(&mut self, col: usize, old: &str, new: &str) -> usize {
        let found = self.listing(col, old.as_bytes());
        for (idx, members) in &found {
            let mut seen = HashSet::new();
            let renamed: Vec<&[u8]> = members
                .iter()
                .map(|m| if m == old.as_bytes() { new.as_bytes() } else { m })
                .filter(|m| seen.insert(*m))
                .collect();
            self.set_bytes(*idx, col, &renamed.join(&b','));
        }
        found.len()
    }

    /// Add `name` to the member list (column `col`) of the entry at `idx`.
    pub fn add_member(&mut self, idx: usize, col: usize, name: &str) -> bool {
        let mut members = self.member_bytes(idx, col);
        if !self.is_entry(idx) || members.iter().any(|m| m == name.as_bytes()) {
            return false;
        }
        members.push(name.as_bytes().to_vec());
        self.set_bytes(idx, col, &members.join(&b','));
        true
    }

    /// Gids of every group whose member list names `user` (as glibc's
    /// `initgroups` finds them).
    pub fn groups_listing(&self, user: &str) -> Vec<u32> {
        if user.is_empty() || self.kind != Kind::Group {
            return Vec::new(); // an empty member list must not "name" anyone
        }
        let mut out = Vec::new();
        self.each_entry_with(user.as_bytes(), |_, f| {
            if members(&f[3]).any(|m| m == user.as_bytes()) {
                out.extend(glibc_number(&f[2]));
            }
        });
        out
    }
}
