use super::*;
use std::collections::BTreeMap;

/// Options of a one-job build without network, volumes or push.
fn plain_opts() -> BuildOptions {
    BuildOptions {
        jobs: 1,
        push: false,
        network: None,
        volumes: vec![],
        labinit: None,
        log_dir: "l".into(),
        context: "ctx".into(),
        summary_json: None,
    }
}

fn target(name: &str, parent: Option<&str>, level: usize) -> PlannedTarget {
    PlannedTarget {
        name: name.into(),
        image: name.into(),
        variant: "v".into(),
        level,
        dockerfile: format!("images/generated/{name}/v/Dockerfile"),
        context: "ctx".into(),
        parent: match parent {
            Some(p) => PlanParent::Target { target: p.into(), reference: format!("r/{p}:v") },
            None => PlanParent::Image { reference: "docker.io/library/ubuntu:24.04".into(), digest: None, pull: true },
        },
        args: BTreeMap::from([("BASE_IMAGE".to_string(), "x".to_string())]),
        tags: vec![format!("r/{name}:v")],
        platforms: vec![],
        build_inputs_sha256: String::new(),
        eol: None,
    }
}

fn plan(ts: Vec<PlannedTarget>) -> Plan {
    Plan { schema: 1, generator: String::new(), levels: vec![], targets: ts }
}

#[test]
fn scheduler_waits_for_parents_and_skips_descendants() {
    let p = plan(vec![
        target("a", None, 0),
        target("b", None, 0),
        target("a1", Some("a"), 1),
        target("a11", Some("a1"), 2),
        target("b1", Some("b"), 1),
    ]);
    let mut s = Scheduler::new(&p);
    assert_eq!(s.next_ready(), Some(0));
    assert_eq!(s.next_ready(), Some(1));
    assert_eq!(s.next_ready(), None, "children wait for their parents");
    let skipped = s.finish(0, false);
    assert_eq!(skipped, vec![2, 3], "a's child and grandchild are skipped");
    s.finish(1, true);
    assert_eq!(s.next_ready(), Some(4));
    s.finish(4, true);
    assert!(s.finished());
    assert_eq!(s.count(State::Built), 2);
    assert_eq!(s.count(State::Skipped), 2);
}

#[test]
fn builder_driver_is_parsed() {
    let out = "Name:   ci\nDriver: docker-container\nLast Activity: x\n";
    assert_eq!(parse_builder(out), Some(("ci".into(), "docker-container".into())));
    assert_eq!(parse_builder("Name: default\nDriver: docker\n").unwrap().1, "docker");
    assert_eq!(parse_builder("no builder here"), None);
}

#[test]
fn current_step_and_log_tail() {
    let docker = "Step 1/3 : FROM x\n ---> abc\nStep 2/3 : RUN  apt-get   update\nGet:1 http://…\n";
    assert_eq!(current_step(docker).as_deref(), Some("Step 2/3 : RUN apt-get update"));
    assert_eq!(current_step("STEP 4/9: COPY a b\nok\n").as_deref(), Some("STEP 4/9: COPY a b"));
    assert_eq!(current_step("#7 [3/12] RUN make\n#7 0.5 compiling\n").as_deref(), Some("#7 [3/12] RUN make"));
    assert_eq!(current_step("nothing yet\n"), None);
    let log: String = (1..=30).map(|i| format!("line {i}\n\n")).collect();
    let tail = tail_lines(&log, 20);
    assert_eq!(tail.len(), 20);
    assert_eq!((tail[0].as_str(), tail[19].as_str()), ("line 11", "line 30"));
    assert_eq!(tail_lines("a\n", 20), ["a"]);
}

#[test]
fn pull_and_parent_id() {
    let opts = plain_opts();
    let docker = Engine { flavor: Flavor::Docker, program: "docker".into() };
    let podman = Engine { flavor: Flavor::Podman, program: "podman".into() };
    let base = target("a", None, 0);
    assert!(engine_args(&docker, &base, &opts, None, Path::new("i")).unwrap().contains(&"--pull".to_string()));
    assert!(engine_args(&podman, &base, &opts, None, Path::new("i")).unwrap().contains(&"--pull=always".to_string()));
    let mut local = base.clone();
    local.parent = PlanParent::Image { reference: "localhost/x:1".into(), digest: None, pull: false };
    assert!(!engine_args(&docker, &local, &opts, None, Path::new("i"))
        .unwrap()
        .iter()
        .any(|a| a.starts_with("--pull")));
    let child = target("c", Some("a"), 1);
    let a = engine_args(&docker, &child, &opts, Some("sha256:abc"), Path::new("c.iid")).unwrap();
    assert!(a.windows(2).any(|w| w == ["--build-arg", "BASE_IMAGE=sha256:abc"]), "{a:?}");
    assert!(a.contains(&"--iidfile=c.iid".to_string()));
    assert!(!a.iter().any(|x| x.starts_with("--pull")));
}

#[test]
fn engine_args_shape() {
    let e = Engine { flavor: Flavor::Podman, program: "podman".into() };
    let opts = BuildOptions {
        network: Some("host".into()),
        volumes: vec!["/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro".into()],
        ..plain_opts()
    };
    let a = engine_args(&e, &target("a", None, 0), &opts, None, Path::new("i")).unwrap();
    assert_eq!(a[..3], ["build", "-f", "images/generated/a/v/Dockerfile"]);
    assert!(a.windows(2).any(|w| w == ["-t", "r/a:v"]));
    assert!(a.windows(2).any(|w| w == ["--build-arg", "BASE_IMAGE=x"]));
    assert!(a.contains(&"--network=host".to_string()));
    assert!(a.windows(2).any(|w| w[0] == "-v" && w[1].ends_with(":ro")));
    assert_eq!(a.last().unwrap(), "ctx");

    let docker = Engine { flavor: Flavor::Docker, program: "docker".into() };
    let err = engine_args(&docker, &target("a", None, 0), &opts, None, Path::new("i")).unwrap_err();
    assert!(err.to_string().contains("podman"));
}

#[test]
fn podman_gets_per_build_labels_docker_does_not_need_them() {
    let mut t = target("a", None, 0);
    t.args.insert("VCS_REF".into(), "abc123".into());
    t.args.insert("BUILD_DATE".into(), "2026-11-29".into());
    let opts = plain_opts();
    let podman = Engine { flavor: Flavor::Podman, program: "podman".into() };
    let a = engine_args(&podman, &t, &opts, None, Path::new("i")).unwrap();
    assert!(a.windows(2).any(|w| w == ["--label", "org.opencontainers.image.revision=abc123"]));
    assert!(a.windows(2).any(|w| w == ["--label", "org.opencontainers.image.created=2026-11-29"]));
    let docker = Engine { flavor: Flavor::Docker, program: "docker".into() };
    assert!(!engine_args(&docker, &t, &opts, None, Path::new("i")).unwrap().contains(&"--label".to_string()));
}

/// A fake podman in a fresh directory: `build` writes an image ID to its
/// `--iidfile`, and fails for the tag `r/<fail>:v`.
fn fake_podman(fail: &str) -> (PathBuf, Engine) {
    use std::os::unix::fs::PermissionsExt;
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let dir = std::env::temp_dir().join(format!("labkit-build-sink-{}-{stamp}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let program = dir.join("podman");
    let script = format!(
        "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in --iidfile=*) iid=\"${{a#--iidfile=}}\";; esac; done\n\
         case \" $* \" in *\" -t r/{fail}:v \"*) echo simulated failure >&2; exit 1;; esac\n\
         [ -n \"$iid\" ] && echo sha256:0123 > \"$iid\"\nexit 0\n"
    );
    std::fs::write(&program, script).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Another test's fork may still hold the file open for writing for a
    // moment (ETXTBSY): wait until the script runs.
    for _ in 0..100 {
        match Command::new(&program).arg("probe").status() {
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) => std::thread::sleep(Duration::from_millis(10)),
            _ => break,
        }
    }
    (dir, Engine { flavor: Flavor::Podman, program })
}

#[test]
fn progress_goes_to_the_sink_and_a_failure_skips_its_children() {
    for (fail, built, failed, skipped) in [("b", 1, 1, 1), ("none", 3, 0, 0)] {
        let (dir, engine) = fake_podman(fail);
        let opts = BuildOptions { log_dir: dir.join("logs"), ..plain_opts() };
        let p = plan(vec![target("a", None, 0), target("b", None, 0), target("b1", Some("b"), 1)]);
        prepare(&p, &engine, &opts).unwrap();
        let mut lines: Vec<String> = Vec::new();
        let summary = run(&dir, &p, &engine, &opts, &mut |l: &str| lines.push(l.to_string())).unwrap();
        let text = lines.join("\n");
        assert!(text.starts_with("build: 3 target(s)"), "{text}");
        assert!(text.contains("a: built sha256:0123"), "{text}");
        assert!(text.contains(&format!("{built} built, {failed} failed, {skipped} skipped")), "{text}");
        if failed > 0 {
            assert!(text.contains("b: FAILED after"), "{text}");
            assert!(text.contains("  | simulated failure"), "the failed log's tail: {text}");
            assert!(text.contains("b1: skipped, its parent failed"), "{text}");
            assert!(!summary.success());
        } else {
            // Negative control: nothing fails, the child builds on its parent's ID.
            assert!(text.contains("b1: started on b sha256:0123"), "{text}");
            assert!(summary.success());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
