//! The external programs labkit runs and where it finds them: lookup in the
//! search path, the container engine (docker or podman), the registry
//! resolvers (skopeo, docker buildx), uv, labinit and git. Reads no
//! environment: the `labkit` binary reads PATH and the `LABKIT_*` variables
//! and passes their values in. A leaf.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::error::{Error, UsageError};

/// The directories programs are looked up in: the value of PATH, as the
/// caller read it (None: no PATH, so only names with a `/` are found).
#[derive(Debug, Clone, Default)]
pub struct SearchPath(pub Option<OsString>);

impl SearchPath {
    /// First executable named `name` in the search path (or `name` itself if
    /// it is a path).
    pub(crate) fn find(&self, name: &str) -> Option<PathBuf> {
        if name.contains('/') {
            let p = PathBuf::from(name);
            return p.is_file().then_some(p);
        }
        // `:`-separated; an empty entry is the current directory (POSIX).
        let dirs = self.0.as_ref()?.as_bytes().split(|b| *b == b':');
        dirs.map(|d| Path::new(OsStr::from_bytes(d)).join(name)).find(|p| p.is_file())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Docker,
    Podman,
}

/// A container engine: which one, and the program to run.
#[derive(Debug, Clone)]
pub struct Engine {
    pub flavor: Flavor,
    pub program: PathBuf,
}

impl Engine {
    /// The engine asked for (`--engine`, else `LABKIT_ENGINE`: the caller
    /// decides), else docker, else podman from the search path. A value may be
    /// a path; its file name says which flavour it is. A value that names
    /// neither is invalid input; a missing program is a failure.
    pub fn detect(requested: Option<&str>, path: &SearchPath) -> Result<Engine, Error> {
        if let Some(r) = requested {
            let name = Path::new(&r).file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            let flavor = if name.contains("podman") {
                Flavor::Podman
            } else if name.contains("docker") {
                Flavor::Docker
            } else {
                return Err(
                    UsageError(format!("--engine {r}: not docker or podman (a path must name one of them)")).into()
                );
            };
            let program = path.find(r).ok_or_else(|| Error::msg(format!("--engine {r}: not found")))?;
            return Ok(Engine { flavor, program });
        }
        for (name, flavor) in [("docker", Flavor::Docker), ("podman", Flavor::Podman)] {
            if let Some(program) = path.find(name) {
                return Ok(Engine { flavor, program });
            }
        }
        Err(Error::msg("neither docker nor podman is on PATH; install one or pass --engine PATH"))
    }

    pub(crate) fn name(&self) -> &'static str {
        match self.flavor {
            Flavor::Docker => "docker",
            Flavor::Podman => "podman",
        }
    }
}

/// A tool that can fetch a reference's raw manifest from its registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    Skopeo,
    Docker,
}

impl Resolver {
    pub fn parse(s: &str) -> Result<Resolver, Error> {
        match s {
            "skopeo" => Ok(Resolver::Skopeo),
            "docker" => Ok(Resolver::Docker),
            _ => Err(Error::msg(format!("unknown resolver `{s}` (known: skopeo, docker)"))),
        }
    }

    pub(crate) fn program(self) -> &'static str {
        match self {
            Resolver::Skopeo => "skopeo",
            Resolver::Docker => "docker",
        }
    }

    /// The resolvers to try, in order: the one asked for, else every one
    /// installed (docker only with its buildx plugin, for `imagetools`).
    pub(crate) fn detect(requested: Option<Resolver>, path: &SearchPath) -> Vec<Resolver> {
        match requested {
            Some(r) => vec![r],
            None => [Resolver::Skopeo, Resolver::Docker]
                .into_iter()
                .filter(|r| path.find(r.program()).is_some())
                .filter(|r| {
                    *r != Resolver::Docker
                        || Command::new("docker").args(["buildx", "version"]).output().is_ok_and(|o| o.status.success())
                })
                .collect(),
        }
    }
}

/// The uv binary: the one asked for (`--uv`, else `LABKIT_UV`: the caller
/// decides), else `uv` from the search path.
pub(crate) fn uv(requested: Option<&Path>, path: &SearchPath) -> Result<PathBuf, Error> {
    let wanted = requested.map(|p| p.to_string_lossy().to_string()).unwrap_or_else(|| "uv".into());
    path.find(&wanted).ok_or_else(|| {
        Error::msg(format!(
            "{wanted} not found: `labkit lock` resolves Python requirements with uv; install it with \
             `pip install uv` (tests/tools/deps.sh pins the version CI uses) or pass --uv PATH"
        ))
    })
}

/// The labinit binary to stage: the one asked for (`--labinit`, else
/// `LABKIT_LABINIT`: the caller decides), else `dist/labinit` in the
/// repository.
pub(crate) fn labinit(requested: Option<&Path>, root: &Path) -> PathBuf {
    requested.map(Path::to_path_buf).unwrap_or_else(|| root.join("dist/labinit"))
}

/// `git -C root ARGS…`'s trimmed output, when git ran, succeeded and said
/// something.
pub(crate) fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(root).args(args).output().ok()?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}
