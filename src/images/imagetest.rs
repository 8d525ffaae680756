//! `labkit test`: tests that run inside the built images, inherited by
//! children (as jupyter docker-stacks do): an image is tested with its own
//! tests and those of every ancestor, so `lab-python-ml:cpu` also proves what
//! `lab-base` promised.
//!
//! Tests are files under `images/tests/<image>/`: `*.sh` runs with bash,
//! `*.py` with the image's `python`. Each runs in a fresh container of the
//! image started the way the cluster starts it (labinit as PID 1, the four
//! `CLUSTER_*` variables, so the test runs as that user), with
//! `images/tests` mounted read-only at [`MOUNT`]. Exit 0 passes, exit
//! [`SKIP_CODE`] (77, automake's convention) is a skip whose reason is the
//! test's last output line, anything else fails. Tests learn the variant and
//! whether a GPU was asked for from `LAB_TEST_VARIANT`, `LAB_TEST_KIND`
//! (`cpu`/`cuda`) and `LAB_TEST_GPU` (`1` with `--gpu`: then a missing GPU is
//! a failure, never a skip).
//!
//! Discovery, argv and outcome classification are pure; running the engine is
//! the thin edge.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::layout::Layout;
use super::manifest::{Family, Kind};
use super::progress::Progress;
use super::tools::{Engine, Flavor};

/// Where `images/tests` appears inside the test containers.
pub const MOUNT: &str = "/opt/labkit-tests";
/// Exit code of a skipped test.
pub const SKIP_CODE: i32 = 77;
/// The researcher the tests run as (the cluster guide's example account).
pub const TEST_USER: [(&str, &str); 4] = [
    ("CLUSTER_USER", "alice"),
    ("CLUSTER_USER_ID", "123456"),
    ("CLUSTER_GROUP_NAME", "CVLAB-unit"),
    ("CLUSTER_GROUP_ID", "11166"),
];

/// One test of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageTest {
    /// The target under test, e.g. `lab-python-ml-cpu`.
    pub target: String,
    pub variant: String,
    pub kind: String,
    /// Image reference to run (the target's primary tag).
    pub reference: String,
    /// Path under `images/tests`, e.g. `lab-base/sudo.sh`.
    pub file: String,
}

/// The test files of `image`'s own directory, sorted. `.sh` and `.py` only.
pub(crate) fn own_tests(tests_dir: &Path, image: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(tests_dir.join(image))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| (n.ends_with(".sh") || n.ends_with(".py")) && !n.starts_with('_') && !n.starts_with('.'))
                .map(|n| format!("{image}/{n}"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The selected targets' tests: for each target, its ancestors' tests (root
/// first), then its own. `images`/`variants` empty = all.
pub(crate) fn discover(family: &Family, tests_dir: &Path, images: &[String], variants: &[String]) -> Vec<ImageTest> {
    let mut out = Vec::new();
    for t in &family.targets {
        if (!images.is_empty() && !images.contains(&t.image))
            || (!variants.is_empty() && !variants.contains(&t.variant))
        {
            continue;
        }
        let mut chain = vec![t.image.clone()];
        let mut cur = family.manifest.images.get(&t.image).and_then(|i| i.parent.clone());
        while let Some(p) = cur {
            cur = family.manifest.images.get(&p).and_then(|i| i.parent.clone());
            chain.push(p);
        }
        chain.reverse();
        let v = &family.manifest.variants[&t.variant];
        let kind = match v.kind {
            Kind::Cpu => "cpu",
            Kind::Cuda => "cuda",
        };
        for image in &chain {
            for file in own_tests(tests_dir, image) {
                out.push(ImageTest {
                    target: t.name.clone(),
                    variant: t.variant.clone(),
                    kind: kind.to_string(),
                    reference: t.tags[0].clone(),
                    file,
                });
            }
        }
    }
    out
}

/// Options of a test run.
#[derive(Debug, Clone, Default)]
pub struct TestOptions {
    /// Give the containers the host's GPUs (docker `--gpus all`, podman CDI
    /// `--device nvidia.com/gpu=all`); GPU tests then fail instead of skip
    /// when no GPU shows up.
    pub gpu: bool,
    /// Per-test time limit (labinit's LABKIT_TIMEOUT; exit 124 on expiry).
    pub timeout: Option<String>,
    /// Extra `ENGINE run` options (e.g. `--network=none`).
    pub run_args: Vec<String>,
}

/// `ENGINE run …` argv (after the program) for one test. Pure.
pub(crate) fn run_args(engine: &Engine, tests_dir: &Path, t: &ImageTest, opts: &TestOptions) -> Vec<String> {
    let mut a: Vec<String> = vec!["run".into(), "--rm".into(), "--label".into(), "labkit-test=1".into()];
    for (k, v) in TEST_USER {
        a.push("-e".into());
        a.push(format!("{k}={v}"));
    }
    a.push("-e".into());
    a.push(format!("LAB_TEST_VARIANT={}", t.variant));
    a.push("-e".into());
    a.push(format!("LAB_TEST_KIND={}", t.kind));
    a.push("-e".into());
    a.push(format!("LAB_TEST_GPU={}", if opts.gpu { 1 } else { 0 }));
    a.push("-e".into());
    a.push(format!("LABKIT_TIMEOUT={}", opts.timeout.as_deref().unwrap_or("10m")));
    a.push("-v".into());
    a.push(format!("{}:{MOUNT}:ro", tests_dir.display()));
    if opts.gpu {
        match engine.flavor {
            Flavor::Docker => a.extend(["--gpus".to_string(), "all".to_string()]),
            Flavor::Podman => a.extend(["--device".to_string(), "nvidia.com/gpu=all".to_string()]),
        }
    }
    a.extend(opts.run_args.iter().cloned());
    a.push(t.reference.clone());
    let interpreter = if t.file.ends_with(".py") { "python" } else { "bash" };
    a.push(interpreter.into());
    a.push(format!("{MOUNT}/{}", t.file));
    a
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    /// With the test's reason.
    Skipped(String),
    /// With the exit code and the last output line.
    Failed(String),
}

/// Classifies a finished test. `--gpu` never turns a failure into a skip. Pure.
pub(crate) fn classify(code: Option<i32>, output: &str) -> Outcome {
    let last = output.lines().rev().map(str::trim).find(|l| !l.is_empty() && !l.starts_with("labinit: ")).unwrap_or("");
    match code {
        Some(0) => Outcome::Passed,
        Some(SKIP_CODE) => Outcome::Skipped(if last.is_empty() { "no reason given".into() } else { last.to_string() }),
        Some(124) => Outcome::Failed(format!("timed out (exit 124); last line: {last}")),
        Some(c) => Outcome::Failed(format!("exit code {c}: {last}")),
        None => Outcome::Failed(format!("killed by a signal: {last}")),
    }
}

/// The results of a run.
#[derive(Debug, Default)]
pub struct TestSummary {
    pub passed: usize,
    pub skipped: usize,
    pub failed: usize,
}

impl TestSummary {
    pub fn success(&self) -> bool {
        self.failed == 0 && self.passed > 0
    }
}

fn image_present(engine: &Engine, reference: &str) -> bool {
    Command::new(&engine.program)
        .args(["image", "inspect", reference])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs the tests one container at a time, one line per test and a last
/// line with the counts to `progress`, and each test's output into
/// `log_dir/<target>/<test>.log`.
pub(crate) fn run(
    layout: &Layout,
    tests: &[ImageTest],
    engine: &Engine,
    opts: &TestOptions,
    log_dir: &Path,
    progress: &mut dyn Progress,
) -> Result<TestSummary> {
    let tests_dir = layout.tests();
    let tests_dir = tests_dir.canonicalize().unwrap_or(tests_dir);
    let mut summary = TestSummary::default();
    let mut missing: Vec<String> = Vec::new();
    let width = tests.iter().map(|t| t.target.len() + t.file.len() + 1).max().unwrap_or(0);
    for t in tests {
        let name = format!("{} {}", t.target, t.file);
        if missing.contains(&t.reference) {
            summary.failed += 1;
            progress.line(&format!("FAIL  {name:<width$}  image {} is not there", t.reference));
            continue;
        }
        if !image_present(engine, &t.reference) {
            missing.push(t.reference.clone());
            summary.failed += 1;
            progress.line(&format!(
                "FAIL  {name:<width$}  image {} is not there; build it first (labkit build --image {} --variant {})",
                t.reference,
                t.target.strip_suffix(&format!("-{}", t.variant)).unwrap_or(&t.target),
                t.variant
            ));
            continue;
        }
        let log = log_dir.join(&t.target).join(t.file.replace('/', "__") + ".log");
        if let Some(d) = log.parent() {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        let args = run_args(engine, &tests_dir, t, opts);
        let t0 = Instant::now();
        let out = Command::new(&engine.program)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", engine.program.display()))?;
        let took = t0.elapsed();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        std::fs::write(&log, format!("$ {} {}\n{text}", engine.program.display(), args.join(" ")))
            .with_context(|| format!("cannot write {}", log.display()))?;
        let secs = |d: Duration| format!("{:.1}s", d.as_secs_f64());
        match classify(out.status.code(), &text) {
            Outcome::Passed => {
                summary.passed += 1;
                progress.line(&format!("PASS  {name:<width$}  {}", secs(took)));
            }
            Outcome::Skipped(why) => {
                summary.skipped += 1;
                progress.line(&format!("SKIP  {name:<width$}  {}: {why}", secs(took)));
            }
            Outcome::Failed(why) => {
                summary.failed += 1;
                progress.line(&format!("FAIL  {name:<width$}  {}: {why} (log {})", secs(took), log.display()));
            }
        }
    }
    progress.line(&format!(
        "test: {} passed, {} skipped, {} failed ({} test(s))",
        summary.passed,
        summary.skipped,
        summary.failed,
        tests.len()
    ));
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_never_counts_a_skip_or_failure_as_a_pass() {
        assert_eq!(classify(Some(0), "ok\n"), Outcome::Passed);
        assert_eq!(
            classify(Some(77), "no GPU in this container\nlabinit: exiting\n"),
            Outcome::Skipped("no GPU in this container".into())
        );
        assert_eq!(classify(Some(77), ""), Outcome::Skipped("no reason given".into()));
        assert!(matches!(classify(Some(1), "AssertionError: x\n"), Outcome::Failed(m) if m.contains("AssertionError")));
        assert!(matches!(classify(Some(124), ""), Outcome::Failed(m) if m.contains("timed out")));
        assert!(matches!(classify(None, ""), Outcome::Failed(_)));
    }

    fn t() -> ImageTest {
        ImageTest {
            target: "lab-pytorch-cpu".into(),
            variant: "cpu".into(),
            kind: "cpu".into(),
            reference: "r/lab-pytorch:cpu".into(),
            file: "lab-pytorch/train.py".into(),
        }
    }

    #[test]
    fn run_args_shape() {
        let podman = Engine { flavor: Flavor::Podman, program: "podman".into() };
        let a = run_args(&podman, Path::new("/repo/images/tests"), &t(), &TestOptions::default());
        assert_eq!(a[..2], ["run", "--rm"]);
        assert!(a.windows(2).any(|w| w == ["-e", "CLUSTER_USER_ID=123456"]));
        assert!(a.windows(2).any(|w| w == ["-e", "LAB_TEST_GPU=0"]));
        assert!(a.windows(2).any(|w| w == ["-v", "/repo/images/tests:/opt/labkit-tests:ro"]));
        assert!(!a.iter().any(|x| x.contains("nvidia")));
        assert_eq!(a[a.len() - 3..], ["r/lab-pytorch:cpu", "python", "/opt/labkit-tests/lab-pytorch/train.py"]);

        let gpu = TestOptions { gpu: true, ..Default::default() };
        let a = run_args(&podman, Path::new("/t"), &t(), &gpu);
        assert!(a.windows(2).any(|w| w == ["--device", "nvidia.com/gpu=all"]));
        assert!(a.windows(2).any(|w| w == ["-e", "LAB_TEST_GPU=1"]));
        let docker = Engine { flavor: Flavor::Docker, program: "docker".into() };
        let a = run_args(&docker, Path::new("/t"), &t(), &gpu);
        assert!(a.windows(2).any(|w| w == ["--gpus", "all"]));
    }
}
