//! The resolver: `uv pip compile`, run in a scratch directory, and the
//! message for a set it cannot resolve.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::VariantSpec;
use crate::images::error::Error;
use crate::images::tools::{self, SearchPath};

/// The resolver: `uv pip compile`, run in a scratch directory.
#[derive(Debug, Clone)]
pub struct Uv {
    pub program: PathBuf,
}

impl Uv {
    /// The uv asked for, else `uv` from the search path ([`tools::uv`]).
    pub(crate) fn find(requested: Option<&Path>, path: &SearchPath) -> Result<Uv, Error> {
        Ok(Uv { program: tools::uv(requested, path)? })
    }

    pub(crate) fn version(&self) -> String {
        Command::new(&self.program)
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    }

    /// Resolves all of the spec's requirements together. An unsatisfiable
    /// set is an error quoting uv's explanation.
    pub(crate) fn compile(&self, spec: &VariantSpec, scratch: &Path) -> Result<String> {
        std::fs::create_dir_all(scratch).with_context(|| format!("cannot create {}", scratch.display()))?;
        let mut args = vec!["pip".to_string(), "compile".into()];
        for img in &spec.images {
            let name = VariantSpec::input_name(&img.image);
            let mut body = String::new();
            for r in &img.requirements {
                body.push_str(r);
                body.push('\n');
            }
            std::fs::write(scratch.join(&name), body)
                .with_context(|| format!("cannot write {}", scratch.join(&name).display()))?;
            if !img.requirements.is_empty() {
                args.push(name);
            }
        }
        args.extend(spec.uv_args());
        let out = Command::new(&self.program)
            .args(&args)
            .current_dir(scratch)
            .env("UV_PYTHON_DOWNLOADS", "never")
            .env("NO_COLOR", "1")
            .output()
            .with_context(|| format!("cannot run {}", self.program.display()))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            bail!("{}", unsatisfiable_message(spec, &err));
        }
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }
}

/// The error for a failed resolution: the conflicting packages first (from
/// uv's "we can conclude that A and B are incompatible"), then uv's words.
pub(crate) fn unsatisfiable_message(spec: &VariantSpec, uv_stderr: &str) -> String {
    let text: String = strip_ansi(uv_stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with("warning:"))
        .collect();
    let mut conflicts: Vec<String> = Vec::new();
    let flat = lines.join(" ");
    let mut rest = flat.as_str();
    while let Some(i) = rest.find("we can conclude that ") {
        rest = &rest[i + "we can conclude that ".len()..];
        if let Some(j) = rest.find(" are incompatible") {
            let pair = rest[..j].trim().to_string();
            if !conflicts.contains(&pair) {
                conflicts.push(pair);
            }
        }
    }
    let images: Vec<&str> = spec.images.iter().map(|i| i.image.as_str()).collect();
    let head = if conflicts.is_empty() {
        format!(
            "variant `{}`: uv could not resolve the Python requirements of {} (Python {}, {})",
            spec.variant,
            images.join(", "),
            spec.python,
            spec.platform
        )
    } else {
        format!(
            "variant `{}`: the Python requirements of {} cannot be installed together: {} are incompatible (Python {}, {})",
            spec.variant,
            images.join(", "),
            conflicts.join("; "),
            spec.python,
            spec.platform
        )
    };
    format!(
        "{head}; change the requirements in images/manifest.toml (no lock file was changed). uv says:\n  {}",
        lines.join("\n  ")
    )
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}
