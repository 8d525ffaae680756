//! The image-family generator behind the `labkit` CLI: manifest, templates,
//! render, check, plan, bake, build and lock. Owns everything under `images/`;
//! knows nothing about how labinit works beyond copying its binary into build
//! contexts.
//!
//! The pipeline is the docker-library discipline with bake's build graph:
//! `images/manifest.toml` (+ `images/lock.toml`) is the single source of truth
//! ([`manifest`]), it expands into targets (image × variant), [`render`] turns
//! each target into a committed Dockerfile under `images/generated/`, [`check`]
//! proves the committed files are what render would write, [`plan`] orders the
//! targets into build levels, [`bake`] emits the same graph as a
//! `docker-bake.json`, [`build`] runs it with docker or podman, and [`lock`]
//! pins base images to digests ([`python`]: the Python locks). Rendering is a
//! pure function of its files: no network, clock or environment.
//!
//! The modules form a graph without cycles, in three layers:
//! - leaves: [`layout`] (paths), [`digest`], [`dates`], [`tools`] (external
//!   programs and every environment read), [`buildargs`] (the one table of
//!   build arguments and the OCI labels they set), [`syntax`], [`lockfile`],
//!   [`error`], [`progress`];
//! - core: [`manifest`] → [`python`] → [`render`] → [`check`] | [`plan`] →
//!   [`bake`] | [`build`] (which only executes a plan), with [`context`]
//!   (the files shipped into a build), [`lock`] and [`imagetest`] beside;
//! - commands ([`commands`], re-exported here): each returns a report or a
//!   typed [`Error`]; progress goes to a [`Progress`] sink. Nothing in this
//!   module prints: the `labkit` binary does.

pub mod bake;
pub mod build;
pub mod buildargs;
pub mod check;
pub mod commands;
pub mod context;
pub mod dates;
pub mod digest;
pub mod error;
pub mod imagetest;
pub mod layout;
pub mod lock;
pub mod lockfile;
pub mod manifest;
pub mod plan;
pub mod progress;
pub mod python;
pub mod render;
pub mod syntax;
pub mod tools;

pub use commands::*;
pub use digest::sha256_hex;
pub use error::{Error, ErrorKind, UsageError};
pub use layout::Layout;
pub use progress::Progress;

/// The generator's version, written into every header and label so a
/// Dockerfile says which labkit produced it.
pub const GENERATOR_VERSION: &str = env!("CARGO_PKG_VERSION");
