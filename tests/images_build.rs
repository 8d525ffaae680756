//! `labkit build` against a fake engine that records its calls: parents
//! before children, siblings in parallel within --jobs, failures skip
//! dependents and block --push, push only after every build, podman volumes
//! and network passed through, and no build at all on drift.
mod images_support;
use images_support::*;

use std::path::{Path, PathBuf};

struct Rig {
    s: Scratch,
    bin: PathBuf,
    log: PathBuf,
}

fn rig() -> Rig {
    let s = family_copy();
    let bin = s.join("fakebin");
    script(&bin.join("docker"), FAKE_ENGINE);
    script(&bin.join("podman"), FAKE_ENGINE);
    let log = s.join("engine.log");
    Rig { s, bin, log }
}

impl Rig {
    fn build(&self, engine: &str, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let mut c = labkit_cmd(self.s.path());
        c.arg("build").args(["--revision", "r1", "--created", "2026-01-01T00:00:01Z"]);
        if !engine.is_empty() {
            c.arg("--engine").arg(self.bin.join(engine));
        }
        c.args(args).env("FAKE_ENGINE_LOG", &self.log);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }
    fn events(&self) -> (Vec<Event>, Vec<String>) {
        events(&self.log)
    }
}

fn span(ev: &[Event], tag: &str) -> (f64, f64) {
    let s = ev.iter().find(|e| e.kind == "start" && e.tag == tag).unwrap_or_else(|| panic!("{tag} never started"));
    let e = ev.iter().find(|e| e.kind == "end" && e.tag == tag).unwrap_or_else(|| panic!("{tag} never ended"));
    (s.time, e.time)
}

const R: &str = "ic-registry.epfl.ch/cvlab/lis";

fn max_concurrency(ev: &[Event]) -> usize {
    let mut points: Vec<(f64, i32)> = ev
        .iter()
        .filter(|e| e.kind == "start" || e.kind == "end")
        .map(|e| (e.time, if e.kind == "start" { 1 } else { -1 }))
        .collect();
    points.sort_by(|a, b| a.partial_cmp(b).unwrap().then(a.1.cmp(&b.1)));
    let (mut cur, mut max) = (0, 0);
    for (_, d) in points {
        cur += d;
        max = max.max(cur);
    }
    max as usize
}

#[test]
fn parents_first_and_siblings_in_parallel() {
    let r = rig();
    let t = expect(r.build("docker", &["--jobs", "3"], &[("FAKE_ENGINE_SLEEP", "0.3")]), 0);
    let (ev, argv) = r.events();
    assert_eq!(argv.len(), 9, "{t}");
    for v in ["cpu", "cuda12", "cu118"] {
        let base = span(&ev, &format!("{R}/lab-base:{v}"));
        let torch = span(&ev, &format!("{R}/lab-pytorch:{v}"));
        let ml = span(&ev, &format!("{R}/lab-python-ml:{v}"));
        assert!(base.1 <= torch.0 && torch.1 <= ml.0, "{v}: child started before its parent ended");
    }
    let bases: Vec<(f64, f64)> =
        ["cpu", "cuda12", "cu118"].iter().map(|v| span(&ev, &format!("{R}/lab-base:{v}"))).collect();
    let last_start = bases.iter().map(|b| b.0).fold(0.0, f64::max);
    let first_end = bases.iter().map(|b| b.1).fold(f64::MAX, f64::min);
    assert!(last_start < first_end, "the three lab-base builds should overlap: {bases:?}");
    assert_eq!(max_concurrency(&ev), 3);
    assert!(t.contains("9 built, 0 failed, 0 skipped"), "{t}");
    // Logs and staged context.
    for name in ["lab-base-cpu", "lab-python-ml-cu118"] {
        let log = r.s.read(&format!("build/images/logs/{name}.log"));
        assert!(log.contains("fake build of"), "{log}");
    }
    assert!(r.s.join("build/images/context/labinit").is_file());
    assert!(r.s.join("build/images/context/setup_steps/50_example.sh").is_file());
    assert!(!ev.iter().any(|e| e.kind == "push"), "no --push, no push");
}

#[test]
fn jobs_limit_is_respected() {
    let r = rig();
    expect(r.build("docker", &["--jobs", "2"], &[("FAKE_ENGINE_SLEEP", "0.2")]), 0);
    assert_eq!(max_concurrency(&r.events().0), 2);
    let r = rig();
    expect(r.build("docker", &["--jobs", "1", "--variant", "cpu"], &[("FAKE_ENGINE_SLEEP", "0.05")]), 0);
    assert_eq!(max_concurrency(&r.events().0), 1);
}

#[test]
fn failure_skips_dependents_and_blocks_push() {
    let r = rig();
    let o = r.build("docker", &["--jobs", "3", "--push"], &[("FAKE_ENGINE_FAIL", "lab-base:cu118")]);
    let t = expect(o, 1);
    let (ev, _) = r.events();
    assert!(ev.iter().any(|e| e.kind == "end" && e.tag.ends_with("lab-base:cu118") && !e.ok));
    for child in ["lab-pytorch:cu118", "lab-python-ml:cu118"] {
        assert!(!ev.iter().any(|e| e.tag.ends_with(child)), "{child} must not be built after its parent failed");
    }
    assert_eq!(ev.iter().filter(|e| e.kind == "end" && e.ok).count(), 6, "the other variants still build");
    assert!(!ev.iter().any(|e| e.kind == "push"), "nothing pushed after a failure: {t}");
    assert!(t.contains("6 built, 1 failed, 2 skipped"), "{t}");
    assert!(t.contains("lab-base-cu118: FAILED"), "{t}");
    assert!(t.contains("simulated failure"), "the failure line quotes the log: {t}");
    assert!(t.contains("not pushing anything"), "{t}");
    assert!(t.contains("skipped  lab-pytorch-cu118"), "{t}");
}

#[test]
fn push_only_after_every_target_built() {
    let r = rig();
    let t = expect(r.build("docker", &["--jobs", "3", "--push"], &[("FAKE_ENGINE_SLEEP", "0.05")]), 0);
    let (ev, _) = r.events();
    let pushes: Vec<&Event> = ev.iter().filter(|e| e.kind == "push").collect();
    // cpu: one tag per image; cuda12 (+latest) and cu118 (+cuda11): two.
    assert_eq!(pushes.len(), 15, "{t}");
    let last_build = ev.iter().filter(|e| e.kind == "end").map(|e| e.time).fold(0.0, f64::max);
    assert!(pushes.iter().all(|p| p.time >= last_build), "a push happened before the last build ended");
    assert!(pushes.iter().any(|p| p.tag == format!("{R}/lab-base:cuda11")));
    assert!(pushes.iter().any(|p| p.tag == format!("{R}/lab-python-ml:latest")));
}

#[test]
fn failed_push_fails_the_run() {
    let r = rig();
    let t = expect(r.build("docker", &["--variant", "cpu", "--push"], &[("FAKE_PUSH_FAIL", "lab-pytorch")]), 1);
    assert!(t.contains("push: FAILED for"), "{t}");
    let pushes = r.events().0.into_iter().filter(|e| e.kind == "push").count();
    assert_eq!(pushes, 2, "stops at the first failed push");
}

#[test]
fn podman_gets_volumes_network_and_build_args() {
    let r = rig();
    let ca = "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro";
    let t = expect(
        r.build(
            "podman",
            &[
                "--variant",
                "cpu",
                "-v",
                ca,
                "--network",
                "host",
                "--build-arg",
                "PIP_INDEX_URL=http://pypi.example.org/simple",
                "--apt-mirror",
                "http://mirror.example.org/ubuntu",
                "--base-override",
                "cpu=localhost/debootstrap-noble:latest",
            ],
            &[],
        ),
        0,
    );
    assert!(t.contains("with podman"), "{t}");
    let (_, argv) = r.events();
    assert_eq!(argv.len(), 3);
    for a in &argv {
        assert!(a.starts_with("build -f images/generated/"), "{a}");
        assert!(a.contains(&format!("-v {ca}")), "{a}");
        assert!(a.contains("--network=host"), "{a}");
        assert!(a.contains("--build-arg PIP_INDEX_URL=http://pypi.example.org/simple"), "{a}");
        assert!(a.contains("--build-arg APT_MIRROR=http://mirror.example.org/ubuntu"), "{a}");
        assert!(a.contains("--build-arg VCS_REF=r1"), "{a}");
        assert!(a.ends_with(" build/images/context"), "{a}");
    }
    let base = argv.iter().find(|a| a.contains("lab-base/cpu")).unwrap();
    assert!(base.contains("--build-arg BASE_IMAGE=localhost/debootstrap-noble:latest"), "{base}");
    let torch = argv.iter().find(|a| a.contains("lab-pytorch/cpu")).unwrap();
    // The child is built on the image ID the engine reported for its parent
    // in this run, not on the parent's moving tag; the label still names it.
    let parent_id = labkit::images::sha256_hex(format!("{R}/lab-base:cpu").as_bytes());
    assert!(torch.contains(&format!("--build-arg BASE_IMAGE=sha256:{parent_id}")), "{torch}");
    assert!(torch.contains(&format!("--build-arg BASE_NAME={R}/lab-base:cpu")), "{torch}");
    // A --base-override names a local image: not pulled. Children: not pulled.
    assert!(!base.contains("--pull"), "{base}");
    assert!(!torch.contains("--pull"), "{torch}");
}

#[test]
fn docker_refuses_build_volumes() {
    let r = rig();
    let t = expect(r.build("docker", &["-v", "/a:/b"], &[]), 2);
    assert!(t.contains("podman feature"), "{t}");
    assert!(!Path::new(&r.log).exists(), "nothing ran");
}

#[test]
fn refuses_to_build_on_drift() {
    let r = rig();
    r.s.edit("images/generated/lab-pytorch/cpu/Dockerfile", "EXPOSE 8888", "EXPOSE 8889");
    let t = expect(r.build("docker", &[], &[]), 1);
    assert!(t.contains("run `labkit render` first"), "{t}");
    assert!(t.contains("lab-pytorch/cpu/Dockerfile: hand-edited"), "{t}");
    assert!(!r.log.exists(), "the engine never ran");
}

#[test]
fn engine_is_autodetected_from_path() {
    let r = rig();
    let only_podman = r.s.join("onlypodman");
    script(&only_podman.join("podman"), FAKE_ENGINE);
    // The fake engine's tools, without the machine's own docker (a real
    // /usr/bin/docker would otherwise win the detection).
    let tools = r.s.join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    for t in ["bash", "sh", "date", "sleep", "env", "cat"] {
        let real = ["/usr/bin", "/bin"].iter().map(|d| std::path::Path::new(d).join(t)).find(|p| p.exists()).unwrap();
        std::os::unix::fs::symlink(real, tools.join(t)).unwrap();
    }
    let path = format!("{}:{}", only_podman.display(), tools.display());
    let t = expect(r.build("", &["--variant", "cpu"], &[("PATH", &path)]), 0);
    assert!(t.contains("with podman"), "{t}");
    assert_eq!(r.events().1.len(), 3);

    let empty = r.s.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let t = expect(r.build("", &[], &[("PATH", empty.to_str().unwrap())]), 1);
    assert!(t.contains("neither docker nor podman"), "{t}");
}

/// The environment names the tools (LABKIT_ENGINE, LABKIT_LABINIT); a flag
/// wins over it. The binary reads these; the library reads no environment.
#[test]
fn the_environment_names_engine_and_labinit_and_flags_win() {
    let r = rig();
    let own = r.s.join("own-labinit");
    std::fs::write(&own, "#!/bin/sh\necho own labinit\n").unwrap();
    let engine = r.bin.join("podman");
    let env = [("LABKIT_ENGINE", engine.to_str().unwrap()), ("LABKIT_LABINIT", own.to_str().unwrap())];
    let t = expect(r.build("", &["--image", "lab-base", "--variant", "cpu"], &env), 0);
    assert!(t.contains(&format!("with podman ({})", engine.display())), "{t}");
    assert_eq!(r.s.read("build/images/context/labinit"), "#!/bin/sh\necho own labinit\n");
    // --engine wins over LABKIT_ENGINE, --labinit over LABKIT_LABINIT.
    let t = expect(r.build("", &["--engine", "/nowhere/docker"], &env), 1);
    assert!(t.contains("--engine /nowhere/docker: not found"), "{t}");
    let t = expect(r.build("", &["--image", "lab-base", "--variant", "cpu", "--labinit", "/nowhere/labinit"], &env), 1);
    assert!(t.contains("/nowhere/labinit not found"), "{t}");
    // Negative control: without either, the engine comes from PATH and
    // labinit from dist/.
    let mut c = labkit_cmd(r.s.path());
    c.args([
        "build",
        "--image",
        "lab-base",
        "--variant",
        "cpu",
        "--revision",
        "r1",
        "--created",
        "2026-01-01T00:00:01Z",
    ]);
    // The fake engine first on PATH; the system's tools after it.
    let path = format!("{}:/usr/bin:/bin", r.bin.display());
    c.env("FAKE_ENGINE_LOG", &r.log).env("PATH", path).env_remove("LABKIT_LABINIT");
    let t = expect(c.output().unwrap(), 0);
    assert!(t.contains(&format!("with docker ({})", r.bin.join("docker").display())), "{t}");
    assert_eq!(r.s.read("build/images/context/labinit"), r.s.read("dist/labinit"));
}
