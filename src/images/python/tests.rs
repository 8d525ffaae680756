use super::compiled::normalize_name;
use super::spec::{expand, ImageRequirements};
use super::uv::unsatisfiable_message;
use super::*;
use std::collections::BTreeMap;

fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn expand_replaces_values_and_rejects_unknown_keys() {
    let v = values(&[("torch", "2.7.1"), ("tensorflow", "tensorflow-cpu==2.19.0")]);
    assert_eq!(expand("torch=={torch}", &v).unwrap(), "torch==2.7.1");
    assert_eq!(expand("{tensorflow}", &v).unwrap(), "tensorflow-cpu==2.19.0");
    assert_eq!(expand("numpy<2", &v).unwrap(), "numpy<2");
    assert!(expand("torch=={torh}", &v).unwrap_err().contains("values.torh"));
    assert!(expand("torch=={torch", &v).unwrap_err().contains("closing"));
    assert!(expand("torch==}", &v).unwrap_err().contains("opening"));
    assert!(expand("--index-url http://x", &v).unwrap_err().contains("options"));
    assert!(expand("{empty}", &values(&[("empty", " ")])).unwrap_err().contains("nothing"));
}

#[test]
fn names_are_normalised() {
    assert_eq!(normalize_name("Jupyter_Server.Terminals"), "jupyter-server-terminals");
    assert_eq!(normalize_name("opencv-python-headless"), "opencv-python-headless");
    assert_eq!(normalize_name("a__b"), "a-b");
}

const OUT: &str = "\
absl-py==2.5.1 \\
    --hash=sha256:aa \\
    --hash=sha256:bb
    # via
    #   keras
    #   tensorflow-cpu
keras==3.15.1 \\
    --hash=sha256:cc
    # via tensorflow-cpu
numpy==2.1.3 \\
    --hash=sha256:dd
    # via
    #   -r lab-pytorch.in
    #   keras
pip==26.3 \\
    --hash=sha256:ee
    # via -r lab-base.in
tensorflow-cpu==2.19.0 \\
    --hash=sha256:ff
    # via -r lab-python-ml.in
";

fn spec() -> VariantSpec {
    let img = |n: &str, p: Option<&str>, r: &[&str]| ImageRequirements {
        image: n.into(),
        parent: p.map(String::from),
        requirements: r.iter().map(|s| s.to_string()).collect(),
    };
    VariantSpec {
        variant: "cpu".into(),
        python: "3.12".into(),
        platform: DEFAULT_PLATFORM.into(),
        index: None,
        exclude_newer: None,
        images: vec![
            img("lab-base", None, &["pip"]),
            img("lab-pytorch", Some("lab-base"), &["numpy"]),
            img("lab-python-ml", Some("lab-pytorch"), &["tensorflow-cpu==2.19.0"]),
        ],
    }
}

#[test]
fn parse_keeps_blocks_and_reads_annotations() {
    let c = parse_compiled(OUT).unwrap();
    assert_eq!(c.pins.len(), 5);
    assert_eq!(c.pins[0].name, "absl-py");
    assert_eq!(c.pins[0].version, "2.5.1");
    assert_eq!(c.pins[0].via, ["keras", "tensorflow-cpu"]);
    assert_eq!(c.pins[0].lines.len(), 6);
    assert_eq!(c.pins[2].via, ["-r lab-pytorch.in", "keras"]);
    assert!(parse_compiled("numpy>=2\n").unwrap_err().contains("not a pinned requirement"));
}

#[test]
fn split_gives_each_package_to_the_highest_image_that_needs_it() {
    let c = parse_compiled(OUT).unwrap();
    let locks = split(&spec(), &c, "uv 0.13.9").unwrap();
    let names = |image: &str| -> Vec<String> {
        parse_compiled(locks[image].split_once("\n\n").unwrap().1).unwrap().pins.into_iter().map(|p| p.name).collect()
    };
    assert_eq!(names("lab-base"), ["pip"]);
    // numpy is needed by keras too, but lab-pytorch asks for it: it is
    // installed there and never again by the child.
    assert_eq!(names("lab-pytorch"), ["numpy"]);
    assert_eq!(names("lab-python-ml"), ["absl-py", "keras", "tensorflow-cpu"]);
    for text in locks.values() {
        assert_eq!(check_text(text, &spec().inputs_hash()), None, "{text}");
    }
}

#[test]
fn parse_handles_markers_extras_options_and_odd_names() {
    let text = "--index-url https://pypi.org/simple\n--extra-index-url https://download.pytorch.org/whl/cu118\n\
                    Jinja2==3.1.6 ; python_version >= '3.9' \\\n    --hash=sha256:aa\n    # via\n    #   -r lab-base.in\n\
                    nvidia-cudnn-cu11==9.1.0.70 \\\n    --hash=sha256:bb\n    # via torch (extra: cuda)\n\
                    zope.interface==8.0 \\\n    --hash=sha256:cc\n    # via tensorflow[and-cuda]\n";
    let c = parse_compiled(text).unwrap();
    assert_eq!(c.options.len(), 2);
    assert_eq!(c.pins[0].name, "jinja2");
    assert_eq!(c.pins[0].version, "3.1.6");
    assert_eq!(c.pins[0].via, ["-r lab-base.in"]);
    assert_eq!(c.pins[1].via, ["torch"]);
    assert_eq!(c.pins[2].name, "zope-interface");
    assert_eq!(c.pins[2].via, ["tensorflow"]);
    // The index options reach every image's lock.
    let locks =
        split(&spec(), &parse_compiled(&format!("{}\n{OUT}", &text[..text.find("Jinja2").unwrap()])).unwrap(), "")
            .unwrap();
    for l in locks.values() {
        assert!(l.contains("--extra-index-url https://download.pytorch.org/whl/cu118\n"), "{l}");
    }
}

#[test]
fn a_package_nobody_asked_for_is_an_error() {
    let c = parse_compiled("stray==1 \\\n    --hash=sha256:00\n").unwrap();
    assert!(split(&spec(), &c, "").unwrap_err().contains("stray"));
}

#[test]
fn check_tells_stale_from_hand_edited() {
    let c = parse_compiled(OUT).unwrap();
    let s = spec();
    let text = split(&s, &c, "").unwrap()["lab-pytorch"].clone();
    assert_eq!(check_text(&text, &s.inputs_hash()), None);
    let mut changed = s.clone();
    changed.images[1].requirements.push("scipy".into());
    assert_eq!(check_text(&text, &changed.inputs_hash()), Some(LockProblem::Stale));
    let mut py = s.clone();
    py.python = "3.11".into();
    assert_ne!(py.inputs_hash(), s.inputs_hash());
    let edited = text.replace("numpy==2.1.3", "numpy==2.1.2");
    assert_eq!(check_text(&edited, &s.inputs_hash()), Some(LockProblem::HandEdited));
    assert_eq!(check_text("", &s.inputs_hash()), Some(LockProblem::HandEdited));
}

#[test]
fn conflict_message_names_the_packages() {
    let uv = "error: No solution found when resolving dependencies\n  cause: Because torch==2.7.1 depends on \
                  nvidia-cuda-nvrtc-cu12==12.6.77 and tensorflow[and-cuda]==2.19.0 depends on \
                  nvidia-cuda-nvrtc-cu12==12.5.82, we can conclude that tensorflow[and-cuda]==2.19.0 and \
                  torch==2.7.1 are incompatible.\n";
    let m = unsatisfiable_message(&spec(), &format!("\u{1b}[31m{uv}\u{1b}[0m"));
    assert!(m.contains("tensorflow[and-cuda]==2.19.0 and torch==2.7.1 are incompatible"), "{m}");
    assert!(m.contains("variant `cpu`"), "{m}");
    assert!(m.contains("nvidia-cuda-nvrtc-cu12==12.5.82"), "{m}");
    assert!(!m.contains('\u{1b}'), "{m}");
}

#[test]
fn index_is_passed_and_emitted() {
    let mut s = spec();
    let plain = s.uv_args();
    assert!(!plain.iter().any(|a| a == "--index"));
    s.index = Some("https://download.pytorch.org/whl/cu118".into());
    let a = s.uv_args();
    assert!(a.windows(2).any(|w| w == ["--index", "https://download.pytorch.org/whl/cu118"]));
    assert!(a.contains(&"--emit-index-url".to_string()));
    assert_ne!(s.inputs_hash(), spec().inputs_hash());
}
