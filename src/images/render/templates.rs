//! The template set: loading `images/templates/*.tera` into a MiniJinja
//! environment with strict undefined handling and no escaping, the checks
//! run before rendering (every image template extends the layout; every name
//! and attribute a template looks up exists in the context), and error
//! messages that name the file and line.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use super::{CONTEXT_KEYS, LAYOUT};
use crate::images::digest::InputHasher;
use crate::images::layout::rel;

/// The loaded template set, in a MiniJinja environment with strict undefined
/// handling: an undefined name or attribute is an error wherever it is used —
/// printed, concatenated with `~`, tested with `if`, passed to a macro or
/// iterated — and only `is defined` may ask about it.
pub struct Templates {
    pub(super) env: minijinja::Environment<'static>,
    /// name → source (LF line endings), for the inputs hash and for errors.
    pub(super) sources: BTreeMap<String, String>,
}

impl Templates {
    /// Loads every `*.tera` file under `dir` (names are paths relative to it).
    /// CRLF line endings (a Windows or `core.autocrlf` checkout) are read as
    /// LF, so such a checkout renders and hashes exactly as the commit does.
    pub(crate) fn load(dir: &Path) -> Result<Templates, RenderError> {
        let mut sources = BTreeMap::new();
        for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
            let entry = entry.map_err(|e| RenderError::Io(format!("{}: {e}", dir.display())))?;
            let p = entry.path();
            if entry.file_type().is_file() && p.extension().is_some_and(|e| e == "tera") {
                let name = rel(dir, p);
                let text = std::fs::read_to_string(p).map_err(|e| RenderError::Io(format!("{}: {e}", p.display())))?;
                sources.insert(name, text);
            }
        }
        Templates::from_sources(sources)
    }

    pub(crate) fn from_sources(sources: BTreeMap<String, String>) -> Result<Templates, RenderError> {
        let sources: BTreeMap<String, String> =
            sources.into_iter().map(|(n, s)| (n, s.replace("\r\n", "\n"))).collect();
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        // Dockerfiles are not HTML: never escape anything.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        // Templates may only name other templates of the set; nothing is read
        // from disk at render time.
        for (name, src) in &sources {
            env.add_template_owned(name.clone(), src.clone()).map_err(|e| RenderError::Template(describe(&e, None)))?;
        }
        Ok(Templates { env, sources })
    }

    /// Hashes the sources a target depends on: its own template and every
    /// shared one (name starting with `_`: the layout, the components).
    /// Another image's template is not an input, so editing it leaves this
    /// target's hash, and so its Dockerfile, alone.
    pub(super) fn hash_into(&self, template: &str, h: &mut InputHasher) {
        for (name, src) in &self.sources {
            if is_shared(name) || name == template {
                h.part(name, src.as_bytes());
            }
        }
    }

    /// Checks that an image template extends the layout: its first tag
    /// (after comments) is `{% extends "_layout.Dockerfile.tera" %}`. A
    /// template that does not would silently lose the entrypoint, the labels
    /// and the `ARG BASE_IMAGE` contract.
    pub(super) fn check_extends_layout(&self, template: &str) -> Result<(), String> {
        let Some(src) = self.sources.get(template) else {
            return Err(format!("images/templates/{template}: no such template"));
        };
        if is_shared(template) {
            return Err(format!(
                "images/templates/{template}: names starting with `_` are shared snippets, not image templates"
            ));
        }
        let mut rest = src.trim_start();
        while let Some(after) = rest.strip_prefix("{#") {
            match after.find("#}") {
                Some(end) => rest = after[end + 2..].trim_start(),
                None => break,
            }
        }
        let first_tag = rest.strip_prefix("{%").map(|r| r.trim_start_matches(['-', '+']).trim_start());
        let extends = first_tag.and_then(|r| r.strip_prefix("extends")).map(|r| r.trim_start());
        let ok =
            extends.is_some_and(|r| r.starts_with(&format!("\"{LAYOUT}\"")) || r.starts_with(&format!("'{LAYOUT}'")));
        if ok {
            Ok(())
        } else {
            Err(format!(
                "images/templates/{template}:1: an image template must start with {{% extends \"{LAYOUT}\" %}} \
                 (the layout owns FROM, the entrypoint and the labels)"
            ))
        }
    }

    /// Top-level names and dotted attribute paths (`variant.eol`) the
    /// template and the shared templates look up, checked against one
    /// target's context, so a misspelt name in a branch this variant does not
    /// take is still caught (`values.*` is checked at render, see below).
    /// Returns `template:line: who: message` strings.
    pub(super) fn static_undefined(&self, template: &str, ctx: &serde_json::Value, who: &str) -> Vec<String> {
        let mut bad = Vec::new();
        for (name, src) in &self.sources {
            if !(is_shared(name) || name == template) {
                continue;
            }
            let Ok(t) = self.env.get_template(name) else { continue };
            let mut paths: Vec<String> = t.undeclared_variables(true).into_iter().collect();
            paths.sort();
            for path in paths {
                let mut parts = path.split('.');
                let root = parts.next().unwrap_or_default();
                // Names a shared template's macros receive as arguments, and
                // MiniJinja's own globals, are not context lookups.
                if !CONTEXT_KEYS.contains(&root) {
                    if is_shared(name) || BUILTINS.contains(&root) {
                        continue;
                    }
                    let line = find_word(src, root).unwrap_or(1);
                    bad.push(format!(
                        "images/templates/{name}:{line}: {who}: undefined variable `{root}` (the context has: {})",
                        CONTEXT_KEYS.join(", ")
                    ));
                    continue;
                }
                // `values` is free-form per variant: a value only some
                // variants have may be used in a branch only they take, so
                // its attributes are checked where they are used (strict
                // undefined at render). Every other object has one shape.
                if root == "values" {
                    continue;
                }
                let mut cur = &ctx[root];
                let mut walked = root.to_string();
                for part in parts {
                    match cur.get(part) {
                        Some(next) => {
                            cur = next;
                            walked = format!("{walked}.{part}");
                        }
                        None if cur.is_object() => {
                            let line = find_word(src, &format!("{walked}.{part}")).unwrap_or(1);
                            let known: Vec<&str> =
                                cur.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
                            bad.push(format!(
                                "images/templates/{name}:{line}: {who}: `{walked}.{part}` is not defined ({walked} has: {})",
                                known.join(", ")
                            ));
                            break;
                        }
                        None => break,
                    }
                }
            }
        }
        bad
    }
}

/// MiniJinja's global functions, which `undeclared_variables` reports too.
const BUILTINS: &[&str] =
    &["range", "dict", "namespace", "debug", "loop", "self", "super", "caller", "varargs", "kwargs"];

fn is_shared(name: &str) -> bool {
    name.rsplit('/').next().is_some_and(|f| f.starts_with('_'))
}

/// 1-based line of the first whole-word occurrence of `word` inside a tag.
pub(super) fn find_word(src: &str, word: &str) -> Option<usize> {
    for (i, line) in src.lines().enumerate() {
        if !(line.contains("{{") || line.contains("{%")) {
            continue;
        }
        let mut start = 0;
        while let Some(pos) = line[start..].find(word) {
            let a = start + pos;
            let b = a + word.len();
            let before = line[..a].chars().next_back();
            let after = line[b..].chars().next();
            let is_ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
            if !is_ident(before) && !is_ident(after) && before != Some('.') {
                return Some(i + 1);
            }
            start = b;
        }
    }
    None
}

/// Why rendering failed: always names the file (and line when known).
#[derive(Debug, Clone)]
pub enum RenderError {
    Io(String),
    Template(String),
    Undefined(Vec<String>),
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenderError::Io(m) => write!(f, "{m}"),
            RenderError::Template(m) => write!(f, "template error: {m}"),
            RenderError::Undefined(v) => {
                for (i, m) in v.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "template error: {m}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for RenderError {}

/// `values.<name>` references on the failing line that the variant lacks,
/// so an undefined-value error says which value to add.
pub(super) fn missing_values(e: &minijinja::Error, values: &BTreeMap<String, String>) -> Vec<String> {
    let Some(line) = e.template_source().zip(e.line()).and_then(|(src, n)| src.lines().nth(n.saturating_sub(1))) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(pos) = rest.find("values.") {
        let before = rest[..pos].chars().next_back();
        rest = &rest[pos + "values.".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.') {
            continue;
        }
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if !name.is_empty() && !values.contains_key(&name) && !out.contains(&format!("values.{name}")) {
            out.push(format!("values.{name}"));
        }
    }
    out
}

/// `images/templates/<file>:<line>: [<who>: ]<message>`, then the offending
/// source line.
pub(super) fn describe(e: &minijinja::Error, who: Option<&str>) -> String {
    let name = e.name().unwrap_or("?");
    let line = e.line().unwrap_or(0);
    let what = match e.kind() {
        minijinja::ErrorKind::UndefinedError => {
            "undefined value (a name or attribute the context does not have; test it with `is defined`)".to_string()
        }
        _ => e.detail().map(str::to_string).unwrap_or_else(|| e.kind().to_string()),
    };
    let mut s = format!("images/templates/{name}:{line}: ");
    if let Some(w) = who {
        s.push_str(w);
        s.push_str(": ");
    }
    s.push_str(&what);
    if let Some(src) = e.template_source() {
        if let Some(text) = src.lines().nth(line.saturating_sub(1)) {
            s.push_str(&format!("\n    {line} | {}", text.trim_end()));
        }
    }
    s
}
