//! `labkit job`: the profile, what `render` prints for each form, and the
//! refusals (each input of issue 16 with a negative control). The command's
//! journey is in tests/job_command.rs, `labkit job init` in tests/job_init.rs,
//! the submit/shell/forward wrappers in tests/job_wrappers.rs.

#[path = "job/support.rs"]
mod support;

use support::*;

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

/// Without --profile, the profile is `$XDG_CONFIG_HOME/labkit/job.toml`, else
/// `$HOME/.config/labkit/job.toml`, from labkit's own environment; with
/// neither set, one clear refusal. Control: each variable alone finds its file.
#[test]
fn the_default_profile_comes_from_xdg_config_home_or_home() {
    let s = Scratch::new("default-path");
    let run = |vars: &[(&str, &std::path::Path)]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_labkit"));
        c.current_dir("/").args(["job", "render", "x"]).env_clear();
        c.env("PATH", std::env::var_os("PATH").unwrap_or_default());
        for (k, v) in vars {
            c.env(k, v);
        }
        c.output().expect("run labkit")
    };
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("neither HOME nor XDG_CONFIG_HOME is set; pass --profile FILE"), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());
    let xdg = s.join("xdg");
    std::fs::create_dir_all(xdg.join("labkit")).unwrap();
    std::fs::write(xdg.join("labkit/job.toml"), ISSUE_PROFILE).unwrap();
    let home = s.join("home");
    std::fs::create_dir_all(home.join(".config/labkit")).unwrap();
    std::fs::write(home.join(".config/labkit/job.toml"), ISSUE_PROFILE.replace("cvlab/pytorch", "cvlab/home")).unwrap();
    let o = run(&[("XDG_CONFIG_HOME", &xdg), ("HOME", &home)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("/cvlabsrc1/cvlab/pytorch_model_zoo"), "XDG_CONFIG_HOME wins:\n{}", stdout(&o));
    let o = run(&[("HOME", &home)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("/cvlabsrc1/cvlab/home_model_zoo"), "HOME alone:\n{}", stdout(&o));
    // A HOME without a profile names the file it looked for.
    let o = run(&[("HOME", &s.join("nobody"))]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("{}/.config/labkit/job.toml does not exist", s.join("nobody").display())),
        "{}",
        stderr(&o)
    );
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
