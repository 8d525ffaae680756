//! Where long-running commands (build, test, lock) report progress: a sink
//! the caller supplies, one line of text per event. The library never prints;
//! the `labkit` binary passes a sink that writes to its terminal, tests pass
//! one that collects. A leaf.

/// Receives progress lines (without a trailing newline).
pub trait Progress {
    fn line(&mut self, text: &str);
}

impl<F: FnMut(&str)> Progress for F {
    fn line(&mut self, text: &str) {
        self(text)
    }
}
