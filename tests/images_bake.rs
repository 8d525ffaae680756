//! `labkit bake`: a fully expanded docker-bake.json in the documented format
//! (`group.<name>.targets`, `target.<name>.{context,dockerfile,args,contexts,
//! tags,labels,platforms}`), children linked to parents through `target:`
//! contexts whose key equals their BASE_IMAGE argument.
mod images_support;
use images_support::*;

use serde_json::Value;

fn bake(s: &Scratch, extra: &[&str]) -> Value {
    let mut args = vec!["bake", "--no-stage", "-o", "-", "--revision", "r1", "--created", "2026-01-01T00:00:01Z"];
    args.extend_from_slice(extra);
    let out = labkit(s.path(), &args);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).expect("bake output is JSON")
}

const TARGET_KEYS: &[&str] = &["context", "dockerfile", "args", "contexts", "tags", "labels", "platforms"];

#[test]
fn structure_matches_the_bake_format() {
    let s = family_copy();
    let b = bake(&s, &[]);
    let top: Vec<&String> = b.as_object().unwrap().keys().collect();
    assert_eq!(top, ["group", "target"], "only group and target blocks; no variable/function/matrix");
    let text = b.to_string();
    assert!(!text.contains("${"), "fully expanded: no interpolation left");
    assert!(!text.contains("matrix") && !text.contains("inherits"));

    let targets = b["target"].as_object().unwrap();
    assert_eq!(targets.len(), 9);
    std::fs::create_dir_all(s.join("build/images/context")).unwrap();
    for (name, t) in targets {
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "bake name {name}");
        let keys: Vec<&String> = t.as_object().unwrap().keys().collect();
        for k in TARGET_KEYS {
            assert!(keys.iter().any(|x| x == k), "{name} lacks {k}");
        }
        for k in &keys {
            assert!(TARGET_KEYS.contains(&k.as_str()), "{name}: unexpected attribute {k}");
        }
        // bake resolves dockerfile relative to the context directory.
        let df = s.join(t["context"].as_str().unwrap()).join(t["dockerfile"].as_str().unwrap());
        assert!(df.is_file(), "{name}: {} does not resolve", df.display());
        assert!(!t["tags"].as_array().unwrap().is_empty());
        assert_eq!(t["labels"]["org.opencontainers.image.revision"], "r1");
        assert_eq!(t["args"]["VCS_REF"], "r1");
    }
}

#[test]
fn children_link_parents_through_target_contexts() {
    let s = family_copy();
    let b = bake(&s, &[]);
    let targets = b["target"].as_object().unwrap();
    let mut linked = 0;
    for (name, t) in targets {
        let key = t["args"]["BASE_IMAGE"].as_str().unwrap();
        let ctx = t["contexts"][key].as_str().unwrap_or_else(|| panic!("{name}: no context named {key}"));
        assert_eq!(t["contexts"].as_object().unwrap().len(), 1, "{name}");
        if let Some(parent) = ctx.strip_prefix("target:") {
            assert!(targets.contains_key(parent), "{name}: target:{parent} does not exist");
            assert_eq!(key, parent, "{name}: context key equals BASE_IMAGE");
            linked += 1;
        } else {
            assert!(name.starts_with("lab-base-"), "{name}: only lab-base has an external parent");
            assert!(ctx.starts_with("docker-image://docker.io/"), "{name}: {ctx}");
        }
    }
    assert_eq!(linked, 6);
    assert_eq!(targets["lab-python-ml-cu118"]["contexts"]["lab-pytorch-cu118"], "target:lab-pytorch-cu118");
    assert_eq!(
        targets["lab-base-cu118"]["contexts"]["labkit-base"],
        "docker-image://docker.io/nvidia/cuda:11.8.0-cudnn8-devel-ubuntu22.04"
    );
    let tags = &targets["lab-base-cu118"]["tags"];
    assert_eq!(
        tags,
        &serde_json::json!([
            "ic-registry.epfl.ch/cvlab/lis/lab-base:cu118",
            "ic-registry.epfl.ch/cvlab/lis/lab-base:cuda11"
        ])
    );
}

#[test]
fn groups() {
    let s = family_copy();
    let b = bake(&s, &[]);
    let g = &b["group"];
    assert_eq!(g["all"]["targets"].as_array().unwrap().len(), 9);
    let default: Vec<&str> = g["default"]["targets"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(default.len(), 6, "legacy (eol) variant is not in default: {default:?}");
    assert!(default.iter().all(|t| !t.ends_with("cu118")));
    assert_eq!(
        g["cuda12"]["targets"],
        serde_json::json!(["lab-base-cuda12", "lab-pytorch-cuda12", "lab-python-ml-cuda12"])
    );
    assert_eq!(g["lab-base"]["targets"].as_array().unwrap().len(), 3);
}

#[test]
fn stages_context_and_writes_the_file() {
    let s = family_copy();
    let t = expect(labkit(s.path(), &["bake", "--revision", "r", "--created", "2026-01-01T00:00:00Z"]), 0);
    assert!(t.contains("docker buildx bake -f"), "{t}");
    let b: Value = serde_json::from_str(&s.read("build/images/docker-bake.json")).unwrap();
    assert_eq!(b["target"].as_object().unwrap().len(), 9);
    assert!(s.join("build/images/context/labinit").is_file());
    assert!(s.join("build/images/context/setup_steps/50_example.sh").is_file());
    assert!(s.join("build/images/context/services").is_dir());
    // images/files/ ships as files/ (lab-pytorch COPYs its Jupyter configuration from there).
    assert_eq!(
        s.read("build/images/context/files/jupyter/jupyter_server_config.py"),
        s.read("images/files/jupyter/jupyter_server_config.py")
    );
    assert!(s
        .read("images/generated/lab-pytorch/cpu/Dockerfile")
        .contains("COPY files/jupyter/jupyter_server_config.py /etc/jupyter/jupyter_server_config.py"));

    std::fs::remove_file(s.join("dist/labinit")).unwrap();
    let t = expect(labkit(s.path(), &["bake"]), 1);
    assert!(t.contains("make labinit"), "{t}");
}

#[test]
fn a_bake_file_that_cannot_be_written_names_the_path_and_errno() {
    let s = family_copy();
    s.write("not-a-dir", "a file\n");
    let blocked = s.join("not-a-dir/bake/docker-bake.json");
    let args = ["bake", "--no-stage", "--revision", "r", "--created", "2026-01-01T00:00:00Z", "-o"];
    let t = expect(labkit(s.path(), &[&args[..], &[blocked.to_str().unwrap()]].concat()), 1);
    assert!(t.contains(&format!("cannot create {}", s.join("not-a-dir/bake").display())), "{t}");
    assert!(t.contains("os error 20"), "errno kept: {t}");
    // Negative control: a writable place gets the file.
    let fine = s.join("elsewhere/docker-bake.json");
    let t = expect(labkit(s.path(), &[&args[..], &[fine.to_str().unwrap()]].concat()), 0);
    assert!(t.contains("bake: wrote"), "{t}");
    assert!(fine.is_file());
}
