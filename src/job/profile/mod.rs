//! The researcher's profile (`~/.config/labkit/job.toml`): who runs the job
//! (the four `CLUSTER_*` values), which image, where, which volumes and which
//! extra environment. Read once, validated as a whole (every missing or bad
//! key is reported before anything is rendered), then passed down.
//!
//! Every key is documented in docs/job.md. The user and group are checked with
//! labinit's own rules ([`crate::init::validate`]) and the grace with labinit's
//! duration parser, so a profile that passes here is one labinit accepts in
//! the container.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

use crate::init::{duration, validate};
use crate::job::names;

mod init;
pub(crate) use init::{init_text, parse_volume_flag, user_from_id, InitValues};

/// Where labinit lives in the lab images.
pub(crate) const DEFAULT_LABINIT: &str = "/opt/lab/labinit";
/// How long a finished Job (and its pods and logs) stays before Kubernetes
/// deletes it, unless the profile says otherwise.
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(7 * 86400);

/// The validated profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub user: User,
    pub job: JobDefaults,
    pub volumes: Vec<Volume>,
    /// `[env]`, in name order; values are literal.
    pub env: Vec<(String, String)>,
}

/// The cluster account the job runs as (`CLUSTER_USER`, `CLUSTER_USER_ID`,
/// `CLUSTER_GROUP_NAME`, `CLUSTER_GROUP_ID`).
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub group: String,
    pub gid: u32,
}

/// `[job]`: what every job of this researcher shares.
#[derive(Debug, Clone, PartialEq)]
pub struct JobDefaults {
    pub image: String,
    /// Absolute directory the command starts in.
    pub workdir: String,
    /// Kubernetes namespace (`metadata.namespace`, `kubectl -n`); none = the
    /// kubectl context's.
    pub namespace: Option<String>,
    /// RunAI project (`runai submit --project`); none = runai's configured one.
    pub project: Option<String>,
    /// Path of labinit in the image.
    pub labinit: String,
    /// labinit's grace (`LABKIT_GRACE`); none = labinit's default (20 s).
    pub grace: Option<Duration>,
    /// `ttlSecondsAfterFinished` of a Job.
    pub ttl: Duration,
    /// `sizeLimit` of the memory-backed `/dev/shm`; none = no limit.
    pub shm_size: Option<String>,
    /// The `priority` label when `--priority` is not given.
    pub priority: u32,
}

/// One `[[volume]]`: a persistent volume claim mounted at `mount`.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// The pod's volume name (a DNS-1123 label).
    pub name: String,
    /// Claim name for Pods and Jobs (`pv-cvlabdata2`).
    pub claim: Option<String>,
    /// Claim name for RunAI (`runai-pv-cvlabdata2`).
    pub runai_claim: Option<String>,
    pub mount: String,
    pub read_only: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    user: Option<RawUser>,
    job: Option<RawJob>,
    #[serde(default)]
    volume: Vec<RawVolume>,
    #[serde(default)]
    env: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: Option<String>,
    uid: Option<toml::Value>,
    group: Option<String>,
    gid: Option<toml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawJob {
    image: Option<String>,
    workdir: Option<String>,
    namespace: Option<String>,
    project: Option<String>,
    labinit: Option<String>,
    grace: Option<String>,
    ttl: Option<String>,
    shm_size: Option<String>,
    priority: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVolume {
    name: Option<String>,
    claim: Option<String>,
    runai_claim: Option<String>,
    mount: Option<String>,
    #[serde(default)]
    read_only: bool,
}

/// The default profile path: `$XDG_CONFIG_HOME/labkit/job.toml`, else
/// `$HOME/.config/labkit/job.toml`. `None` when neither variable is set.
pub(crate) fn default_path(xdg_config_home: Option<&str>, home: Option<&str>) -> Option<PathBuf> {
    match (xdg_config_home.filter(|s| s.starts_with('/')), home.filter(|s| !s.is_empty())) {
        (Some(x), _) => Some(Path::new(x).join("labkit/job.toml")),
        (None, Some(h)) => Some(Path::new(h).join(".config/labkit/job.toml")),
        (None, None) => None,
    }
}

/// Read and validate the profile at `path`.
pub fn load(path: &Path) -> Result<Profile> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow!(
                "profile {} does not exist ({e}); create it with `labkit job init --image IMAGE --workdir DIR`, or pass --profile FILE",
                path.display()
            )
        } else {
            anyhow!("cannot read the profile {}: {e}", path.display())
        }
    })?;
    parse(&text).with_context(|| format!("profile {}", path.display()))
}

/// Parse and validate a profile's text. Every problem is collected and
/// reported at once, one per line, so one round of edits fixes the file.
pub(crate) fn parse(text: &str) -> Result<Profile> {
    let raw: RawProfile = toml::from_str(text).map_err(|e| anyhow!("{}", e.to_string().trim_end()))?;
    let mut errors = Vec::new();
    let mut missing = |key: &str, what: &str| errors.push(format!("missing key {key} ({what})"));

    let u = raw.user.unwrap_or_default();
    let j = raw.job.unwrap_or_default();
    let name = u.name.clone();
    let group = u.group.clone();
    if name.is_none() {
        missing("user.name", "your cluster user name, as `id -un` prints it");
    }
    if u.uid.is_none() {
        missing("user.uid", "your cluster uid, as `id -u` prints it");
    }
    if group.is_none() {
        missing("user.group", "your cluster group name, as `id -gn` prints it");
    }
    if u.gid.is_none() {
        missing("user.gid", "your cluster gid, as `id -g` prints it");
    }
    if j.image.is_none() {
        missing("job.image", "the image to run, e.g. ic-registry.epfl.ch/cvlab/lis/lab-python-ml:cuda12");
    }
    if j.workdir.is_none() {
        missing("job.workdir", "the absolute directory your command starts in");
    }

    let mut check = |r: Result<()>| {
        if let Err(e) = r {
            errors.push(format!("{e:#}"));
        }
    };
    let mut uid = 0;
    let mut gid = 0;
    if let Some(n) = &name {
        check(validate::name("user.name", n).map_err(|f| anyhow!(f.message)));
        check(names::label_value("user.name (also the pod's `user` label)", n));
    }
    if let Some(g) = &group {
        check(validate::name("user.group", g).map_err(|f| anyhow!(f.message)));
    }
    if let Some(v) = &u.uid {
        check(id_value("user.uid", v, name.as_deref() == Some("root")).map(|n| uid = n));
    }
    if let Some(v) = &u.gid {
        check(id_value("user.gid", v, group.as_deref() == Some("root")).map(|n| gid = n));
    }
    if let Some(i) = &j.image {
        if i.trim().is_empty() || i.chars().any(char::is_whitespace) {
            check(Err(anyhow!("job.image {i:?} is not an image reference (empty or with white space)")));
        }
    }
    if let Some(w) = &j.workdir {
        check(abs_path("job.workdir", w));
    }
    if let Some(ns) = &j.namespace {
        if !names::is_dns1123_label(ns) {
            check(Err(anyhow!("job.namespace {ns:?} is not a Kubernetes namespace name (1-63 of a-z 0-9 '-')")));
        }
    }
    if let Some(p) = &j.project {
        if !names::is_dns1123_label(p) {
            check(Err(anyhow!("job.project {p:?} is not a RunAI project name (1-63 of a-z 0-9 '-')")));
        }
    }
    let labinit = j.labinit.clone().unwrap_or_else(|| DEFAULT_LABINIT.to_string());
    check(abs_path("job.labinit", &labinit));
    let mut grace = None;
    if let Some(g) = &j.grace {
        check(duration::parse_named("job.grace", g).map(|d| grace = Some(d)).map_err(|f| anyhow!(f.message)));
    }
    let mut ttl = DEFAULT_TTL;
    if let Some(t) = &j.ttl {
        check(ttl_value(t).map(|d| ttl = d));
    }
    if let Some(s) = &j.shm_size {
        check(names::quantity("job.shm_size", s));
    }
    let mut priority = 0;
    if let Some(p) = &j.priority {
        check(priority_value("job.priority", p).map(|n| priority = n));
    }

    let mut volumes: Vec<Volume> = Vec::new();
    for (i, v) in raw.volume.into_iter().enumerate() {
        let at = format!("[[volume]] #{}", i + 1);
        let Some(mount) = v.mount else {
            errors.push(format!("missing key mount in {at} (the directory in the container, e.g. /cvlabdata2)"));
            continue;
        };
        if let Err(e) = abs_path(&format!("{at} mount"), &mount) {
            errors.push(e.to_string());
            continue;
        }
        if mount == "/dev/shm" || mount == "/" {
            errors.push(format!("{at} mount {mount:?} is reserved (labkit mounts /dev/shm itself)"));
            continue;
        }
        if v.claim.is_none() && v.runai_claim.is_none() {
            errors.push(format!(
                "missing key claim in {at} ({mount}): give claim (for Pods and Jobs) and/or runai_claim (for runai submit)"
            ));
            continue;
        }
        for c in [&v.claim, &v.runai_claim].into_iter().flatten() {
            if !names::is_dns1123_label(c) && !is_dns1123_subdomain(c) {
                errors.push(format!("{at}: claim {c:?} is not a Kubernetes object name"));
            }
        }
        let name = v.name.clone().unwrap_or_else(|| volume_name_from(&mount));
        if !names::is_dns1123_label(&name) || name == "dshm" {
            errors.push(format!(
                "{at} ({mount}): volume name {name:?} is not usable (a-z 0-9 '-', not \"dshm\"); set name = \"…\" in it"
            ));
            continue;
        }
        if let Some(other) = volumes.iter().find(|o| o.name == name || o.mount == mount) {
            errors.push(format!(
                "{at} ({mount}) clashes with the volume {} at {} (same name or mount); set a distinct name or mount",
                other.name, other.mount
            ));
            continue;
        }
        volumes.push(Volume { name, claim: v.claim, runai_claim: v.runai_claim, mount, read_only: v.read_only });
    }

    let mut env = Vec::new();
    for (k, v) in raw.env {
        if let Err(e) = names::env_name("[env]", &k) {
            errors.push(e.to_string());
            continue;
        }
        if let Some(why) = reserved_env(&k) {
            errors.push(format!("[env] {k} is set by labkit ({why}); remove it from [env]"));
            continue;
        }
        let value = match v {
            toml::Value::String(s) => s,
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                errors.push(format!("[env] {k} is a {}, not a string or number", other.type_str()));
                continue;
            }
        };
        if value.contains('\0') {
            errors.push(format!("[env] {k} contains a NUL byte"));
            continue;
        }
        env.push((k, value));
    }

    if !errors.is_empty() {
        bail!("{}", errors.join("\n  "));
    }
    Ok(Profile {
        user: User { name: name.unwrap_or_default(), uid, group: group.unwrap_or_default(), gid },
        job: JobDefaults {
            image: j.image.unwrap_or_default(),
            workdir: j.workdir.unwrap_or_default(),
            namespace: j.namespace,
            project: j.project,
            labinit,
            grace,
            ttl,
            shm_size: j.shm_size,
            priority,
        },
        volumes,
        env,
    })
}

/// Why a variable may not appear in `[env]`, if it may not.
pub(crate) fn reserved_env(name: &str) -> Option<&'static str> {
    match name {
        "CLUSTER_USER" | "CLUSTER_USER_ID" | "CLUSTER_GROUP_NAME" | "CLUSTER_GROUP_ID" => Some("from [user]"),
        "LABKIT_TIMEOUT" => Some("from --timeout"),
        "LABKIT_GRACE" => Some("from --grace or job.grace, kept below the pod's terminationGracePeriodSeconds"),
        _ => None,
    }
}

fn id_value(key: &str, v: &toml::Value, root_name: bool) -> Result<u32> {
    let s = match v {
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::String(s) => s.clone(),
        other => bail!("{key} is a {}, not a whole number", other.type_str()),
    };
    validate::id(key, &s, root_name).map_err(|f| anyhow!(f.message))
}

/// A priority: a whole number ≥ 0 (a label value cannot start with '-' or '+').
pub(crate) fn priority_value(key: &str, v: &toml::Value) -> Result<u32> {
    match v {
        toml::Value::Integer(n) => parse_priority(key, &n.to_string()),
        toml::Value::String(s) => parse_priority(key, s),
        other => bail!("{key} is a {}, not a whole number", other.type_str()),
    }
}

/// Parse `--priority` / `job.priority`. The lab queue reads the pod label
/// `priority`; a label value must start with a letter or digit, so negative
/// numbers cannot be written there and are refused here.
pub(crate) fn parse_priority(key: &str, s: &str) -> Result<u32> {
    let s = s.trim();
    if s.starts_with('-') || s.starts_with('+') {
        bail!(
            "{key} {s:?}: the priority becomes the pod label `priority`, and a Kubernetes label value cannot start with '{}'; use 0 (the default) or a larger whole number",
            &s[..1]
        );
    }
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || s.len() > 9 {
        bail!("{key} {s:?} is not a whole number from 0 to 999999999");
    }
    Ok(s.parse().expect("checked digits"))
}

fn ttl_value(t: &str) -> Result<Duration> {
    let d = duration::parse_named("job.ttl", t).map_err(|f| anyhow!(f.message))?;
    if d.as_secs() > i32::MAX as u64 || d.subsec_nanos() != 0 {
        bail!("job.ttl {t:?} must be whole seconds below 68 years");
    }
    Ok(d)
}

fn abs_path(key: &str, p: &str) -> Result<()> {
    if !p.starts_with('/') || p.contains('\0') || p.contains('\n') || p.split('/').any(|c| c == "..") {
        bail!("{key} {p:?} is not an absolute path (it must start with '/', without '..' or line breaks)");
    }
    Ok(())
}

fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(names::is_dns1123_label)
}

/// A volume's default name: the mount's last component, lower-cased, with
/// anything outside `a-z0-9-` turned into '-'.
pub(crate) fn volume_name_from(mount: &str) -> String {
    let last = mount.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    let s: String = last
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' })
        .collect();
    s.trim_matches('-').chars().take(names::LABEL_MAX).collect::<String>().trim_end_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The profile of issue 16, verbatim: the fixture the `labkit job`
    /// suites use too (tests/job/support.rs).
    pub(crate) const ISSUE: &str = include_str!("../../../tests/job/profile.toml");

    #[test]
    fn issue_profile_is_accepted_as_written() {
        let p = parse(ISSUE).unwrap();
        assert_eq!(p.user, User { name: "alice".into(), uid: 123456, group: "CVLAB-unit".into(), gid: 11166 });
        assert_eq!(p.job.image, "ic-registry.epfl.ch/cvlab/lis/lab-python-ml:cuda12");
        assert_eq!(p.job.namespace.as_deref(), Some("runai-cvlab"));
        assert_eq!(p.job.project.as_deref(), Some("cvlab"));
        assert_eq!(p.job.labinit, DEFAULT_LABINIT);
        assert_eq!(p.job.ttl, DEFAULT_TTL);
        assert_eq!(p.volumes.len(), 1);
        assert_eq!(p.volumes[0].name, "cvlabdata2");
        assert_eq!(p.volumes[0].claim.as_deref(), Some("pv-cvlabdata2"));
        assert_eq!(p.env, vec![("TORCH_HOME".to_string(), "/cvlabsrc1/cvlab/pytorch_model_zoo".to_string())]);
    }

    #[test]
    fn every_missing_key_is_named_at_once() {
        let e = parse("[user]\nname = \"alice\"\n").unwrap_err().to_string();
        for k in ["user.uid", "user.group", "user.gid", "job.image", "job.workdir"] {
            assert!(e.contains(&format!("missing key {k}")), "{k}: {e}");
        }
        assert!(!e.contains("user.name"), "{e}");
        // Negative control: removing one key from the complete profile names only it.
        let e = parse(&ISSUE.replace("gid   = 11166\n", "")).unwrap_err().to_string();
        assert_eq!(e.matches("missing key").count(), 1, "{e}");
        assert!(e.contains("missing key user.gid"), "{e}");
    }

    #[test]
    fn bad_values_are_refused_with_their_key() {
        let cases = [
            ("uid   = 123456", "uid   = -5", "user.uid"),
            ("uid   = 123456", "uid   = 65534", "user.uid"),
            ("name  = \"alice\"", "name  = \"al:ice\"", "user.name"),
            ("name  = \"alice\"", "name  = \"alice_\"", "label value"),
            ("workdir   = \"/cvlabdata2/home/alice/project\"", "workdir   = \"project\"", "job.workdir"),
            ("namespace = \"runai-cvlab\"", "namespace = \"RunAI\"", "job.namespace"),
            ("mount       = \"/cvlabdata2\"", "mount       = \"/dev/shm\"", "reserved"),
            ("TORCH_HOME = ", "CLUSTER_USER = ", "set by labkit"),
            ("TORCH_HOME = ", "\"A-B\" = ", "variable name"),
            ("project   = \"cvlab\"", "project   = \"cvlab\"\ncolour = \"red\"", "unknown field"),
            ("project   = \"cvlab\"", "project   = \"cvlab\"\ngrace = \"soon\"", "job.grace"),
            ("project   = \"cvlab\"", "project   = \"cvlab\"\npriority = -1", "label value cannot start"),
            ("project   = \"cvlab\"", "project   = \"cvlab\"\nshm_size = \"16GB\"", "job.shm_size"),
        ];
        for (from, to, want) in cases {
            assert!(ISSUE.contains(from), "{from}");
            let e = parse(&ISSUE.replace(from, to)).unwrap_err().to_string();
            assert!(e.contains(want), "{to}: {e}");
        }
    }

    #[test]
    fn optional_keys() {
        let text = ISSUE.replace(
            "project   = \"cvlab\"",
            "project = \"cvlab\"\ngrace = \"45s\"\nttl = \"1d\"\nshm_size = \"16Gi\"\npriority = 2\nlabinit = \"/usr/local/bin/labinit\"",
        );
        let p = parse(&text).unwrap();
        assert_eq!(p.job.grace, Some(Duration::from_secs(45)));
        assert_eq!(p.job.ttl, Duration::from_secs(86400));
        assert_eq!(p.job.shm_size.as_deref(), Some("16Gi"));
        assert_eq!(p.job.priority, 2);
        assert_eq!(p.job.labinit, "/usr/local/bin/labinit");
        let p = parse(&ISSUE.replace("[env]\n", "[env]\nOMP_NUM_THREADS = 4\n")).unwrap();
        assert!(p.env.contains(&("OMP_NUM_THREADS".to_string(), "4".to_string())));
    }

    #[test]
    fn default_path_follows_xdg() {
        assert_eq!(default_path(Some("/x"), Some("/home/a")).unwrap(), Path::new("/x/labkit/job.toml"));
        assert_eq!(default_path(None, Some("/home/a")).unwrap(), Path::new("/home/a/.config/labkit/job.toml"));
        assert_eq!(default_path(Some("rel"), Some("/home/a")).unwrap(), Path::new("/home/a/.config/labkit/job.toml"));
        assert_eq!(default_path(None, None), None);
    }
}
