//! `labinit shell`, as `kubectl exec -it POD -- /opt/lab/labinit shell`
//! runs it: a process entering the namespaces of a running container (here
//! with `nsenter`) becomes the job's user with the job's environment
//! (container environment plus the step exports PID 1's setup kept), and the
//! login shell starts in the home. Works while PID 1 is `labinit run` and
//! `labinit wait`. Control: the same process without `labinit shell` (the
//! legacy "exec as root") is root and lacks the step exports.

mod common;
#[path = "common/ns.rs"]
mod ns;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::Stdio;

use common::pidns::{poll, status_fields};
use nix::libc;
use ns::Ns;

fn container_env(root: &str) -> Vec<(&'static str, String)> {
    vec![
        ("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into()),
        ("HOME", "/root".into()),
        ("SIGPRINT_LIFETIME_MS", "60000".into()),
        ("LABKIT_STEPS_DIR", "/steps".into()),
        ("LABKIT_IDLE_TIMEOUT", "0".into()),
        ("LABKIT_ROOT", root.into()),
        ("CUDA_VISIBLE_DEVICES", "0".into()),
        ("CLUSTER_USER", "alice".into()),
        ("CLUSTER_USER_ID", "123456".into()),
        ("CLUSTER_GROUP_NAME", "CVLAB-unit".into()),
        ("CLUSTER_GROUP_ID", "11166".into()),
    ]
}

/// A container whose PID 1 is `labinit ARGS` with the fixture root as its
/// root and that root's /home mounted on /home (so the home is where a shell
/// looks for it).
fn container(root: &common::TempDir, args: &str) -> Ns {
    let r = root.path().display().to_string();
    std::fs::create_dir_all(root.join("home")).unwrap();
    std::fs::create_dir_all(root.join("steps")).unwrap();
    let step = root.join("steps/10_env");
    std::fs::write(&step, "#!/bin/sh\necho TORCH_HOME=/data/torch >> \"$LABKIT_ENV\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&step, std::fs::Permissions::from_mode(0o755)).unwrap();
    let env = container_env(&r);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // `env -u PWD`: the prelude shell exported PWD, a container runtime does not.
    let script = format!("mount --bind {r}/home /home && exec env -u PWD {{L}} {args}");
    Ns::start(&["--mount"], &script, &env, |d| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(d.join("out")).unwrap();
        std::fs::set_permissions(d.join("out"), std::fs::Permissions::from_mode(0o777)).unwrap();
    })
}

fn env_lines(status: &str) -> BTreeSet<String> {
    status.lines().filter(|l| l.starts_with("Env:\t")).map(str::to_owned).collect()
}

fn sigprint() -> String {
    common::pidns::sigprint().display().to_string()
}

/// Start `argv` in the container the way `kubectl exec` does; returns the child.
fn kubectl_exec(c: &Ns, root: &str, argv: &[&str]) -> std::process::Child {
    let env = container_env(root);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Start in the container's working directory, the directory the job
    // started in, as kubectl exec does. (Not `nsenter --wd`: it enters a
    // directory of the old mount namespace, which getcwd calls unreachable.)
    let mut full = vec!["/bin/sh", "-c", "cd {D} && exec env -u PWD -u OLDPWD \"$@\"", "sh"];
    full.extend_from_slice(argv);
    c.exec(&["-p", "-m"], &full, &env).stdin(Stdio::null()).spawn().expect("nsenter")
}

#[test]
fn shell_matches_the_jobs_identity_and_environment() {
    let root = common::fixture_root("debian-12");
    let r = root.path().display().to_string();
    let s = sigprint();
    let mut c = container(&root, &format!("run -- {s} job {{D}}/out"));
    assert!(poll(|| c.path("out/job.ready").exists().then_some(())).is_some(), "{}", c.stderr());
    let l = common::labinit().display().to_string();
    let mut shell = kubectl_exec(&c, &r, &[&l, "shell", "--", &s, "sh", "{D}/out"]);
    let mut legacy = kubectl_exec(&c, &r, &[&s, "root", "{D}/out"]);
    for n in ["sh", "root"] {
        let f = format!("out/{n}.ready");
        assert!(poll(|| c.path(&f).exists().then_some(())).is_some(), "{n} never ran; {}", c.stderr());
    }
    let job = c.read("out/job.status");
    let sh = c.read("out/sh.status");
    let legacy_status = c.read("out/root.status");
    let (fj, fs, fl) = (status_fields(&job), status_fields(&sh), status_fields(&legacy_status));
    for k in ["Uid", "Gid", "Groups", "Cwd"] {
        assert_eq!(fj.get(k), fs.get(k), "{k}: job vs shell\n{job}\n---\n{sh}");
    }
    assert!(fj["Uid"].starts_with("123456\t"), "{job}");
    assert_eq!(env_lines(&job), env_lines(&sh), "environment: job vs shell");
    assert!(env_lines(&sh).contains("Env:\tTORCH_HOME=/data/torch"), "{sh}");
    assert!(env_lines(&sh).contains("Env:\tHOME=/home/alice"), "{sh}");
    assert!(!env_lines(&sh).iter().any(|l| l.starts_with("Env:\tLABKIT_") && !l.contains("SUPERVISOR")), "{sh}");
    // Control: exec'd as root without labinit shell.
    assert!(fl["Uid"].starts_with("0\t"), "{legacy_status}");
    assert!(!env_lines(&legacy_status).contains("Env:\tTORCH_HOME=/data/torch"));
    c.signal(libc::SIGTERM);
    assert_eq!(c.wait(), 0, "{}", c.stderr());
    let _ = shell.wait();
    let _ = legacy.wait();
}

#[test]
fn login_shell_starts_in_the_home_while_waiting() {
    let root = common::fixture_root("debian-12");
    let r = root.path().display().to_string();
    let mut c = container(&root, "wait");
    assert!(c.logged("set up; waiting"), "{}", c.stderr());
    let l = common::labinit().display().to_string();
    let env = container_env(&r);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for login in [true, false] {
        let argv: Vec<&str> = if login { vec![&l, "shell"] } else { vec!["/bin/bash", "-l"] };
        let mut child = c
            .exec(&["-p", "-m"], &argv, &env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"echo \"0=$0\"; echo \"uid=$(id -u)\"; echo \"pwd=$(pwd)\"; echo \"torch=$TORCH_HOME\"\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let want = ["0=-bash", "uid=123456", "pwd=/home/alice", "torch=/data/torch"];
        let got: Vec<bool> = want.iter().map(|w| text.lines().any(|l| l == *w)).collect();
        if login {
            assert!(got.iter().all(|g| *g), "{text}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
        } else {
            // Control: a root login shell, as the legacy `kubectl exec … bash`.
            assert!(!got[1] && !got[2], "control: {text}");
        }
    }
    c.signal(libc::SIGTERM);
    assert_eq!(c.wait(), 0, "{}", c.stderr());
}
