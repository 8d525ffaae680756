//! `labkit lock`: digests come from the registry through skopeo (faked here),
//! are written to images/lock.toml, and render turns them into pinned FROM
//! defaults and base.digest labels; without registry access nothing changes.
mod images_support;
use images_support::*;

fn fake_skopeo(s: &Scratch, fail: bool) -> String {
    let bin = s.join("fakebin");
    let body = if fail {
        "#!/bin/sh\necho 'pinging container registry: dial tcp: lookup registry-1.docker.io: no such host' >&2\nexit 1\n".to_string()
    } else {
        // The raw manifest: its sha256 is the digest.
        "#!/bin/sh\n[ \"$1\" = inspect ] && [ \"$2\" = --raw ] || exit 9\nprintf 'manifest of %s' \"$3\"\n".to_string()
    };
    script(&bin.join("skopeo"), &body);
    format!("{}:/usr/bin:/bin", bin.display())
}

fn expected_digest(reference: &str) -> String {
    format!("sha256:{}", labkit::images::sha256_hex(format!("manifest of docker://{reference}").as_bytes()))
}

#[test]
fn lock_pins_bases_and_render_uses_the_pins() {
    let s = fixture_family();
    let path = fake_skopeo(&s, false);
    let o = labkit_cmd(s.path()).env("PATH", &path).args(["lock", "--resolver", "skopeo"]).output().unwrap();
    let t = expect(o, 0);
    assert!(t.contains("wrote images/lock.toml"), "{t}");
    let lock = s.read("images/lock.toml");
    let ubuntu = expected_digest("docker.io/library/ubuntu:24.04");
    assert!(lock.contains(&ubuntu), "{lock}");

    // The committed Dockerfiles are now stale until rendered.
    expect(labkit(s.path(), &["check"]), 1);
    expect(labkit(s.path(), &["render"]), 0);
    let df = s.read("images/generated/base/cpu/Dockerfile");
    assert!(df.contains(&format!("ARG BASE_IMAGE=docker.io/library/ubuntu:24.04@{ubuntu}\n")), "{df}");
    // The digest reaches the labels through the build arguments labkit
    // passes; the Dockerfile's own defaults stay empty, so a plain build with
    // another BASE_IMAGE never claims this digest.
    assert!(df.contains("ARG BASE_DIGEST=\"\""), "{df}");
    let o = labkit(s.path(), &["plan", "--format", "json", "--image", "base", "--variant", "cpu"]);
    let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(p["targets"][0]["args"]["BASE_DIGEST"], ubuntu.as_str());
    assert_eq!(p["targets"][0]["args"]["BASE_NAME"], "docker.io/library/ubuntu:24.04");
    let t = expect(labkit(s.path(), &["check"]), 0);
    assert!(!t.contains("not locked"), "{t}");

    // A second run changes nothing.
    let o = labkit_cmd(s.path()).env("PATH", &path).args(["lock"]).output().unwrap();
    let t = expect(o, 0);
    assert!(t.contains("unchanged"), "{t}");

    // Bake pins external parents by digest too.
    let o =
        labkit(s.path(), &["bake", "--no-stage", "-o", "-", "--revision", "r", "--created", "2026-01-01T00:00:00Z"]);
    let b: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        b["target"]["base-cpu"]["contexts"]["labkit-base"],
        format!("docker-image://docker.io/library/ubuntu:24.04@{ubuntu}")
    );
}

#[test]
fn without_registry_access_the_lock_is_unchanged() {
    let s = fixture_family();
    let before = std::fs::read(s.join("images/lock.toml")).ok();
    let path = fake_skopeo(&s, true);
    let o = labkit_cmd(s.path()).env("PATH", &path).args(["lock", "--resolver", "skopeo"]).output().unwrap();
    let t = expect(o, 1);
    assert!(t.contains("no registry access"), "{t}");
    assert!(t.contains("the lock file is unchanged"), "{t}");
    assert!(t.contains("no such host"), "the tool's reason is shown: {t}");
    assert_eq!(std::fs::read(s.join("images/lock.toml")).ok(), before);

    let empty = s.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = labkit_cmd(s.path()).env("PATH", &empty).args(["lock"]).output().unwrap();
    let t = expect(o, 1);
    assert!(t.contains("neither skopeo nor docker buildx"), "{t}");
}
