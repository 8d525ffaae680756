//! The build arguments of the family's Dockerfiles and the OCI labels they
//! set: the one table that the templates' labels ([`LABELED_ARGS`] as
//! `${ARG}` references), podman's `--label` flags and the bake file's
//! `labels` all read. Also which arguments labkit sets itself, the parsing of
//! `--build-arg`, and the per-build values (date, revision, mirror).

use std::collections::BTreeMap;
use std::path::Path;

use super::{dates, syntax, tools};

/// Build argument → the OCI label it sets in every image. Their values are
/// known only per build (or per parent), so the committed Dockerfiles carry
/// `${ARG}` references, never values.
pub const LABELED_ARGS: [(&str, &str); 4] = [
    ("BUILD_DATE", "org.opencontainers.image.created"),
    ("VCS_REF", "org.opencontainers.image.revision"),
    ("BASE_NAME", "org.opencontainers.image.base.name"),
    ("BASE_DIGEST", "org.opencontainers.image.base.digest"),
];

/// The OCI label a build argument sets, if any.
pub(crate) fn label_of(arg: &str) -> Option<&'static str> {
    LABELED_ARGS.iter().find(|(a, _)| *a == arg).map(|(_, l)| *l)
}

/// The build arguments every Dockerfile declares for per-build values. They
/// never reach the committed files as values, only as `${ARG}` references,
/// and they are left out of the plan's inputs hash.
pub const PER_BUILD_ARGS: &[&str] = &["BUILD_DATE", "VCS_REF"];

/// Build arguments labkit sets from the manifest; `--build-arg` may not
/// override them.
pub const RESERVED_ARGS: &[&str] = &["BASE_IMAGE", "BASE_NAME", "BASE_DIGEST"];

/// The argument `--apt-mirror` sets.
pub const APT_MIRROR: &str = "APT_MIRROR";

/// Parses `--build-arg KEY=VALUE`: KEY a build-argument name (not one of
/// labkit's own), VALUE one line without control characters (it can reach a
/// label).
pub fn parse_build_arg(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("build argument `{s}` is not KEY=VALUE"))?;
    if k.is_empty() {
        return Err(format!("build argument `{s}` has an empty name"));
    }
    syntax::arg_name(k).map_err(|e| format!("build argument {e}"))?;
    if RESERVED_ARGS.contains(&k) || PER_BUILD_ARGS.contains(&k) || k == APT_MIRROR {
        return Err(format!(
            "{k} is set by labkit (BASE_*: from the manifest, use --base-override; BUILD_DATE: --created; \
             VCS_REF: --revision; APT_MIRROR: --apt-mirror)"
        ));
    }
    syntax::single_line(v).map_err(|e| format!("build argument {k}: {e}"))?;
    Ok((k.to_string(), v.to_string()))
}

/// Per-build arguments: explicit values first, else what git and
/// `source_date_epoch` (the caller's `SOURCE_DATE_EPOCH`, unparsed) say,
/// else "unknown". Rendering never sees them. Every value is checked here, where it
/// enters: `--created` is RFC 3339, `SOURCE_DATE_EPOCH` an integer,
/// `--revision` one line, `--apt-mirror` an http(s) URL; an invalid value is
/// a usage error, never silently replaced.
pub fn per_build_args(
    root: &Path,
    revision: Option<String>,
    created: Option<String>,
    apt_mirror: Option<String>,
    extra: &[(String, String)],
    source_date_epoch: Option<&str>,
) -> Result<BTreeMap<String, String>, String> {
    if let Some(c) = &created {
        syntax::rfc3339(c).map_err(|e| format!("--created: {e}"))?;
    }
    let epoch = match source_date_epoch.filter(|e| !e.is_empty()) {
        Some(e) => {
            let secs = syntax::source_date_epoch(e)?;
            Some(dates::rfc3339_utc(secs).map_err(|why| format!("SOURCE_DATE_EPOCH=`{e}` is out of range: {why}"))?)
        }
        None => None,
    };
    let created = created
        .or(epoch)
        .or_else(|| tools::git(root, &["log", "-1", "--format=%cI"]).filter(|c| syntax::rfc3339(c).is_ok()))
        .unwrap_or_else(|| "unknown".into());
    if let Some(r) = &revision {
        syntax::single_line(r).map_err(|e| format!("--revision: {e}"))?;
        if r.is_empty() || r.len() > 256 {
            return Err(
                "--revision: give one non-empty line of at most 256 characters (a commit id or a version)".into()
            );
        }
    }
    let revision = revision.or_else(|| tools::git(root, &["rev-parse", "HEAD"])).unwrap_or_else(|| "unknown".into());
    let mut args = BTreeMap::new();
    args.insert("BUILD_DATE".to_string(), created);
    args.insert("VCS_REF".to_string(), revision);
    if let Some(m) = apt_mirror {
        syntax::apt_mirror(&m).map_err(|e| format!("--apt-mirror: {e}"))?;
        args.insert(APT_MIRROR.to_string(), m);
    }
    for (k, v) in extra {
        args.insert(k.clone(), v.clone());
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_args_are_refused() {
        assert!(parse_build_arg("BASE_IMAGE=x").is_err());
        assert!(parse_build_arg("BUILD_DATE=x").is_err());
        assert!(parse_build_arg("APT_MIRROR=http://x").is_err());
        assert!(parse_build_arg("nope").is_err());
        assert_eq!(
            parse_build_arg("PIP_INDEX_URL=http://x/simple").unwrap(),
            ("PIP_INDEX_URL".into(), "http://x/simple".into())
        );
    }

    #[test]
    fn every_labeled_argument_has_one_label() {
        assert_eq!(label_of("VCS_REF"), Some("org.opencontainers.image.revision"));
        assert_eq!(label_of("BASE_DIGEST"), Some("org.opencontainers.image.base.digest"));
        // Negative control: BASE_IMAGE is an argument without a label.
        assert_eq!(label_of("BASE_IMAGE"), None);
        for a in PER_BUILD_ARGS {
            assert!(label_of(a).is_some(), "{a} reaches a label");
        }
    }
}
