use super::*;

const MINI: &str = r#"
[family]
registry = "registry.example.org/lab"
vendor = "Lab"
authors = "Lab <lab@example.org>"
licenses = "MIT"
source = "https://example.org/labkit"
documentation = "https://example.org/docs"

[variants.cpu]
description = "CPU"
kind = "cpu"
base = "docker.io/library/ubuntu:24.04"
aliases = ["latest"]

[images.base]
description = "b"
template = "b.tera"
variants = ["cpu"]
tags = ["{variant}", "{alias}"]

[images.child]
description = "c"
template = "c.tera"
parent = "base"
variants = ["cpu"]
tags = ["{variant}"]
"#;

fn load(text: &str) -> Result<Family, ManifestErrors> {
    Family::from_str(text, Lock::default(), &BaseOverrides::new(), None)
}

#[test]
fn expands_targets_in_build_order() {
    let f = load(MINI).unwrap();
    let names: Vec<_> = f.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["base-cpu", "child-cpu"]);
    assert_eq!(f.targets[0].tags, ["registry.example.org/lab/base:cpu", "registry.example.org/lab/base:latest"]);
    assert_eq!(
        f.targets[1].parent,
        Parent::Target { target: "base-cpu".into(), reference: "registry.example.org/lab/base:cpu".into() }
    );
}

#[test]
fn lock_digest_pins_the_base() {
    let mut lock = Lock::default();
    lock.set("docker.io/library/ubuntu:24.04", "sha256:abc");
    let f = Family::from_str(MINI, lock, &BaseOverrides::new(), None).unwrap();
    assert_eq!(f.targets[0].parent.pinned(), "docker.io/library/ubuntu:24.04@sha256:abc");
}

#[test]
fn override_replaces_base_and_drops_digest() {
    let mut lock = Lock::default();
    lock.set("docker.io/library/ubuntu:24.04", "sha256:abc");
    let o = BaseOverrides::from([("cpu".into(), "localhost/noble:latest".into())]);
    let f = Family::from_str(MINI, lock, &o, None).unwrap();
    assert_eq!(f.targets[0].parent.pinned(), "localhost/noble:latest");
}

#[test]
fn unknown_keys_are_rejected() {
    let text = MINI.replace("kind = \"cpu\"", "kind = \"cpu\"\nbsae = \"x\"");
    let e = load(&text).unwrap_err().to_string();
    assert!(e.contains("bsae"), "{e}");
}

#[test]
fn unknown_placeholder_is_rejected() {
    let text = MINI.replace("tags = [\"{variant}\"]", "tags = [\"{cuda}\"]");
    let e = load(&text).unwrap_err().to_string();
    assert!(e.contains("unknown placeholder `{cuda}`"), "{e}");
}

#[test]
fn short_base_reference_is_rejected() {
    let text = MINI.replace("docker.io/library/ubuntu:24.04", "ubuntu");
    let e = load(&text).unwrap_err().to_string();
    assert!(e.contains("must be written in full"), "{e}");
}

#[test]
fn override_parsing() {
    assert_eq!(parse_override("cpu=localhost/x:1").unwrap(), ("cpu".into(), "localhost/x:1".into()));
    assert!(parse_override("cpu").is_err());
}
