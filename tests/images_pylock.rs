//! Python locks: `labkit lock --python` resolves each variant's requirements
//! in one uv run (a fake uv here, replaying a recorded output) and splits
//! them into per-image lock files beside the Dockerfiles; `labkit check`
//! fails offline on missing, stale and hand-edited locks; an unsatisfiable
//! set is an error naming the conflicting packages and writes nothing; the
//! build context carries the locks; and the committed family installs from
//! its locks with hashes, no resolution and `pip check`.
mod images_support;
use images_support::*;

/// Recorded shape of `uv pip compile base.in app.in --generate-hashes`:
/// base asks for pkg-a (which needs dep-c), app for pkg-b (which also needs
/// dep-c, already installed by base).
const RECORDED: &str = "\
dep-c==3.0 \\
    --hash=sha256:0c0c
    # via
    #   pkg-a
    #   pkg-b
pkg-a==1.0 \\
    --hash=sha256:0a0a \\
    --hash=sha256:1a1a
    # via -r base.in
pkg-b==2.5.1 \\
    --hash=sha256:0b0b
    # via -r app.in
";

const CONFLICT: &str = "error: No solution found when resolving dependencies\n  cause: Because torch==2.7.1 depends on \
nvidia-cudnn-cu12==9.5.1.17 and tensorflow[and-cuda]==2.19.0 depends on nvidia-cudnn-cu12==9.3.0.75, we can conclude that \
tensorflow[and-cuda]==2.19.0 and torch==2.7.1 are incompatible.\n      And because you require tensorflow[and-cuda]==2.19.0 \
and torch==2.7.1, we can conclude that your requirements are unsatisfiable.\n";

/// A fake uv: logs its argv and copies its input files to $FAKE_UV_LOG.d,
/// prints RECORDED, or fails with CONFLICT when $FAKE_UV_CONFLICT is set.
fn fake_uv(s: &Scratch) -> String {
    let bin = s.join("fakebin");
    s.write("recorded.txt", RECORDED);
    s.write("conflict.txt", CONFLICT);
    let body = format!(
        r#"#!/bin/sh
if [ "$1" = --version ]; then echo "uv 0.0.1-fake"; exit 0; fi
echo "$*" >> "$FAKE_UV_LOG"
mkdir -p "$FAKE_UV_LOG.d"
for a in "$@"; do case "$a" in *.in) cp "$a" "$FAKE_UV_LOG.d/$(basename "$PWD")-$a";; esac; done
if [ -n "$FAKE_UV_CONFLICT" ]; then cat {conflict} >&2; exit 1; fi
cat {recorded}
"#,
        conflict = s.join("conflict.txt").display(),
        recorded = s.join("recorded.txt").display()
    );
    script(&bin.join("uv"), &body);
    format!("{}:/usr/bin:/bin", bin.display())
}

/// The fixture family with Python requirements on both images.
fn family() -> (Scratch, String) {
    let s = fixture_family();
    s.edit(
        "images/manifest.toml",
        "values      = { python = \"3.12\" }",
        "values      = { python = \"3.12\", b = \"2.5.1\" }",
    );
    s.edit(
        "images/manifest.toml",
        "values      = { python = \"3.12\", cuda = \"12.8.1\" }",
        "values      = { python = \"3.11\", cuda = \"12.8.1\", b = \"2.5.1\" }",
    );
    s.edit(
        "images/manifest.toml",
        "tags        = [\"{variant}\", \"{alias}\"]\n",
        "tags        = [\"{variant}\", \"{alias}\"]\npython      = [\"pkg-a\"]\n",
    );
    s.edit(
        "images/manifest.toml",
        "tags        = [\"{variant}\"]\n",
        "tags        = [\"{variant}\"]\npython      = [\"pkg-b=={b}\"]\n",
    );
    expect(labkit(s.path(), &["render"]), 0);
    let path = fake_uv(&s);
    (s, path)
}

fn lock(s: &Scratch, path: &str, extra: &[&str], conflict: bool) -> std::process::Output {
    let mut c = labkit_cmd(s.path());
    c.env("PATH", path)
        .env("FAKE_UV_LOG", s.join("uv.log"))
        .env_remove("LABKIT_UV")
        .args(["lock", "--python"])
        .args(extra);
    if conflict {
        c.env("FAKE_UV_CONFLICT", "1");
    } else {
        c.env_remove("FAKE_UV_CONFLICT");
    }
    c.output().unwrap()
}

fn pins(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('#') && l.contains("=="))
        .map(|l| l.trim_end_matches(" \\").to_string())
        .collect()
}

#[test]
fn lock_splits_one_resolution_per_variant_into_image_locks() {
    let (s, path) = family();
    // Negative control: without locks, check fails and names each file.
    let t = expect(labkit(s.path(), &["check"]), 1);
    assert!(t.contains("images/generated/app/cpu/requirements.lock: missing"), "{t}");
    assert!(t.contains("labkit lock --python --variant gpu"), "{t}");

    let t = expect(lock(&s, &path, &[], false), 0);
    assert!(t.contains("lock: Python locks: 4 written"), "{t}");
    let base = s.read("images/generated/base/cpu/requirements.lock");
    let app = s.read("images/generated/app/cpu/requirements.lock");
    assert_eq!(pins(&base), ["dep-c==3.0", "pkg-a==1.0"], "{base}");
    // dep-c is needed by pkg-b too, but the parent installs it: never twice.
    assert_eq!(pins(&app), ["pkg-b==2.5.1"], "{app}");
    assert!(base.contains("    --hash=sha256:1a1a"), "hashes are kept: {base}");
    assert!(app.contains("Refresh: labkit lock --python --variant cpu"), "{app}");

    // One uv run per variant, with the variant's Python, the platform, hashes,
    // wheels only and the snapshot-free default; inputs expanded.
    let log = s.read("uv.log");
    let runs: Vec<&str> = log.lines().collect();
    assert_eq!(runs.len(), 2, "{log}");
    let cpu = runs.iter().find(|l| l.contains("--python-version 3.12")).expect("cpu run");
    let gpu = runs.iter().find(|l| l.contains("--python-version 3.11")).expect("gpu run");
    for r in [cpu, gpu] {
        assert!(r.starts_with("pip compile base.in app.in "), "{r}");
        for a in ["--python-platform x86_64-manylinux_2_28", "--generate-hashes", "--no-build"] {
            assert!(r.contains(a), "{a} missing: {r}");
        }
    }
    assert_eq!(std::fs::read_to_string(s.join("uv.log.d/cpu-app.in")).unwrap(), "pkg-b==2.5.1\n");
    assert_eq!(std::fs::read_to_string(s.join("uv.log.d/cpu-base.in")).unwrap(), "pkg-a\n");

    // Locks are clean now, render leaves them alone, a rerun changes nothing.
    let t = expect(labkit(s.path(), &["check"]), 0);
    assert!(!t.contains("requirements.lock"), "{t}");
    let t = expect(labkit(s.path(), &["render"]), 0);
    assert!(!t.contains("requirements.lock"), "render must not touch or mention the locks: {t}");
    assert_eq!(s.read("images/generated/app/cpu/requirements.lock"), app);
    let t = expect(lock(&s, &path, &["--variant", "cpu"], false), 0);
    assert!(t.contains("0 written, 2 unchanged"), "{t}");
}

#[test]
fn check_fails_on_stale_hand_edited_and_orphaned_locks() {
    let (s, path) = family();
    expect(lock(&s, &path, &[], false), 0);
    expect(labkit(s.path(), &["check"]), 0);

    // A requirement changes in the manifest: every lock of that variant is
    // stale (the resolution is shared), the other variant's are not.
    s.edit("images/manifest.toml", "b = \"2.5.1\" }", "b = \"2.6\" }");
    let t = expect(labkit(s.path(), &["check"]), 1);
    assert!(t.contains("images/generated/app/cpu/requirements.lock: out of date"), "{t}");
    assert!(t.contains("images/generated/base/cpu/requirements.lock: out of date"), "{t}");
    assert!(t.contains("run `labkit lock --python --variant cpu`"), "{t}");
    assert!(!t.contains("gpu/requirements.lock"), "{t}");
    s.edit("images/manifest.toml", "b = \"2.6\" }", "b = \"2.5.1\" }");
    expect(labkit(s.path(), &["check"]), 0);

    // The Python version is an input too.
    s.edit("images/manifest.toml", "python = \"3.11\"", "python = \"3.12\"");
    let t = expect(labkit(s.path(), &["check"]), 1);
    assert!(t.contains("gpu/requirements.lock: out of date"), "{t}");
    s.edit("images/manifest.toml", "python = \"3.12\", cuda", "python = \"3.11\", cuda");

    // A hand edit of a pin.
    s.edit("images/generated/base/gpu/requirements.lock", "pkg-a==1.0", "pkg-a==1.1");
    let t = expect(labkit(s.path(), &["check"]), 1);
    assert!(t.contains("images/generated/base/gpu/requirements.lock: hand-edited"), "{t}");
    s.edit("images/generated/base/gpu/requirements.lock", "pkg-a==1.1", "pkg-a==1.0");
    expect(labkit(s.path(), &["check"]), 0);

    // A lock beside no Dockerfile is orphaned.
    s.write("images/generated/nope/cpu/requirements.lock", "x==1\n");
    let t = expect(labkit(s.path(), &["check"]), 1);
    assert!(t.contains("images/generated/nope/cpu/requirements.lock: orphaned"), "{t}");
}

#[test]
fn an_unsatisfiable_set_names_the_conflict_and_writes_nothing() {
    let (s, path) = family();
    expect(lock(&s, &path, &[], false), 0);
    let before = s.read("images/generated/app/cpu/requirements.lock");
    s.edit("images/manifest.toml", "b = \"2.5.1\" }", "b = \"2.6\" }");
    let t = expect(lock(&s, &path, &[], true), 1);
    assert!(t.contains("tensorflow[and-cuda]==2.19.0 and torch==2.7.1 are incompatible"), "{t}");
    assert!(t.contains("variant `cpu`"), "{t}");
    assert!(t.contains("nvidia-cudnn-cu12==9.3.0.75"), "uv's explanation is shown: {t}");
    assert!(t.contains("no lock file was changed"), "{t}");
    assert_eq!(s.read("images/generated/app/cpu/requirements.lock"), before);
}

#[test]
fn lock_input_errors() {
    let (s, path) = family();
    // Unknown placeholder: invalid manifest (2), naming image and variant.
    s.edit("images/manifest.toml", "pkg-b=={b}", "pkg-b=={bb}");
    let t = expect(lock(&s, &path, &[], false), 2);
    assert!(t.contains("image `app`, variant `cpu`: python requirement `pkg-b=={bb}`: no values.bb"), "{t}");
    let t = expect(labkit(s.path(), &["check"]), 2);
    assert!(t.contains("values.bb"), "{t}");
    s.edit("images/manifest.toml", "pkg-b=={bb}", "pkg-b=={b}");

    // No uv anywhere.
    let empty = s.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let t = expect(lock(&s, empty.to_str().unwrap(), &[], false), 1);
    assert!(t.contains("pip install uv"), "{t}");

    // Unknown variant.
    let t = expect(lock(&s, &path, &["--variant", "nope"], false), 2);
    assert!(t.contains("--variant nope: no such variant"), "{t}");

    // A family without Python requirements needs no uv at all.
    let plain = fixture_family();
    let o = labkit_cmd(plain.path()).env("PATH", &empty).args(["lock", "--python"]).output().unwrap();
    expect(o, 0);
}

#[test]
fn the_build_context_carries_the_locks() {
    let (s, path) = family();
    expect(lock(&s, &path, &[], false), 0);
    s.write("dist/labinit", "#!/bin/sh\n");
    let t = expect(labkit(s.path(), &["bake", "-o", "-", "--revision", "r", "--created", "2026-11-30T00:00:00Z"]), 0);
    assert!(t.contains("\"target\""), "{t}");
    for (img, v) in [("base", "cpu"), ("app", "cpu"), ("base", "gpu"), ("app", "gpu")] {
        let staged = s.read(&format!("build/images/context/python/{img}/{v}/requirements.lock"));
        assert_eq!(staged, s.read(&format!("images/generated/{img}/{v}/requirements.lock")));
    }
}

/// The committed family: every Dockerfile installs its own lock with hashes,
/// no dependency resolution and wheels only, then runs pip check; lab-base
/// sets the constraints for everything after it.
#[test]
fn committed_dockerfiles_install_from_their_locks() {
    let root = repo();
    let generated = root.join("images/generated");
    let mut seen = 0;
    for image in ["lab-base", "lab-pytorch", "lab-python-ml"] {
        for variant in ["cpu", "cuda12", "cu118"] {
            let df = std::fs::read_to_string(generated.join(image).join(variant).join("Dockerfile")).unwrap();
            let lock = generated.join(image).join(variant).join("requirements.lock");
            assert!(lock.is_file(), "{} is missing", lock.display());
            assert!(
                df.contains(&format!("COPY python/{image}/{variant}/requirements.lock /opt/lab/python/{image}.lock")),
                "{image}/{variant}"
            );
            let install =
                df.lines().skip_while(|l| !l.starts_with("RUN set -eu;")).take(6).collect::<Vec<_>>().join("\n");
            for w in ["pip install --no-cache-dir --require-hashes --no-deps --only-binary :all:", "pip check"] {
                assert!(install.contains(w), "{image}/{variant}: `{w}` missing in:\n{install}");
            }
            assert!(!df.contains("pip install --no-cache-dir \\\n"), "{image}/{variant} still resolves at build time");
            if image == "lab-base" {
                assert!(df.contains("ENV PIP_CONSTRAINT=/opt/lab/python/constraints.txt"), "{variant}");
                assert!(df.contains("-m venv --system-site-packages /opt/venv"), "{variant}");
            }
            // Every pin carries at least one hash.
            let text = std::fs::read_to_string(&lock).unwrap();
            let body = text.split_once("\n\n").unwrap().1;
            let mut pins = 0;
            for block in body.split("\n").collect::<Vec<_>>().windows(2) {
                if !block[0].starts_with(' ') && block[0].contains("==") {
                    pins += 1;
                    assert!(block[1].trim_start().starts_with("--hash=sha256:"), "{image}/{variant}: {}", block[0]);
                }
            }
            assert!(pins > 0, "{image}/{variant}: empty lock");
            seen += 1;
        }
    }
    assert_eq!(seen, 9);
}

/// The issue's two broken sets are gone from the committed locks: cuda12
/// has one cuDNN (torch's), no `tensorflow[and-cuda]`; cu118 has numpy < 2.
#[test]
fn committed_locks_hold_one_consistent_set_per_variant() {
    let g = repo().join("images/generated");
    let all = |v: &str| -> String {
        ["lab-base", "lab-pytorch", "lab-python-ml"]
            .iter()
            .map(|i| std::fs::read_to_string(g.join(i).join(v).join("requirements.lock")).unwrap())
            .collect()
    };
    let version = |text: &str, name: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(&format!("{name}==")))
            .map(|v| v.trim_end_matches(" \\").to_string())
            .collect()
    };
    let cuda12 = all("cuda12");
    assert_eq!(version(&cuda12, "torch"), ["2.7.1"]);
    assert_eq!(version(&cuda12, "tensorflow"), ["2.19.0"]);
    assert_eq!(version(&cuda12, "nvidia-cudnn-cu12"), ["9.5.1.17"], "torch's cuDNN, once");
    let cu118 = all("cu118");
    let np = version(&cu118, "numpy");
    assert_eq!(np.len(), 1);
    assert!(np[0].starts_with("1."), "cu118 numpy {np:?} must be < 2 for TensorFlow 2.14");
    assert_eq!(version(&cu118, "tensorflow"), ["2.14.1"]);
    // Each package appears in exactly one image lock per variant.
    for v in ["cpu", "cuda12", "cu118"] {
        let text = all(v);
        let mut names: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with([' ', '#', '-']) && l.contains("=="))
            .map(|l| l.split("==").next().unwrap())
            .collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "variant {v}: a package is in two image locks");
    }
}

/// LABKIT_UV names the resolver; `--uv` wins over it; without either, `uv`
/// comes from PATH. The binary reads the variable, the library none.
#[test]
fn labkit_uv_names_the_resolver_and_the_flag_wins() {
    let (s, path) = family();
    let uv = s.join("fakebin/uv");
    // PATH: the system's tools for the fake uv (not a uv).
    let with = |env_uv: Option<&str>, extra: &[&str], path: &str| {
        let mut c = labkit_cmd(s.path());
        c.env("PATH", path).env("FAKE_UV_LOG", s.join("uv.log")).env_remove("FAKE_UV_CONFLICT");
        match env_uv {
            Some(v) => c.env("LABKIT_UV", v),
            None => c.env_remove("LABKIT_UV"),
        };
        c.args(["lock", "--python"]).args(extra).output().unwrap()
    };
    let t = expect(with(Some(uv.to_str().unwrap()), &[], "/usr/bin:/bin"), 0);
    assert!(t.contains(&format!("with {}", uv.display())), "{t}");
    let t = expect(with(Some(uv.to_str().unwrap()), &["--uv", "/nowhere/uv"], "/usr/bin:/bin"), 1);
    assert!(t.contains("/nowhere/uv not found"), "{t}");
    // Negative controls: an empty LABKIT_UV is unset, and without uv on
    // PATH nothing resolves.
    let nothing = s.join("empty-dir");
    std::fs::create_dir_all(&nothing).unwrap();
    let t = expect(with(Some(""), &[], nothing.to_str().unwrap()), 1);
    assert!(t.contains("uv not found"), "{t}");
    let t = expect(lock(&s, &path, &[], false), 0);
    assert!(t.contains("lock: Python locks:"), "{t}");
}
