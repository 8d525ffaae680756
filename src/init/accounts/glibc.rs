//! How glibc reads one line of an account file (see the module text of
//! [`accounts`](super)): without allocating, on borrowed bytes, so a table
//! of 100 000 lines is read in one pass over the file.

use std::borrow::Cow;

use super::Kind;

/// C's `isspace` in the C locale.
pub(super) fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// A whole field read as glibc's `INT_FIELD` reads it: `strtoul` in base 10
/// (leading C white space, an optional sign, at least one digit) consuming
/// the whole field, and a value within 32 bits (`-0` is 0; any other negative
/// number wraps above it and is refused, like an overflow).
pub(crate) fn glibc_number(field: &[u8]) -> Option<u32> {
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

/// The first `b` in `hay`, eight bytes at a time (the account files are
/// mostly scanned for `\n` and `:`).
pub(super) fn find_byte(hay: &[u8], b: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO * u64::from(b);
    let mut chunks = hay.chunks_exact(8);
    let mut at = 0;
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) ^ pattern;
        if (w.wrapping_sub(LO) & !w & HI) != 0 {
            break;
        }
        at += 8;
    }
    hay[at..].iter().position(|x| *x == b).map(|p| at + p)
}

/// Whether `a` and `b` hold the same bytes, 64 bytes at a time. (Slice
/// equality calls the C library's `memcmp`, which musl runs a byte at a
/// time; comparing the account files again under the lock is megabytes.)
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (wa, ra) = a.as_chunks::<8>();
    let (wb, rb) = b.as_chunks::<8>();
    for (x, y) in wa.chunks(8).zip(wb.chunks(8)) {
        // Differences or-ed, not compared one by one: no early exit inside
        // a block, so the compiler keeps it a plain loop (not a memcmp call).
        let diff = x.iter().zip(y).fold(0u64, |d, (p, q)| d | (u64::from_ne_bytes(*p) ^ u64::from_ne_bytes(*q)));
        if diff != 0 {
            return false;
        }
    }
    ra.iter().zip(rb).all(|(x, y)| x == y)
}

/// Where every line of `data` starts (lines are split on `\n`; the final
/// newline, if any, ends the last line) and the offset of every NUL byte:
/// one pass over the file, eight bytes at a time.
pub(super) fn line_starts(data: &[u8]) -> (Vec<u32>, Vec<usize>) {
    const LO7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const NL: u64 = 0x0a0a_0a0a_0a0a_0a0a;
    let zero = |w: u64| !(((w & LO7) + LO7) | w | LO7);
    let body = data.len() - usize::from(data.last() == Some(&b'\n'));
    // Virtual room for the worst case; only the pages written count.
    let mut starts = Vec::with_capacity(if data.is_empty() { 0 } else { body / 2 + 2 });
    let mut nul = Vec::new();
    if data.is_empty() {
        return (starts, nul);
    }
    starts.push(0u32);
    let mut chunks = data[..body].chunks_exact(8);
    let mut at = 0;
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let mut m = zero(w ^ NL);
        while m != 0 {
            starts.push((at + (m.trailing_zeros() / 8) as usize + 1) as u32);
            m &= m - 1;
        }
        let mut z = zero(w);
        while z != 0 {
            nul.push(at + (z.trailing_zeros() / 8) as usize);
            z &= z - 1;
        }
        at += 8;
    }
    for (i, x) in chunks.remainder().iter().enumerate() {
        match x {
            b'\n' => starts.push((at + i + 1) as u32),
            0 => nul.push(at + i),
            _ => {}
        }
    }
    starts.shrink_to_fit();
    (starts, nul)
}

/// Offsets of every occurrence of `needle` (not empty) in `hay`.
pub(super) fn find_all(hay: &[u8], needle: &[u8], mut f: impl FnMut(usize)) {
    let mut from = 0;
    while let Some(p) = needle.first().and_then(|first| find_byte(&hay[from..], *first)) {
        let at = from + p;
        if hay[at..].starts_with(needle) {
            f(at);
        }
        from = at + 1;
    }
}

/// Whether `needle` occurs in `hay` (a cheap test before a line is parsed).
pub(super) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    let Some(&first) = needle.first() else { return true };
    let mut from = 0;
    while let Some(p) = find_byte(&hay[from..], first) {
        let at = from + p;
        if hay[at..].starts_with(needle) {
            return true;
        }
        from = at + 1;
    }
    false
}

/// The bytes glibc parses for one line (`__nss_readline`): cut at the first
/// NUL, leading white space skipped, `None` for blank lines and comments.
/// Skipping the white space moves the text without its terminating NUL, so
/// on a line that ends without a newline (the last line of a file, or a line
/// cut at a NUL) the final bytes appear twice; glibc really reads that, so it
/// is mirrored (the only case that copies). `may_have_nul: false` skips the
/// search for a NUL (the caller knows the line has none).
pub(super) fn effective(raw: &[u8], has_newline: bool, may_have_nul: bool) -> Option<Cow<'_, [u8]>> {
    let nul = if may_have_nul { find_byte(raw, 0) } else { None };
    let c = &raw[..nul.unwrap_or(raw.len())];
    let k = c.iter().take_while(|b| is_c_space(**b)).count();
    if k == c.len() || c[k] == b'#' {
        return None;
    }
    if (has_newline && nul.is_none()) || k == 0 {
        return Some(Cow::Borrowed(&c[k..]));
    }
    let mut buf = c[k..].to_vec();
    buf.extend_from_slice(&c[c.len() - k..]);
    Some(Cow::Owned(buf))
}

/// The fields glibc reads from an entry, borrowed from the line; fields
/// missing at the end of the line are empty.
pub(super) struct Fields<'a> {
    f: [&'a [u8]; 9],
}

impl<'a> std::ops::Index<usize> for Fields<'a> {
    type Output = [u8];
    fn index(&self, col: usize) -> &[u8] {
        self.f[col]
    }
}

impl<'a> Fields<'a> {
    /// The line labinit writes for these fields with column `col` set to
    /// `value`.
    pub(super) fn join_with(&self, kind: Kind, col: usize, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..kind.field_count() {
            if i > 0 {
                out.push(b':');
            }
            out.extend_from_slice(if i == col { value } else { self.f[i] });
        }
        out
    }

    /// The fields as owned byte strings (for checks in debug builds).
    #[cfg(debug_assertions)]
    pub(super) fn to_vecs(&self, kind: Kind) -> Vec<Vec<u8>> {
        self.f[..kind.field_count()].iter().map(|f| f.to_vec()).collect()
    }
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
        match find_byte(rest, b':') {
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
pub(super) fn glibc_fields(kind: Kind, line: &[u8]) -> Option<Fields<'_>> {
    let mut c = Cursor { s: line, pos: 0 };
    let name = c.field();
    if name.first().is_some_and(|b| *b == b'+' || *b == b'-') {
        return None;
    }
    let mut f: [&[u8]; 9] = [&[]; 9];
    f[0] = name;
    match kind {
        Kind::Passwd => {
            f[1] = c.field();
            for v in &mut f[2..4] {
                // INT_FIELD: an empty rest is "no digits" and refused.
                *v = c.field();
                glibc_number(v)?;
            }
            f[4] = c.field();
            f[5] = c.field();
            f[6] = c.rest();
        }
        Kind::Group => {
            f[1] = c.field();
            f[2] = c.field();
            glibc_number(f[2])?;
            f[3] = c.rest();
        }
        Kind::Shadow => {
            f[1] = c.field();
            // lstchg, min, max: there must be more input for each.
            for v in &mut f[2..5] {
                if c.at_end() {
                    return None;
                }
                *v = c.field();
                if !glibc_number_or_empty(v) {
                    return None;
                }
            }
            while !c.at_end() && is_c_space(c.s[c.pos]) {
                c.pos += 1;
            }
            if !c.at_end() {
                for v in &mut f[5..8] {
                    if c.at_end() {
                        return None;
                    }
                    *v = c.field();
                    if !glibc_number_or_empty(v) {
                        return None;
                    }
                }
                if !c.at_end() {
                    // The flag field ends the line: no `:` after it.
                    f[8] = c.rest();
                    glibc_number(f[8])?;
                }
            }
        }
        Kind::Gshadow => {
            f[1] = c.field();
            f[2] = c.field();
            f[3] = c.rest();
        }
    }
    Some(Fields { f })
}

/// Members of a list field as glibc reads them: split on `,`, leading white
/// space skipped, empty members dropped.
pub(super) fn members(field: &[u8]) -> impl Iterator<Item = &[u8]> {
    field
        .split(|b| *b == b',')
        .map(|m| &m[m.iter().take_while(|b| is_c_space(**b)).count()..])
        .filter(|m| !m.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_agrees_with_slice_equality() {
        let a: Vec<u8> = (0..1000u32).map(|i| (i * 31 % 251) as u8).collect();
        for len in [0, 1, 7, 63, 64, 65, 128, 999, 1000] {
            assert!(same_bytes(&a[..len], &a[..len]), "{len}");
            // Negative controls: one byte changed anywhere, or a length differs.
            for at in (0..len).step_by(7).chain(len.checked_sub(1)) {
                let mut b = a[..len].to_vec();
                b[at] ^= 0x20;
                assert!(!same_bytes(&a[..len], &b), "{len} at {at}");
            }
            if len > 0 {
                assert!(!same_bytes(&a[..len], &a[..len - 1]), "{len} shorter");
            }
        }
    }

    #[test]
    fn find_byte_and_contains_agree_with_a_plain_search() {
        let hay = b"root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh";
        for b in [b':', b'\n', b'a', b'z', 0u8, b'h'] {
            for start in 0..hay.len() {
                assert_eq!(find_byte(&hay[start..], b), hay[start..].iter().position(|x| *x == b), "{b} from {start}");
            }
        }
        for data in [&b""[..], b"\n", b"a", b"a\n", b"a\nb", b"a\n\nbb\0\nccc:ddd:eee:fff\n", b"\0\0\n\n"] {
            let (starts, nul) = line_starts(data);
            let body = data.len() - usize::from(data.last() == Some(&b'\n'));
            let want: Vec<u32> = if data.is_empty() {
                Vec::new()
            } else {
                std::iter::once(0).chain((0..body).filter(|i| data[*i] == b'\n').map(|i| i as u32 + 1)).collect()
            };
            assert_eq!(starts, want, "{data:?}");
            assert_eq!(nul, (0..data.len()).filter(|i| data[*i] == 0).collect::<Vec<_>>(), "{data:?}");
        }
        let mut seen = Vec::new();
        find_all(b"alice,bob,alice,al", b"alice", |p| seen.push(p));
        assert_eq!(seen, [0, 10]);
        assert!(contains(hay, b"alice"));
        assert!(contains(hay, b"/bin/sh"));
        assert!(!contains(hay, b"alicex"));
        assert!(!contains(b"ab", b"abc"));
    }

    #[test]
    fn effective_mirrors_glibc_on_odd_lines() {
        assert_eq!(effective(b"  u:x", true, true).as_deref(), Some(&b"u:x"[..]));
        assert_eq!(effective(b"  u:x", false, true).as_deref(), Some(&b"u:x:x"[..]), "last line: final bytes twice");
        assert_eq!(effective(b" u:x\0junk", true, true).as_deref(), Some(&b"u:xx"[..]), "cut at NUL, no newline left");
        assert_eq!(effective(b"u:x\0junk", true, true).as_deref(), Some(&b"u:x"[..]));
        assert_eq!(effective(b"   ", true, true), None);
        assert_eq!(effective(b" # c", true, true), None);
        assert_eq!(effective(b"", false, true), None);
    }
}
