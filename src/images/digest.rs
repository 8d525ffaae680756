//! SHA-256 digests: of one byte string, and of several named inputs (the
//! inputs hashes of Dockerfiles, plans and locks). A leaf.

use sha2::{Digest, Sha256};

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Incremental SHA-256 for hashes over several named inputs. Each part is
/// length-prefixed so ("ab","c") and ("a","bc") never collide.
#[derive(Default)]
pub struct InputHasher(Sha256);

impl InputHasher {
    pub(crate) fn new() -> Self {
        Self::default()
    }
    pub(crate) fn part(&mut self, name: &str, data: &[u8]) -> &mut Self {
        for chunk in [name.as_bytes(), data] {
            self.0.update((chunk.len() as u64).to_le_bytes());
            self.0.update(chunk);
        }
        self
    }
    pub(crate) fn finish(self) -> String {
        hex(&self.0.finalize())
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_known_vector() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn input_hasher_separates_parts() {
        let mut a = InputHasher::new();
        a.part("x", b"ab").part("y", b"c");
        let mut b = InputHasher::new();
        b.part("x", b"a").part("y", b"bc");
        assert_ne!(a.finish(), b.finish());
    }
}
