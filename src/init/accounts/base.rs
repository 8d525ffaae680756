//! One account file as read: its bytes, where its lines start, and its
//! lookup indexes, built on the first lookup in one pass over the bytes.

use std::borrow::Cow;
use std::sync::OnceLock;

use super::glibc::{self, effective, glibc_number};
use super::index::{hash_bytes, hash_id, Lines};
use super::{count_line_read, Kind};

/// A file as read: its bytes, where each line starts, and its indexes
/// (each built on its first lookup). Shared by every copy of a table, never
/// changed.
pub(super) struct Base {
    pub(super) kind: Kind,
    pub(super) data: Vec<u8>,
    /// Offset of every line's first byte (lines are split on `\n`).
    pub(super) starts: Vec<u32>,
    /// Whether the data ends with a newline.
    pub(super) final_newline: bool,
    /// Lines whose first byte is `+` or `-` (NIS compat lines).
    pub(super) nis: Vec<u32>,
    /// Lines with a NUL byte (glibc cuts them there).
    pub(super) nul: Vec<u32>,
    /// Every line that may be an entry, under the hash of its name.
    pub(super) names: OnceLock<Lines>,
    /// Every line that may be an entry, under its id (passwd, group).
    pub(super) ids: OnceLock<Lines>,
}

impl Base {
    pub(super) fn len(&self) -> usize {
        self.starts.len()
    }

    /// Where line `k` ends (its newline, or the end of the data).
    pub(super) fn line_end(&self, k: usize) -> usize {
        match self.starts.get(k + 1) {
            Some(next) => *next as usize - 1,
            None => self.data.len() - usize::from(self.final_newline),
        }
    }

    /// Line `k` without its newline.
    pub(super) fn line(&self, k: usize) -> &[u8] {
        &self.data[self.starts[k] as usize..self.line_end(k)]
    }

    /// The line holding byte `offset`.
    pub(super) fn line_at(&self, offset: usize) -> usize {
        self.starts.partition_point(|s| *s as usize <= offset).saturating_sub(1)
    }

    /// Lines `a..b` and, with `newline`, the newline after the last one when
    /// the data has it (the flag returned: a newline is still to add).
    pub(super) fn span(&self, a: usize, b: usize, newline: bool) -> (&[u8], bool) {
        let (start, end) = (self.starts[a] as usize, self.line_end(b - 1));
        if newline && end < self.data.len() {
            (&self.data[start..=end], false)
        } else {
            (&self.data[start..end], newline)
        }
    }

    /// What glibc parses of base line `k` read as it is in the file.
    pub(super) fn effective(&self, k: usize) -> Option<Cow<'_, [u8]>> {
        let has_newline = k + 1 < self.len() || self.final_newline;
        effective(self.line(k), has_newline, self.nul.binary_search(&(k as u32)).is_ok())
    }

    /// Calls `f(line, effective line)` for every base line that may be an
    /// entry (not blank, no comment, no NIS name); lookups check the line.
    pub(super) fn each_candidate(&self, mut f: impl FnMut(u32, &[u8])) {
        for k in 0..self.len() {
            count_line_read();
            if let Some(eff) = self.effective(k) {
                if !matches!(eff.first(), Some(b'+') | Some(b'-')) {
                    f(k as u32, &eff);
                }
            }
        }
    }

    pub(super) fn names(&self) -> &Lines {
        if self.kind.has_ids() {
            self.build();
        }
        self.names.get_or_init(|| {
            let mut names = Lines::new(self.len(), false);
            self.each_candidate(|k, eff| {
                names.insert(hash_bytes(&eff[..glibc::find_byte(eff, b':').unwrap_or(eff.len())]), k, 0)
            });
            names
        })
    }

    pub(super) fn ids(&self) -> &Lines {
        if self.kind.has_ids() {
            self.build();
        }
        self.ids.get_or_init(|| Lines::new(0, true))
    }

    /// Both indexes of a file with ids (passwd, group) in one pass: planning
    /// looks entries up by name and by id alike. Nothing when built already.
    fn build(&self) {
        if self.names.get().is_some() && self.ids.get().is_some() {
            return;
        }
        let mut names = Lines::new(self.len(), false);
        let mut ids = Lines::new(self.len(), true);
        self.each_candidate(|k, eff| {
            let name_end = glibc::find_byte(eff, b':').unwrap_or(eff.len());
            names.insert(hash_bytes(&eff[..name_end]), k, 0);
            // The id is the third field: after the name and the password.
            let rest = eff.get(name_end + 1..).unwrap_or_default();
            let Some(p) = glibc::find_byte(rest, b':') else { return };
            let field = &rest[p + 1..];
            let field = &field[..glibc::find_byte(field, b':').unwrap_or(field.len())];
            if let Some(id) = glibc_number(field) {
                ids.insert(hash_id(id), k, id);
            }
        });
        let _ = self.names.set(names);
        let _ = self.ids.set(ids);
    }
}
