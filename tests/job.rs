//! `labkit job`: the profile, what `render` prints for each form, the
//! refusals (each input of issue 16 with a negative control), the command's
//! journey through YAML, the kubelet and the shell into the real labinit, and
//! the argv of the submit/shell/forward wrappers (no cluster here: fakes
//! record what kubectl and runai would get).

#[path = "job/support.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use support::*;

fn profile_arg(p: &std::path::Path) -> String {
    p.to_str().unwrap().to_string()
}

// ---------------------------------------------------------------- refusals

/// Every bad input of the issue: exit 2, one clear line on stderr, nothing on
/// stdout. Each row has a negative control: the same command without the
/// fault succeeds.
#[test]
fn bad_input_is_one_error_before_anything_is_printed() {
    let s = Scratch::new("refuse");
    let good = profile_arg(&s.profile(|p| p.to_string()));
    let missing_uid = {
        let p = s.join("missing.toml");
        std::fs::write(&p, ISSUE_PROFILE.replace("uid   = 123456\n", "")).unwrap();
        profile_arg(&p)
    };
    let long = "a".repeat(64);
    let just_right = "a".repeat(63);
    // (bad args, the phrase the error must contain, the fixed args)
    let rows: Vec<(Vec<&str>, &str, Vec<&str>)> = vec![
        (vec!["x", "--profile", &missing_uid], "missing key user.uid", vec!["x", "--profile", &good]),
        (vec!["x", "--gpu", "0.5"], "fraction of a GPU", vec!["x", "--gpu", "1"]),
        (vec!["x", "--to", "pod", "--gpu", "0.5"], "fraction of a GPU", vec!["x", "--to", "runai", "--gpu", "0.5"]),
        (vec![&long], "64 characters", vec![&just_right]),
        (vec!["alice_run"], "contains '_'", vec!["alice-run"]),
        (vec!["x-"], "starts or ends", vec!["x"]),
        (vec!["x", "--timeout", "4 hours"], "--timeout", vec!["x", "--timeout", "4h"]),
        (vec!["x", "--timeout", "4y"], "not one of s, m, h, d", vec!["x", "--timeout", "90s"]),
        (vec!["x", "--port", "0"], "out of range", vec!["x", "--port", "1"]),
        (vec!["x", "--port", "65536"], "out of range", vec!["x", "--port", "65535"]),
        (vec!["x", "--port", "http"], "not a port", vec!["x", "--port", "8888"]),
        (vec!["x", "--port", "8888", "--port", "8888"], "twice", vec!["x", "--port", "8888", "--port", "8889"]),
        (vec!["x", "--priority", "-1"], "cannot start with '-'", vec!["x", "--priority", "1"]),
        (vec!["x", "--to", "runai", "--priority", "1"], "RunAI orders", vec!["x", "--to", "runai"]),
        (vec!["x", "--to", "yaml"], "not one of job, pod, runai", vec!["x", "--to", "pod"]),
        (vec!["x", "--gpu", "1.5"], "whole number", vec!["x", "--gpu", "2"]),
        (vec!["x", "--workers", "1", "--", "t.py"], "2 to 1000", vec!["x", "--workers", "2", "--", "t.py"]),
        (
            vec!["x", "--workers", "2", "--", "python", "t.py"],
            "torchrun starts",
            vec!["x", "--workers", "2", "--", "t.py"],
        ),
        (vec!["x", "--workers", "2", "-c", "t.py"], "not -c", vec!["x", "--workers", "2", "--", "t.py"]),
        (
            vec!["x", "--to", "pod", "--workers", "2", "--", "t.py"],
            "submit-dist",
            vec!["x", "--workers", "2", "--", "t.py"],
        ),
        (vec!["9x", "--workers", "2", "--", "t.py"], "start with a letter", vec!["x9", "--workers", "2", "--", "t.py"]),
        (
            vec![&just_right, "--workers", "2", "--", "t.py"],
            "too long for 2 workers",
            vec!["x", "--workers", "2", "--", "t.py"],
        ),
        (vec!["x", "--to", "runai", "--grace", "21s"], "20s or less", vec!["x", "--to", "runai", "--grace", "20s"]),
        (vec!["x", "-c", "true", "--", "true"], "not both", vec!["x", "-c", "true"]),
        (vec!["x", "--", "-m", "pkg"], "must be the program", vec!["x", "--", "python", "-m", "pkg"]),
        (vec!["x", "--", "", "a"], "must be the program", vec!["x", "--", "a", ""]),
        (
            vec!["x", "--workers", "2", "--port", "29500", "--", "t.py"],
            "rendezvous",
            vec!["x", "--workers", "2", "--port", "29501", "--", "t.py"],
        ),
    ];
    for (bad, phrase, fixed) in rows {
        let with_profile = |a: &[&str]| -> Vec<String> {
            let mut v: Vec<String> = vec!["render".into()];
            if !a.contains(&"--profile") {
                v.extend(["--profile".into(), good.clone()]);
            }
            v.extend(a.iter().map(|s| s.to_string()));
            v
        };
        let args = with_profile(&bad);
        let o = labkit_job(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{bad:?} should be refused; stderr: {err}");
        assert!(o.stdout.is_empty(), "{bad:?} printed something: {}", stdout(&o));
        assert!(err.contains(phrase), "{bad:?}: want {phrase:?} in: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{bad:?}: one line wanted: {err}");
        let args = with_profile(&fixed);
        let o = labkit_job(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(o.status.code(), Some(0), "control {fixed:?}: {}", stderr(&o));
        assert!(!o.stdout.is_empty(), "control {fixed:?} printed nothing");
    }
}

#[test]
fn a_broken_profile_names_every_problem_and_the_file() {
    let s = Scratch::new("badprofile");
    let p = s.profile(|t| {
        t.replace("uid   = 123456\n", "")
            .replace("workdir   = \"/cvlabdata2/home/alice/project\"", "workdir = \"project\"")
    });
    let o = labkit_job(&["render", "x", "--profile", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    let e = stderr(&o);
    assert!(e.contains(p.to_str().unwrap()), "{e}");
    assert!(e.contains("missing key user.uid") && e.contains("job.workdir \"project\""), "{e}");
    // No profile at all: says how to make one.
    let o = labkit_job(&["render", "x", "--profile", s.join("none.toml").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("labkit job init"), "{}", stderr(&o));
    // The default path is under HOME (here a directory that does not exist).
    let o = labkit_job(&["render", "x"]);
    assert!(stderr(&o).contains("/nonexistent-labkit-test-home/.config/labkit/job.toml"), "{}", stderr(&o));
}

// ---------------------------------------------------------------- what render prints

#[test]
fn job_has_the_labels_policy_env_volumes_gpu_and_ports_of_the_issue() {
    let s = Scratch::new("job");
    let p = profile_arg(&s.profile(|t| t.to_string()));
    let out = ok(&[
        "render",
        "Alice-Train",
        "--profile",
        &p,
        "--gpu",
        "2",
        "--priority",
        "3",
        "--timeout",
        "4h",
        "--port",
        "8888",
        "--port",
        "6006",
        "--",
        "python",
        "train.py",
    ]);
    let docs = yaml_docs(&out);
    assert_eq!(docs.len(), 1);
    let job = &docs[0];
    assert_eq!(job["apiVersion"], "batch/v1");
    assert_eq!(job["kind"], "Job");
    assert_eq!(job["metadata"]["name"], "alice-train", "upper case is lowered");
    assert_eq!(job["metadata"]["namespace"], "runai-cvlab");
    for labels in [&job["metadata"]["labels"], &job["spec"]["template"]["metadata"]["labels"]] {
        assert_eq!(labels["user"], serde_json::json!("alice"));
        // A string, not the number 3: the guide's trap.
        assert_eq!(labels["priority"], serde_json::json!("3"));
    }
    assert!(out.contains("priority: '3'"), "the YAML itself quotes it:\n{out}");
    assert_eq!(job["spec"]["backoffLimit"], 0);
    assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 7 * 86400);
    let ps = pod_spec(job);
    assert_eq!(ps["restartPolicy"], "Never");
    let c = container(job);
    assert_eq!(c["image"], "ic-registry.epfl.ch/cvlab/lis/lab-python-ml:cuda12");
    assert_eq!(c["command"][0], "/opt/lab/labinit");
    assert_eq!(c["command"][1], "run");
    assert_eq!(c["resources"]["limits"]["nvidia.com/gpu"], "2");
    assert_eq!(c["ports"], serde_json::json!([{"containerPort": 8888}, {"containerPort": 6006}]));
    let env = env_pairs(c);
    let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "CLUSTER_USER",
            "CLUSTER_USER_ID",
            "CLUSTER_GROUP_NAME",
            "CLUSTER_GROUP_ID",
            "TORCH_HOME",
            "LABKIT_GRACE",
            "LABKIT_TIMEOUT"
        ]
    );
    assert_eq!(env[1].1, "123456");
    assert_eq!(env[3].1, "11166");
    assert_eq!(env[6].1, "4h");
    // /dev/shm is memory, and the profile's claim is mounted.
    let vols = ps["volumes"].as_array().unwrap();
    let shm = vols.iter().find(|v| v["emptyDir"].is_object()).expect("an emptyDir");
    assert_eq!(shm["emptyDir"]["medium"], "Memory");
    let mounts = c["volumeMounts"].as_array().unwrap();
    assert!(mounts.iter().any(|m| m["mountPath"] == "/dev/shm" && m["name"] == shm["name"]));
    let data = vols.iter().find(|v| v["persistentVolumeClaim"].is_object()).unwrap();
    assert_eq!(data["persistentVolumeClaim"]["claimName"], "pv-cvlabdata2", "plain pods use pv-…, not runai-pv-…");
    assert!(mounts.iter().any(|m| m["mountPath"] == "/cvlabdata2" && m["name"] == data["name"]));
    // Negative control: without --gpu and --port there is no limit and no port.
    let bare = yaml_docs(&ok(&["render", "x", "--profile", &p]));
    let c = container(&bare[0]);
    assert!(c.get("resources").is_none() && c.get("ports").is_none(), "{c}");
    assert_eq!(c["command"], serde_json::json!(["/opt/lab/labinit", "wait"]), "no command: labinit waits");
}

/// `LABKIT_GRACE` < `terminationGracePeriodSeconds`, for the default, the
/// profile's and flags' values, fractions included; parsed back with
/// labinit's own parser.
#[test]
fn labinit_grace_is_strictly_below_the_pods_termination_grace() {
    let s = Scratch::new("grace");
    let p = profile_arg(&s.profile(|t| t.to_string()));
    let with_profile_grace = profile_arg(&{
        let f = s.join("g.toml");
        std::fs::write(&f, ISSUE_PROFILE.replace("project   = \"cvlab\"", "project = \"cvlab\"\ngrace = \"45s\""))
            .unwrap();
        f
    });
    let cases: Vec<(Vec<&str>, f64)> = vec![
        (vec!["--profile", &p], 20.0),
        (vec!["--profile", &with_profile_grace], 45.0),
        (vec!["--profile", &with_profile_grace, "--grace", "2m"], 120.0),
        (vec!["--profile", &p, "--grace", "0.5s"], 0.5),
        (vec!["--profile", &p, "--grace", "29.9"], 29.9),
        (vec!["--profile", &p, "--grace", "0"], 0.0),
    ];
    for (args, want) in cases {
        for to in ["job", "pod"] {
            let mut a = vec!["render", "g", "--to", to];
            a.extend(&args);
            let doc = &yaml_docs(&ok(&a))[0];
            let grace = env_pairs(container(doc)).into_iter().find(|(k, _)| k == "LABKIT_GRACE").unwrap().1;
            let d = labkit::init::duration::parse(&grace).unwrap();
            assert!((d.as_secs_f64() - want).abs() < 1e-9, "{args:?}: LABKIT_GRACE={grace}");
            let t = pod_spec(doc)["terminationGracePeriodSeconds"].as_i64().unwrap();
            assert!(d < std::time::Duration::from_secs(t as u64), "{args:?}: {grace} vs {t}");
            // The margin covers labinit's 5 s for the services.
            assert!(t as f64 - d.as_secs_f64() > 5.0, "{args:?}: {grace} vs {t}");
        }
    }
    // runai cannot set terminationGracePeriodSeconds (30 s): its grace stays ≤ 20 s.
    let line = ok(&["render", "g", "--to", "runai", "--profile", &p]);
    assert!(line.contains("LABKIT_GRACE=20s"), "{line}");
}

#[test]
fn pod_form_is_the_guides_bare_pod() {
    let s = Scratch::new("pod");
    let p = profile_arg(&s.profile(|t| t.to_string()));
    let docs = yaml_docs(&ok(&["render", "dev", "--to", "pod", "--profile", &p, "--gpu", "1", "--interactive"]));
    assert_eq!(docs.len(), 1);
    let pod = &docs[0];
    assert_eq!(pod["apiVersion"], "v1");
    assert_eq!(pod["kind"], "Pod");
    assert_eq!(pod["metadata"]["labels"]["priority"], "0");
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    let c = container(pod);
    assert_eq!(c["stdin"], true);
    assert_eq!(c["tty"], true);
    assert!(pod["spec"].get("schedulerName").is_none());
}

/// `--gpu 0.5` in YAML only with RunAI's scheduler: the documented
/// annotation and schedulerName, and no nvidia.com/gpu limit.
#[test]
fn fractional_gpu_in_yaml_uses_the_runai_scheduler_annotation() {
    let s = Scratch::new("frac");
    let p = profile_arg(&s.profile(|t| t.to_string()));
    for to in ["job", "pod"] {
        let doc =
            &yaml_docs(&ok(&["render", "half", "--to", to, "--profile", &p, "--gpu", ".5", "--runai-scheduler"]))[0];
        let meta = if to == "job" { &doc["spec"]["template"]["metadata"] } else { &doc["metadata"] };
        assert_eq!(meta["annotations"]["gpu-fraction"], "0.5", "{to}");
        assert_eq!(pod_spec(doc)["schedulerName"], "runai-scheduler");
        assert!(container(doc).get("resources").is_none());
    }
    // Negative control: whole GPUs with the scheduler keep the plain limit and no annotation.
    let doc = &yaml_docs(&ok(&["render", "one", "--profile", &p, "--gpu", "1", "--runai-scheduler"]))[0];
    assert!(doc["spec"]["template"]["metadata"].get("annotations").is_none());
    assert_eq!(container(doc)["resources"]["limits"]["nvidia.com/gpu"], "1");
}

#[test]
fn workers_render_an_indexed_job_a_headless_service_and_torchrun() {
    let s = Scratch::new("workers");
    let p = profile_arg(&s.profile(|t| t.to_string()));
    let docs = yaml_docs(&ok(&[
        "render",
        "ddp",
        "--profile",
        &p,
        "--workers",
        "3",
        "--gpu",
        "4",
        "--",
        "train.py",
        "--epochs",
        "3",
    ]));
    assert_eq!(docs.len(), 2, "Service, then Job");
    let (svc, job) = (&docs[0], &docs[1]);
    assert_eq!(svc["kind"], "Service");
    assert_eq!(svc["metadata"]["name"], "ddp");
    assert_eq!(svc["spec"]["clusterIP"], "None");
    assert_eq!(svc["spec"]["publishNotReadyAddresses"], true);
    assert_eq!(svc["spec"]["selector"]["batch.kubernetes.io/job-name"], "ddp");
    assert_eq!(job["spec"]["completionMode"], "Indexed");
    assert_eq!(job["spec"]["completions"], 3);
    assert_eq!(job["spec"]["parallelism"], 3);
    assert_eq!(pod_spec(job)["subdomain"], "ddp", "pods resolve as ddp-INDEX.ddp");
    assert_eq!(container(job)["resources"]["limits"]["nvidia.com/gpu"], "4");
    let script = container(job)["command"][3].as_str().unwrap().to_string();
    assert!(script.contains("--master-addr=ddp-0.ddp"), "{script}");
    assert!(script.contains("--nnodes=3") && script.contains("--nproc-per-node=4"), "{script}");
    assert!(script.contains("$$JOB_COMPLETION_INDEX"), "{script}");
}

// ---------------------------------------------------------------- the command's journey

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

/// NUL-terminated words (empty words kept).
fn nul_words(out: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = out.split(|b| *b == 0).map(|w| String::from_utf8_lossy(w).into_owned()).collect();
    assert_eq!(v.pop().as_deref(), Some(""), "output must end with NUL: {out:?}");
    v
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

// ---------------------------------------------------------------- init

/// `labkit job init` run as a system account that is not root: as
/// `daemon` through setpriv when the suite runs as root (its ids then come
/// from /etc/passwd, independently of `id`), else as the caller.
fn init_as_non_root(scratch: &Scratch, args: &[&str]) -> std::process::Output {
    let mut c = if nix::unistd::getuid().is_root() {
        // A copy daemon can execute wherever the checkout lives (/root is 0700).
        let bin = scratch.join("labkit");
        std::fs::copy(env!("CARGO_BIN_EXE_labkit"), &bin).unwrap();
        let mut c = Command::new("setpriv");
        c.args(["--reuid=daemon", "--regid=daemon", "--clear-groups"]).arg(bin);
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_labkit"))
    };
    c.arg("job").args(args).env_clear().env("PATH", "/usr/bin:/bin").env("HOME", "/nonexistent").output().unwrap()
}

#[test]
fn init_takes_ids_from_this_machine_and_refuses_to_overwrite() {
    let s = Scratch::new("init");
    std::fs::set_permissions(s.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = s.join("cfg/labkit/job.toml");
    let ps = path.to_str().unwrap();
    let o = init_as_non_root(
        &s,
        &[
            "init",
            "--profile",
            ps,
            "--image",
            "img:1",
            "--workdir",
            "/data/me",
            "--namespace",
            "runai-cvlab",
            "--project",
            "cvlab",
            "--volume",
            "pv-cvlabdata2:runai-pv-cvlabdata2:/cvlabdata2",
            "--env",
            "TORCH_HOME=/models",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("wrote"), "{}", stdout(&o));
    let p = labkit::job::profile::load(&path).unwrap();
    // The ids of the account that ran it, from the account database, not from `id`.
    let me = if nix::unistd::getuid().is_root() {
        nix::unistd::User::from_name("daemon").unwrap().unwrap()
    } else {
        nix::unistd::User::from_uid(nix::unistd::getuid()).unwrap().unwrap()
    };
    let group = nix::unistd::Group::from_gid(me.gid).unwrap().unwrap();
    assert_eq!((p.user.name.as_str(), p.user.uid, p.user.gid), (me.name.as_str(), me.uid.as_raw(), me.gid.as_raw()));
    assert_eq!(p.user.group, group.name);
    assert_eq!(p.job.image, "img:1");
    assert_eq!(p.volumes[0].runai_claim.as_deref(), Some("runai-pv-cvlabdata2"));
    assert_eq!(p.env, vec![("TORCH_HOME".to_string(), "/models".to_string())]);
    // The written profile renders.
    ok(&["render", "x", "--profile", ps]);
    let before = std::fs::read(&path).unwrap();
    let ids = ["--user", "alice", "--uid", "123456", "--group", "CVLAB-unit", "--gid", "11166"];
    // Again without --force: refused, file unchanged.
    let mut a = vec!["init", "--profile", ps, "--image", "other", "--workdir", "/x"];
    a.extend(ids);
    let o = labkit_job(&a);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // Bad input with --force: refused, file unchanged.
    let mut a = vec!["init", "--profile", ps, "--force", "--image", "i", "--workdir", "relative"];
    a.extend(ids);
    let o = labkit_job(&a);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // With --force and explicit cluster ids (a laptop's ids are not the cluster's).
    let mut a = vec!["init", "--profile", ps, "--force", "--image", "other", "--workdir", "/x"];
    a.extend(ids);
    ok(&a);
    let p = labkit::job::profile::load(&path).unwrap();
    assert_eq!(
        (p.user.name.as_str(), p.user.uid, p.user.group.as_str(), p.user.gid),
        ("alice", 123456, "CVLAB-unit", 11166)
    );
    assert_eq!(p.job.image, "other");
    assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1, "no temp file left");
}

/// Root on the machine running init is not a cluster account: refused
/// unless the ids are given. (Needs root, as `make unit` and CI run.)
#[test]
fn init_as_root_needs_explicit_ids() {
    let s = Scratch::new("init-root");
    let ps = s.join("job.toml");
    let o = labkit_job(&["init", "--profile", ps.to_str().unwrap(), "--image", "i", "--workdir", "/w"]);
    if nix::unistd::getuid().is_root() {
        assert_eq!(o.status.code(), Some(2));
        assert!(stderr(&o).contains("you are root"), "{}", stderr(&o));
        assert!(!ps.exists());
    } else {
        // Control for a non-root run: the caller's own ids are accepted.
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        std::fs::remove_file(&ps).unwrap();
    }
    // Explicit ids are written whoever runs it.
    ok(&[
        "init",
        "--profile",
        ps.to_str().unwrap(),
        "--image",
        "i",
        "--workdir",
        "/w",
        "--user",
        "alice",
        "--uid",
        "123456",
        "--group",
        "g",
        "--gid",
        "5",
    ]);
    assert!(ps.exists());
}

// ---------------------------------------------------------------- wrappers

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
