//! `labkit job` (feature `job`): researchers describe a job once, in a
//! profile, and get a valid Pod, Job, multi-node Job or `runai submit`
//! command line, plus thin `submit`, `shell` and `forward` wrappers around
//! kubectl and runai. Guide for researchers: docs/job.md.
//!
//! Layout, leaf modules first: `names` (Kubernetes naming rules),
//! `profile` (the TOML profile), `spec` (the flags, checked against the
//! profile), `command` (the container's command line and its quoting),
//! `manifest` (typed `k8s-openapi` objects and YAML), `runai` (the
//! `runai submit` argv), `wrap` (kubectl/runai invocations), `cli` (the
//! edge). Nothing here is part of labinit, which never links this module.

pub mod cli;
pub(crate) mod command;
pub(crate) mod manifest;
pub(crate) mod names;
pub mod profile;
pub(crate) mod runai;
pub(crate) mod spec;
pub(crate) mod wrap;
