//! `labinit shell`, as `kubectl exec -it POD -- /opt/lab/labinit shell`
//! runs it: a process entering the namespaces of a running container (here
//! with `nsenter`) becomes the job's user with the job's environment
//! (container environment plus the step exports PID 1's setup kept), and the
//! login shell starts in the home. Works while PID 1 is `labinit run` and
//! `labinit wait`. Control: the same process without `labinit shell` (the
//! legacy "exec as root") is root and lacks the step exports.
//!
//! Also: a group a setup step adds (real `usermod -aG`) is in the job's and
//! the shell's groups alike; an exec without the `CLUSTER_*` variables takes
//! the identity PID 1 recorded (`/run/labkit/job`) and says so; a record
//! someone else could have written is not trusted; a pod that runs as the
//! user (`runAsUser`) gets its shell without reading /etc/shadow; `setup`
//! records the identity and exports the shell resolves.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::process::Stdio;

use common::ns::Run;
use common::ns::{poll, status_fields};
use common::write_step;
use labkit::init::setup::setup;
use nix::libc;

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
fn container(root: &common::TempDir, args: &str) -> Run {
    let r = root.path().display().to_string();
    std::fs::create_dir_all(root.join("home")).unwrap();
    std::fs::create_dir_all(root.join("steps")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let step = root.join("steps/10_env");
    std::fs::write(&step, "#!/bin/sh\necho TORCH_HOME=/data/torch >> \"$LABKIT_ENV\"\n").unwrap();
    std::fs::set_permissions(&step, std::fs::Permissions::from_mode(0o755)).unwrap();
    // An image's step giving the user the GPU device group, with the real
    // tool (on the test root's files: `--prefix`).
    let step = root.join("steps/20_video");
    std::fs::write(&step, "#!/bin/sh\nexec usermod --prefix \"$LABKIT_ROOT\" -aG video \"$LABKIT_USER\"\n").unwrap();
    std::fs::set_permissions(&step, std::fs::Permissions::from_mode(0o755)).unwrap();
    let env = container_env(&r);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // `env -u PWD`: the prelude shell exported PWD, a container runtime does not.
    let script = format!("mount --bind {r}/home /home && exec env -u PWD {{L}} {args}");
    Run::script(&["--mount"], &script, &env, |d| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(d.join("out")).unwrap();
        std::fs::set_permissions(d.join("out"), std::fs::Permissions::from_mode(0o777)).unwrap();
    })
}

fn env_lines(status: &str) -> BTreeSet<String> {
    status.lines().filter(|l| l.starts_with("Env:\t")).map(str::to_owned).collect()
}

fn sigprint() -> String {
    common::ns::sigprint().display().to_string()
}

/// Start `argv` in the container the way `kubectl exec` does; returns the child.
fn kubectl_exec(c: &Run, root: &str, argv: &[&str]) -> std::process::Child {
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
    // The step's `usermod -aG video` (gid 44) reached the job, not only the shell.
    assert_eq!(fj["Groups"].split_whitespace().collect::<BTreeSet<_>>(), BTreeSet::from(["11166", "44"]), "{job}");
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

/// `kubectl exec` without the `CLUSTER_*` variables (a RunAI or docker exec
/// that passes only some of the pod's environment): `labinit shell` becomes
/// the user PID 1 runs the job as, from its record, with the step exports,
/// and says so. Negative control: without the record it stays root and says
/// that too, instead of silently.
#[test]
fn exec_without_cluster_variables_takes_the_identity_pid1_recorded() {
    let root = common::fixture_root("debian-12");
    let r = root.path().display().to_string();
    let mut c = container(&root, "wait");
    assert!(c.logged("set up; waiting"), "{}", c.stderr());
    let l = common::labinit().display().to_string();
    let full = container_env(&r);
    let env: Vec<(&str, &str)> =
        full.iter().filter(|(k, _)| !k.starts_with("CLUSTER_")).map(|(k, v)| (*k, v.as_str())).collect();
    let probe = "echo uid=$(id -u) groups=$(id -G) home=$HOME user=$USER logname=$LOGNAME torch=$TORCH_HOME";
    let shell = |c: &Run| {
        let out = c.exec(&["-p", "-m"], &[&l, "shell", "--", "/bin/sh", "-c", probe], &env).output().unwrap();
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (out, err) = shell(&c);
    assert_eq!(
        out.trim(),
        "uid=123456 groups=11166 44 home=/home/alice user=alice logname=alice torch=/data/torch",
        "{err}"
    );
    assert!(err.contains("no CLUSTER_* variables in this process: becoming alice (uid 123456)"), "{err}");
    // Control: no record (a container whose PID 1 is not labinit).
    std::fs::remove_file(root.join("run/labkit/job")).unwrap();
    let (out, err) = shell(&c);
    assert!(out.starts_with("uid=0 "), "{out}");
    assert!(!out.contains("torch=/data/torch"), "{out}");
    assert!(err.contains("no CLUSTER_* variables and no record of PID 1"), "{err}");
    c.signal(libc::SIGTERM);
    assert_eq!(c.wait(), 0, "{}", c.stderr());
}

/// A root with alice set up, for `labinit shell --root` without a PID 1.
fn set_up_root() -> common::TempDir {
    let root = common::fixture_root("debian-12");
    std::fs::create_dir_all(root.join("steps")).unwrap();
    let mut env = common::alice_env();
    env.push(("LABKIT_STEPS_DIR".into(), "/steps".into()));
    labkit::init::setup::setup(root.path(), &env).unwrap();
    root
}

fn labinit_shell(
    root: &common::TempDir,
    prefix: &[&str],
    env: &[(String, String)],
    cmd: &str,
) -> (i32, String, String) {
    let l = common::labinit();
    let mut argv: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
    argv.extend([l.display().to_string(), "shell".into(), "--root".into(), root.path().display().to_string()]);
    argv.extend(["--".into(), "/bin/sh".into(), "-c".into(), cmd.into()]);
    let out = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .envs(env.iter().cloned())
        .current_dir("/")
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// A record root would trust must be root's and writable by nobody else: a
/// record a user planted (here: owned by alice, exporting a variable that
/// would reach a root shell) is refused with a warning naming the owner.
/// Control: the same record owned by root is used.
#[test]
fn a_record_someone_else_could_write_is_not_trusted() {
    let root = set_up_root();
    let record = root.join("run/labkit/job");
    let text = std::fs::read_to_string(&record).unwrap() + "export PLANTED=1\n";
    std::fs::write(&record, text).unwrap();
    let cmd = "echo uid=$(id -u) planted=$PLANTED";
    std::os::unix::fs::chown(&record, Some(123456), None).unwrap();
    let (code, out, err) = labinit_shell(&root, &[], &[], cmd);
    assert_eq!((code, out.trim()), (0, "uid=0 planted="), "{err}");
    assert!(err.contains("PID 1's record is not used: /run/labkit/job belongs to uid 123456"), "{err}");
    std::os::unix::fs::chown(&record, Some(0), None).unwrap();
    let (code, out, err) = labinit_shell(&root, &[], &[], cmd);
    assert_eq!((code, out.trim()), (0, "uid=123456 planted=1"), "control: {err}");
}

/// Case adv/11: in a pod that runs as the user (`runAsUser`), `kubectl exec
/// … labinit shell` runs as that uid too; it must not need /etc/shadow
/// (0640 root:shadow here), only passwd and group. Negative control: an
/// unreadable passwd is reported, so a read failure would be seen.
#[test]
fn shell_as_the_user_works_without_reading_shadow() {
    let root = set_up_root();
    let shadow = std::fs::metadata(root.join("etc/shadow")).unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!((shadow.uid(), shadow.gid(), shadow.mode() & 0o777), (0, 42, 0o640), "fixture");
    let as_alice = ["setpriv", "--reuid=123456", "--regid=11166", "--clear-groups"];
    let cmd = "echo uid=$(id -u) home=$HOME user=$USER";
    let (code, out, err) = labinit_shell(&root, &as_alice, &common::alice_env(), cmd);
    assert_eq!((code, out.trim()), (0, "uid=123456 home=/home/alice user=alice"), "{err}");
    assert!(!err.contains("shadow"), "{err}");
    std::fs::set_permissions(root.join("etc/passwd"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, _, err) = labinit_shell(&root, &as_alice, &common::alice_env(), cmd);
    assert_eq!(code, 125, "control: {err}");
    assert!(err.contains("cannot read /etc/passwd: Permission denied (os error 13)"), "{err}");
}

/// A service (root, the container's environment) starts the user's side
/// with `"$LABKIT_LABINIT" shell -- CMD`, as a Jupyter service would: CMD
/// runs as the job's user with the job's groups and the steps' exports.
/// Control: the service itself is root and lacks the exports.
#[test]
fn a_service_starts_the_users_side_with_the_jobs_identity_and_environment() {
    use std::os::unix::fs::PermissionsExt;
    let root = common::fixture_root("debian-12");
    let services = root.join("opt/lab/services");
    std::fs::create_dir_all(&services).unwrap();
    let probe = "echo uid=$(id -u) groups=$(id -G) home=$HOME torch=$TORCH_HOME";
    let script = format!(
        "#!/bin/sh\n{probe} > \"$LABKIT_ROOT/svc-own.out\"\n\"$LABKIT_LABINIT\" shell -- /bin/sh -c '{probe}' > \"$LABKIT_ROOT/svc-user.out\" 2>&1\n"
    );
    std::fs::write(services.join("probe"), script).unwrap();
    std::fs::set_permissions(services.join("probe"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = container(&root, "wait");
    assert!(c.logged("service probe: done (exit code 0)"), "{}", c.stderr());
    let user = std::fs::read_to_string(root.join("svc-user.out")).unwrap();
    assert_eq!(user.trim(), "uid=123456 groups=11166 44 home=/home/alice torch=/data/torch", "{}", c.stderr());
    let own = std::fs::read_to_string(root.join("svc-own.out")).unwrap();
    assert!(own.starts_with("uid=0 ") && own.trim().ends_with(" home=/root torch="), "control: {own}");
    c.signal(libc::SIGTERM);
    assert_eq!(c.wait(), 0, "{}", c.stderr());
}

#[test]
fn shell_sees_the_same_identity_and_exports_as_the_job() {
    let root = common::fixture_root("debian-12");
    write_step(&root, "10_export", "#!/bin/sh\necho CONDA=/opt/conda >> \"$LABKIT_ENV\"\n", 0o755);
    let out = setup(root.path(), &common::alice_env()).unwrap();
    let resolved = labkit::init::setup::resolve_identity(root.path(), &common::alice_env()).unwrap();
    assert_eq!(resolved, out.identity);
    assert_eq!(labkit::init::setup::load_exports(root.path()), out.exports);
    assert_eq!(out.exports, vec![("CONDA".to_string(), "/opt/conda".to_string())]);
    let m = fs::metadata(root.join("run/labkit/job")).unwrap();
    assert_eq!(m.mode() & 0o777, 0o600);
}
