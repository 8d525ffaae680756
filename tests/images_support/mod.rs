//! Shared helpers for the `images_*` tests: throwaway copies of the repo's
//! image family, running the `labkit` binary, and a fake container engine.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository this test binary was built from.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[path = "../common/tempdir.rs"]
mod tempdir;

/// The tests' one temporary directory ([`tempdir::TempDir`]) with the
/// images suites' file helpers.
pub struct Scratch(tempdir::TempDir);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        Scratch(tempdir::TempDir::new(tag))
    }
    pub fn path(&self) -> &Path {
        self.0.path()
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
    pub fn read(&self, p: &str) -> String {
        std::fs::read_to_string(self.join(p)).unwrap_or_else(|e| panic!("read {p}: {e}"))
    }
    pub fn write(&self, p: &str, content: &str) {
        let path = self.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    /// Replaces `from` (which must occur) with `to` in file `p`.
    pub fn edit(&self, p: &str, from: &str, to: &str) {
        let s = self.read(p);
        assert!(s.contains(from), "{p} does not contain {from:?}");
        self.write(p, &s.replacen(from, to, 1));
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(from).unwrap();
        let dest = to.join(rel);
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// A copy of the repository's `images/` tree (manifest, templates, lock and
/// committed Dockerfiles), plus a stand-in `dist/labinit` and one setup step.
pub fn family_copy() -> Scratch {
    let s = Scratch::new("family");
    copy_dir(&repo().join("images"), &s.join("images"));
    let _ = std::fs::remove_dir_all(s.join("images/generated/.labkit-tmp"));
    s.write("dist/labinit", "#!/bin/sh\necho fake labinit\n");
    s.write("setup_steps/50_example.sh", "#!/bin/sh\necho step\n");
    s
}

/// A small, stable family from tests/fixtures/images/family.
pub fn fixture_family() -> Scratch {
    let s = Scratch::new("fixture");
    copy_dir(&repo().join("tests/fixtures/images/family"), s.path());
    s
}

pub fn labkit_cmd(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_labkit"));
    c.arg("--root").arg(root);
    c.env_remove("LABKIT_ENGINE").env_remove("SOURCE_DATE_EPOCH");
    c
}

pub fn labkit(root: &Path, args: &[&str]) -> Output {
    labkit_cmd(root).args(args).output().expect("run labkit")
}

pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Asserts the exit code and returns stdout+stderr.
pub fn expect(o: Output, code: i32) -> String {
    let t = text(&o);
    assert_eq!(o.status.code(), Some(code), "unexpected exit code; output:\n{t}");
    t
}

/// Writes an executable shell script.
pub fn script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A fake `docker`/`podman`: appends one line per call to $FAKE_ENGINE_LOG
/// (`start <t> <first tag>`, `end <t> <first tag> ok|fail`, `push <t> <tag>`,
/// `argv <args…>`), sleeps $FAKE_ENGINE_SLEEP seconds per build (or the
/// number after a matching pattern in $FAKE_ENGINE_DURATIONS, lines
/// `pattern seconds`), and fails builds whose first tag contains
/// $FAKE_ENGINE_FAIL, or pushes whose tag contains $FAKE_PUSH_FAIL. A build
/// writes `sha256:<sha256 of its first tag>` to its `--iidfile` (unless
/// $FAKE_NO_IID is set) and gives every one of its tags that ID; `image
/// inspect` answers a tag's ID, or another one when the tag contains
/// $FAKE_RETAG.
pub const FAKE_ENGINE: &str = r#"#!/bin/bash
log="${FAKE_ENGINE_LOG:?FAKE_ENGINE_LOG is not set}"
now() { date +%s.%N; }
echo "argv $*" >> "$log"
idof() { printf 'sha256:%s' "$(printf '%s' "$1" | sha256sum | cut -c1-64)"; }
case "$1" in
  image)
    # image inspect --format {{.Id}} TAG: the ID the fake build gave TAG,
    # or another one when TAG contains $FAKE_RETAG (someone retagged it).
    for a in "$@"; do tag="$a"; done
    if [ -n "${FAKE_RETAG:-}" ] && [[ "$tag" == *"$FAKE_RETAG"* ]]; then idof "other $tag"; echo; exit 0; fi
    id=$(grep -F " $tag" "$log.ids" 2>/dev/null | tail -1 | cut -d' ' -f1)
    [ -n "$id" ] || { echo "Error: No such image: $tag" >&2; exit 1; }
    echo "$id"
    ;;
  build)
    tag=""; prev=""; iid=""
    for a in "$@"; do
      if [ "$prev" = "-t" ] && [ -z "$tag" ]; then tag="$a"; fi
      case "$a" in --iidfile=*) iid="${a#--iidfile=}";; esac
      prev="$a"
    done
    echo "start $(now) $tag" >> "$log"
    echo "fake build of $tag"
    dur="${FAKE_ENGINE_SLEEP:-0}"
    if [ -n "${FAKE_ENGINE_DURATIONS:-}" ] && [ -f "$FAKE_ENGINE_DURATIONS" ]; then
      while read -r pat secs; do
        case "$tag" in *"$pat"*) dur="$secs"; break;; esac
      done < "$FAKE_ENGINE_DURATIONS"
    fi
    sleep "$dur"
    if [ -n "${FAKE_ENGINE_FAIL:-}" ] && [[ "$tag" == *"$FAKE_ENGINE_FAIL"* ]]; then
      echo "end $(now) $tag fail" >> "$log"
      echo "error: simulated failure building $tag" >&2
      exit 1
    fi
    echo "end $(now) $tag ok" >> "$log"
    if [ -n "$iid" ] && [ -z "${FAKE_NO_IID:-}" ]; then idof "$tag" > "$iid"; fi
    prev=""
    for a in "$@"; do
      if [ "$prev" = "-t" ]; then echo "$(idof "$tag") $a" >> "$log.ids"; fi
      prev="$a"
    done
    ;;
  push)
    echo "push $(now) $2" >> "$log"
    if [ -n "${FAKE_PUSH_FAIL:-}" ] && [[ "$2" == *"$FAKE_PUSH_FAIL"* ]]; then exit 1; fi
    ;;
esac
exit 0
"#;

/// One parsed line of the fake engine's log.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: String,
    pub time: f64,
    pub tag: String,
    pub ok: bool,
}

pub fn events(log: &Path) -> (Vec<Event>, Vec<String>) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut ev = Vec::new();
    let mut argv = Vec::new();
    for line in text.lines() {
        if let Some(a) = line.strip_prefix("argv ") {
            // Queries (builder driver, context, image IDs) are not builds.
            if !["buildx ", "context ", "image "].iter().any(|q| a.starts_with(q)) {
                argv.push(a.to_string());
            }
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.len() >= 3 {
            ev.push(Event {
                kind: parts[0].to_string(),
                time: parts[1].parse().unwrap(),
                tag: parts[2].to_string(),
                ok: parts.get(3) != Some(&"fail"),
            });
        }
    }
    (ev, argv)
}
