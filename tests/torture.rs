//! Crash consistency: `labinit setup` is SIGKILLed at random moments while it
//! provisions the account, on every fixture distribution. After each kill the
//! account files must still be sound (every pre-existing line byte-identical,
//! every user's primary group present, nothing left that blocks a start), and
//! the next, uninterrupted start must converge to exactly what a start that
//! was never interrupted produces.
//!
//! Trials per distribution: LABKIT_TORTURE_TRIALS (default 200, so `make test`
//! runs 1000 in all); seed: LABKIT_TORTURE_SEED (default fixed, reproducible).

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
