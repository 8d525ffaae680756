//! `labinit`, the container entrypoint: configuration, accounts, setup steps,
//! privilege drop and supervision. Everything here avoids libc's user database
//! (NSS) so that the static binary behaves the same in every image.

pub mod exit;
pub mod log;
pub mod setup;
