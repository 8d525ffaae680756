//! Kubernetes objects for a job, built from `k8s-openapi`'s typed structs
//! (generated from the official OpenAPI schema; feature `v1_33`) and printed
//! as YAML with `yaml_serde`. No text templates: a field that does not exist
//! cannot be written, and every string is quoted by the YAML emitter where
//! YAML would read it as something else (the `priority: "1"` label).
//!
//! Forms: a bare Pod (the cluster guide's workflow), a `batch/v1` Job (the
//! default), and for `--workers N` an Indexed Job plus a headless Service.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, PersistentVolumeClaimVolumeSource, Pod, PodSpec,
    PodTemplateSpec, ResourceRequirements, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::job::command::{container_argv, kubernetes_literal};
use crate::job::profile::Profile;
use crate::job::spec::{Form, Gpu, Spec, RENDEZVOUS_PORT};

/// The extended resource the NVIDIA device plugin offers.
pub(crate) const GPU_RESOURCE: &str = "nvidia.com/gpu";
/// The RunAI scheduler and its fractional-GPU annotation ("Setting the
/// Default Scheduler" in RunAI's documentation): `schedulerName:
/// runai-scheduler` plus `metadata.annotations.gpu-fraction: "0.5"`.
pub(crate) const RUNAI_SCHEDULER: &str = "runai-scheduler";
pub(crate) const GPU_FRACTION_ANNOTATION: &str = "gpu-fraction";
/// Label the Job controller puts on its pods (Kubernetes ≥ 1.27); the
/// headless Service selects the job's pods with it.
pub(crate) const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// `managed-by` label on everything labkit renders.
pub(crate) const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "labkit");

/// One rendered object.
#[derive(Debug, Clone)]
pub(crate) enum Object {
    Pod(Box<Pod>),
    Job(Box<Job>),
    Service(Box<Service>),
}

/// The objects for `spec` (`--to job` or `pod`), in the order to apply them.
pub(crate) fn objects(profile: &Profile, spec: &Spec) -> Result<Vec<Object>> {
    let pod_spec = pod_spec(profile, spec)?;
    let meta = object_meta(profile, spec);
    Ok(match (spec.form, spec.workers) {
        (Form::Pod, _) => vec![Object::Pod(Box::new(Pod { metadata: meta, spec: Some(pod_spec), status: None }))],
        (Form::Job, workers) => {
            let mut out = Vec::new();
            let mut job_spec = JobSpec {
                backoff_limit: Some(0),
                ttl_seconds_after_finished: Some(i32::try_from(profile.job.ttl.as_secs()).unwrap_or(i32::MAX)),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: meta.labels.clone(),
                        annotations: meta.annotations.clone(),
                        ..Default::default()
                    }),
                    spec: Some(pod_spec),
                },
                ..Default::default()
            };
            if let Some(n) = workers {
                let n = i32::try_from(n).expect("checked ≤ 1000");
                job_spec.completion_mode = Some("Indexed".into());
                job_spec.completions = Some(n);
                job_spec.parallelism = Some(n);
                if let Some(ps) = job_spec.template.spec.as_mut() {
                    // Pod host names NAME-INDEX, resolvable as
                    // NAME-INDEX.NAME inside the namespace.
                    ps.subdomain = Some(spec.name.clone());
                }
                out.push(Object::Service(Box::new(headless_service(profile, spec))));
            }
            out.push(Object::Job(Box::new(Job { metadata: meta, spec: Some(job_spec), status: None })));
            out
        }
        (Form::Runai, _) => anyhow::bail!("internal: --to runai has no Kubernetes objects"),
    })
}

fn labels(profile: &Profile, spec: &Spec) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("user".to_string(), profile.user.name.clone()),
        ("priority".to_string(), spec.priority.to_string()),
        (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
    ])
}

fn object_meta(profile: &Profile, spec: &Spec) -> ObjectMeta {
    let annotations = match (&spec.gpu, spec.runai_scheduler) {
        (Gpu::Fraction(f), true) => Some(BTreeMap::from([(GPU_FRACTION_ANNOTATION.to_string(), f.clone())])),
        _ => None,
    };
    ObjectMeta {
        name: Some(spec.name.clone()),
        namespace: profile.job.namespace.clone(),
        labels: Some(labels(profile, spec)),
        annotations,
        ..Default::default()
    }
}

fn env(profile: &Profile, spec: &Spec) -> Vec<(String, String)> {
    let u = &profile.user;
    let mut env = vec![
        ("CLUSTER_USER".to_string(), u.name.clone()),
        ("CLUSTER_USER_ID".to_string(), u.uid.to_string()),
        ("CLUSTER_GROUP_NAME".to_string(), u.group.clone()),
        ("CLUSTER_GROUP_ID".to_string(), u.gid.to_string()),
    ];
    env.extend(profile.env.iter().cloned());
    env.push(("LABKIT_GRACE".to_string(), duration_text(spec.grace)));
    if let Some(t) = &spec.timeout {
        env.push(("LABKIT_TIMEOUT".to_string(), t.clone()));
    }
    env
}

/// The environment every form passes to the container, in order: the four
/// `CLUSTER_*`, the profile's `[env]`, `LABKIT_GRACE`, `LABKIT_TIMEOUT`.
pub(crate) fn container_env(profile: &Profile, spec: &Spec) -> Vec<(String, String)> {
    env(profile, spec)
}

/// A duration as labinit parses it back exactly: whole seconds as `20s`,
/// else seconds with the fraction (`0.5s`).
pub(crate) fn duration_text(d: std::time::Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        let s = format!("{}.{:09}", d.as_secs(), d.subsec_nanos());
        format!("{}s", s.trim_end_matches('0'))
    }
}

fn pod_spec(profile: &Profile, spec: &Spec) -> Result<PodSpec> {
    let mut volumes = vec![Volume {
        // PyTorch DataLoader workers share tensors through /dev/shm; the
        // runtime's default is 64 MiB, which ends in "bus error".
        name: "dshm".into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: Some("Memory".into()),
            size_limit: profile.job.shm_size.clone().map(Quantity),
        }),
        ..Default::default()
    }];
    let mut mounts = vec![VolumeMount { name: "dshm".into(), mount_path: "/dev/shm".into(), ..Default::default() }];
    for v in &profile.volumes {
        let claim = v.claim.clone().context("internal: volume without claim passed spec::check")?;
        volumes.push(Volume {
            name: v.name.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim,
                read_only: v.read_only.then_some(true),
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: v.name.clone(),
            mount_path: v.mount.clone(),
            read_only: v.read_only.then_some(true),
            ..Default::default()
        });
    }
    let resources = match spec.gpu {
        Gpu::Whole(n) if n > 0 => Some(ResourceRequirements {
            limits: Some(BTreeMap::from([(GPU_RESOURCE.to_string(), Quantity(n.to_string()))])),
            ..Default::default()
        }),
        _ => None,
    };
    let mut ports: Vec<ContainerPort> =
        spec.ports.iter().map(|p| ContainerPort { container_port: i32::from(*p), ..Default::default() }).collect();
    if spec.workers.is_some() {
        ports.push(ContainerPort {
            container_port: i32::from(RENDEZVOUS_PORT),
            name: Some("rendezvous".into()),
            ..Default::default()
        });
    }
    let argv = container_argv(profile, spec)?;
    let container = Container {
        name: spec.name.clone(),
        image: Some(profile.job.image.clone()),
        command: Some(argv.iter().map(|a| kubernetes_literal(a)).collect()),
        env: Some(
            env(profile, spec)
                .into_iter()
                .map(|(name, value)| EnvVar { name, value: Some(kubernetes_literal(&value)), value_from: None })
                .collect(),
        ),
        ports: (!ports.is_empty()).then_some(ports),
        resources,
        volume_mounts: Some(mounts),
        stdin: spec.interactive.then_some(true),
        tty: spec.interactive.then_some(true),
        ..Default::default()
    };
    Ok(PodSpec {
        containers: vec![container],
        restart_policy: Some("Never".into()),
        termination_grace_period_seconds: Some(spec.termination_grace_secs),
        scheduler_name: spec.runai_scheduler.then(|| RUNAI_SCHEDULER.to_string()),
        volumes: Some(volumes),
        ..Default::default()
    })
}

fn headless_service(profile: &Profile, spec: &Spec) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(spec.name.clone()),
            namespace: profile.job.namespace.clone(),
            labels: Some(labels(profile, spec)),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(BTreeMap::from([(JOB_NAME_LABEL.to_string(), spec.name.clone())])),
            // Publish the pods' DNS records before they are ready: torchrun
            // on every pod resolves NAME-0.NAME while the pods start.
            publish_not_ready_addresses: Some(true),
            ports: Some(vec![ServicePort {
                name: Some("rendezvous".into()),
                port: i32::from(RENDEZVOUS_PORT),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// Print objects as one YAML stream (documents separated by `---`), with a
/// comment line saying what made it.
pub(crate) fn to_yaml(objects: &[Object], header: &str) -> Result<String> {
    let mut out = String::new();
    for line in header.lines() {
        out.push_str(&format!("# {line}\n"));
    }
    for (i, o) in objects.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        let doc = match o {
            Object::Pod(p) => yaml_serde::to_string(p),
            Object::Job(j) => yaml_serde::to_string(j),
            Object::Service(s) => yaml_serde::to_string(s),
        }
        .context("internal: YAML serialisation failed")?;
        out.push_str(&doc);
    }
    Ok(out)
}
