//! labkit: the lab's container toolkit.
//!
//! Two domains share this crate:
//! - [`init`]: `labinit`, the entrypoint that runs as PID 1 in every lab image
//!   (accounts, setup steps, privilege drop, supervision). It never depends on
//!   the image generator, so the static binary stays small.
//! - `images` (feature `images`): the `labkit` maintainers' CLI that renders,
//!   checks, plans, bakes and builds the image family.
//! - `job` (feature `job`): `labkit job`, Pods, Jobs and `runai submit`
//!   commands for researchers from one profile.

pub mod init;

#[cfg(feature = "images")]
pub mod images;

#[cfg(feature = "job")]
pub mod job;
