//! `labinit`, the container entrypoint: configuration, accounts, setup steps,
//! privilege drop and supervision. Everything here avoids libc's user database
//! (NSS) so that the static binary behaves the same in every image.

pub mod accounts;
pub mod config;
pub mod exit;
pub mod files;
pub mod home;
pub mod log;
pub mod provision;
pub mod setup;
pub mod steps;
pub mod sudo;
pub mod validate;
pub mod idle;
