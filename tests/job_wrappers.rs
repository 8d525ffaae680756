//! `labkit job submit`, `shell` and `forward`: the argv kubectl and runai
//! would get (no cluster here: fakes record it).

#[path = "job/support.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use support::*;

fn recorder(dir: &std::path::Path, name: &str, code: i32) -> std::path::PathBuf {
    let p = dir.join(name);
    let log = dir.join(format!("{name}.args"));
    let stdin = dir.join(format!("{name}.stdin"));
    std::fs::write(
        &p,
        format!("#!/bin/sh\nprintf '%s\\0' \"$@\" > '{}'\ncat > '{}'\nexit {code}\n", log.display(), stdin.display()),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn submit_applies_the_rendered_manifest_and_dry_run_prints_the_same() {
    let s = Scratch::new("submit");
    let p = profile_arg(&s.profile(|t| t.to_string()));
    let kubectl = recorder(s.path(), "kubectl", 0);
    let k = kubectl.to_str().unwrap();
    let render = ok(&["render", "train", "--profile", &p, "--gpu", "1", "--", "python", "t.py"]);
    let o = labkit_job(&["--kubectl", k, "submit", "train", "--profile", &p, "--gpu", "1", "--", "python", "t.py"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(nul_words(&std::fs::read(s.join("kubectl.args")).unwrap()), ["apply", "-f", "-"]);
    assert_eq!(std::fs::read_to_string(s.join("kubectl.stdin")).unwrap(), render);
    // --dry-run: a script that does the same, and runs nothing.
    std::fs::remove_file(s.join("kubectl.args")).unwrap();
    let dry =
        ok(&["--kubectl", k, "submit", "train", "--profile", &p, "--gpu", "1", "--dry-run", "--", "python", "t.py"]);
    assert!(!s.join("kubectl.args").exists(), "dry run ran kubectl");
    assert!(dry.starts_with(&format!("{} apply -f - <<'LABKIT_EOF'\n", k)), "{dry}");
    let o = Command::new("sh").arg("-c").arg(&dry).output().unwrap();
    assert!(o.status.success());
    assert_eq!(std::fs::read_to_string(s.join("kubectl.stdin")).unwrap(), render);
    // kubectl's exit code is labkit's.
    let failing = recorder(&s.join("."), "kubectl-fails", 3);
    let o = labkit_job(&["--kubectl", failing.to_str().unwrap(), "submit", "train", "--profile", &p]);
    assert_eq!(o.status.code(), Some(3));
    // A refused render runs nothing.
    std::fs::remove_file(s.join("kubectl.args")).unwrap();
    let o = labkit_job(&["--kubectl", k, "submit", "train", "--profile", &p, "--gpu", "0.5"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!s.join("kubectl.args").exists());
    // No kubectl: one clear error.
    let o = labkit_job(&["--kubectl", "/nonexistent/kubectl", "submit", "train", "--profile", &p]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not found") && stderr(&o).contains("--kubectl"), "{}", stderr(&o));
}

#[test]
fn submit_to_runai_runs_the_rendered_runai_command() {
    let s = Scratch::new("submit-runai");
    let p = profile_arg(&s.profile(|t| t.to_string()));
    let runai = recorder(s.path(), "runai", 0);
    let args = ["render", "nb", "--to", "runai", "--profile", &p, "--gpu", "0.5", "--", "python", "a b.py", "$X"];
    let line = ok(&args);
    let mut sub = vec!["--runai", runai.to_str().unwrap(), "submit"];
    sub.extend(&args[1..]);
    let o = labkit_job(&sub);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let got = nul_words(&std::fs::read(s.join("runai.args")).unwrap());
    assert_eq!(got, shlex::split(&line).unwrap()[1..], "runai gets exactly the printed words");
    let mut dry = sub.clone();
    dry.insert(3, "--dry-run");
    let d = ok(&dry);
    assert_eq!(shlex::split(&d).unwrap()[1..], got[..]);
}

#[test]
fn shell_and_forward_argv() {
    let s = Scratch::new("wrappers");
    let p = profile_arg(&s.profile(|t| t.to_string()));
    let words = |args: &[&str]| -> Vec<String> {
        let mut a = args.to_vec();
        a.splice(1..1, ["--profile", p.as_str(), "--dry-run"]);
        shlex::split(&ok(&a)).unwrap()
    };
    assert_eq!(
        words(&["shell", "nb"]),
        ["kubectl", "exec", "-it", "--namespace", "runai-cvlab", "job/nb", "--", "/opt/lab/labinit", "shell"]
    );
    assert_eq!(
        words(&["shell", "NB", "--to", "pod", "--", "nvidia-smi", "-L"]),
        [
            "kubectl",
            "exec",
            "-it",
            "--namespace",
            "runai-cvlab",
            "pod/nb",
            "--",
            "/opt/lab/labinit",
            "shell",
            "--",
            "nvidia-smi",
            "-L"
        ]
    );
    assert_eq!(
        words(&["shell", "ddp", "--pod", "ddp-1-abcde"]),
        ["kubectl", "exec", "-it", "--namespace", "runai-cvlab", "pod/ddp-1-abcde", "--", "/opt/lab/labinit", "shell"]
    );
    assert_eq!(
        words(&["shell", "nb", "--to", "runai"]),
        ["runai", "exec", "nb", "--stdin", "--tty", "--project", "cvlab", "--", "/opt/lab/labinit", "shell"]
    );
    assert_eq!(
        words(&["forward", "nb", "8888"]),
        ["kubectl", "port-forward", "--namespace", "runai-cvlab", "job/nb", "8888:8888"]
    );
    assert_eq!(
        words(&["forward", "nb", "8001:8888", "6006", "--to", "pod", "--address", "0.0.0.0"]),
        [
            "kubectl",
            "port-forward",
            "--namespace",
            "runai-cvlab",
            "--address",
            "0.0.0.0",
            "pod/nb",
            "8001:8888",
            "6006:6006"
        ]
    );
    // Refusals: no argv printed.
    for (args, phrase) in [
        (vec!["forward", "nb", "70000"], "1 to 65535"),
        (vec!["forward", "nb", "8888", "--to", "runai"], "--pod"),
        (vec!["shell", "bad_name"], "contains '_'"),
        (vec!["shell", "nb", "--to", "vm"], "not one of"),
    ] {
        let mut a = args.clone();
        a.splice(1..1, ["--profile", p.as_str(), "--dry-run"]);
        let o = labkit_job(&a);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(o.stdout.is_empty());
        assert!(stderr(&o).contains(phrase), "{args:?}: {}", stderr(&o));
    }
    // Without --dry-run the argv is executed as shown.
    let kubectl = recorder(s.path(), "kubectl", 0);
    let o = labkit_job(&["--kubectl", kubectl.to_str().unwrap(), "forward", "nb", "8888", "--profile", &p]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        nul_words(&std::fs::read(s.join("kubectl.args")).unwrap()),
        ["port-forward", "--namespace", "runai-cvlab", "job/nb", "8888:8888"]
    );
}
