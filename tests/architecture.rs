//! The shape of the source tree (issue 13): no import cycle between modules of
//! `src/`, no source file over 600 lines and `run.rs` under 250, no environment
//! reads below labinit's CLI, and no printing in the images library. Each rule
//! is checked on the real tree and, as a negative control, on a small
//! synthetic tree that breaks it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest file allowed in `src/` (lines).
const MAX_LINES: usize = 600;
/// labinit's entry (`src/init/run.rs`) reads in one screen.
const MAX_RUN_LINES: usize = 250;

/// Every `.rs` file under `dir`, recursively, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The module path of a file under `src/` (`init/run.rs` → `init::run`,
/// `images/mod.rs` → `images`); `None` for `lib.rs` and the binaries, which
/// nothing imports.
fn module_of(rel: &Path) -> Option<String> {
    let s = rel.to_str()?.strip_suffix(".rs")?;
    if s == "lib" || s.starts_with("bin/") {
        return None;
    }
    let s = s.strip_suffix("/mod").unwrap_or(s);
    Some(s.replace('/', "::"))
}

/// The code of a file without its `#[cfg(test)] mod tests` (by convention the
/// file's end) and without `//` comments (doc links are not imports).
fn code(text: &str) -> String {
    let mut cut = text.len();
    let mut from = 0;
    while let Some(i) = text[from..].find("#[cfg(test)]") {
        let at = from + i;
        let rest = text[at + "#[cfg(test)]".len()..].trim_start();
        let rest = rest.strip_prefix("pub(crate) ").unwrap_or(rest);
        if rest.starts_with("mod tests") {
            cut = at;
            break;
        }
        from = at + 1;
    }
    text[..cut]
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Parse a use tree at the start of `s` (after `prefix::`): `a::b`,
/// `{a, b::{c, self}}`, `*`; every path it names, relative to the prefix.
fn use_tree(s: &str) -> Vec<Vec<String>> {
    fn tree(s: &mut &str) -> Vec<Vec<String>> {
        *s = s.trim_start();
        if let Some(rest) = s.strip_prefix('{') {
            *s = rest;
            let mut out = Vec::new();
            loop {
                *s = s.trim_start();
                if let Some(rest) = s.strip_prefix('}') {
                    *s = rest;
                    return out;
                }
                if s.is_empty() {
                    return out;
                }
                out.extend(tree(s));
                *s = s.trim_start();
                if let Some(rest) = s.strip_prefix(',') {
                    *s = rest;
                }
            }
        }
        let n = s.find(|c: char| !is_ident(c)).unwrap_or(s.len());
        if n == 0 {
            // `*` or anything else: names the prefix itself.
            if let Some(rest) = s.strip_prefix('*') {
                *s = rest;
            }
            return vec![Vec::new()];
        }
        let name = s[..n].to_string();
        *s = &s[n..];
        if let Some(rest) = s.strip_prefix("::") {
            *s = rest;
            let subs = tree(s);
            return subs
                .into_iter()
                .map(|mut p| {
                    p.insert(0, name.clone());
                    p
                })
                .collect();
        }
        if name == "self" {
            vec![Vec::new()]
        } else {
            vec![vec![name]]
        }
    }
    let mut s = s;
    tree(&mut s)
}

/// The modules (as written, unresolved) a module's code names. `module` is the
/// file's module path; `children` the modules it declares with `mod x;`.
fn named_paths(module: &str, text: &str) -> Vec<Vec<String>> {
    let children: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l.strip_prefix("pub(crate) ").or_else(|| l.strip_prefix("pub ")).unwrap_or(l);
            let name = l.strip_prefix("mod ")?.trim_end().strip_suffix(';')?;
            Some(name.trim().to_string())
        })
        .collect();
    let body: String = code(text)
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            let t = t.strip_prefix("pub(crate) ").or_else(|| t.strip_prefix("pub ")).unwrap_or(t);
            // Declarations and re-exports are a module's facade, not its dependencies.
            !(t.starts_with("mod ") || (t.starts_with("use ") && t.len() < l.trim_start().len()))
        })
        .collect::<Vec<_>>()
        .join("\n");
    let own: Vec<String> = module.split("::").map(str::to_string).collect();
    let parent: Vec<String> = own[..own.len() - 1].to_vec();
    let mut out = Vec::new();
    let bytes = body.as_bytes();
    for (i, _) in body.match_indices("::") {
        // The identifier right before `::`, starting at a word boundary not
        // preceded by another `::` (so `a::b::c` is read once, from `a`).
        let start = body[..i].rfind(|c: char| !is_ident(c)).map_or(0, |j| j + 1);
        if start == i || (start >= 2 && &bytes[start - 2..start] == b"::") {
            continue;
        }
        let head = &body[start..i];
        let base: Vec<String> = match head {
            "crate" => Vec::new(),
            "super" => parent.clone(),
            "self" => own.clone(),
            c if children.iter().any(|x| x == c) => {
                let mut b = own.clone();
                b.push(c.to_string());
                b
            }
            _ => continue,
        };
        for p in use_tree(&body[i + 2..]) {
            let mut full = base.clone();
            full.extend(p);
            out.push(full);
        }
        if head == "super" {
            out.push(parent.clone());
        }
    }
    out
}

/// Module graph: module → modules its code names (longest known prefix of
/// each path; self-edges dropped).
fn graph(files: &[(String, String)]) -> BTreeMap<String, BTreeSet<String>> {
    let known: BTreeSet<&str> = files.iter().map(|(m, _)| m.as_str()).collect();
    let mut g = BTreeMap::new();
    for (m, text) in files {
        let mut deps = BTreeSet::new();
        for p in named_paths(m, text) {
            for k in (1..=p.len()).rev() {
                let q = p[..k].join("::");
                if known.contains(q.as_str()) {
                    if q != *m {
                        deps.insert(q);
                    }
                    break;
                }
            }
        }
        g.insert(m.clone(), deps);
    }
    g
}

/// Groups of modules that reach each other (strongly connected, size > 1).
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    let reach = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(v) = todo.pop() {
            for w in g.get(&v).into_iter().flatten() {
                if seen.insert(w.clone()) {
                    todo.push(w.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> = g.keys().map(|k| (k, reach(k))).collect();
    let mut out: Vec<BTreeSet<String>> = Vec::new();
    for a in g.keys() {
        if out.iter().any(|c| c.contains(a)) {
            continue;
        }
        let comp: BTreeSet<String> =
            g.keys().filter(|b| *b == a || (reaches[a].contains(*b) && reaches[*b].contains(a))).cloned().collect();
        if comp.len() > 1 {
            out.push(comp);
        }
    }
    out
}

fn describe(g: &BTreeMap<String, BTreeSet<String>>, comps: &[BTreeSet<String>]) -> String {
    let mut s = String::new();
    for c in comps {
        s.push_str(&format!("cycle: {c:?}\n"));
        for m in c {
            let inside: Vec<_> = g[m].iter().filter(|d| c.contains(*d)).collect();
            s.push_str(&format!("  {m} -> {inside:?}\n"));
        }
    }
    s
}

/// Every file of `src/` with its path relative to `src/`, except unit-test
/// files (`foo/tests.rs`, the body of `#[cfg(test)] mod tests;`).
fn source_tree() -> Vec<(PathBuf, String)> {
    let root = src();
    rust_files(&root)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "tests.rs"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p.strip_prefix(&root).unwrap().to_path_buf(), text)
        })
        .collect()
}

#[test]
fn src_has_no_import_cycles() {
    let files = src_modules();
    assert!(files.len() > 20, "found only {} modules under src/", files.len());
    let g = graph(&files);
    // The graph is real: labinit's entry reaches the supervisor.
    assert!(g.values().map(BTreeSet::len).sum::<usize>() > 30, "too few edges: {g:?}");
    let comps = cycles(&g);
    assert!(comps.is_empty(), "import cycles between modules of src/:\n{}", describe(&g, &comps));
}

/// Every module of `src/` with its text.
fn src_modules() -> Vec<(String, String)> {
    source_tree().into_iter().filter_map(|(rel, text)| Some((module_of(&rel)?, text))).collect()
}

/// Whether `m` is `top` or one of its submodules.
fn within(m: &str, top: &str) -> bool {
    m == top || m.strip_prefix(top).is_some_and(|r| r.starts_with("::"))
}

/// The modules within `from` that reach (through any path) a module within `to`.
fn reaching(g: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> Vec<String> {
    let mut out = Vec::new();
    for start in g.keys().filter(|m| within(m, from)) {
        let mut seen = BTreeSet::new();
        let mut todo = vec![start.clone()];
        while let Some(v) = todo.pop() {
            for w in g.get(&v).into_iter().flatten() {
                if !within(w, from) && seen.insert(w.clone()) {
                    todo.push(w.clone());
                }
            }
        }
        if seen.iter().any(|w| within(w, to)) {
            out.push(start.clone());
        }
    }
    out
}

#[test]
fn images_layers_point_one_way() {
    // manifest → python → render → check | plan → bake | build (docs/images.md):
    // the core never reaches what is built on it.
    let g = graph(&src_modules());
    assert!(g.keys().any(|m| within(m, "images::build")), "{:?}", g.keys());
    assert!(!reaching(&g, "images::build", "images::plan").is_empty(), "build executes a plan");
    for (core, above) in [
        ("images::manifest", &["images::lock", "images::python", "images::render", "images::build"][..]),
        ("images::render", &["images::check", "images::plan", "images::build", "images::bake"]),
        ("images::lock", &["images::build"]),
        ("images::python", &["images::build", "images::render"]),
        ("images::plan", &["images::build", "images::bake"]),
    ] {
        for a in above {
            let bad = reaching(&g, core, a);
            assert!(bad.is_empty(), "{bad:?} (under {core}) reach {a}");
        }
    }
    // Negative control.
    let g = graph(&[
        ("images::manifest".to_string(), "use crate::images::lock::Lock;".to_string()),
        ("images::lock".to_string(), String::new()),
    ]);
    assert_eq!(reaching(&g, "images::manifest", "images::lock"), ["images::manifest"]);
}

#[test]
fn cycle_finder_sees_cycles_and_ignores_tests_and_facades() {
    let files = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter().map(|(m, t)| (m.to_string(), t.to_string())).collect()
    };
    // A two-module cycle through a grouped `use` and an inline path.
    let g = graph(&files(&[
        ("init::a", "use crate::init::{b::{self, Thing}, log};\nfn f() {}"),
        ("init::b", "fn g() { crate::init::a::f() }"),
        ("init::log", ""),
    ]));
    assert_eq!(cycles(&g).len(), 1, "{g:?}");
    // Parent and child: the child uses `super::T`, the parent calls the child.
    let g = graph(&files(&[
        ("init::steps", "mod run;\npub struct T;\nfn go() { run::one() }"),
        ("init::steps::run", "use super::T;\npub fn one() {}"),
    ]));
    assert_eq!(cycles(&g).len(), 1, "{g:?}");
    // The same without the call back: no cycle.
    let g = graph(&files(&[
        ("init::steps", "mod run;\npub use run::one;\npub struct T;"),
        ("init::steps::run", "use super::T;\npub fn one() {}"),
    ]));
    assert!(cycles(&g).is_empty(), "{g:?}");
    // Edges from the test module and from comments do not count.
    let g = graph(&files(&[
        ("init::a", "/// See [`crate::init::b`].\nfn f() {}\n#[cfg(test)]\nmod tests {\n use crate::init::b;\n}"),
        ("init::b", "use crate::init::a;"),
    ]));
    assert!(cycles(&g).is_empty(), "{g:?}");
}

#[test]
fn no_source_file_over_600_lines_and_run_rs_reads_in_one_screen() {
    let mut long = Vec::new();
    let root = src();
    for p in rust_files(&root) {
        let text = std::fs::read_to_string(&p).unwrap();
        let rel = p.strip_prefix(&root).unwrap().to_path_buf();
        let n = text.lines().count();
        let limit = if rel == Path::new("init/run.rs") { MAX_RUN_LINES } else { MAX_LINES };
        if n > limit {
            long.push(format!("src/{} has {n} lines (limit {limit})", rel.display()));
        }
    }
    assert!(long.is_empty(), "{}", long.join("\n"));
    // Negative control: the limit is not vacuous (the tree has files near it).
    assert!(source_tree().iter().any(|(_, t)| t.lines().count() > 150));
}

/// Reads of the process environment in `text` outside its test module.
fn env_reads(text: &str) -> Vec<String> {
    const READS: [&str; 5] = ["env::var(", "env::var_os(", "env::vars(", "env::vars_os(", "std::env::args"];
    code(text).lines().filter(|l| READS.iter().any(|r| l.contains(r))).map(|l| l.trim().to_string()).collect()
}

#[test]
fn the_environment_is_read_only_at_the_entry_points() {
    // labinit: the one Env is built in its CLI (src/init/cli.rs, env.rs) and
    // everything below receives it; labkit: src/bin/labkit.rs and
    // `labkit job`'s entry (src/job/cli.rs) read it, the images library never.
    const ALLOWED: [&str; 3] = ["init/cli.rs", "init/env.rs", "job/cli.rs"];
    let mut found = Vec::new();
    for (rel, text) in source_tree() {
        let r = rel.to_str().unwrap();
        if r.starts_with("bin/") || ALLOWED.contains(&r) {
            continue;
        }
        for l in env_reads(&text) {
            found.push(format!("src/{r}: {l}"));
        }
    }
    assert!(found.is_empty(), "environment read below an entry point:\n{}", found.join("\n"));
    // Negative control.
    assert_eq!(env_reads("fn f() { let p = std::env::var_os(\"PATH\"); }").len(), 1);
    assert!(env_reads("fn f() {}\n#[cfg(test)]\nmod tests { fn t() { std::env::var(\"X\"); } }").is_empty());
}

/// Printing macros in `text` outside its test module.
fn prints(text: &str) -> Vec<String> {
    code(text)
        .lines()
        .filter(|l| ["print!(", "println!(", "eprint!(", "eprintln!("].iter().any(|m| l.contains(m)))
        .map(|l| l.trim().to_string())
        .collect()
}

#[test]
fn images_library_never_prints() {
    let mut found = Vec::new();
    for (rel, text) in source_tree() {
        let r = rel.to_str().unwrap();
        if r.starts_with("images/") {
            for l in prints(&text) {
                found.push(format!("src/{r}: {l}"));
            }
        }
    }
    assert!(found.is_empty(), "the images library prints (the binary should):\n{}", found.join("\n"));
    assert_eq!(prints("fn f() { eprintln!(\"x\"); }").len(), 1);
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
