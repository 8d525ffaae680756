//! Issue 12: every value is checked or escaped where it enters a Dockerfile,
//! a tag, a label or a bake file. One test per numbered input of the issue
//! (with its right value) and per class, each with a negative control.
mod images_support;
use images_support::*;

use serde_json::Value;
use std::path::Path;

const M: &str = "images/manifest.toml";
const R: &str = "ic-registry.epfl.ch/cvlab/lis";
const DATE: &str = "2026-01-01T00:00:00Z";

fn bake_json(s: &Scratch, extra: &[&str]) -> (Value, String) {
    let mut args = vec!["bake", "--no-stage", "-o", "-", "--created", DATE];
    if !extra.contains(&"--revision") {
        args.extend(["--revision", "r"]);
    }
    args.extend_from_slice(extra);
    let o = labkit(s.path(), &args);
    let t = expect(o.clone(), 0);
    (serde_json::from_slice(&o.stdout).expect("bake output is JSON"), t)
}

/// Every string of a JSON value, with its path.
fn strings(v: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) => out.push((path.to_string(), s.clone())),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| strings(x, &format!("{path}.{i}"), out)),
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            out.push((format!("{path}.{k}#key"), k.clone()));
            strings(x, &format!("{path}.{k}"), out)
        }),
        _ => {}
    }
}

/// What HCL (bake's reader of JSON files) makes of a string: `$${` and
/// `%%{` are the literal `${` and `%{`; an unescaped `${`/`%{` is a template
/// sequence, reported as an error.
fn hcl_literal(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        if (c == '$' || c == '%') && i + 2 < b.len() + 1 && b.get(i + 1) == Some(&b[i]) && b.get(i + 2) == Some(&b'{') {
            out.push(c);
            out.push('{');
            i += 3;
        } else if (c == '$' || c == '%') && b.get(i + 1) == Some(&b'{') {
            return Err(format!("unescaped {c}{{ in {s:?}"));
        } else {
            let ch = s[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    Ok(out)
}

// --- 1. bake strings -----------------------------------------------------------

#[test]
fn input_01_bake_strings_reach_the_build_literally() {
    let s = family_copy();
    let (b, _) = bake_json(
        &s,
        &[
            "--image",
            "lab-base",
            "--variant",
            "cpu",
            "--build-arg",
            "PIP_INDEX_URL=https://user:${TOKEN}@pypi.example/simple",
            "--build-arg",
            "NOTE=50%{x}",
            "--revision",
            "abc${x}",
        ],
    );
    let mut all = Vec::new();
    strings(&b, "", &mut all);
    for (path, v) in &all {
        hcl_literal(v).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    let t = &b["target"]["lab-base-cpu"];
    assert_eq!(
        hcl_literal(t["args"]["PIP_INDEX_URL"].as_str().unwrap()).unwrap(),
        "https://user:${TOKEN}@pypi.example/simple"
    );
    assert_eq!(hcl_literal(t["args"]["NOTE"].as_str().unwrap()).unwrap(), "50%{x}");
    assert_eq!(hcl_literal(t["args"]["VCS_REF"].as_str().unwrap()).unwrap(), "abc${x}");
    assert_eq!(hcl_literal(t["labels"]["org.opencontainers.image.revision"].as_str().unwrap()).unwrap(), "abc${x}");
    // Negative control: strings without a template sequence are unchanged
    // (a lone `$` or `%` is not interpolation).
    let (b, _) = bake_json(&s, &["--image", "lab-base", "--variant", "cpu", "--build-arg", "NOTE=$HOME 50% {x}"]);
    assert_eq!(b["target"]["lab-base-cpu"]["args"]["NOTE"], "$HOME 50% {x}");
    assert_eq!(b["target"]["lab-base-cpu"]["args"]["VCS_REF"], "r");
}

// --- 2. group and target names ------------------------------------------------------

fn add_variant(s: &Scratch, v: &str) {
    // A copy of the cpu variant under another id (same values, so the cpu
    // variant's Python locks are valid for it too and are copied along).
    let text = s.read(M);
    let start = text.find("[variants.cpu]\n").expect("the manifest has a cpu variant");
    let end = start + text[start..].find("\n\n").expect("the cpu variant ends with a blank line");
    let cpu = &text[start..end];
    let copy = cpu.replacen("[variants.cpu]", &format!("[variants.{v}]"), 1).replacen(
        "description = \"CPU only, Ubuntu 24.04\"",
        "description = \"extra line\"",
        1,
    );
    let text = text.replacen("[images.lab-base]", &format!("{copy}\n\n[images.lab-base]"), 1);
    let text = text.replace(
        "variants    = [\"cpu\", \"cuda12\", \"cu118\"]",
        &format!("variants    = [\"cpu\", \"cuda12\", \"cu118\", \"{v}\"]"),
    );
    s.write(M, &text);
    for image in ["lab-base", "lab-pytorch", "lab-python-ml"] {
        let lock = s.read(&format!("images/generated/{image}/cpu/requirements.lock"));
        s.write(&format!("images/generated/{image}/{v}/requirements.lock"), &lock);
    }
}

#[test]
fn input_02_group_and_target_names_never_clash() {
    for (v, clash) in [
        ("all", "the reserved group `all`"),
        ("default", "the reserved group `default`"),
        ("lab-pytorch", "the group of image `lab-pytorch`"),
        ("lab-base-cpu", "the target of image `lab-base`, variant `cpu`"),
    ] {
        let s = family_copy();
        add_variant(&s, v);
        let t = expect(labkit(s.path(), &["bake", "--no-stage", "-o", "-"]), 2);
        assert!(t.contains(&format!("bake name `{v}` is taken twice")), "{v}: {t}");
        assert!(t.contains(clash), "{v}: {t}");
        expect(labkit(s.path(), &["render"]), 2);
    }
    // Negative control: a fresh variant id is accepted and gets its group.
    let s = family_copy();
    add_variant(&s, "jammy");
    expect(labkit(s.path(), &["render"]), 0);
    let (b, _) = bake_json(&s, &[]);
    assert_eq!(b["group"]["jammy"]["targets"].as_array().unwrap().len(), 3);
}

// --- 3. bake paths ----------------------------------------------------------------------

#[test]
fn input_03_bake_paths_resolve_the_same_from_anywhere() {
    let s = family_copy();
    let root = s.path().canonicalize().unwrap();
    let (b, _) = bake_json(&s, &["--variant", "cpu", "--image", "lab-base"]);
    let t = &b["target"]["lab-base-cpu"];
    let ctx = t["context"].as_str().unwrap();
    let df = t["dockerfile"].as_str().unwrap();
    // Absolute: the same under the default (cwd) and the bake-file-relative
    // (BUILDX_BAKE_FILE_RELATIVE_PATHS=1) resolution, from any directory.
    assert!(Path::new(ctx).is_absolute() && Path::new(df).is_absolute(), "{ctx} {df}");
    assert_eq!(Path::new(ctx), s.path().join("build/images/context"));
    assert_eq!(Path::new(df), s.path().join("images/generated/lab-base/cpu/Dockerfile"));
    assert!(Path::new(df).is_file());
    // Negative control: run from another directory, the file is the same.
    let sub = s.join("images/templates");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_labkit"))
        .current_dir(&sub)
        .args(["bake", "--no-stage", "-o", "-", "--revision", "r", "--created", DATE, "--variant", "cpu"])
        .args(["--image", "lab-base"])
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap();
    let b2: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(b2["target"]["lab-base-cpu"]["context"], ctx);
    assert_eq!(b2["target"]["lab-base-cpu"]["dockerfile"], df);
    assert_eq!(s.path().canonicalize().unwrap(), root);
}

// --- 5. undefined values and the layout ----------------------------------------------------

#[test]
fn input_05_undefined_values_are_errors_everywhere() {
    // The manifest's Python requirements: a variant without torchvision.
    let s = family_copy();
    s.edit(M, " torchvision = \"0.22.1\",", "");
    let t = expect(labkit(s.path(), &["render"]), 2);
    assert!(
        t.contains("image `lab-pytorch`, variant `cpu`: python requirement `torchvision=={torchvision}`: no values.torchvision"),
        "{t}"
    );
    expect(labkit(s.path(), &["check"]), 2);

    // `~` concatenation in a template.
    let s = family_copy();
    s.edit(
        "images/templates/lab-pytorch.Dockerfile.tera",
        "# PyTorch {{ values.torch }}",
        "# PyTorch {{ \"torchvision==\" ~ values.torchvisionx }}",
    );
    let t = expect(labkit(s.path(), &["render"]), 2);
    assert!(t.contains("images/templates/lab-pytorch.Dockerfile.tera:"), "{t}");
    assert!(t.contains("image lab-pytorch, variant cpu"), "{t}");
    assert!(t.contains("variant `cpu` has no values.torchvisionx"), "{t}");
    expect(labkit(s.path(), &["check"]), 2);

    // `if` on an undefined value is an error, not false.
    let s = fixture_family();
    s.edit("images/templates/base.Dockerfile.tera", "{%- if variant.is_cuda %}", "{%- if values.nothere %}");
    let t = expect(labkit(s.path(), &["check"]), 2);
    assert!(t.contains("images/templates/base.Dockerfile.tera:5: image base, variant cpu"), "{t}");

    // A misspelt attribute of a fixed-shape object in a branch no variant
    // takes is still caught.
    let s = fixture_family();
    s.edit(
        "images/templates/app.Dockerfile.tera",
        "{% block body %}",
        "{% block body %}{% if false %}{{ variant.eoll }}{% endif %}",
    );
    let t = expect(labkit(s.path(), &["check"]), 2);
    assert!(t.contains("`variant.eoll` is not defined"), "{t}");

    // Negative control: `is defined` may ask about a value some variants
    // lack, and the fixture renders.
    let s = fixture_family();
    s.edit("images/templates/base.Dockerfile.tera", "{%- if variant.is_cuda %}", "{%- if values.cuda is defined %}");
    expect(labkit(s.path(), &["render"]), 0);
}

#[test]
fn input_05_a_template_that_does_not_extend_the_layout_is_refused() {
    let s = fixture_family();
    s.write("images/templates/app.Dockerfile.tera", "FROM scratch\nRUN echo {{ image.name }}\n");
    let t = expect(labkit(s.path(), &["check"]), 2);
    assert!(t.contains("images/templates/app.Dockerfile.tera:1: an image template must start with"), "{t}");
    // A leading comment is fine (negative control).
    let s = fixture_family();
    let src = s.read("images/templates/app.Dockerfile.tera");
    s.write("images/templates/app.Dockerfile.tera", &format!("{{#- the app -#}}\n{src}"));
    expect(labkit(s.path(), &["render"]), 0);
}

// --- 6. dates --------------------------------------------------------------------------

#[test]
fn input_06_eol_must_be_a_calendar_date() {
    for d in ["2026-02-30", "2026-13-45", "2026-00-00", "2027-02-29", "2026-1-01"] {
        let s = family_copy();
        s.edit(M, "eol         = \"2026-12-31\"", &format!("eol         = \"{d}\""));
        let t = expect(labkit(s.path(), &["render"]), 2);
        assert!(t.contains(&format!("variant `cu118`: eol `{d}`")), "{d}: {t}");
    }
    // Negative control: a leap day that exists.
    let s = family_copy();
    s.edit(M, "eol         = \"2026-12-31\"", "eol         = \"2028-02-29\"");
    expect(labkit(s.path(), &["render"]), 0);
}

// --- 7. control characters ----------------------------------------------------------------

#[test]
fn input_07_control_characters_never_reach_a_dockerfile() {
    let cases = [
        (
            "description = \"Lab PyTorch plus TensorFlow and common",
            "description = \"Lab PyTorch plus TensorFlow\\nand common",
            "images.lab-python-ml.description",
        ),
        ("vendor        = \"CVLab, EPFL\"", "vendor        = \"CVLab,\\tEPFL\"", "family.vendor"),
        (
            "description = \"CPU only, Ubuntu 24.04\"",
            "description = \"CPU only,\\r Ubuntu 24.04\"",
            "variants.cpu.description",
        ),
        (
            "values      = { python = \"3.12\", torch = \"2.7.1\"",
            "values      = { python = \"3.12\\u0000\", torch = \"2.7.1\"",
            "variants.cpu.values.python",
        ),
    ];
    for (from, to, place) in cases {
        let s = family_copy();
        s.edit(M, from, to);
        let t = expect(labkit(s.path(), &["render"]), 2);
        assert!(t.contains(&format!("{place}: contains the control character")), "{place}: {t}");
        expect(labkit(s.path(), &["check"]), 2);
    }
    // Negative control: non-ASCII text and quotes are fine (escaped in labels).
    let s = family_copy();
    s.edit(M, "vendor        = \"CVLab, EPFL\"", "vendor        = \"CVLab — EPFL \\\"Lausanne\\\" $HOME\"");
    expect(labkit(s.path(), &["render"]), 0);
    let df = s.read("images/generated/lab-base/cpu/Dockerfile");
    assert!(df.contains(r#"org.opencontainers.image.vendor="CVLab — EPFL \"Lausanne\" \$HOME""#), "{df}");
}

// --- 8. CRLF ------------------------------------------------------------------------------

fn git(dir: &Path, args: &[&str]) {
    let o = std::process::Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@t.invalid"])
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "git {args:?}: {}", text(&o));
}

#[test]
fn input_08_an_autocrlf_checkout_passes_check_and_stages_lf() {
    let s = family_copy();
    std::fs::copy(repo().join(".gitattributes"), s.join(".gitattributes")).unwrap();
    s.write("services/ssh", "#!/bin/sh\necho ssh service\n");
    std::fs::remove_file(s.join("dist/labinit")).unwrap();
    git(s.path(), &["init", "-q"]);
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-qm", "family"]);
    let clone = Scratch::new("crlf-clone");
    let dest = clone.join("repo");
    git(clone.path(), &["clone", "-q", "-c", "core.autocrlf=true", s.path().to_str().unwrap(), dest.to_str().unwrap()]);
    let t = expect(labkit(&dest, &["check"]), 0);
    assert!(t.contains("up to date"), "{t}");
    std::fs::create_dir_all(dest.join("dist")).unwrap();
    std::fs::write(dest.join("dist/labinit"), "#!/bin/sh\n").unwrap();
    expect(labkit(&dest, &["bake", "--revision", "r", "--created", DATE]), 0);
    let staged = std::fs::read(dest.join("build/images/context/services/ssh")).unwrap();
    assert!(!staged.contains(&b'\r'), "staged with CRLF");

    // Without .gitattributes (negative control of the attribute file): the
    // checkout is CRLF; templates still render the same, a shipped script is
    // refused with its name.
    let bare = Scratch::new("crlf-bare");
    std::fs::remove_file(s.join(".gitattributes")).unwrap();
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-qm", "no attributes"]);
    let dest = bare.join("repo");
    git(bare.path(), &["clone", "-q", "-c", "core.autocrlf=true", s.path().to_str().unwrap(), dest.to_str().unwrap()]);
    let tpl = std::fs::read(dest.join("images/templates/_layout.Dockerfile.tera")).unwrap();
    assert!(tpl.windows(2).any(|w| w == b"\r\n"), "the clone really is CRLF");
    expect(labkit(&dest, &["check"]), 0);
    std::fs::create_dir_all(dest.join("dist")).unwrap();
    std::fs::write(dest.join("dist/labinit"), "#!/bin/sh\n").unwrap();
    let t = expect(labkit(&dest, &["bake", "--revision", "r", "--created", DATE]), 2);
    assert!(t.contains("setup_steps/50_example.sh has CRLF line endings"), "{t}");
}

// --- 9. APT_MIRROR --------------------------------------------------------------------------

/// Runs the generated apt step of lab-base/<variant> against a fake /etc/apt
/// under `root` with apt-get stubbed; returns the URLs apt would fetch during
/// `update` and the sources left afterwards.
fn run_apt_step(variant: &str, mirror: Option<&str>) -> (String, String) {
    let s = Scratch::new("apt");
    let root = s.join("root");
    let d = root.join("etc/apt/sources.list.d");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("ubuntu.sources"),
        "Types: deb\nURIs: http://archive.ubuntu.com/ubuntu/\nSuites: noble\nComponents: main\n\n\
         Types: deb\nURIs: http://security.ubuntu.com/ubuntu/\nSuites: noble-security\nComponents: main\n",
    )
    .unwrap();
    std::fs::write(
        d.join("cuda-ubuntu2404-x86_64.list"),
        "deb [signed-by=/usr/share/keyrings/cuda-archive-keyring.gpg] https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/x86_64/ /\n",
    )
    .unwrap();
    let bin = s.join("bin");
    let fetched = s.join("fetched");
    script(
        &bin.join("apt-get"),
        &format!(
            "#!/bin/sh\nif [ \"$1\" = update ]; then cat {r}/etc/apt/sources.list.d/*.list {r}/etc/apt/sources.list.d/*.sources | grep -Eo 'https?://[^ ]+' | sort -u > {f}; fi\nexit 0\n",
            r = root.display(),
            f = fetched.display()
        ),
    );
    let df = std::fs::read_to_string(repo().join(format!("images/generated/lab-base/{variant}/Dockerfile"))).unwrap();
    let joined = df.replace("\\\n", " ");
    let body = joined.lines().find(|l| l.starts_with("RUN ") && l.contains("apt-get update")).expect("an apt RUN")[4..]
        .to_string();
    let rooted = root.display().to_string();
    let body = body
        .replace("/etc/apt", &format!("{rooted}/etc/apt"))
        .replace("/var/lib/apt", &format!("{rooted}/var/lib/apt"));
    // Only the fake root may be touched.
    let stray = body
        .split([' ', ';', '"'])
        .any(|w| (w.starts_with("/etc/") || w.starts_with("/var/")) && !w.starts_with(&rooted));
    assert!(!stray, "the apt step touches paths outside /etc/apt: {body}");
    let mut c = std::process::Command::new("sh");
    c.arg("-c").arg(&body).env("PATH", format!("{}:/usr/bin:/bin", bin.display()));
    c.env("APT_MIRROR", mirror.unwrap_or(""));
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let after = std::fs::read_to_string(d.join("cuda-ubuntu2404-x86_64.list")).unwrap()
        + &std::fs::read_to_string(d.join("ubuntu.sources")).unwrap();
    (std::fs::read_to_string(&fetched).unwrap(), after)
}

#[test]
fn input_09_with_a_mirror_the_apt_step_needs_only_the_mirror() {
    let (fetched, after) = run_apt_step("cuda12", Some("http://mirror.lab.example/ubuntu"));
    assert_eq!(fetched.trim(), "http://mirror.lab.example/ubuntu/", "{fetched}");
    // The image keeps its own sources: all restored after the step.
    assert!(after.contains("developer.download.nvidia.com") && after.contains("archive.ubuntu.com"), "{after}");
    // Negative control: without a mirror the base's sources are used as they are.
    let (fetched, _) = run_apt_step("cuda12", None);
    assert!(fetched.contains("developer.download.nvidia.com") && fetched.contains("archive.ubuntu.com"), "{fetched}");
}

// --- 4. build parents (fake engine) -----------------------------------------------------------

struct Rig {
    s: Scratch,
    log: std::path::PathBuf,
}

fn rig() -> Rig {
    let s = family_copy();
    script(&s.join("fakebin/docker"), FAKE_ENGINE);
    script(&s.join("fakebin/podman"), FAKE_ENGINE);
    let log = s.join("engine.log");
    Rig { s, log }
}

impl Rig {
    fn build(&self, engine: &str, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let mut c = labkit_cmd(self.s.path());
        c.args(["build", "--revision", "r1", "--created", DATE, "--engine"]).arg(self.s.join("fakebin").join(engine));
        c.args(args).env("FAKE_ENGINE_LOG", &self.log);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

#[test]
fn input_04_registry_parents_are_pulled_children_use_the_parent_of_this_run() {
    let r = rig();
    let t = expect(r.build("docker", &["--variant", "cpu"], &[]), 0);
    let (_, argv) = events(&r.log);
    let base = argv.iter().find(|a| a.contains("lab-base/cpu")).unwrap();
    assert!(base.contains(" --pull "), "registry base pulled fresh: {base}");
    let torch = argv.iter().find(|a| a.contains("lab-pytorch/cpu")).unwrap();
    let id = labkit::images::sha256_hex(format!("{R}/lab-base:cpu").as_bytes());
    assert!(torch.contains(&format!("--build-arg BASE_IMAGE=sha256:{id}")), "{torch}");
    assert!(!torch.contains("--pull"), "{torch}");
    assert!(t.contains(&format!("lab-pytorch-cpu: started on lab-base-cpu sha256:{id}")), "{t}");
    // podman spells the pull policy out.
    let r = rig();
    expect(r.build("podman", &["--variant", "cpu", "--image", "lab-base"], &[]), 0);
    assert!(events(&r.log).1[0].contains(" --pull=always "), "{:?}", events(&r.log).1);
    // A parent left out of the selection comes from the registry: pulled.
    let r = rig();
    expect(r.build("docker", &["--variant", "cpu", "--image", "lab-pytorch"], &[]), 0);
    let a = &events(&r.log).1[0];
    assert!(a.contains(" --pull ") && a.contains(&format!("BASE_IMAGE={R}/lab-base:cpu")), "{a}");
}

#[test]
fn input_04_no_image_id_no_children() {
    let r = rig();
    let t = expect(r.build("docker", &["--variant", "cpu"], &[("FAKE_NO_IID", "1")]), 1);
    assert!(t.contains("wrote no image ID"), "{t}");
    assert!(t.contains("lab-pytorch-cpu: skipped"), "{t}");
    assert_eq!(events(&r.log).1.len(), 1, "children never start on a parent of unknown identity");
}

#[test]
fn input_04_a_non_docker_builder_driver_is_handled() {
    let r = rig();
    // A fake whose buildx builder runs in a container (docker-container).
    let fake = FAKE_ENGINE.replacen(
        "case \"$1\" in",
        "case \"$1 $2\" in\n  \"buildx inspect\") printf 'Name: ci\\nDriver: docker-container\\n'; exit 0;;\n  \"context show\") echo ctxname; exit 0;;\nesac\ncase \"$1\" in",
        1,
    );
    let fake = fake.replacen(
        "echo \"argv $*\" >> \"$log\"",
        "echo \"argv $*\" >> \"$log\"\necho \"env BUILDX_BUILDER=${BUILDX_BUILDER:-}\" >> \"$log.env\"",
        1,
    );
    script(&r.s.join("fakebin/docker"), &fake);
    let t = expect(r.build("docker", &["--variant", "cpu", "--image", "lab-base"], &[]), 0);
    assert!(t.contains("uses the `docker-container` driver"), "{t}");
    assert!(t.contains("BUILDX_BUILDER=ctxname"), "{t}");
    let env = std::fs::read_to_string(format!("{}.env", r.log.display())).unwrap();
    assert!(env.lines().any(|l| l == "env BUILDX_BUILDER=ctxname"), "{env}");
    // Negative control: the docker driver is used as it is.
    let r = rig();
    let fake = FAKE_ENGINE.replacen(
        "case \"$1\" in",
        "case \"$1 $2\" in\n  \"buildx inspect\") printf 'Name: default\\nDriver: docker\\n'; exit 0;;\nesac\ncase \"$1\" in",
        1,
    );
    script(&r.s.join("fakebin/docker"), &fake);
    let t = expect(r.build("docker", &["--variant", "cpu", "--image", "lab-base"], &[]), 0);
    assert!(!t.contains("driver"), "{t}");
}

#[test]
fn input_04_push_only_pushes_what_this_run_built() {
    let r = rig();
    let t = expect(r.build("docker", &["--variant", "cpu", "--push"], &[("FAKE_RETAG", "lab-pytorch")]), 1);
    assert!(t.contains("push: not pushing anything"), "{t}");
    assert!(t.contains("lab-pytorch:cpu is image"), "{t}");
    assert!(!r.log().contains("\npush "), "nothing pushed: {}", r.log());
    // Negative control: tags untouched, everything pushed.
    let r = rig();
    expect(r.build("docker", &["--variant", "cpu", "--push"], &[]), 0);
    assert_eq!(r.log().lines().filter(|l| l.starts_with("push ")).count(), 3);
}

#[test]
fn build_reports_failures_with_the_log_tail_and_a_json_summary() {
    let r = rig();
    let fake = FAKE_ENGINE.replacen(
        "echo \"fake build of $tag\"",
        "echo \"fake build of $tag\"; for n in $(seq 1 30); do echo \"log line $n\"; done",
        1,
    );
    script(&r.s.join("fakebin/docker"), &fake);
    let summary = r.s.join("summary.json");
    let t = expect(
        r.build(
            "docker",
            &["--variant", "cpu", "--summary-json", summary.to_str().unwrap()],
            &[("FAKE_ENGINE_FAIL", "lab-pytorch")],
        ),
        1,
    );
    assert!(t.contains("last 20 line(s) of"), "{t}");
    assert!(t.contains("  | log line 30") && t.contains("  | log line 12"), "{t}");
    assert!(!t.contains("  | log line 11\n"), "only 20 lines: {t}");
    let j: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(j["success"], false);
    let states: Vec<(&str, &str)> = j["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap(), t["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [("lab-base-cpu", "built"), ("lab-pytorch-cpu", "failed"), ("lab-python-ml-cpu", "skipped")]);
    assert!(j["targets"][0]["image_id"].as_str().unwrap().starts_with("sha256:"));
}

// --- the class: values checked where they enter ------------------------------------------------

#[test]
fn per_build_values_are_checked_where_they_enter() {
    let s = family_copy();
    for (args, env, needle) in [
        (vec!["--created", "yesterday"], None, "--created: `yesterday` is not an RFC 3339 timestamp"),
        (vec!["--created", "2026-02-30T00:00:00Z"], None, "is not an RFC 3339 timestamp"),
        (vec![], Some("soon"), "SOURCE_DATE_EPOCH=`soon` is not a non-negative integer"),
        // Past 9999-12-30T22:00:00Z (the latest timestamp) there is no RFC
        // 3339 date to label an image with.
        (vec![], Some("253402207201"), "SOURCE_DATE_EPOCH=`253402207201` is out of range"),
        (vec!["--revision", "a\nb"], None, "--revision: contains the control character"),
        (vec!["--build-arg", "A-B=1"], None, "`A-B` is not a build-argument name"),
        (vec!["--build-arg", "BUILD_DATE=x"], None, "BUILD_DATE is set by labkit"),
        (vec!["--build-arg", "X=a\nb"], None, "build argument X: contains the control character"),
        (vec!["--apt-mirror", "http://m|x"], None, "apt mirror `http://m|x`"),
        (vec!["--base-override", "cpu=localhost/Noble:1"], None, "base override `cpu=localhost/Noble:1`"),
    ] {
        let mut c = labkit_cmd(s.path());
        c.arg("plan").args(&args);
        if let Some(e) = env {
            c.env("SOURCE_DATE_EPOCH", e);
        }
        let t = expect(c.output().unwrap(), 2);
        assert!(t.contains(needle), "{args:?}: {t}");
    }
    // Negative controls: valid values pass and arrive unchanged.
    let o = labkit_cmd(s.path())
        .args(["plan", "--format", "json", "--created", "2026-11-29T08:09:50+01:00", "--revision", "v1.2-3"])
        .args(["--apt-mirror", "http://mirror.example.org/ubuntu", "--build-arg", "PIP_INDEX_URL=http://x/simple"])
        .output()
        .unwrap();
    let t = expect(o.clone(), 0);
    let p: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(p["targets"][0]["args"]["BUILD_DATE"], "2026-11-29T08:09:50+01:00", "{t}");
    let mut c = labkit_cmd(s.path());
    c.args(["plan", "--format", "json"]).env("SOURCE_DATE_EPOCH", "1700000000");
    let p: Value = serde_json::from_slice(&c.output().unwrap().stdout).unwrap();
    assert_eq!(p["targets"][0]["args"]["BUILD_DATE"], "2023-11-14T22:13:20Z");
    // The latest timestamp is still a date.
    let mut c = labkit_cmd(s.path());
    c.args(["plan", "--format", "json"]).env("SOURCE_DATE_EPOCH", "253402207200");
    let p: Value = serde_json::from_slice(&c.output().unwrap().stdout).unwrap();
    assert_eq!(p["targets"][0]["args"]["BUILD_DATE"], "9999-12-30T22:00:00Z");
}

#[test]
fn references_follow_the_oci_grammar() {
    for (from, to, needle) in [
        (
            "registry      = \"ic-registry.epfl.ch/cvlab/lis\"",
            "registry      = \"ic-registry.epfl.ch/CVLab/lis\"",
            "family.registry",
        ),
        ("registry      = \"ic-registry.epfl.ch/cvlab/lis\"", "registry      = \"cvlab\"", "family.registry"),
        (
            "base        = \"docker.io/library/ubuntu:24.04\"",
            "base        = \"docker.io/library/Ubuntu:24.04\"",
            "base `docker.io/library/Ubuntu:24.04` must be written in full",
        ),
        (
            "base        = \"docker.io/library/ubuntu:24.04\"",
            "base        = \"docker.io/library/ubuntu:24.04@sha256:xyz\"",
            "must be written in full",
        ),
        ("[images.lab-base]", "[images.lab--base-]", "images.lab--base-"),
    ] {
        let s = family_copy();
        let text = s.read(M).replace(from, to);
        s.write(M, &text);
        let t = expect(labkit(s.path(), &["render"]), 2);
        assert!(t.contains(needle), "{to}: {t}");
    }
    // Negative control: a registry with a port and a digest-pinned base.
    let s = family_copy();
    s.edit(M, "registry      = \"ic-registry.epfl.ch/cvlab/lis\"", "registry      = \"localhost:5000/lab\"");
    s.edit(
        M,
        "base        = \"docker.io/library/ubuntu:24.04\"",
        "base        = \"docker.io/library/ubuntu:24.04@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"",
    );
    expect(labkit(s.path(), &["render"]), 0);
}

#[test]
fn closed_stdout_ends_quietly() {
    let s = family_copy();
    for args in [&["plan"][..], &["bake", "--no-stage", "-o", "-"][..], &["check", "--format", "json"][..]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let o = labkit_cmd(s.path()).args(args).stdout(writer).stderr(std::process::Stdio::piped()).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{args:?}: {err}");
    }
    // Negative control: with a reader, the whole plan arrives.
    let o = labkit(s.path(), &["plan"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("level 2: lab-python-ml-cpu"));
}

#[test]
fn bake_refuses_out_of_date_dockerfiles() {
    let s = family_copy();
    s.edit("images/templates/lab-base.Dockerfile.tera", "PYTHONUNBUFFERED=1", "PYTHONUNBUFFERED=0");
    let t = expect(labkit(s.path(), &["bake", "--no-stage", "-o", "-"]), 1);
    assert!(t.contains("run `labkit render` first"), "{t}");
    assert!(t.contains("lab-base/cpu/Dockerfile: modified"), "{t}");
    // Negative control: after render, bake writes.
    expect(labkit(s.path(), &["render"]), 0);
    expect(labkit(s.path(), &["bake", "--no-stage", "-o", "-"]), 0);
}

#[test]
fn ssh_host_keys_are_removed_in_the_layer_that_creates_them() {
    for v in ["cpu", "cuda12", "cu118"] {
        let df = std::fs::read_to_string(repo().join(format!("images/generated/lab-base/{v}/Dockerfile"))).unwrap();
        let runs: Vec<String> =
            df.replace("\\\n", " ").lines().filter(|l| l.starts_with("RUN ")).map(str::to_string).collect();
        let installs: Vec<&String> = runs.iter().filter(|r| r.contains("openssh-server")).collect();
        assert_eq!(installs.len(), 1, "{v}");
        assert!(installs[0].contains("rm -f /etc/ssh/ssh_host_*"), "{v}: {}", installs[0]);
        // Negative control: no other RUN needs to remove keys.
        assert_eq!(runs.iter().filter(|r| r.contains("ssh_host_")).count(), 1, "{v}");
    }
}

#[test]
fn one_inputs_hash_covers_the_parent_chain() {
    let label = |s: &Scratch, p: &str| {
        let df = s.read(&format!("images/generated/{p}/Dockerfile"));
        df.lines().find_map(|l| l.strip_prefix("# labkit-inputs-sha256: ")).unwrap().to_string()
    };
    let a = family_copy();
    let b = family_copy();
    b.edit("images/templates/lab-base.Dockerfile.tera", "PYTHONUNBUFFERED=1", "PYTHONUNBUFFERED=0");
    expect(labkit(b.path(), &["render"]), 0);
    for p in ["lab-base/cpu", "lab-pytorch/cpu", "lab-python-ml/cpu"] {
        assert_ne!(label(&a, p), label(&b, p), "{p}: a change of lab-base reaches every descendant");
    }
    // Negative control: a child's change leaves its parent alone.
    let c = family_copy();
    c.edit(
        "images/templates/lab-python-ml.Dockerfile.tera",
        "# libraries, as locked",
        "# libraries, as locked (edited)",
    );
    expect(labkit(c.path(), &["render"]), 0);
    assert_eq!(label(&a, "lab-pytorch/cpu"), label(&c, "lab-pytorch/cpu"));
    assert_ne!(label(&a, "lab-python-ml/cpu"), label(&c, "lab-python-ml/cpu"));
    // The plan's hash has its own name.
    let o = labkit(a.path(), &["plan", "--format", "json"]);
    let p: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(p["targets"][0].get("inputs_sha256").is_none());
    assert_eq!(p["targets"][0]["build_inputs_sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn labels_name_the_parent_a_plain_build_used() {
    let df = std::fs::read_to_string(repo().join("images/generated/lab-pytorch/cpu/Dockerfile")).unwrap();
    assert!(df.contains("org.opencontainers.image.base.name=\"${BASE_NAME:-${BASE_IMAGE}}\""), "{df}");
    assert!(df.contains("ARG BASE_NAME=\"\"") && df.contains("ARG BASE_DIGEST=\"\""), "{df}");
    // BASE_IMAGE is declared again inside the stage, so the label sees it.
    let from = df.find("FROM ${BASE_IMAGE}").unwrap();
    assert!(df[from..].contains("\nARG BASE_IMAGE\n"), "{df}");
}

#[test]
fn check_json_and_cli_suggestions() {
    let s = family_copy();
    let o = labkit(s.path(), &["check", "--format", "json"]);
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((o.status.code(), j["clean"].clone()), (Some(0), Value::Bool(true)));
    std::fs::remove_file(s.join("images/generated/lab-base/cpu/Dockerfile")).unwrap();
    let o = labkit(s.path(), &["check", "--format", "json"]);
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(j["drift"][0]["kind"], "missing");
    assert_eq!(j["drift"][0]["path"], "images/generated/lab-base/cpu/Dockerfile");
    let t = expect(labkit(s.path(), &["chek"]), 2);
    assert!(t.contains("a similar subcommand exists: 'check'"), "{t}");
}
