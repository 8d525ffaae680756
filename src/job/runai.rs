//! The `runai submit` form: the argv the lab's `runai_one.sh` built by hand,
//! from the same profile and spec as the YAML forms. Printed as one shell
//! line with every word quoted ([`crate::job::command::join`]), or executed
//! directly by `labkit job submit --to runai` (no shell involved).

use anyhow::{Context, Result};

use crate::job::command::{container_argv, kubernetes_literal};
use crate::job::manifest::container_env;
use crate::job::profile::Profile;
use crate::job::spec::{Gpu, Spec};

/// `runai submit NAME …` for `spec`, program name first.
pub(crate) fn submit_argv(runai: &str, profile: &Profile, spec: &Spec) -> Result<Vec<String>> {
    let mut a: Vec<String> = vec![runai.into(), "submit".into(), spec.name.clone()];
    if let Some(p) = &profile.job.project {
        a.extend(["--project".into(), p.clone()]);
    }
    a.extend(["-i".into(), profile.job.image.clone()]);
    match &spec.gpu {
        Gpu::Whole(0) => {}
        Gpu::Whole(n) => a.extend(["--gpu".into(), n.to_string()]),
        Gpu::Fraction(f) => a.extend(["--gpu".into(), f.clone()]),
    }
    for v in &profile.volumes {
        let claim = v.runai_claim.as_deref().context("internal: volume without runai_claim passed spec::check")?;
        let ro = if v.read_only { ":ro" } else { "" };
        a.extend(["--pvc".into(), format!("{claim}:{}{ro}", v.mount)]);
    }
    a.push("--large-shm".into());
    for (k, v) in container_env(profile, spec) {
        a.extend(["-e".into(), format!("{k}={}", kubernetes_literal(&v))]);
    }
    for p in &spec.ports {
        a.extend(["--port".into(), p.to_string()]);
    }
    if spec.interactive {
        a.push("--interactive".into());
    }
    a.extend(["--command".into(), "--".into()]);
    a.extend(container_argv(profile, spec)?.iter().map(|w| kubernetes_literal(w)));
    Ok(a)
}
