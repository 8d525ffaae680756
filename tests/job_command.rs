//! `labkit job`: the command's journey through YAML, the kubelet's `$(VAR)`
//! expansion and the shell into the real labinit, for every form.

#[path = "job/support.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use support::*;

/// A fake program on PATH that prints each argument on its own line, NUL
/// terminated, plus PWD and JOB_COMPLETION_INDEX.
fn fake_printer(dir: &std::path::Path, name: &str) {
    let p = dir.join(name);
    std::fs::write(
        &p,
        "#!/bin/sh\nprintf 'PWD=%s\\0UID=%s\\0' \"$PWD\" \"$(id -u)\"\nprintf '%s\\0' \"$(basename \"$0\")\" \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Words that break naive quoting: `$`, `$(…)` (kubelet syntax), quotes,
/// globs, white space, a newline, a leading dash, an empty word, non-ASCII.
fn nasty() -> Vec<String> {
    [
        "--lr=$LR",
        "$(HOME)",
        "$(TORCH_HOME)",
        "$$",
        "it's",
        "\"dq\"",
        "*",
        "a b",
        "l1\nl2",
        "-n",
        "",
        "ü €",
        "`id`",
        ";",
        "&&",
        "\\",
    ]
    .map(String::from)
    .to_vec()
}

/// The container's command and environment from the YAML, expanded as the
/// kubelet does, run by the real labinit (in a private root: `LABKIT_ROOT`
/// holds copies of the account files, the host's are never touched): the
/// account from the profile is created, and the program runs as that user,
/// in the workdir, with exactly the researcher's words.
#[test]
fn yaml_command_reaches_the_program_intact_through_kubelet_and_labinit() {
    let s = Scratch::new("journey");
    std::fs::set_permissions(s.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let work = s.join("work dir $x");
    let bin = s.join("bin");
    let root = s.join("root");
    for d in [&work, &bin, &root.join("etc")] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for f in ["passwd", "group"] {
        std::fs::copy(format!("/etc/{f}"), root.join("etc").join(f)).unwrap();
    }
    for f in ["shadow", "gshadow"] {
        std::fs::write(root.join("etc").join(f), "").unwrap();
    }
    fake_printer(&bin, "show");
    let wd = work.to_str().unwrap().to_string();
    let p = profile_arg(&s.profile(|t| {
        t.replace("/cvlabdata2/home/alice/project", &wd).replace("[env]\n", "[env]\nLITERAL = \"$(HOME) $$ $X\"\n")
    }));
    let mut args: Vec<String> = ["render", "j", "--profile", &p, "--"].map(String::from).to_vec();
    args.push("show".into());
    args.extend(nasty());
    let doc = &yaml_docs(&ok(&args.iter().map(String::as_str).collect::<Vec<_>>()))[0];
    let c = container(doc);
    let env: Vec<(String, String)> = env_pairs(c)
        .into_iter()
        .map(|(k, v)| (k, kubelet_expand(&v, &[])))
        .chain([
            ("PATH".to_string(), format!("{}:/usr/bin:/bin", bin.display())),
            ("LABKIT_ROOT".to_string(), root.to_str().unwrap().to_string()),
        ])
        .collect();
    assert!(env.contains(&("LITERAL".to_string(), "$(HOME) $$ $X".to_string())), "env values are literal: {env:?}");
    let argv: Vec<String> =
        c["command"].as_array().unwrap().iter().map(|a| kubelet_expand(a.as_str().unwrap(), &env)).collect();
    assert_eq!(argv[0], "/opt/lab/labinit");
    let labinit = match std::env::var_os("LABKIT_TEST_LABINIT") {
        Some(p) => std::path::PathBuf::from(p),
        None => std::path::PathBuf::from(env!("CARGO_BIN_EXE_labinit")),
    };
    let out = Command::new(&labinit)
        .args(&argv[1..])
        .env_clear()
        .envs(env.iter().cloned())
        .current_dir("/")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    let words = nul_words(&out.stdout);
    assert_eq!(words[0], format!("PWD={wd}"));
    let uid = if nix::unistd::getuid().is_root() { 123456 } else { nix::unistd::getuid().as_raw() };
    assert_eq!(words[1], format!("UID={uid}"), "{log}");
    if uid == 123456 {
        let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
        assert!(passwd.lines().any(|l| l.starts_with("alice:x:123456:11166:")), "{passwd}");
        assert!(!std::fs::read_to_string("/etc/passwd").unwrap().contains(":123456:11166:"), "host untouched");
    }
    let mut want = vec!["show".to_string()];
    want.extend(nasty());
    assert_eq!(&words[2..], &want[..]);
    // Negative control: the same command without the kubelet's expansion
    // applied differs (the escaping is really needed and really undone).
    let raw = c["command"][3].as_str().unwrap();
    assert_ne!(raw, argv[3]);
}

/// The runai line, read back by a real shell: the words runai gets, and the
/// job string inside them reaching the program intact.
#[test]
fn runai_line_is_shell_quoted_and_round_trips() {
    let s = Scratch::new("runai");
    let work = s.join("w");
    let bin = s.join("bin");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    fake_printer(&bin, "runai");
    fake_printer(&bin, "show");
    let wd = work.to_str().unwrap().to_string();
    let p = profile_arg(&s.profile(|t| t.replace("/cvlabdata2/home/alice/project", &wd)));
    let mut args: Vec<String> = [
        "render",
        "hello",
        "--to",
        "runai",
        "--profile",
        &p,
        "--gpu",
        "0.5",
        "--interactive",
        "--timeout",
        "4h",
        "--port",
        "8888",
        "--",
    ]
    .map(String::from)
    .to_vec();
    args.push("show".into());
    args.extend(nasty());
    let line = ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(line.matches('\n').count(), line.trim_end().matches('\n').count() + 1, "one trailing newline");
    assert!(line.starts_with("runai submit hello "), "{line}");
    // Executed by sh as printed: runai (the fake) gets these words.
    let out = Command::new("sh")
        .arg("-c")
        .arg(&line)
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let words = nul_words(&out.stdout)[2..].to_vec();
    // shlex reads it the same way.
    assert_eq!(shlex::split(&line).unwrap()[1..], words[1..]);
    let pos = |w: &str| words.iter().position(|x| x == w).unwrap_or_else(|| panic!("{w} not in {words:?}"));
    assert_eq!(words[pos("--gpu") + 1], "0.5");
    assert_eq!(words[pos("--pvc") + 1], "runai-pv-cvlabdata2:/cvlabdata2", "RunAI's claim name");
    assert_eq!(words[pos("--project") + 1], "cvlab");
    assert_eq!(words[pos("-i") + 1], "ic-registry.epfl.ch/cvlab/lis/lab-python-ml:cuda12");
    assert!(words.contains(&"--large-shm".to_string()) && words.contains(&"--interactive".to_string()));
    assert_eq!(words[pos("--port") + 1], "8888");
    let envs: Vec<&String> =
        words.iter().enumerate().filter(|(i, _)| *i > 0 && words[i - 1] == "-e").map(|(_, w)| w).collect();
    assert_eq!(
        envs[..4],
        ["CLUSTER_USER=alice", "CLUSTER_USER_ID=123456", "CLUSTER_GROUP_NAME=CVLAB-unit", "CLUSTER_GROUP_ID=11166"]
    );
    assert!(envs.contains(&&"LABKIT_TIMEOUT=4h".to_string()) && envs.contains(&&"LABKIT_GRACE=20s".to_string()));
    let cmd = &words[pos("--command") + 1..];
    assert_eq!(cmd[..4], ["--", "/opt/lab/labinit", "run", "-c"]);
    // The job string, after the kubelet, run by a shell: the program's words.
    let job = kubelet_expand(&cmd[4], &[]);
    let out = Command::new("sh")
        .arg("-c")
        .arg(&job)
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .output()
        .unwrap();
    let got = nul_words(&out.stdout);
    assert_eq!(got[0], format!("PWD={wd}"));
    let mut want = vec!["show".to_string()];
    want.extend(nasty());
    assert_eq!(&got[2..], &want[..]);
}

/// `-c STRING` keeps shell syntax (pipes, &&) and runs in the workdir.
#[test]
fn shell_string_runs_in_the_workdir() {
    let s = Scratch::new("shell");
    let work = s.join("w");
    std::fs::create_dir_all(&work).unwrap();
    let wd = work.to_str().unwrap().to_string();
    let p = profile_arg(&s.profile(|t| t.replace("/cvlabdata2/home/alice/project", &wd)));
    let doc = &yaml_docs(&ok(&["render", "j", "--profile", &p, "-c", "echo $((1+2)) | tr 3 x && pwd"]))[0];
    let job = kubelet_expand(container(doc)["command"][3].as_str().unwrap(), &[]);
    let out = Command::new("sh").arg("-c").arg(&job).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("x\n{wd}\n"));
    // A workdir that does not exist stops the command instead of running it elsewhere.
    let p = profile_arg(&s.profile(|t| t.replace("/cvlabdata2/home/alice/project", "/nonexistent/labkit")));
    let doc = &yaml_docs(&ok(&["render", "j", "--profile", &p, "-c", "echo ran"]))[0];
    let job = kubelet_expand(container(doc)["command"][3].as_str().unwrap(), &[]);
    let out = Command::new("sh").arg("-c").arg(&job).output().unwrap();
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ran"));
}

/// Each pod of a multi-node job runs torchrun with the rendezvous on index 0
/// and its rank from JOB_COMPLETION_INDEX (set by the Job controller).
#[test]
fn workers_rank_comes_from_the_completion_index() {
    let s = Scratch::new("rank");
    let work = s.join("w");
    let bin = s.join("bin");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    fake_printer(&bin, "torchrun");
    let wd = work.to_str().unwrap().to_string();
    let p = profile_arg(&s.profile(|t| t.replace("/cvlabdata2/home/alice/project", &wd)));
    let doc =
        &yaml_docs(&ok(&["render", "ddp", "--profile", &p, "--workers", "4", "--", "train.py", "--name", "a b"]))[1];
    let job = kubelet_expand(container(doc)["command"][3].as_str().unwrap(), &[]);
    for index in ["0", "3"] {
        let out = Command::new("sh")
            .arg("-c")
            .arg(&job)
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .env("JOB_COMPLETION_INDEX", index)
            .output()
            .unwrap();
        let w = nul_words(&out.stdout);
        assert_eq!(
            w[2..],
            [
                "torchrun",
                "--nnodes=4",
                "--nproc-per-node=1",
                "--master-addr=ddp-0.ddp",
                "--master-port=29500",
                &format!("--node-rank={index}"),
                "train.py",
                "--name",
                "a b"
            ]
        );
    }
}
