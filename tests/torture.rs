//! Crash consistency: `labinit setup` is SIGKILLed at random moments while it
//! provisions the account, on every fixture distribution. After each kill the
//! account files must still be sound (every pre-existing line byte-identical,
//! every user's primary group present, nothing left that blocks a start), and
//! the next, uninterrupted start must converge to exactly what a start that
//! was never interrupted produces.
//!
//! Trials per distribution: LABKIT_TORTURE_TRIALS (default 200, so `make test`
//! runs 1000 in all); seed: LABKIT_TORTURE_SEED (default fixed, reproducible).
//!
//! Exact kills: for every conflict path (new user, renamed user, renumbered
//! group with members, stale entries, renumbered user), labinit is run under
//! `strace` and SIGKILLed at each of its rename(2) calls in turn (backups,
//! journal, account files), and the start after that is killed again at each
//! of its first renames (a kill during the recovery); every next start must
//! converge to exactly the uninterrupted result.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use labkit::init::accounts::{Kind, Table};

const FILES: [(&str, Kind); 4] =
    [("passwd", Kind::Passwd), ("group", Kind::Group), ("shadow", Kind::Shadow), ("gshadow", Kind::Gshadow)];

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn setup_cmd(root: &Path, env: &[(String, String)]) -> Command {
    let mut c = Command::new(common::labinit());
    c.arg("setup").arg("--root").arg(root).env_clear().envs(env.iter().cloned()).env("LABKIT_QUIET", "1");
    c.stdout(Stdio::null()).stderr(Stdio::null());
    c
}

fn read_etc(root: &Path) -> Vec<Option<Vec<u8>>> {
    FILES.iter().map(|(f, _)| fs::read(root.join("etc").join(f)).ok()).collect()
}

fn restore(root: &Path, pristine: &[Option<Vec<u8>>]) {
    for ((f, _), data) in FILES.iter().zip(pristine) {
        let p = root.join("etc").join(f);
        let _ = fs::remove_file(&p);
        if let Some(d) = data {
            fs::write(&p, d).unwrap();
        }
    }
    for e in fs::read_dir(root.join("etc")).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.ends_with('-') || n.contains("labkit-tmp") {
            let _ = fs::remove_file(e.path());
        }
    }
    let _ = fs::remove_dir_all(root.join("home"));
}

/// The invariants that must hold at any instant, killed or not.
fn assert_sound(distro: &str, trial: u64, root: &Path, pristine: &[Option<Vec<u8>>], finals: &[Option<Vec<u8>>]) {
    let now = read_etc(root);
    for (((f, kind), (before, after)), cur) in FILES.iter().zip(pristine.iter().zip(finals)).zip(&now) {
        let ctx = format!("{distro} trial {trial}: /etc/{f}");
        let Some(cur) = cur else {
            assert!(before.is_none(), "{ctx} vanished");
            continue;
        };
        // Every line is either the old file's or the converged file's: no
        // torn line, no half-written file.
        let cur_text = Table::parse(*kind, cur).render();
        assert_eq!(&cur_text, cur, "{ctx} does not round-trip");
        let allowed: Vec<&[u8]> = before.iter().chain(after.iter()).flat_map(|d| d.split(|b| *b == b'\n')).collect();
        for line in cur.split(|b| *b == b'\n') {
            assert!(allowed.contains(&line), "{ctx}: unexpected line {:?}", String::from_utf8_lossy(line));
        }
        assert!(
            cur == before.as_ref().unwrap_or(&Vec::new()) || Some(cur) == after.as_ref(),
            "{ctx} is neither old nor new"
        );
    }
    // Every user's primary group exists (groups are written before users).
    let passwd = Table::parse(Kind::Passwd, now[0].as_deref().unwrap_or_default());
    let group = Table::parse(Kind::Group, now[1].as_deref().unwrap_or_default());
    for name in passwd.names() {
        let i = passwd.find_name(&name).unwrap();
        let gid = passwd.id_at(i, 3).unwrap();
        let known_before =
            Table::parse(Kind::Passwd, pristine[0].as_deref().unwrap_or_default()).find_name(&name).is_some();
        assert!(
            known_before || group.find_id(gid).is_some(),
            "{distro} trial {trial}: user {name} has gid {gid} with no group"
        );
    }
}

fn torture(distro: &str, env: &[(String, String)], trials: u64, rng: &mut Rng) {
    let root = common::fixture_root(distro);
    let pristine = read_etc(root.path());
    // Reference: uninterrupted starts; the fastest one aims the kills (the
    // first is slowed by cold caches and would aim past the end).
    let mut span = Duration::MAX;
    for _ in 0..5 {
        restore(root.path(), &pristine);
        let started = Instant::now();
        assert!(setup_cmd(root.path(), env).status().unwrap().success(), "{distro}: reference start failed");
        span = span.min(started.elapsed());
    }
    let span = span.max(Duration::from_micros(200));
    let finals = read_etc(root.path());
    assert_ne!(finals, pristine, "{distro}: the reference start changed nothing");
    let mut interrupted = 0;
    for trial in 0..trials {
        restore(root.path(), &pristine);
        let mut child = setup_cmd(root.path(), env).spawn().unwrap();
        let delay = Duration::from_nanos(rng.next() % (span.as_nanos() as u64));
        std::thread::sleep(delay);
        let _ = child.kill();
        let status = child.wait().unwrap();
        if !status.success() {
            interrupted += 1;
        }
        assert_sound(distro, trial, root.path(), &pristine, &finals);
        // The next start converges to the uninterrupted result.
        assert!(setup_cmd(root.path(), env).status().unwrap().success(), "{distro} trial {trial}: restart failed");
        let now = read_etc(root.path());
        if now != finals {
            let show = |v: &[Option<Vec<u8>>]| {
                v.iter()
                    .map(|d| String::from_utf8_lossy(d.as_deref().unwrap_or_default()).into_owned())
                    .collect::<Vec<_>>()
            };
            panic!(
                "{distro} trial {trial}: restart did not converge:\n{:#?}\nexpected:\n{:#?}",
                show(&now),
                show(&finals)
            );
        }
        assert!(
            !fs::read_dir(root.join("etc"))
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().contains("labkit-tmp")),
            "{distro} trial {trial}: temp file left after a clean start"
        );
    }
    // Negative control: the kills must actually land mid-provisioning often.
    assert!(interrupted * 4 >= trials, "{distro}: only {interrupted}/{trials} runs were interrupted; aim is off");
}

#[test]
fn random_sigkill_during_provisioning_never_corrupts_and_restarts_converge() {
    let trials = env_u64("LABKIT_TORTURE_TRIALS", 200);
    let mut rng = Rng(env_u64("LABKIT_TORTURE_SEED", 0x1abc17) | 1);
    let alice = common::alice_env();
    for distro in ["debian-12", "alpine-3", "fedora-40", "docker-stacks"] {
        torture(distro, &alice, trials, &mut rng);
    }
    // A conflict case: uid 1000 belongs to `ubuntu`, which is renamed in place.
    torture("ubuntu-24.04", &common::cluster_env("alice", "1000", "CVLAB-unit", "11166"), trials, &mut rng);
}

// ---- A kill at every rename of every conflict path (issue 11 §2) ----

/// One conflict path: a fixture, edits to its account files, a request.
struct ConflictPath {
    name: &'static str,
    distro: &'static str,
    /// (file, text appended to it, (old, new) replacement)
    edits: Vec<(&'static str, &'static str, Option<(&'static str, &'static str)>)>,
    env: Vec<(String, String)>,
}

fn conflict_paths() -> Vec<ConflictPath> {
    vec![
        ConflictPath { name: "new user and group", distro: "debian-12", edits: vec![], env: common::alice_env() },
        ConflictPath {
            name: "renamed user (ubuntu at uid 1000, a member of adm)",
            distro: "ubuntu-24.04",
            edits: vec![
                ("group", "", Some(("\nadm:x:4:\n", "\nadm:x:4:syslog,ubuntu\n"))),
                ("gshadow", "", Some(("\nadm:*::\n", "\nadm:*::syslog,ubuntu\n"))),
            ],
            env: common::cluster_env("alice", "1000", "CVLAB-unit", "11166"),
        },
        ConflictPath {
            name: "renumbered group with members (CLUSTER_GROUP_NAME=ubuntu, a new gid)",
            distro: "ubuntu-24.04",
            edits: vec![("passwd", "carol:x:1001:1000::/home/carol:/bin/sh\n", None)],
            env: common::cluster_env("alice", "123456", "ubuntu", "11166"),
        },
        ConflictPath {
            name: "stale entries (the name at uid 1005, the uid on bob)",
            distro: "debian-12",
            edits: vec![
                ("passwd", "alice:x:1005:1005::/home/alice:/bin/sh\nbob:x:123456:1005::/home/bob:/bin/sh\n", None),
                ("group", "staff2:x:1005:alice,bob\n", None),
                ("shadow", "alice:$6$stale:19000:0:99999:7:::\nbob:$6$bob:19000:0:99999:7:::\n", None),
            ],
            env: common::alice_env(),
        },
        ConflictPath {
            name: "renumbered user (jovyan 1000 -> 123456)",
            distro: "docker-stacks",
            edits: vec![],
            env: common::cluster_env("jovyan", "123456", "CVLAB-unit", "11166"),
        },
    ]
}

fn prepare(path: &ConflictPath) -> common::TempDir {
    let root = common::fixture_root(path.distro);
    for (file, append, replace) in &path.edits {
        let p = root.join("etc").join(file);
        let mut text = fs::read_to_string(&p).unwrap();
        if let Some((old, new)) = replace {
            assert!(text.contains(old), "{}: {file} has no {old:?}", path.name);
            text = text.replace(old, new);
        }
        text.push_str(append);
        fs::write(&p, text).unwrap();
    }
    root
}

/// `labinit setup` under strace, SIGKILLed at its `when`-th rename(2)
/// (`None`: traced only, the rename calls written to `trace`).
fn traced_setup(root: &Path, env: &[(String, String)], when: Option<usize>, trace: &Path) -> std::process::ExitStatus {
    let mut c = Command::new("strace");
    c.args(["-f", "-qq", "-o"]).arg(trace).args(["-e", "trace=rename,renameat,renameat2"]);
    if let Some(k) = when {
        c.arg("-e").arg(format!("inject=rename,renameat,renameat2:signal=SIGKILL:when={k}"));
    }
    c.arg(common::labinit()).arg("setup").arg("--root").arg(root);
    c.env_clear().envs(env.iter().cloned()).env("LABKIT_QUIET", "1").stdout(Stdio::null()).stderr(Stdio::null());
    c.status().expect("strace must be installed (tests/tools/deps.sh)")
}

fn renames_in(trace: &Path) -> usize {
    let text = fs::read_to_string(trace).unwrap();
    let n = text.lines().filter(|l| l.contains("rename")).count();
    // /etc is written with rename(2); PID 1's record under /run (last) with renameat.
    let etc = text.lines().filter(|l| l.contains("rename(\"")).count();
    let record = text.lines().filter(|l| l.contains("renameat(") && l.contains(".job.tmp")).count();
    assert_eq!(n, etc + record, "only rename(2) is used for /etc:\n{text}");
    // The kill points: strace counts each syscall of the set on its own, so
    // `when=K` reaches the K-th rename(2); the record's renameat comes after.
    etc
}

fn leftovers(root: &Path) -> Vec<String> {
    fs::read_dir(root.join("etc"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("labkit-tmp") || n.contains("labkit-journal"))
        .collect()
}

#[test]
fn a_kill_at_every_rename_of_every_conflict_path_converges() {
    let scratch = common::TempDir::new("strace");
    let trace = scratch.join("trace");
    let mut kills = 0;
    let mut report = Vec::new();
    for path in conflict_paths() {
        // The uninterrupted start, and how many renames it makes.
        let root = prepare(&path);
        let pristine = read_etc(root.path());
        assert!(traced_setup(root.path(), &path.env, None, &trace).success(), "{}: reference start", path.name);
        let renames = renames_in(&trace);
        let finals = read_etc(root.path());
        assert_ne!(finals, pristine, "{}: the reference start changed nothing", path.name);
        assert!(renames >= 5, "{}: {renames} renames (backups, journal, files)", path.name);
        let mut path_kills = 0;
        for k in 1..=renames {
            // Then, for the start after the kill, a kill at each of its own
            // first renames too (a kill during the recovery), and 0 = none.
            for j in 0..=4 {
                let root = prepare(&path);
                let st = traced_setup(root.path(), &path.env, Some(k), &trace);
                assert!(!st.success(), "{} rename {k}: the kill did not land", path.name);
                path_kills += 1;
                let now = read_etc(root.path());
                for (i, (f, _)) in FILES.iter().enumerate() {
                    assert!(
                        now[i] == pristine[i] || now[i] == finals[i],
                        "{} killed at rename {k}: /etc/{f} is neither the old nor the new file",
                        path.name
                    );
                }
                if j > 0 {
                    let st = traced_setup(root.path(), &path.env, Some(j), &trace);
                    if st.success() {
                        continue; // fewer than j renames were left to do: same as j = 0
                    }
                    path_kills += 1;
                }
                let st = setup_cmd(root.path(), &path.env).status().unwrap();
                assert!(st.success(), "{} killed at rename {k} then {j}: the restart failed", path.name);
                let now = read_etc(root.path());
                assert!(
                    now == finals,
                    "{} killed at rename {k} then {j}: the restart did not converge:\n{}",
                    path.name,
                    FILES
                        .iter()
                        .zip(now.iter().zip(&finals))
                        .filter(|(_, (a, b))| a != b)
                        .map(|((f, _), (a, b))| format!(
                            "/etc/{f}:\n{}\n-- expected:\n{}",
                            String::from_utf8_lossy(a.as_deref().unwrap_or_default()),
                            String::from_utf8_lossy(b.as_deref().unwrap_or_default())
                        ))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
                assert!(leftovers(root.path()).is_empty(), "{} {k}/{j}: {:?} left", path.name, leftovers(root.path()));
            }
        }
        kills += path_kills;
        report.push(format!("{}: {renames} renames, {path_kills} kills", path.name));
    }
    eprintln!("kill at every rename: {kills} kills in all\n  {}", report.join("\n  "));
    assert!(kills >= 5 * 5 * 5, "{kills} kills");
}
