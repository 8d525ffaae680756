//! `labkit plan`: build levels, per-target facts in JSON, selection filters,
//! base overrides and build arguments.
mod images_support;
use images_support::*;

use serde_json::Value;

fn plan_json(root: &std::path::Path, extra: &[&str]) -> Value {
    let mut args = vec!["plan", "--format", "json", "--created", "2026-01-01T00:00:00Z"];
    if !extra.contains(&"--revision") {
        args.extend(["--revision", "r1"]);
    }
    args.extend_from_slice(extra);
    let out = labkit(root, &args);
    let t = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_str(&t).unwrap_or_else(|e| panic!("plan is not JSON ({e}):\n{t}"))
}

fn target<'a>(p: &'a Value, name: &str) -> &'a Value {
    p["targets"].as_array().unwrap().iter().find(|t| t["name"] == name).unwrap_or_else(|| panic!("no target {name}"))
}

#[test]
fn whole_family_in_three_levels() {
    let s = family_copy();
    let p = plan_json(s.path(), &[]);
    assert_eq!(p["schema"], 2);
    let levels: Vec<Vec<String>> = serde_json::from_value(p["levels"].clone()).unwrap();
    assert_eq!(
        levels,
        [
            ["lab-base-cpu", "lab-base-cu118", "lab-base-cuda12"],
            ["lab-pytorch-cpu", "lab-pytorch-cu118", "lab-pytorch-cuda12"],
            ["lab-python-ml-cpu", "lab-python-ml-cu118", "lab-python-ml-cuda12"],
        ]
    );
    // Every child's parent sits in an earlier level.
    for t in p["targets"].as_array().unwrap() {
        if t["parent"]["kind"] == "target" {
            let parent = target(&p, t["parent"]["target"].as_str().unwrap());
            assert!(parent["level"].as_u64() < t["level"].as_u64());
        }
    }
}

#[test]
fn per_target_facts() {
    let s = family_copy();
    let p = plan_json(s.path(), &[]);
    let t = target(&p, "lab-pytorch-cuda12");
    assert_eq!(t["dockerfile"], "images/generated/lab-pytorch/cuda12/Dockerfile");
    assert!(s.join(t["dockerfile"].as_str().unwrap()).is_file());
    assert_eq!(t["context"], "build/images/context");
    assert_eq!(t["parent"]["kind"], "target");
    assert_eq!(t["parent"]["target"], "lab-base-cuda12");
    assert_eq!(
        t["tags"],
        serde_json::json!([
            "ic-registry.epfl.ch/cvlab/lis/lab-pytorch:cuda12",
            "ic-registry.epfl.ch/cvlab/lis/lab-pytorch:latest"
        ])
    );
    assert_eq!(t["args"]["BASE_IMAGE"], "ic-registry.epfl.ch/cvlab/lis/lab-base:cuda12");
    assert_eq!(t["args"]["VCS_REF"], "r1");
    assert_eq!(t["args"]["BUILD_DATE"], "2026-01-01T00:00:00Z");
    assert_eq!(t["build_inputs_sha256"].as_str().unwrap().len(), 64);

    let base = target(&p, "lab-base-cu118");
    assert_eq!(base["parent"]["kind"], "image");
    assert_eq!(base["parent"]["reference"], "docker.io/nvidia/cuda:11.8.0-cudnn8-devel-ubuntu22.04");
    assert_eq!(base["eol"], "2026-12-31");
    assert!(
        base["tags"].as_array().unwrap().iter().any(|t| t == "ic-registry.epfl.ch/cvlab/lis/lab-base:cuda11"),
        "legacy alias"
    );
}

#[test]
fn inputs_hash_follows_parents_and_shipped_files() {
    let s = family_copy();
    let a = plan_json(s.path(), &[]);
    let b = plan_json(s.path(), &["--revision", "other"]);
    for n in ["lab-base-cpu", "lab-python-ml-cpu"] {
        assert_eq!(
            target(&a, n)["build_inputs_sha256"],
            target(&b, n)["build_inputs_sha256"],
            "revision is per-build, not an input"
        );
    }
    s.write("setup_steps/60_new.sh", "#!/bin/sh\n");
    let c = plan_json(s.path(), &[]);
    for n in ["lab-base-cpu", "lab-python-ml-cpu"] {
        assert_ne!(
            target(&a, n)["build_inputs_sha256"],
            target(&c, n)["build_inputs_sha256"],
            "{n}: a new step changes the inputs"
        );
    }
}

#[test]
fn filters_select_targets_and_pull_unselected_parents() {
    let s = family_copy();
    let p = plan_json(s.path(), &["--variant", "cpu"]);
    assert_eq!(p["targets"].as_array().unwrap().len(), 3);
    assert_eq!(p["levels"].as_array().unwrap().len(), 3);

    let p = plan_json(s.path(), &["--image", "lab-python-ml", "--variant", "cuda12"]);
    let levels: Vec<Vec<String>> = serde_json::from_value(p["levels"].clone()).unwrap();
    assert_eq!(levels, [["lab-python-ml-cuda12"]]);
    let t = target(&p, "lab-python-ml-cuda12");
    assert_eq!(t["parent"]["kind"], "image", "parent consumed from the registry");
    assert_eq!(t["parent"]["reference"], "ic-registry.epfl.ch/cvlab/lis/lab-pytorch:cuda12");

    let t = expect(labkit(s.path(), &["plan", "--variant", "tpu"]), 2);
    assert!(t.contains("--variant tpu: no such variant"), "{t}");
}

#[test]
fn base_override_and_build_args() {
    let s = family_copy();
    let p = plan_json(
        s.path(),
        &[
            "--base-override",
            "cpu=localhost/debootstrap-noble:latest",
            "--apt-mirror",
            "http://mirror.example.org/ubuntu",
            "--build-arg",
            "PIP_INDEX_URL=http://pypi.example.org/simple",
        ],
    );
    let t = target(&p, "lab-base-cpu");
    assert_eq!(t["args"]["BASE_IMAGE"], "localhost/debootstrap-noble:latest");
    assert_eq!(t["args"]["APT_MIRROR"], "http://mirror.example.org/ubuntu");
    assert_eq!(t["args"]["PIP_INDEX_URL"], "http://pypi.example.org/simple");
    assert_eq!(
        target(&p, "lab-base-cuda12")["args"]["BASE_IMAGE"],
        "docker.io/nvidia/cuda:12.8.1-cudnn-devel-ubuntu24.04"
    );

    let t = expect(labkit(s.path(), &["plan", "--build-arg", "BASE_IMAGE=x"]), 2);
    assert!(t.contains("--base-override"), "{t}");
}

#[test]
fn text_plan_lists_levels() {
    let s = family_copy();
    let t = expect(labkit(s.path(), &["plan", "--revision", "r", "--created", "2026-01-01T00:00:00Z"]), 0);
    assert!(t.contains("plan: 9 target(s) in 3 level(s)"), "{t}");
    assert!(t.contains("level 0: lab-base-cpu, lab-base-cu118, lab-base-cuda12"), "{t}");
    assert!(t.contains("parent      target lab-base-cpu"), "{t}");
}
