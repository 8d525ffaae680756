//! The external programs labkit runs and where it finds them: PATH lookup,
//! the container engine (docker or podman), the registry resolvers (skopeo,
//! docker buildx), uv, git, and the files and values the environment names
//! (`LABKIT_ENGINE`, `LABKIT_UV`, `LABKIT_LABINIT`, `SOURCE_DATE_EPOCH`).
//! Every environment read of the `images` commands is here. A leaf.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::error::{Error, UsageError};

/// First executable named `name` on PATH (or `name` itself if it is a path).
pub(crate) fn on_path(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// A non-empty environment variable.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
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
    /// `--engine` value, else `LABKIT_ENGINE`, else docker, else podman. A
    /// value may be a path; its file name says which flavour it is. A value
    /// that names neither is invalid input; a missing program is a failure.
    pub fn detect(requested: Option<&str>) -> Result<Engine, Error> {
        if let Some(r) = requested.map(str::to_string).or_else(|| env("LABKIT_ENGINE")) {
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
            let program = on_path(&r).ok_or_else(|| Error::msg(format!("--engine {r}: not found")))?;
            return Ok(Engine { flavor, program });
        }
        for (name, flavor) in [("docker", Flavor::Docker), ("podman", Flavor::Podman)] {
            if let Some(program) = on_path(name) {
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
    pub fn detect(requested: Option<Resolver>) -> Vec<Resolver> {
        match requested {
            Some(r) => vec![r],
            None => [Resolver::Skopeo, Resolver::Docker]
                .into_iter()
                .filter(|r| on_path(r.program()).is_some())
                .filter(|r| {
                    *r != Resolver::Docker
                        || Command::new("docker").args(["buildx", "version"]).output().is_ok_and(|o| o.status.success())
                })
                .collect(),
        }
    }
}

/// The uv binary: `--uv PATH`, else `LABKIT_UV`, else `uv` on PATH.
pub(crate) fn uv(requested: Option<&Path>) -> Result<PathBuf, Error> {
    let wanted =
        requested.map(|p| p.to_string_lossy().to_string()).or_else(|| env("LABKIT_UV")).unwrap_or_else(|| "uv".into());
    on_path(&wanted).ok_or_else(|| {
        Error::msg(format!(
            "{wanted} not found: `labkit lock` resolves Python requirements with uv; install it with \
             `pip install uv` (tests/tools/deps.sh pins the version CI uses) or pass --uv PATH"
        ))
    })
}

/// The labinit binary to stage: `--labinit PATH`, else `LABKIT_LABINIT`,
/// else `dist/labinit` in the repository.
pub(crate) fn labinit(requested: Option<&Path>, root: &Path) -> PathBuf {
    requested
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("LABKIT_LABINIT").map(PathBuf::from))
        .unwrap_or_else(|| root.join("dist/labinit"))
}

/// `SOURCE_DATE_EPOCH` (reproducible-builds.org), unparsed, when set.
pub(crate) fn source_date_epoch() -> Option<String> {
    env("SOURCE_DATE_EPOCH")
}

/// `git -C root ARGS…`'s trimmed output, when git ran, succeeded and said
/// something.
pub(crate) fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(root).args(args).output().ok()?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}
