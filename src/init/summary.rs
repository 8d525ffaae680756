//! The start summary: the log lines that answer the first questions of a
//! researcher or an admin reading a ticket — which labinit and which image
//! (name, variant, revision), which GPUs the container sees, whether
//! `/dev/shm` is large enough for PyTorch DataLoader workers, when the
//! timeout ends, the grace and the working directory; and at the end, how
//! long the job ran.
//!
//! [`Facts`] are gathered once at the edge ([`gather_with`]: the environment,
//! `/dev`, `statvfs("/dev/shm")`, the clock); the lines are made by pure
//! functions. The image's identity comes from the variables the generated
//! Dockerfiles set (`LAB_IMAGE`, `LAB_IMAGE_VARIANT`, `LAB_IMAGE_REVISION`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::init::duration;

/// Below this, `/dev/shm` gets a warning: PyTorch's DataLoader workers pass
/// batches through shared memory, and the container runtimes' default of
/// 64 MiB ends them with "bus error" for image batches.
pub(crate) const SHM_MIN: u64 = 1 << 30;

/// labinit's version and the git revision it was built from (`build.rs`).
pub(crate) fn version() -> &'static str {
    concat!(env!("CARGO_PKG_VERSION"), " (", env!("LABKIT_GIT_REVISION"), ")")
}

/// What the summary reports, gathered once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Facts {
    pub image: Option<String>,
    pub variant: Option<String>,
    pub revision: Option<String>,
    /// `NVIDIA_VISIBLE_DEVICES` as the runtime set it.
    pub nvidia_visible: Option<String>,
    /// GPU device nodes present (`/dev/nvidia0`, …), sorted.
    pub gpu_devices: Vec<String>,
    /// Size of `/dev/shm` in bytes; `None` when it is not a mount we can read.
    pub shm_bytes: Option<u64>,
}

/// The first lines of every start: version and image, GPUs. Pure.
pub(crate) fn identity_lines(f: &Facts) -> Vec<String> {
    let mut image = match (&f.image, &f.variant) {
        (Some(i), Some(v)) => format!("image {i}, variant {v}"),
        (Some(i), None) => format!("image {i}"),
        (None, _) => "image: not a lab image (LAB_IMAGE unset)".to_string(),
    };
    if let Some(r) = &f.revision {
        image.push_str(&format!(", revision {r}"));
    }
    let gpus = match (&f.nvidia_visible, f.gpu_devices.is_empty()) {
        (Some(v), false) => format!("GPUs: NVIDIA_VISIBLE_DEVICES={v}; devices {}", f.gpu_devices.join(", ")),
        (Some(v), true) if v != "void" && v != "none" && !v.is_empty() => format!(
            "GPUs: NVIDIA_VISIBLE_DEVICES={v} but no /dev/nvidia[0-9]* device: the GPU was not given to this container (check the GPU limit of the pod)"
        ),
        (_, false) => format!("GPUs: devices {}", f.gpu_devices.join(", ")),
        _ => "GPUs: none visible (no /dev/nvidia[0-9]* device)".to_string(),
    };
    vec![format!("labinit {}; {image}", version()), gpus]
}

/// The warning for a small `/dev/shm`, with the fix for both ways of
/// starting a job; `None` when it is large enough or unknown. Pure.
pub(crate) fn shm_warning(f: &Facts) -> Option<String> {
    let size = f.shm_bytes?;
    if size >= SHM_MIN {
        return None;
    }
    Some(format!(
        "/dev/shm is {} (less than 1 GiB): PyTorch DataLoader workers (num_workers > 0) can die with \"bus error\". \
         Fix: in the pod spec add the volume {{name: dshm, emptyDir: {{medium: Memory, sizeLimit: 8Gi}}}} mounted at /dev/shm; \
         with runai submit add --large-shm",
        bytes(size)
    ))
}

/// The line about the job's limits: timeout with its end (UTC), grace and
/// working directory. `now` is seconds since the epoch. Pure.
pub(crate) fn job_line(timeout: Option<Duration>, grace: Duration, now: u64, workdir: Option<&Path>) -> String {
    let limit = match timeout.filter(|t| !t.is_zero()) {
        Some(t) => {
            let end = now.saturating_add(t.as_secs() + u64::from(t.subsec_nanos() > 0));
            format!("timeout {}, at {} (UTC)", duration::show(t), crate::init::civil::utc(end))
        }
        None => "no timeout".to_string(),
    };
    let dir = workdir.map(|d| format!("; working directory {}", d.display())).unwrap_or_default();
    format!("job limits: {limit}; grace {} (SIGTERM, then SIGKILL){dir}", duration::show(grace))
}

/// `1.5 KiB`-style sizes for the log. Pure.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} bytes")
    } else if v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Gathers the facts: the image variables, `NVIDIA_VISIBLE_DEVICES`, the
/// GPU device nodes under `root`/dev (listed only when `gpus`: they only
/// feed an info line) and the size of `/dev/shm` (always read: it feeds a
/// warning).
fn gather_with(env: &[(OsString, OsString)], root: &Path, gpus: bool) -> Facts {
    let get = |name: &str| {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| printable(&v.to_string_lossy())).filter(|v| !v.is_empty())
    };
    let dev = root.join("dev");
    let listing = if gpus { std::fs::read_dir(&dev) } else { Err(std::io::ErrorKind::Unsupported.into()) };
    let mut gpu_devices: Vec<String> = listing
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let n = e.file_name().into_string().ok()?;
                    let digits = n.strip_prefix("nvidia")?;
                    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then(|| format!("/dev/{n}"))
                })
                .collect()
        })
        .unwrap_or_default();
    gpu_devices.sort_by_key(|d| (d.len(), d.clone()));
    let shm_bytes = nix::sys::statvfs::statvfs(&dev.join("shm"))
        .ok()
        .map(|s| (s.blocks() as u64).saturating_mul(s.fragment_size() as u64));
    Facts {
        image: get("LAB_IMAGE"),
        variant: get("LAB_IMAGE_VARIANT"),
        revision: get("LAB_IMAGE_REVISION"),
        nvidia_visible: get("NVIDIA_VISIBLE_DEVICES"),
        gpu_devices,
        shm_bytes,
    }
}

/// A value from the environment, safe for one log line: at most 200
/// characters, control characters escaped ([`crate::init::log::escape`]).
fn printable(s: &str) -> String {
    crate::init::log::escape(&s.chars().take(200).collect::<String>()).into_owned()
}

/// Logs the identity lines and the `/dev/shm` warning (run and wait).
pub(crate) fn log_start(env: &[(OsString, OsString)], root: &Path) {
    let quiet = crate::init::log::is_quiet();
    let facts = gather_with(env, root, !quiet);
    for line in identity_lines(&facts) {
        crate::init::log::info(line);
    }
    if let Some(w) = shm_warning(&facts) {
        crate::init::log::warn(w);
    }
}

/// Where Kubernetes puts the pod's namespace when a service account token
/// is mounted (the default).
pub(crate) const NAMESPACE_FILE: &str = "var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The command that connects to this container: the pod's name is its
/// host name (`HOSTNAME`), the namespace comes from `POD_NAMESPACE` (set it
/// with the downward API) or the service account's namespace file. Pure
/// but for reading that file (root-owned, written by the kubelet).
pub(crate) fn connect_hint(env: &[(OsString, OsString)], root: &Path) -> String {
    let get = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.to_string_lossy().into_owned());
    let pod = get("HOSTNAME").filter(|h| is_dns_label(h));
    let ns = get("POD_NAMESPACE").or_else(|| {
        use std::io::Read;
        let mut text = String::new();
        std::fs::File::open(root.join(NAMESPACE_FILE)).ok()?.take(256).read_to_string(&mut text).ok()?;
        Some(text.trim().to_string())
    });
    hint(pod.as_deref(), ns.as_deref().filter(|n| is_dns_label(n)))
}

/// `kubectl exec -it POD [-n NS] -- /opt/lab/labinit shell`. Pure.
pub(crate) fn hint(pod: Option<&str>, namespace: Option<&str>) -> String {
    let ns = namespace.map(|n| format!(" -n {n}")).unwrap_or_default();
    format!("kubectl exec -it {}{ns} -- /opt/lab/labinit shell", pod.unwrap_or("POD"))
}

/// An RFC 1123 label (what pod host names and namespaces are), ≤ 253 for
/// pod names. Anything else is not shown.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !s.starts_with(['-', '.'])
}

/// Seconds since the epoch, now.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The working directory the job starts in: the first of `dirs` that exists.
pub(crate) fn first_dir(dirs: &[PathBuf]) -> Option<&Path> {
    dirs.iter().find(|d| d.is_dir()).map(PathBuf::as_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_devices_are_listed_only_for_the_info_line() {
        let root = std::env::temp_dir().join(format!("labkit-summary-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("dev")).unwrap();
        std::fs::write(root.join("dev/nvidia0"), "").unwrap();
        std::fs::write(root.join("dev/nvidiactl"), "").unwrap();
        assert_eq!(gather_with(&[], &root, true).gpu_devices, vec!["/dev/nvidia0".to_string()]);
        // Quiet: no info line, so /dev is not listed.
        assert!(gather_with(&[], &root, false).gpu_devices.is_empty());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn identity_names_image_and_gpus() {
        let f = Facts {
            image: Some("lab-pytorch".into()),
            variant: Some("cuda12".into()),
            revision: Some("abc1234".into()),
            nvidia_visible: Some("0,1".into()),
            gpu_devices: vec!["/dev/nvidia0".into(), "/dev/nvidia1".into()],
            shm_bytes: Some(8 << 30),
        };
        let l = identity_lines(&f);
        assert!(l[0].starts_with("labinit 0."), "{}", l[0]);
        assert!(l[0].ends_with("; image lab-pytorch, variant cuda12, revision abc1234"), "{}", l[0]);
        assert_eq!(l[1], "GPUs: NVIDIA_VISIBLE_DEVICES=0,1; devices /dev/nvidia0, /dev/nvidia1");
        let none = identity_lines(&Facts::default());
        assert!(none[0].ends_with("image: not a lab image (LAB_IMAGE unset)"));
        assert_eq!(none[1], "GPUs: none visible (no /dev/nvidia[0-9]* device)");
        let asked = identity_lines(&Facts { nvidia_visible: Some("all".into()), ..Facts::default() });
        assert!(asked[1].contains("the GPU was not given to this container"), "{}", asked[1]);
        // Control: the CPU images' "void" is not a missing GPU.
        let void = identity_lines(&Facts { nvidia_visible: Some("void".into()), ..Facts::default() });
        assert!(!void[1].contains("not given"), "{}", void[1]);
    }

    #[test]
    fn small_shm_warns_with_the_fix() {
        let small = Facts { shm_bytes: Some(64 << 20), ..Facts::default() };
        let w = shm_warning(&small).expect("64 MiB warns");
        assert!(w.starts_with("/dev/shm is 64 MiB (less than 1 GiB)"), "{w}");
        assert!(w.contains("medium: Memory") && w.contains("--large-shm"), "{w}");
        // Controls: 1 GiB and more, or unknown, say nothing.
        assert_eq!(shm_warning(&Facts { shm_bytes: Some(1 << 30), ..Facts::default() }), None);
        assert_eq!(shm_warning(&Facts::default()), None);
    }

    #[test]
    fn job_line_gives_the_end_of_the_timeout() {
        let l = job_line(Some(Duration::from_secs(4 * 3600)), Duration::from_secs(20), 0, Some(Path::new("/data")));
        assert_eq!(l, "job limits: timeout 4 h, at 1970-01-01T04:00:00Z (UTC); grace 20 s (SIGTERM, then SIGKILL); working directory /data");
        let l = job_line(None, Duration::from_secs(20), 0, None);
        assert_eq!(l, "job limits: no timeout; grace 20 s (SIGTERM, then SIGKILL)");
        assert_eq!(job_line(Some(Duration::ZERO), Duration::from_secs(20), 0, None), l, "0 is no timeout");
    }

    #[test]
    fn environment_values_cannot_forge_lines() {
        let env = vec![(OsString::from("LAB_IMAGE"), OsString::from("x\nlabinit: forged"))];
        let f = gather_with(&env, Path::new("/nonexistent"), true);
        assert_eq!(f.image.as_deref(), Some("x\\nlabinit: forged"));
        assert!(!identity_lines(&f)[0].contains('\n'));
    }

    #[test]
    fn the_hint_names_the_pod_and_namespace() {
        assert_eq!(
            hint(Some("train-7f9c"), Some("runai-cvlab")),
            "kubectl exec -it train-7f9c -n runai-cvlab -- /opt/lab/labinit shell"
        );
        assert_eq!(hint(None, None), "kubectl exec -it POD -- /opt/lab/labinit shell");
        let env = vec![
            (OsString::from("HOSTNAME"), OsString::from("job-0")),
            (OsString::from("POD_NAMESPACE"), OsString::from("ns1")),
        ];
        assert_eq!(
            connect_hint(&env, Path::new("/nonexistent")),
            "kubectl exec -it job-0 -n ns1 -- /opt/lab/labinit shell"
        );
        // Control: a host name that is no pod name (a shell-unsafe string) is not shown.
        let env = vec![(OsString::from("HOSTNAME"), OsString::from("x; rm -rf ~"))];
        assert_eq!(connect_hint(&env, Path::new("/nonexistent")), "kubectl exec -it POD -- /opt/lab/labinit shell");
    }

    #[test]
    fn sizes() {
        assert_eq!(bytes(512), "512 bytes");
        assert_eq!(bytes(64 << 20), "64 MiB");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(8 << 30), "8 GiB");
    }
}
