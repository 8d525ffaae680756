//! Unit tests of [`super`]: identities, every child's environment, the pure parts of a launch.

use super::*;

const ROOT: Caller = Caller { uid: 0, gid: 0 };

fn job_env(
    container: &[(OsString, OsString)],
    identity: Option<&Identity>,
    exports: &[(String, String)],
    supervisor_pid: Option<u32>,
) -> Vec<(OsString, OsString)> {
    Children::new(container, identity, exports, ROOT).job_env(supervisor_pid)
}

fn service_env(
    container: &[(OsString, OsString)],
    identity: Option<&Identity>,
    caller: Caller,
    labinit: &Path,
    sshd_setenv: Option<&Path>,
) -> Vec<(OsString, OsString)> {
    Children::new(container, identity, &[], caller).service_env(labinit, sshd_setenv)
}

fn session_env(job: &[(OsString, OsString)]) -> Vec<(OsString, OsString)> {
    Children::new(job, None, &[], ROOT).session_env(None)
}

fn os(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
}

fn alice() -> Identity {
    Identity {
        name: "alice".into(),
        uid: 123456,
        gid: 11166,
        groups: vec![11166],
        home: "/home/alice".into(),
        shell: "/bin/bash".into(),
    }
}

#[test]
fn env_keeps_container_sets_account_drops_internal() {
    let container = os(&[
        ("PATH", "/opt/conda/bin:/usr/bin"),
        ("HOME", "/root"),
        ("LD_LIBRARY_PATH", "/usr/local/cuda/lib64"),
        ("LABKIT_TIMEOUT", "4h"),
        ("LABKIT_ROOT", "/x"),
        ("CUDA_VISIBLE_DEVICES", "0"),
        ("USER", "root"),
    ]);
    let exports = vec![("TORCH_HOME".to_owned(), "/data/torch".to_owned()), ("LABKIT_X".to_owned(), "no".to_owned())];
    let env = job_env(&container, Some(&alice()), &exports, Some(1));
    let want = os(&[
        ("PATH", "/opt/conda/bin:/usr/bin"),
        ("HOME", "/home/alice"),
        ("LD_LIBRARY_PATH", "/usr/local/cuda/lib64"),
        ("CUDA_VISIBLE_DEVICES", "0"),
        ("USER", "alice"),
        ("LOGNAME", "alice"),
        ("SHELL", "/bin/bash"),
        ("TORCH_HOME", "/data/torch"),
        ("LABKIT_SUPERVISOR", "1"),
    ]);
    assert_eq!(env, want);
}

#[test]
fn env_without_identity_is_the_container_minus_internal() {
    let container = os(&[("PATH", "/bin"), ("LABKIT_GRACE", "5s"), ("HOME", "/root"), ("LABKIT_SUPERVISOR", "7")]);
    let env = job_env(&container, None, &[], None);
    assert_eq!(env, os(&[("PATH", "/bin"), ("HOME", "/root"), ("LABKIT_SUPERVISOR", "7")]));
}

#[test]
fn working_directory_rules() {
    let home = Some(Path::new("/home/alice"));
    let wd = Some(Path::new("/data/work"));
    let root = Some(Path::new("/"));
    let p = |v: &[&str]| v.iter().map(PathBuf::from).collect::<Vec<_>>();
    assert_eq!(working_dirs(wd, home, false, true), p(&["/data/work", "/home/alice", "/"]));
    assert_eq!(working_dirs(root, home, false, true), p(&["/home/alice", "/"]));
    assert_eq!(working_dirs(None, home, false, true), p(&["/home/alice", "/"]));
    assert_eq!(working_dirs(wd, home, true, true), p(&["/home/alice", "/data/work", "/"]));
    assert_eq!(working_dirs(root, home, true, false), p(&["/home/alice", "/"]));
    assert_eq!(working_dirs(wd, Some(Path::new("/root")), false, false), p(&["/data/work", "/"]));
    assert_eq!(working_dirs(root, Some(Path::new("/root")), false, false), p(&["/"]));
}

#[test]
fn program_search() {
    let c = program_candidates(OsStr::new("python3"), Some(OsStr::new("/opt/conda/bin::/usr/bin")));
    assert_eq!(
        c,
        vec![PathBuf::from("/opt/conda/bin/python3"), PathBuf::from("./python3"), PathBuf::from("/usr/bin/python3")]
    );
    assert_eq!(program_candidates(OsStr::new("./x.sh"), None), vec![PathBuf::from("./x.sh")]);
    assert_eq!(program_candidates(OsStr::new("sh"), None).len(), 6);
    assert!(program_candidates(OsStr::new(""), None).is_empty());
}

#[test]
fn shell_strings() {
    let a = shell_argv(Path::new("/bin/bash"), "cd /data && python x.py", true);
    assert_eq!(a[0], "/bin/bash");
    assert_eq!(a[1], "-c");
    let s = a[2].to_string_lossy();
    assert!(s.starts_with("if [ -f \"$HOME/.bashrc\" ]; then . \"$HOME/.bashrc\"; fi\n"), "{s}");
    assert!(s.ends_with("\ncd /data && python x.py"));
    assert_eq!(shell_argv(Path::new("/bin/sh"), "true", true)[2], "true");
    assert_eq!(shell_argv(Path::new("/bin/bash"), "true", false)[2], "true");
}

fn req() -> AccountRequest {
    AccountRequest { user: "alice".into(), uid: 123456, group: "CVLAB-unit".into(), gid: 11166 }
}

fn tables(passwd: &str, group: &str) -> (Table, Table) {
    use crate::init::accounts::Kind;
    (Table::parse(Kind::Passwd, passwd.as_bytes()), Table::parse(Kind::Group, group.as_bytes()))
}

const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\nalice:x:123456:11166::/home/alice:/bin/bash\n";

/// Issue 11 §4: a step's `usermod -aG video alice` reaches the job.
#[test]
fn a_group_a_step_added_is_in_the_identity() {
    let (p, g) = tables(PASSWD, "root:x:0:\nvideo:x:44:alice\nCVLAB-unit:x:11166:\n");
    let id = identity_from_accounts(&p, &g, &req(), &[], "/bin/sh");
    assert_eq!(id.groups, vec![11166, 44]);
    // Negative control: the same files before the step.
    let (p, g) = tables(PASSWD, "root:x:0:\nvideo:x:44:\nCVLAB-unit:x:11166:\n");
    assert_eq!(identity_from_accounts(&p, &g, &req(), &[], "/bin/sh").groups, vec![11166]);
}

#[test]
fn runtime_groups_are_kept_and_roots_own_are_not() {
    let (p, g) = tables(PASSWD, "root:x:0:\ndisk:x:6:root\nvideo:x:44:alice\n");
    let id = identity_from_accounts(&p, &g, &req(), &[0, 6, 555], "/bin/sh");
    assert_eq!(id.groups, vec![11166, 44, 555]);
}

#[test]
fn home_and_shell_come_from_the_users_entry_as_the_steps_left_it() {
    let moved = PASSWD.replace("/home/alice:/bin/bash", "/data/alice:/usr/bin/zsh");
    let (p, g) = tables(&moved, "");
    let id = identity_from_accounts(&p, &g, &req(), &[], "/bin/sh");
    assert_eq!((id.home.as_path(), id.shell.as_path()), (Path::new("/data/alice"), Path::new("/usr/bin/zsh")));
    // No entry (read-only /etc), or alice's name on another uid: the defaults.
    for passwd in ["root:x:0:0:root:/root:/bin/bash\n", "alice:x:1000:1000::/evil:/bin/evil\n"] {
        let (p, g) = tables(passwd, "");
        let id = identity_from_accounts(&p, &g, &req(), &[], "/bin/sh");
        assert_eq!((id.home.as_path(), id.shell.as_path()), (Path::new("/home/alice"), Path::new("/bin/sh")));
    }
    // Empty or relative fields are not a home or a shell.
    let (p, g) = tables("alice:x:123456:11166::data:\n", "");
    let id = identity_from_accounts(&p, &g, &req(), &[], "/bin/sh");
    assert_eq!((id.home.as_path(), id.shell.as_path()), (Path::new("/home/alice"), Path::new("/bin/sh")));
}

/// Issue 11 §4: a step cannot export one identity variable alone.
#[test]
fn steps_cannot_export_the_identity_variables() {
    for name in IDENTITY_VARS {
        let why = reserved_export(name).expect(name);
        assert!(why.contains("usermod"), "{why}");
        let line = format!("{name}=/data/x");
        assert!(crate::init::steps::parse_env_line(&line).unwrap_err().contains("from the account"), "{line}");
    }
    // Controls: names that merely resemble them are ordinary exports.
    for name in ["HOMEDIR", "TORCH_HOME", "CONDA_SHELL", "home", "USERNAME"] {
        assert_eq!(reserved_export(name), None, "{name}");
        assert!(crate::init::steps::parse_env_line(&format!("{name}=1")).unwrap().is_some());
    }
}

#[test]
fn identity_exports_never_split_the_identity_in_any_child() {
    let exports: Vec<(String, String)> = [("HOME", "/data/x"), ("LOGNAME", "bob"), ("CONDA_PREFIX", "/opt/conda")]
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    let env = job_env(&os(&[("HOME", "/root"), ("USER", "root")]), Some(&alice()), &exports, None);
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.to_string_lossy().into_owned());
    assert_eq!(get("HOME").as_deref(), Some("/home/alice"));
    assert_eq!(get("LOGNAME").as_deref(), Some("alice"));
    assert_eq!(get("USER").as_deref(), Some("alice"));
    assert_eq!(get("CONDA_PREFIX").as_deref(), Some("/opt/conda"), "control: other exports apply");
    // Without a user, the container's identity stays whole as well.
    let env = job_env(&os(&[("HOME", "/root"), ("USER", "root")]), None, &exports, None);
    assert_eq!(env, os(&[("HOME", "/root"), ("USER", "root"), ("CONDA_PREFIX", "/opt/conda")]));
}

#[test]
fn steps_get_the_container_and_who_the_job_runs_as() {
    let container: Vec<(String, String)> =
        [("PATH", "/bin"), ("LABKIT_USER", "mallory"), ("HOME", "/root"), ("LABKIT_ENV", "/tmp/x")]
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
    let caller = Caller { uid: 0, gid: 0 };
    let env = step_env(&container, Some(&alice()), caller, Path::new("/run/labkit/step-env"));
    let want: Vec<(String, String)> = [
        ("PATH", "/bin"),
        ("HOME", "/root"),
        ("LABKIT_USER", "alice"),
        ("LABKIT_UID", "123456"),
        ("LABKIT_GID", "11166"),
        ("LABKIT_HOME", "/home/alice"),
        ("LABKIT_ENV", "/run/labkit/step-env"),
    ]
    .iter()
    .map(|(k, v)| ((*k).into(), (*v).into()))
    .collect();
    assert_eq!(env, want);
    let env = step_env(&container, None, Caller { uid: 1010, gid: 100 }, Path::new("/tmp/e"));
    assert!(env.contains(&("LABKIT_UID".into(), "1010".into())));
    assert!(env.contains(&("LABKIT_HOME".into(), "/root".into())));
    assert!(env.contains(&("LABKIT_USER".into(), "".into())));
}

#[test]
fn services_run_as_root_and_know_who_the_job_runs_as() {
    let container = os(&[("PATH", "/usr/bin:/bin"), ("HOME", "/root"), ("LABKIT_LABINIT", "/evil")]);
    let caller = Caller { uid: 0, gid: 0 };
    let env = service_env(
        &container,
        Some(&alice()),
        caller,
        Path::new("/opt/lab/labinit"),
        Some(Path::new("/run/labkit/s")),
    );
    let want = os(&[
        ("PATH", "/usr/bin:/bin"),
        ("HOME", "/root"),
        ("LABKIT_USER", "alice"),
        ("LABKIT_UID", "123456"),
        ("LABKIT_GID", "11166"),
        ("LABKIT_HOME", "/home/alice"),
        ("LABKIT_LABINIT", "/opt/lab/labinit"),
        ("LABKIT_SSHD_SETENV", "/run/labkit/s"),
    ]);
    assert_eq!(env, want);
    let env = service_env(&container, None, caller, Path::new("/l"), None);
    assert!(!env.iter().any(|(k, _)| k == "LABKIT_SSHD_SETENV"));
}

#[test]
fn ssh_sessions_get_the_job_env_but_not_what_sshd_sets() {
    let job = os(&[
        ("PATH", "/opt/conda/bin:/usr/bin"),
        ("HOME", "/home/alice"),
        ("USER", "alice"),
        ("LOGNAME", "alice"),
        ("SHELL", "/bin/bash"),
        ("TERM", "xterm"),
        ("PWD", "/"),
        ("SSH_AUTH_SOCK", "/x"),
        ("LD_LIBRARY_PATH", "/usr/local/nvidia/lib64"),
        ("NVIDIA_VISIBLE_DEVICES", "all"),
        ("LABKIT_SUPERVISOR", "1"),
    ]);
    let want = os(&[
        ("PATH", "/opt/conda/bin:/usr/bin"),
        ("LD_LIBRARY_PATH", "/usr/local/nvidia/lib64"),
        ("NVIDIA_VISIBLE_DEVICES", "all"),
        ("LABKIT_SUPERVISOR", "1"),
    ]);
    assert_eq!(session_env(&job), want);
}

#[test]
fn shell_choice() {
    let only = |have: &'static [&'static str]| move |p: &Path| have.iter().any(|h| Path::new(h) == p);
    let zsh = Some(Path::new("/usr/bin/zsh"));
    assert_eq!(shell_for(Some(&alice()), zsh, &only(&[])), PathBuf::from("/bin/bash"), "the account's");
    assert_eq!(shell_for(None, zsh, &only(&["/usr/bin/zsh", "/bin/bash"])), PathBuf::from("/usr/bin/zsh"));
    assert_eq!(shell_for(None, zsh, &only(&["/bin/bash"])), PathBuf::from("/bin/bash"), "SHELL not executable");
    assert_eq!(shell_for(None, Some(Path::new("zsh")), &only(&["zsh"])), PathBuf::from("/bin/sh"), "relative SHELL");
    assert_eq!(shell_for(None, None, &only(&["/usr/bin/bash"])), PathBuf::from("/usr/bin/bash"));
    assert_eq!(shell_for(None, None, &only(&[])), PathBuf::from("/bin/sh"));
}

#[test]
fn one_string_with_blanks_is_a_shell_string() {
    let one = vec![OsString::from("/opt/lab/setup_and_run_command.sh 'cd /w && python x.py'")];
    assert!(matches!(as_command(one, None), Command::Shell(_)));
    let argv = vec![OsString::from("python3"), OsString::from("x y.py")];
    assert_eq!(as_command(argv.clone(), None), Command::Argv(argv));
    let plain = vec![OsString::from("true")];
    assert_eq!(as_command(plain.clone(), None), Command::Argv(plain));
}

/// Issue 13: one builder for every child; each kind keeps its rules.
#[test]
fn every_child_comes_from_one_builder() {
    let container = os(&[("PATH", "/usr/bin"), ("HOME", "/root"), ("LABKIT_GRACE", "5s")]);
    let exports = vec![("TORCH_HOME".to_owned(), "/data/torch".to_owned())];
    let id = alice();
    let c = Children::new(&container, Some(&id), &exports, ROOT);
    let get = |env: &[(OsString, OsString)], k: &str| {
        env.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.to_string_lossy().into_owned())
    };
    let job = c.job_env(Some(1));
    assert_eq!(get(&job, "HOME").as_deref(), Some("/home/alice"));
    assert_eq!(get(&job, "TORCH_HOME").as_deref(), Some("/data/torch"));
    assert_eq!(get(&job, "LABKIT_GRACE"), None, "labinit's settings stay out of the job");
    let session = c.session_env(Some(1));
    assert_eq!((get(&session, "HOME"), get(&session, "TORCH_HOME").as_deref()), (None, Some("/data/torch")));
    let step = c.step_env(Path::new("/run/labkit/step-env"));
    assert_eq!(get(&step, "HOME").as_deref(), Some("/root"), "steps run as root with the container's");
    assert_eq!(get(&step, "TORCH_HOME"), None, "no exports before the steps ran");
    assert_eq!(get(&step, "LABKIT_HOME").as_deref(), Some("/home/alice"));
    let service = c.service_env(Path::new("/opt/lab/labinit"), None);
    assert_eq!(get(&service, "LABKIT_USER").as_deref(), Some("alice"));
    assert_eq!(get(&service, "LABKIT_GRACE").as_deref(), Some("5s"), "services see the container's as it is");
    let creds = c.credentials().expect("a user");
    assert_eq!(creds, Credentials::new(123456, 11166, &[11166]));
    assert_eq!(c.home(), Some(PathBuf::from("/home/alice")));
    // Control: without a user nobody drops privileges and the home is the container's.
    let c = Children::new(&container, None, &exports, ROOT);
    assert_eq!((c.credentials(), c.home()), (None, Some(PathBuf::from("/root"))));
    assert_eq!(get(&c.job_env(None), "HOME").as_deref(), Some("/root"));
}

#[test]
fn what_the_job_and_the_shell_start() {
    let container = os(&[("PATH", "/opt/conda/bin:/usr/bin"), ("HOME", "/root")]);
    let id = alice();
    let c = Children::new(&container, Some(&id), &[], ROOT);
    let bash = |p: &Path| p == Path::new("/bin/bash");
    let start = Some(Path::new("/data"));
    let legacy = c.launch(&Command::Shell("python x.py".into()), c.job_env(None), start, true, &bash).unwrap();
    assert_eq!(legacy.argv[0], "/bin/bash");
    assert!(legacy.argv[2].to_string_lossy().ends_with("\npython x.py"), "{:?}", legacy.argv);
    assert_eq!(legacy.dirs, vec![PathBuf::from("/home/alice"), PathBuf::from("/data"), PathBuf::from("/")]);
    assert_eq!(legacy.creds, c.credentials());
    let argv = Command::Argv(vec!["python3".into(), "x.py".into()]);
    let plain = c.launch(&argv, c.job_env(None), start, false, &bash).unwrap();
    assert_eq!(plain.candidates[0], PathBuf::from("/opt/conda/bin/python3"));
    assert_eq!(plain.dirs[0], PathBuf::from("/data"), "the workingDir first");
    let none = c.launch(&Command::Argv(Vec::new()), Vec::new(), None, false, &bash).unwrap_err();
    assert_eq!(none.message, NO_COMMAND);
    let login = c.launch_shell(Vec::new(), c.job_env(None), start, &bash);
    assert_eq!(
        (login.argv.clone(), login.candidates.clone()),
        (vec![OsString::from("-bash")], vec![PathBuf::from("/bin/bash")])
    );
    assert_eq!(login.dirs[0], PathBuf::from("/home/alice"), "a login starts in the home");
    let cmd = c.launch_shell(vec!["ls".into()], c.job_env(None), start, &bash);
    assert_eq!(
        (cmd.candidates[0].as_path(), cmd.dirs[0].as_path()),
        (Path::new("/opt/conda/bin/ls"), Path::new("/data"))
    );
}

#[test]
fn the_started_line_says_who_and_how() {
    let argv = Command::Argv(vec!["python3".into(), "x.py".into()]);
    let l = started_line(&argv, 7, Some(&alice()), true);
    assert_eq!(l, "started python3 x.py (pid 7) as alice (uid 123456, gid 11166, groups [11166])");
    assert!(started_line(&argv, 7, None, false).ends_with("(pid 7) as a subreaper (not PID 1)"));
    let long = Command::Shell("x".repeat(200));
    assert_eq!(long.describe().chars().count(), 121, "120 characters and an ellipsis");
}
