//! `labinit`, the container entrypoint: configuration, accounts, setup steps,
//! privilege drop and supervision. Everything here avoids libc's user database
//! (NSS) so that the static binary behaves the same in every image.

pub mod accounts;
pub mod civil;
pub mod cli;
pub mod config;
pub mod duration;
pub mod each;
pub(crate) mod env;
pub mod exit;
pub mod files;
pub mod home;
pub mod idle;
pub mod job;
pub mod json;
pub mod jupyter;
pub(crate) mod launch;
pub mod log;
pub mod memory;
pub(crate) mod nesting;
pub mod privileges;
pub mod procfs;
pub mod provision;
pub mod run;
pub mod services;
pub mod setup;
pub mod signals;
pub mod sshd;
pub mod state;
pub mod steps;
pub mod sudo;
pub mod summary;
pub mod supervisor;
pub mod trusted;
pub mod validate;
