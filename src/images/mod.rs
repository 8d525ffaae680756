//! The image-family generator behind the `labkit` CLI: manifest, templates,
//! render, check, plan, bake, build and lock. Owns everything under `images/`;
//! knows nothing about how labinit works beyond copying its binary into build
//! contexts.
//!
//! The pipeline is the docker-library discipline with bake's build graph:
//! `images/manifest.toml` (+ `images/lock.toml`) is the single source of truth
//! (`manifest`), it expands into targets (image × variant), `render` turns
//! each target into a committed Dockerfile under `images/generated/`, `check`
//! proves the committed files are what render would write, `plan` orders the
//! targets into build levels, `bake` emits the same graph as a
//! `docker-bake.json`, `build` runs it with docker or podman, and `lock`
//! pins base images to digests (`python`: the Python locks). Rendering is a
//! pure function of its files: no network, clock or environment.
//!
//! The modules form a graph without cycles, in three layers:
//! - leaves: `layout` (paths), `digest`, `dates`, `tools` (external
//!   programs; the binary reads the environment and passes values in), `buildargs` (the one table of
//!   build arguments and the OCI labels they set), `syntax`, `lockfile`,
//!   `error`, `progress`;
//! - core: `manifest` → `python` → `render` → `check` | `plan` →
//!   `bake` | `build` (which only executes a plan), with `context`
//!   (the files shipped into a build), `lock` and `imagetest` beside;
//! - commands (`commands`, re-exported here): each returns a report or a
//!   typed [`Error`]; progress goes to a [`Progress`] sink. Nothing in this
//!   module prints: the `labkit` binary does.

pub(crate) mod bake;
pub(crate) mod build;
pub(crate) mod buildargs;
pub(crate) mod check;
pub(crate) mod commands;
pub(crate) mod context;
pub(crate) mod dates;
pub(crate) mod digest;
pub(crate) mod error;
pub(crate) mod imagetest;
pub(crate) mod layout;
pub(crate) mod lock;
pub(crate) mod lockfile;
pub(crate) mod manifest;
pub(crate) mod plan;
pub(crate) mod progress;
pub(crate) mod python;
pub(crate) mod render;
pub(crate) mod syntax;
pub(crate) mod tools;

// What the `labkit` binary and the tests use; everything else is the
// crate's own.
pub use build::BuildOptions;
pub use buildargs::{parse_build_arg, per_build_args};
pub use commands::*;
pub use digest::sha256_hex;
pub use error::{Error, ErrorKind, UsageError};
pub use imagetest::TestOptions;
pub use layout::Layout;
pub use lockfile::Lock;
// The manifest loader's types, for the fuzz target (fuzz/fuzz_targets/manifest.rs).
pub use manifest::{parse_override, BaseOverrides, Family, Parent};
pub use plan::{Plan, PlanOptions};
pub use progress::Progress;
pub use tools::{Engine, Resolver, SearchPath};

/// The generator's version, written into every header and label so a
/// Dockerfile says which labkit produced it.
pub(crate) const GENERATOR_VERSION: &str = env!("CARGO_PKG_VERSION");
