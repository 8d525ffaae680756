//! Benchmarks for the image family, run on demand (they are `#[ignore]`d so
//! `cargo test` stays fast):
//!
//!   cargo test --release --test images_bench -- --ignored --nocapture --test-threads=1
//!
//! 1. Render time of the whole family (load manifest + templates, render every
//!    Dockerfile in memory); target ≤ 20 ms.
//! 2. `labkit build` wall time with the fake engine's simulated durations, for
//!    --jobs 1 (serial), 2 and 3, against the critical path (the floor).
mod images_support;
use images_support::*;

use std::time::{Duration, Instant};

use labkit::images::{self, BaseOverrides, Layout};

#[test]
#[ignore]
fn bench_render_family() {
    let layout = Layout::new(repo());
    let mut times = Vec::new();
    let mut files = 0;
    for _ in 0..50 {
        let t0 = Instant::now();
        let (family, templates) = images::load(&layout, &BaseOverrides::new()).unwrap();
        let r = images::render_family(&family, &templates).unwrap();
        times.push(t0.elapsed());
        files = r.files.len();
    }
    times.sort();
    let median = times[times.len() / 2];
    let max = *times.last().unwrap();
    println!(
        "render: {files} Dockerfiles, median {:.2} ms, max {:.2} ms over {} runs (target <= 20 ms): {}",
        ms(median),
        ms(max),
        times.len(),
        if median <= Duration::from_millis(20) { "ok" } else { "OVER TARGET" }
    );
    assert!(median <= Duration::from_millis(20), "render median {:.2} ms exceeds 20 ms", ms(median));
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[test]
#[ignore]
fn bench_build_parallelism() {
    // Simulated durations per image (seconds), the same for every variant.
    let durations = [("lab-base:", 0.6), ("lab-pytorch:", 0.4), ("lab-python-ml:", 0.3)];
    let critical: f64 = durations.iter().map(|d| d.1).sum();
    let serial = critical * 3.0;
    println!(
        "build (fake engine, 9 targets = 3 variants x lab-base {}s -> lab-pytorch {}s -> lab-python-ml {}s):",
        durations[0].1, durations[1].1, durations[2].1
    );
    println!("  sum of durations {serial:.1}s, critical path (floor) {critical:.1}s");
    let mut walls = Vec::new();
    for jobs in [1, 2, 3] {
        let s = family_copy();
        script(&s.join("fakebin/docker"), FAKE_ENGINE);
        let table = durations.iter().map(|(p, d)| format!("{p} {d}\n")).collect::<String>();
        s.write("durations", &table);
        let t0 = Instant::now();
        let o = labkit_cmd(s.path())
            .args([
                "build",
                "--revision",
                "r",
                "--created",
                "2026-01-01T00:00:00Z",
                "--jobs",
                &jobs.to_string(),
                "--engine",
            ])
            .arg(s.join("fakebin/docker"))
            .env("FAKE_ENGINE_LOG", s.join("engine.log"))
            .env("FAKE_ENGINE_DURATIONS", s.join("durations"))
            .output()
            .unwrap();
        let wall = t0.elapsed().as_secs_f64();
        expect(o, 0);
        walls.push(wall);
        println!(
            "  --jobs {jobs}: wall {wall:.2}s, {:.2}x faster than serial, {:.0}% above the critical path",
            walls[0] / wall,
            (wall / critical - 1.0) * 100.0
        );
    }
    assert!(walls[2] < walls[0] * 0.6, "--jobs 3 should cut the wall time well below serial");
    assert!(walls[2] >= critical, "no run can beat the critical path");
}
