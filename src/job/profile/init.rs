//! What `labkit job init` writes: a new profile from `id`'s output and the
//! flags, with a comment for every key, checked with [`super::parse`]
//! before it is returned.

use anyhow::{anyhow, bail, Context, Result};

use super::{parse, User};
use crate::init::validate;

/// What `labkit job init` writes.
#[derive(Debug, Clone)]
pub(crate) struct InitValues {
    pub(crate) user: User,
    pub(crate) image: String,
    pub(crate) workdir: String,
    pub(crate) namespace: Option<String>,
    pub(crate) project: Option<String>,
    /// `CLAIM:RUNAI_CLAIM:MOUNT` triples.
    pub(crate) volumes: Vec<(String, String, String)>,
    pub(crate) env: Vec<(String, String)>,
}

/// The text of a new profile, with a comment for every key. It is checked
/// with [`parse`] before it is returned, so `init` never writes a profile that
/// `render` would refuse.
pub(crate) fn init_text(v: &InitValues) -> Result<String> {
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut t = String::new();
    t.push_str("# labkit job profile (docs/job.md lists every key). Written by `labkit job init`.\n\n");
    t.push_str("# The cluster account the job runs as: the CLUSTER_* variables labinit reads.\n");
    t.push_str("# Run `id` on the cluster's login node: uid=UID(NAME) gid=GID(GROUP).\n");
    t.push_str("[user]\n");
    t.push_str(&format!(
        "name  = {}\nuid   = {}\ngroup = {}\ngid   = {}\n\n",
        q(&v.user.name),
        v.user.uid,
        q(&v.user.group),
        v.user.gid
    ));
    t.push_str("[job]\n");
    t.push_str(&format!("image     = {}\n", q(&v.image)));
    t.push_str(&format!("workdir   = {}   # the command starts here\n", q(&v.workdir)));
    match &v.namespace {
        Some(ns) => t.push_str(&format!("namespace = {}\n", q(ns))),
        None => t.push_str("# namespace = \"runai-cvlab\"   # kubectl namespace (default: your kubectl context's)\n"),
    }
    match &v.project {
        Some(p) => t.push_str(&format!("project   = {}\n", q(p))),
        None => t.push_str("# project   = \"cvlab\"         # runai project (default: runai's configured one)\n"),
    }
    t.push_str("# grace    = \"20s\"   # labinit's grace (LABKIT_GRACE); the pod gets 10 s more\n");
    t.push_str("# ttl      = \"7d\"    # a finished Job and its logs are deleted after this\n");
    t.push_str("# shm_size = \"16Gi\"  # size limit of /dev/shm (memory); default: none\n");
    t.push_str("# priority = 0       # the pod label `priority` when --priority is not given\n");
    for (claim, runai, mount) in &v.volumes {
        t.push_str("\n[[volume]]\n");
        t.push_str(&format!("claim       = {}\n", q(claim)));
        t.push_str(&format!("runai_claim = {}\n", q(runai)));
        t.push_str(&format!("mount       = {}\n", q(mount)));
    }
    t.push_str("\n# Extra environment of every job (values are literal: no $ expansion).\n[env]\n");
    for (k, val) in &v.env {
        t.push_str(&format!("{k} = {}\n", q(val)));
    }
    parse(&t).context("the profile labkit job init would write is invalid")?;
    Ok(t)
}

/// Parse the output of `id -u`, `id -un`, `id -g`, `id -gn` (one value each).
pub(crate) fn user_from_id(uid: &str, name: &str, gid: &str, group: &str) -> Result<User> {
    let (uid, name, gid, group) = (uid.trim(), name.trim(), gid.trim(), group.trim());
    validate::name("user name (id -un)", name).map_err(|f| anyhow!(f.message))?;
    validate::name("group name (id -gn)", group).map_err(|f| anyhow!(f.message))?;
    let uid = validate::id("uid (id -u)", uid, name == "root").map_err(|f| anyhow!(f.message))?;
    let gid = validate::id("gid (id -g)", gid, group == "root").map_err(|f| anyhow!(f.message))?;
    Ok(User { name: name.to_string(), uid, group: group.to_string(), gid })
}

/// Parse `CLAIM:RUNAI_CLAIM:MOUNT` (or `CLAIM:MOUNT`, the RunAI claim then
/// being `runai-CLAIM` as on the lab's cluster).
pub(crate) fn parse_volume_flag(s: &str) -> Result<(String, String, String)> {
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        [c, r, m] if !c.is_empty() && !r.is_empty() => Ok((c.to_string(), r.to_string(), m.to_string())),
        [c, m] if !c.is_empty() => Ok((c.to_string(), format!("runai-{c}"), m.to_string())),
        _ => bail!("--volume {s:?}: write CLAIM:RUNAI_CLAIM:MOUNT (e.g. pv-cvlabdata2:runai-pv-cvlabdata2:/cvlabdata2) or CLAIM:MOUNT"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_text_round_trips() {
        let v = InitValues {
            user: user_from_id("123456\n", "alice\n", "11166\n", "CVLAB-unit\n").unwrap(),
            image: "img:tag".into(),
            workdir: "/cvlabdata2/home/alice".into(),
            namespace: Some("runai-cvlab".into()),
            project: None,
            volumes: vec![parse_volume_flag("pv-cvlabdata2:/cvlabdata2").unwrap()],
            env: vec![("TORCH_HOME".into(), "/x \"quoted\" $HOME".into())],
        };
        let p = parse(&init_text(&v).unwrap()).unwrap();
        assert_eq!(p.user, v.user);
        assert_eq!(p.job.workdir, v.workdir);
        assert_eq!(p.job.project, None);
        assert_eq!(p.volumes[0].runai_claim.as_deref(), Some("runai-pv-cvlabdata2"));
        assert_eq!(p.env[0].1, "/x \"quoted\" $HOME");
        // Negative control: a bad value is refused before anything is written.
        let bad = InitValues { workdir: "relative".into(), ..v };
        assert!(init_text(&bad).is_err());
    }

    #[test]
    fn id_output_is_validated() {
        assert!(user_from_id("0", "root", "0", "root").is_ok());
        assert!(user_from_id("abc", "alice", "1", "g").is_err());
        assert!(user_from_id("1000", "", "1000", "g").is_err());
        assert!(parse_volume_flag("a:b:/m").is_ok());
        assert!(parse_volume_flag("/m").is_err());
        assert!(parse_volume_flag("a:b:c:d").is_err());
    }
}
