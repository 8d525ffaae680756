//! Embeds the git revision the binaries are built from
//! (`LABKIT_GIT_REVISION`, shown by `labinit --version` and in the start
//! summary); `unknown` outside a git checkout. An explicit
//! `LABKIT_GIT_REVISION` in the build environment wins (release tarballs).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=LABKIT_GIT_REVISION");
    let rev = std::env::var("LABKIT_GIT_REVISION")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    // Rebuild when HEAD moves (a commit, a checkout), also in worktrees.
    for path in [
        git(&["rev-parse", "--git-path", "HEAD"]),
        git(&["rev-parse", "--symbolic-full-name", "HEAD"]).and_then(|r| git(&["rev-parse", "--git-path", &r])),
    ]
    .into_iter()
    .flatten()
    {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
    reference();
    println!("cargo:rustc-env=LABKIT_GIT_REVISION={}", rev.replace(|c: char| !c.is_ascii_graphic(), ""));
}

/// labinit's `--help` sections ENVIRONMENT and EXIT STATUS, rendered from the
/// README's "Configuration" and "Exit codes" tables (one source: edit the
/// README, the help follows). Written to `$OUT_DIR/reference.txt`.
fn reference() {
    println!("cargo:rerun-if-changed=README.md");
    let readme = std::fs::read_to_string("README.md").unwrap_or_default();
    let vars = table(&readme, "| variable | default | meaning |");
    let codes = table(&readme, "| code | meaning |");
    let mut out = String::new();
    if !vars.is_empty() {
        out.push_str("ENVIRONMENT (flags win over variables)\n");
        for row in &vars {
            let (name, default, meaning) = (&row[0], &row[1], &row[2]);
            out.push_str(&format!("  {name}   [default: {default}]\n"));
            wrap(&mut out, meaning, 6);
        }
        out.push('\n');
    }
    if !codes.is_empty() {
        out.push_str("EXIT STATUS\n");
        for row in &codes {
            out.push_str(&format!("  {}\n", row[0]));
            wrap(&mut out, &row[1], 6);
        }
        out.push('\n');
    }
    out.push_str("Full reference: README.md (\"Configuration\", \"Exit codes\") in the labkit repository.");
    let dest = std::path::Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("reference.txt");
    std::fs::write(dest, out).expect("write reference.txt");
}

/// The rows of the Markdown table whose header line is `header`, cells
/// trimmed and without backticks.
fn table(text: &str, header: &str) -> Vec<Vec<String>> {
    let mut lines = text.lines().skip_while(|l| l.trim() != header);
    if lines.next().is_none() {
        return Vec::new();
    }
    lines
        .skip(1) // the | --- | line
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.trim().trim_matches('|').split(" | ").map(|c| c.trim().replace('`', "")).collect::<Vec<_>>())
        .collect()
}

/// Appends `text` wrapped at 78 columns, each line indented by `indent`.
fn wrap(out: &mut String, text: &str, indent: usize) {
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent + line.chars().count() + 1 + word.chars().count() > 78 {
            out.push_str(&format!("{}{line}\n", " ".repeat(indent)));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(&format!("{}{line}\n", " ".repeat(indent)));
    }
}
