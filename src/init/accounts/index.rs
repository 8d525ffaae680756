//! The lookup index of one account file as read: every entry's line under
//! the hash of its name, and (passwd, group) under its id. Built once per
//! file in one pass, shared by every copy of the table; a lookup costs a
//! few probes, never a scan. Open addressing with linear probing over plain
//! line numbers, sized for a load of at most 3/4 (4 bytes a slot for names,
//! 8 for ids: an index of 100 000 entries takes about 0.5 MiB for names and
//! 1 MiB for ids).

/// A hash table of line numbers, several lines per key allowed (an image may
/// carry a name or an id twice: lookups compare the line itself).
pub(super) struct Lines {
    /// `line + 1` per slot, 0 = empty.
    lines: Vec<u32>,
    /// The id stored beside each line (id indexes only; empty otherwise).
    ids: Vec<u32>,
    len: usize,
}

/// FxHash-style hash of a name, eight bytes at a time.
pub(super) fn hash_bytes(b: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = b.len() as u64;
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    for &x in chunks.remainder() {
        h = (h.rotate_left(5) ^ u64::from(x)).wrapping_mul(K);
    }
    h
}

pub(super) fn hash_id(id: u32) -> u64 {
    (u64::from(id) ^ 0x9e37_79b9).wrapping_mul(0x517c_c1b7_2722_0a95)
}

#[cfg(test)]
thread_local! {
    /// Slots visited by lookups on this thread (tests prove lookups cost a
    /// few probes, not a scan).
    pub(super) static PROBES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

impl Lines {
    /// An index for at most `n` entries; `with_ids` keeps an id per line.
    pub(super) fn new(n: usize, with_ids: bool) -> Lines {
        let size = n + n / 3 + 2;
        Lines { lines: vec![0; size], ids: if with_ids { vec![0; size] } else { Vec::new() }, len: 0 }
    }

    fn home(&self, hash: u64) -> usize {
        // Lemire's range reduction of a well-mixed hash.
        let mixed = hash.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (hash >> 29);
        ((u128::from(mixed) * self.lines.len() as u128) >> 64) as usize
    }

    fn next(&self, i: usize) -> usize {
        if i + 1 == self.lines.len() {
            0
        } else {
            i + 1
        }
    }

    /// Add `line` under `hash` (ignored once more than the capacity given to
    /// [`Lines::new`] were added, which the caller never does).
    pub(super) fn insert(&mut self, hash: u64, line: u32, id: u32) {
        if self.len + 1 >= self.lines.len() {
            return;
        }
        let mut i = self.home(hash);
        while self.lines[i] != 0 {
            i = self.next(i);
        }
        self.lines[i] = line + 1;
        if !self.ids.is_empty() {
            self.ids[i] = id;
        }
        self.len += 1;
    }

    /// Lines stored under `hash` (and others that share its probe run: the
    /// caller checks each line's key), in insertion order for one key.
    pub(super) fn get(&self, hash: u64) -> impl Iterator<Item = u32> + '_ {
        let mut i = self.home(hash);
        std::iter::from_fn(move || {
            #[cfg(test)]
            PROBES.with(|p| p.set(p.get() + 1));
            let line = self.lines[i];
            if line == 0 {
                return None;
            }
            i = self.next(i);
            Some(line - 1)
        })
    }

    /// Every (line, id) of an id index, in slot order.
    pub(super) fn all_ids(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.lines.iter().zip(&self.ids).filter(|(l, _)| **l != 0).map(|(&l, &id)| (l - 1, id))
    }
}
