//! `labkit render`: snapshot of a fixture family, the committed lab family is
//! current, re-runs are byte-identical, stale outputs are pruned (and only
//! ours), base overrides go elsewhere, and the Dockerfiles keep the family's
//! invariants (ARG-indirected FROM, labels, entrypoint, no rendered per-build
//! values).
mod images_support;
use images_support::*;

use std::path::Path;

fn tree(dir: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(dir).unwrap().to_string_lossy().to_string();
            (rel, std::fs::read_to_string(e.path()).unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn fixture_family_matches_its_snapshot() {
    let s = fixture_family();
    let out = s.join("out");
    expect(labkit(s.path(), &["render", "--out", out.to_str().unwrap()]), 0);
    let snapshot = repo().join("tests/fixtures/images/family/images/generated");
    if std::env::var_os("LABKIT_UPDATE_SNAPSHOTS").is_some() {
        let _ = std::fs::remove_dir_all(&snapshot);
        copy_dir(&out, &snapshot);
    }
    let (got, want) = (tree(&out), tree(&snapshot));
    assert_eq!(
        got.iter().map(|f| &f.0).collect::<Vec<_>>(),
        want.iter().map(|f| &f.0).collect::<Vec<_>>(),
        "file list differs from the snapshot (LABKIT_UPDATE_SNAPSHOTS=1 to accept)"
    );
    for ((path, g), (_, w)) in got.iter().zip(&want) {
        assert_eq!(g, w, "{path} differs from the snapshot (LABKIT_UPDATE_SNAPSHOTS=1 to accept)");
    }
}

#[test]
fn committed_lab_family_is_current() {
    let out = expect(labkit(&repo(), &["check"]), 0);
    assert!(out.contains("up to date"), "{out}");
}

#[test]
fn rerun_is_byte_identical_and_writes_nothing() {
    let s = family_copy();
    let first = expect(labkit(s.path(), &["render"]), 0);
    assert!(first.contains("0 written, 9 unchanged"), "committed tree should already be current: {first}");
    // The Python locks are `labkit lock`'s, not render's.
    let rendered = |t: Vec<(String, String)>| -> Vec<(String, String)> {
        t.into_iter().filter(|(p, _)| !p.ends_with("/requirements.lock")).collect()
    };
    let before = rendered(tree(&s.join("images/generated")));
    std::fs::remove_dir_all(s.join("images/generated")).unwrap();
    expect(labkit(s.path(), &["render"]), 0);
    assert_eq!(rendered(tree(&s.join("images/generated"))), before, "render from scratch differs");
    let again = expect(labkit(s.path(), &["render"]), 0);
    assert!(again.contains("0 written"), "{again}");
}

#[test]
fn stale_outputs_are_deleted_and_foreign_files_kept() {
    let s = family_copy();
    s.write("images/generated/NOTES.md", "maintainer notes, not labkit's\n");
    // Drop a variant: its nine-minus-six Dockerfiles become stale.
    for img in ["lab-base", "lab-pytorch", "lab-python-ml"] {
        let m = s.read("images/manifest.toml");
        let from = format!("[images.{img}]");
        let start = m.find(&from).unwrap();
        let line_start = start + m[start..].find("variants").unwrap();
        let line_end = line_start + m[line_start..].find('\n').unwrap();
        let fixed = format!("{}variants    = [\"cpu\", \"cuda12\"]{}", &m[..line_start], &m[line_end..]);
        s.write("images/manifest.toml", &fixed);
    }
    let out = expect(labkit(s.path(), &["render"]), 0);
    // Three Dockerfiles and their three Python locks.
    assert!(out.contains("6 deleted"), "{out}");
    assert!(out.contains("deleted stale lab-python-ml/cu118/requirements.lock"), "{out}");
    assert!(out.contains("left alone NOTES.md"), "{out}");
    assert!(!s.join("images/generated/lab-base/cu118").exists());
    assert!(s.join("images/generated/lab-base/cpu/Dockerfile").exists());
    assert!(s.join("images/generated/NOTES.md").exists(), "foreign file deleted");
    assert!(!s.read("images/generated/INDEX").contains("cu118"));
}

#[test]
fn base_override_needs_another_output_directory() {
    let s = family_copy();
    let o = labkit(s.path(), &["render", "--base-override", "cpu=localhost/debootstrap-noble:latest"]);
    let t = expect(o, 2);
    assert!(t.contains("--out"), "{t}");

    let out = s.join("override-out");
    expect(
        labkit(
            s.path(),
            &["render", "--base-override", "cpu=localhost/debootstrap-noble:latest", "--out", out.to_str().unwrap()],
        ),
        0,
    );
    let df = std::fs::read_to_string(out.join("lab-base/cpu/Dockerfile")).unwrap();
    assert!(df.contains("ARG BASE_IMAGE=localhost/debootstrap-noble:latest\n"), "{df}");
    let cuda = std::fs::read_to_string(out.join("lab-base/cuda12/Dockerfile")).unwrap();
    assert!(cuda.contains("ARG BASE_IMAGE=docker.io/nvidia/cuda:"), "other variants untouched");
    // The committed tree still matches the manifest.
    expect(labkit(s.path(), &["check"]), 0);

    let bad = labkit(s.path(), &["render", "--base-override", "gpu9=x.io/a:b", "--out", out.to_str().unwrap()]);
    let t = expect(bad, 2);
    assert!(t.contains("variant `gpu9`"), "{t}");
}

/// Every committed Dockerfile keeps the family's contract.
#[test]
fn lab_dockerfiles_keep_the_family_contract() {
    let gen = repo().join("images/generated");
    let files: Vec<_> = tree(&gen).into_iter().filter(|(p, _)| p.ends_with("Dockerfile")).collect();
    assert_eq!(files.len(), 9, "3 images x 3 variants");
    for (path, df) in &files {
        assert!(df.starts_with("# Generated by labkit"), "{path}: header");
        assert!(df.contains("DO NOT EDIT"), "{path}");
        assert!(df.lines().any(|l| l.starts_with("# labkit-inputs-sha256: ")), "{path}");
        let froms: Vec<_> = df.lines().filter(|l| l.starts_with("FROM ")).collect();
        assert_eq!(froms, ["FROM ${BASE_IMAGE}"], "{path}: exactly one ARG-indirected FROM");
        let arg = df.find("\nARG BASE_IMAGE=").expect("ARG BASE_IMAGE");
        assert!(arg < df.find("\nFROM ").unwrap(), "{path}: ARG before FROM");
        for label in [
            "title",
            "description",
            "version",
            "created",
            "revision",
            "source",
            "url",
            "documentation",
            "vendor",
            "authors",
            "licenses",
            "ref.name",
            "base.name",
            "base.digest",
        ] {
            assert!(df.contains(&format!("org.opencontainers.image.{label}=")), "{path}: label {label}");
        }
        assert!(df.contains("org.opencontainers.image.created=\"${BUILD_DATE}\""), "{path}");
        assert!(df.contains("org.opencontainers.image.revision=\"${VCS_REF}\""), "{path}");
        assert!(df.contains("maintainer="), "{path}: NVIDIA's maintainer label overwritten");
        assert!(df.contains("ENTRYPOINT [\"/opt/lab/labinit\"]\nCMD []\n"), "{path}");
        assert!(df.contains("ARG APT_MIRROR=\"\""), "{path}");
        // The only sed is the build-time mirror switch, guarded by the argument.
        for (i, l) in df.lines().enumerate() {
            if l.contains("sed ") {
                let before: String = df.lines().take(i).collect::<Vec<_>>().join("\n");
                assert!(before.contains("if [ -n \"${APT_MIRROR}\" ]"), "{path}:{}: unguarded sed", i + 1);
            }
        }
        assert!(!df.contains("pip install --user"), "{path}");
        for l in df.lines().filter(|l| l.contains("pip install") && !l.starts_with('#')) {
            assert!(l.contains("--no-cache-dir"), "{path}: {l}");
        }
    }
    let base = &files.iter().find(|(p, _)| p == "lab-base/cpu/Dockerfile").unwrap().1;
    assert!(base.contains("python3.12 -m venv --system-site-packages /opt/venv"));
    assert!(base.contains("PATH=/opt/venv/bin:${PATH}"));
    assert!(base.contains("COPY labinit /opt/lab/labinit"));
    assert!(base.contains("COPY setup_steps/ /opt/lab/setup_steps/"));
    assert!(base.contains("COPY services/ /opt/lab/services/"));
    for link in ["setup_and_run_command.sh", "setup_and_wait.sh", "setup.sh", "sleeper"] {
        assert!(base.contains(link), "legacy name {link}");
    }
    let cu118 = &files.iter().find(|(p, _)| p == "lab-base/cu118/Dockerfile").unwrap().1;
    assert!(cu118.contains("ARG BASE_IMAGE=docker.io/nvidia/cuda:11.8.0-cudnn8-devel-ubuntu22.04"));
    assert!(cu118.contains("python3.10 -m venv"));
    let ml = &files.iter().find(|(p, _)| p == "lab-python-ml/cuda12/Dockerfile").unwrap().1;
    assert!(ml.contains("ARG BASE_IMAGE=ic-registry.epfl.ch/cvlab/lis/lab-pytorch:cuda12"));
    assert!(ml.contains("tensorflow"));
    // Python packages come from the image's lock (its contents: tests/images_pylock.rs).
    let torch = &files.iter().find(|(p, _)| p == "lab-pytorch/cuda12/Dockerfile").unwrap().1;
    assert!(torch.contains("COPY python/lab-pytorch/cuda12/requirements.lock /opt/lab/python/lab-pytorch.lock"));
    assert!(torch.contains("PyTorch 2.7.1"));
}

/// Per-build values never reach committed files: rendering with a different
/// clock, environment and revision gives the same bytes.
#[test]
fn render_is_pure() {
    let s = family_copy();
    let o = labkit_cmd(s.path())
        .env("SOURCE_DATE_EPOCH", "1")
        .env("TZ", "Pacific/Kiritimati")
        .env("APT_MIRROR", "http://nowhere.invalid/ubuntu")
        .args(["render"])
        .output()
        .unwrap();
    let t = expect(o, 0);
    assert!(t.contains("0 written"), "{t}");
}

#[test]
fn an_output_directory_that_cannot_be_made_is_a_failure_with_path_and_errno() {
    let s = fixture_family();
    s.write("not-a-dir", "a file\n");
    let out = s.join("not-a-dir/out");
    let t = expect(labkit(s.path(), &["render", "--out", out.to_str().unwrap()]), 1);
    assert!(t.contains(&format!("cannot create {}", out.display())), "{t}");
    assert!(t.contains("os error 20"), "errno kept: {t}");
}
