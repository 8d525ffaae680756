//! The shape of `src/images/` (docs/images.md, "Where the code is"): its
//! modules import each other without cycles, no file is over 600 lines,
//! nothing in the library prints and nothing reads the environment (the
//! `labkit` binary does both). Each rule has a negative control on a
//! synthetic input.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn images_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/images")
}

/// Every `.rs` file under `dir`: (module path like `render::write`, text).
fn sources(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name().into_iter().filter_map(|e| e.ok()) {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "rs") {
            let rel = p.strip_prefix(dir).unwrap().with_extension("").to_string_lossy().replace('/', "::");
            let module = rel.strip_suffix("::mod").unwrap_or(if rel == "mod" { "" } else { &rel }).to_string();
            out.push((module, std::fs::read_to_string(p).unwrap()));
        }
    }
    out
}

/// The code of a file without its unit tests (`mod tests` at the end).
fn without_tests(text: &str) -> &str {
    text.split("#[cfg(test)]\nmod tests {").next().unwrap_or(text)
}

/// Top-level sibling modules a module's code names: `super::x` from a
/// top-level module, `crate::images::x` from anywhere.
fn deps(module: &str, text: &str, names: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let top = module.split("::").next().unwrap_or_default();
    let nested = module.contains("::");
    let mut add = |n: &str| {
        if names.contains(n) && n != top {
            out.insert(n.to_string());
        }
    };
    for line in without_tests(text).lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (prefix, allowed) in [("crate::images::", true), ("super::", !nested)] {
            let mut rest = line;
            while let Some(i) = rest.find(prefix) {
                rest = &rest[i + prefix.len()..];
                if !allowed {
                    continue;
                }
                let group = rest.strip_prefix('{').map(|g| g.split('}').next().unwrap_or_default());
                for part in group.map(|g| g.split(',').collect::<Vec<_>>()).unwrap_or_else(|| vec![rest]) {
                    let name: String =
                        part.trim().chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                    add(&name);
                }
            }
        }
    }
    out
}

/// A cycle in the graph, if any, as a closed chain.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut c = path[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

fn graph(files: &[(String, String)]) -> BTreeMap<String, BTreeSet<String>> {
    let names: BTreeSet<String> =
        files.iter().map(|(m, _)| m.split("::").next().unwrap_or_default().to_string()).collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, text) in files {
        let top = m.split("::").next().unwrap_or_default().to_string();
        let d = deps(m, text, &names);
        g.entry(top).or_default().extend(d);
    }
    g
}

#[test]
fn images_modules_import_each_other_without_cycles() {
    let files = sources(&images_dir());
    let g = graph(&files);
    assert!(g.len() > 15, "the modules were found: {:?}", g.keys());
    assert!(g["build"].contains("plan"), "build uses plan: {:?}", g["build"]);
    assert_eq!(find_cycle(&g), None, "import cycle among src/images modules");
    for (core, forbidden) in
        [("manifest", &["lock", "python", "render"][..]), ("lock", &["build"]), ("python", &["build"])]
    {
        for f in forbidden {
            assert!(!g[core].contains(*f), "{core} must not import {f}: {:?}", g[core]);
        }
    }
    // Negative control: a synthetic pair that imports each other.
    let fake = vec![
        ("a".to_string(), "use super::b::X;\n".to_string()),
        ("b".to_string(), "use crate::images::{a::Y, c};\n".to_string()),
        ("c".to_string(), "// super::a in a comment\n".to_string()),
    ];
    let fg = graph(&fake);
    assert_eq!(fg["c"], BTreeSet::new());
    assert_eq!(find_cycle(&fg), Some(vec!["a".into(), "b".into(), "a".into()]));
}

#[test]
fn no_images_file_is_over_600_lines() {
    for e in walkdir::WalkDir::new(images_dir()).into_iter().filter_map(|e| e.ok()) {
        if e.path().extension().is_some_and(|x| x == "rs") {
            let n = std::fs::read_to_string(e.path()).unwrap().lines().count();
            assert!(n <= 600, "{}: {n} lines", e.path().display());
        }
    }
}

/// `(file, line)` of each use of a forbidden text outside unit tests and
/// comments.
fn uses(files: &[(String, String)], needles: &[&str], except: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (m, text) in files {
        if m == except || m.ends_with("::tests") {
            continue;
        }
        for line in without_tests(text).lines().filter(|l| !l.trim_start().starts_with("//")) {
            if needles.iter().any(|n| line.contains(n)) {
                out.push((m.clone(), line.trim().to_string()));
            }
        }
    }
    out
}

#[test]
fn the_library_never_prints_nor_reads_the_environment() {
    let files = sources(&images_dir());
    let prints = ["println!", "eprintln!", "print!(", "eprint!(", "dbg!(", "std::io::stdout", "std::io::stderr"];
    assert_eq!(uses(&files, &prints, ""), Vec::<(String, String)>::new(), "progress goes to a sink");
    let env = ["std::env::", "env::var", "env::args", "env::current_dir"];
    assert_eq!(uses(&files, &env, ""), Vec::<(String, String)>::new(), "the binary reads the environment");
    // Negative control: the same scan finds both in a synthetic file.
    let fake = vec![("x".to_string(), "fn f() {\n    eprintln!(\"hi\");\n    std::env::var(\"A\");\n}\n".to_string())];
    assert_eq!(uses(&fake, &prints, "").len(), 1);
    assert_eq!(uses(&fake, &env, "").len(), 1);
}

/// The features that enable `dep:NAME` in a Cargo.toml, or None when the
/// dependency is not optional (then every build links it, labinit's too).
fn enabling_features(cargo_toml: &str, name: &str) -> Option<BTreeSet<String>> {
    let v: toml::Value = toml::from_str(cargo_toml).unwrap();
    let optional = v["dependencies"][name].get("optional").and_then(|o| o.as_bool()).unwrap_or(false);
    if !optional {
        return None;
    }
    let dep = format!("dep:{name}");
    let features = v["features"].as_table().unwrap();
    Some(
        features
            .iter()
            .filter(|(_, list)| list.as_array().unwrap().iter().any(|x| x.as_str() == Some(dep.as_str())))
            .map(|(f, _)| f.clone())
            .collect(),
    )
}

#[test]
fn anyhow_is_linked_into_the_labkit_build_only() {
    let cargo = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let want: BTreeSet<String> = ["images".to_string(), "job".to_string()].into();
    // labinit is built with --no-default-features (Makefile): an optional
    // dependency that only these features enable never reaches PID 1.
    assert_eq!(enabling_features(&cargo, "anyhow"), Some(want));
    // Negative control: a plain dependency line links it everywhere.
    let plain = "[dependencies]\nanyhow = \"1\"\n[features]\nimages = []\n";
    assert_eq!(enabling_features(plain, "anyhow"), None);
}
