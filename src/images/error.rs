//! The errors of the `images` commands, typed by what the user has to do:
//! fix the input ([`ErrorKind::Invalid`], exit code 2) or look at what failed
//! ([`ErrorKind::Failed`], exit code 1). The binary maps the kind to the exit
//! code; nothing inspects error chains. A leaf.

use std::fmt;

/// A command used wrongly (as opposed to drift or a failed build).
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
impl std::error::Error for UsageError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Invalid input: the manifest, a template, a flag or its value.
    Invalid,
    /// Everything else: a failed tool, build or file operation, drift.
    Failed,
}

/// An error of an `images` command: its kind and its message (with causes).
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    inner: anyhow::Error,
}

impl Error {
    pub(crate) fn invalid(e: impl Into<anyhow::Error>) -> Error {
        Error { kind: ErrorKind::Invalid, inner: e.into() }
    }
    pub(crate) fn failed(e: impl Into<anyhow::Error>) -> Error {
        Error { kind: ErrorKind::Failed, inner: e.into() }
    }
    /// A failure described by one message.
    pub(crate) fn msg(m: impl fmt::Display) -> Error {
        Error::failed(anyhow::anyhow!("{m}"))
    }
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// Process exit code: 2 for invalid input, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self.kind {
            ErrorKind::Invalid => 2,
            ErrorKind::Failed => 1,
        }
    }
    /// The same error with `what` in front of its message.
    pub(crate) fn context(self, what: impl fmt::Display + Send + Sync + 'static) -> Error {
        Error { kind: self.kind, inner: self.inner.context(what) }
    }
}

/// `{}` the outermost message; `{:#}` every cause, `: `-separated.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            write!(f, "{:#}", self.inner)
        } else {
            write!(f, "{}", self.inner)
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source()
    }
}

impl From<UsageError> for Error {
    fn from(e: UsageError) -> Error {
        Error::invalid(e)
    }
}

impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Error {
        Error::failed(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_give_exit_codes_and_context_keeps_the_kind() {
        let e = Error::from(UsageError("--image x: no such image".into())).context("plan");
        assert_eq!((e.kind(), e.exit_code()), (ErrorKind::Invalid, 2));
        assert_eq!(format!("{e:#}"), "plan: --image x: no such image");
        assert_eq!(format!("{e}"), "plan");
        let f = Error::msg("docker failed");
        assert_eq!((f.kind(), f.exit_code()), (ErrorKind::Failed, 1));
    }
}
