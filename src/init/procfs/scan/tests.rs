//! Tests of [`super::StatReader`] against this machine's `/proc` and fake ones.

use super::*;
use crate::init::procfs::parse_stat;

#[test]
fn followed_processes_are_dropped_once_reaped() {
    let mut r = StatReader::new();
    let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let pid = child.id() as i32;
    let mut seen = 0;
    r.for_each(Path::new("/proc"), 100.0, false, |p| seen += usize::from(p.pid == pid));
    assert_eq!(seen, 1);
    assert!(r.kept.iter().any(|k| k.pid == pid));
    // Second scan reads by the process's clock.
    let mut name = String::new();
    r.for_each(Path::new("/proc"), 100.0, false, |p| {
        if p.pid == pid {
            name = p.name.to_owned();
        }
    });
    assert_eq!(name, "sleep");
    child.kill().unwrap();
    child.wait().unwrap();
    let mut after = 0;
    r.for_each(Path::new("/proc"), 100.0, false, |p| after += usize::from(p.pid == pid));
    assert_eq!(after, 0, "a reaped process is gone");
    assert!(!r.kept.iter().any(|k| k.pid == pid));
}

/// A `/proc` whose `self` is another process (another PID namespace)
/// is never asked by clock or `loadavg`: every scan reads `stat`, CPU
/// time in clock ticks. Control: this namespace's `/proc` is.
#[test]
fn a_proc_of_another_namespace_is_read_from_stat() {
    let dir = std::env::temp_dir().join(format!("labkit-procfs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("4242")).unwrap();
    std::fs::write(dir.join("loadavg"), "0.10 0.20 0.30 2/178 4242\n").unwrap();
    std::os::unix::fs::symlink("1", dir.join("self")).unwrap();
    let stat = |ticks: u32| {
        let line = format!("4242 (trainer) R 1 4242 4242 0 -1 0 0 0 0 0 {ticks} 0 0 0 20 0 1 0 777 0 0\n");
        std::fs::write(dir.join("4242/stat"), line).unwrap();
    };
    let mut r = StatReader::new();
    let scan = |r: &mut StatReader| {
        let mut seen = Vec::new();
        r.for_each(&dir, 100.0, false, |s| seen.push((s.pid, s.name.to_owned(), s.cpu_seconds, s.previous)));
        seen
    };
    stat(250);
    assert_eq!(scan(&mut r), [(4242, "trainer".to_owned(), 2.5, None)]);
    assert!(r.root.as_ref().unwrap().loadavg.is_none(), "not asked: another namespace");
    stat(300);
    assert_eq!(scan(&mut r), [(4242, "trainer".to_owned(), 3.0, Some(2.5))], "re-read every scan");
    std::fs::remove_dir_all(dir.join("4242")).unwrap();
    assert!(scan(&mut r).is_empty(), "gone when its directory is");
    let _ = std::fs::remove_dir_all(&dir);
    // Control: the real /proc of this namespace is read by clock.
    let mut own = StatReader::new();
    own.for_each(Path::new("/proc"), 100.0, false, |_| {});
    assert!(own.root.as_ref().unwrap().loadavg.is_some());
}

#[test]
fn names_are_kept_whole_up_to_the_kernels_length() {
    assert_eq!(short_name("python3"), "python3", "control: a short name is unchanged");
    assert_eq!(short_name("fifteen_bytes_x"), "fifteen_bytes_x");
    assert_eq!(short_name("sixteen_bytes_xy"), "sixteen_bytes_x");
    // Cut at a character boundary: é is two bytes, 15 would split one.
    assert_eq!(short_name("éééééééé"), "ééééééé");
    let stat = parse_stat(
        "7 (\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}) S 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0",
    )
    .unwrap();
    assert_eq!(Kept::new(&stat, 1, 0).name(), "\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}");
}

/// The clock id is the one the C library hands out for a pid.
/// Control: another pid's differs.
#[test]
fn the_process_clock_is_the_c_librarys() {
    let me = std::process::id() as i32;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: a valid out pointer.
    assert_eq!(unsafe { libc::clock_getcpuclockid(me, &mut clock) }, 0);
    assert_eq!(process_clock(me), clock);
    assert_ne!(process_clock(me + 1), clock);
    assert!(process_cpu_ns(me).is_some());
    assert_eq!(process_cpu_ns(-5), None, "no such process");
}

/// CPU time sums every thread: a program whose main thread waits while
/// a worker computes is using CPU (`/proc/PID/schedstat`, the main
/// thread's alone, showed it idle). Control: the worker sleeps.
#[test]
fn cpu_time_counts_every_thread_not_the_main_one_alone() {
    let used = |work: &str| {
        let code = format!(
            "import threading, time\ndef work():\n    end = time.time() + 30\n    while time.time() < end: {work}\nt = threading.Thread(target=work); t.start(); t.join()"
        );
        let mut child = std::process::Command::new("python3").args(["-c", &code]).spawn().expect("python3");
        let pid = child.id() as i32;
        let mut r = StatReader::new();
        let cpu = |r: &mut StatReader| {
            let mut d = None;
            r.for_each(Path::new("/proc"), 100.0, false, |s| {
                if s.pid == pid {
                    d = s.previous.map(|p| s.cpu_seconds - p);
                }
            });
            d
        };
        std::thread::sleep(std::time::Duration::from_millis(200));
        cpu(&mut r);
        std::thread::sleep(std::time::Duration::from_millis(500));
        let d = cpu(&mut r).expect("followed");
        child.kill().unwrap();
        child.wait().unwrap();
        d
    };
    let busy = used("pass");
    assert!(busy > 0.1, "a worker thread spinning for 0.5 s used {busy} s");
    let idle = used("time.sleep(0.05)");
    assert!(idle < 0.1, "control: a sleeping worker used {idle} s");
}

/// A loop of steps shorter than the interval shows as the CPU time of
/// the children its shell reaped; a process started since the previous
/// scan counts with all its CPU time (on the first scan nothing is
/// known). Control: the same loop of sleeping steps.
#[test]
fn reaped_children_and_new_processes_count_their_cpu() {
    let used = |step: &str| {
        let script = format!("while :; do {step}; done");
        let mut child = std::process::Command::new("sh").args(["-c", &script]).spawn().unwrap();
        let pid = child.id() as i32;
        let mut r = StatReader::new();
        let scan = |r: &mut StatReader| {
            let mut used = None;
            r.for_each(Path::new("/proc"), 100.0, false, |s| {
                if s.pid == pid {
                    used = Some(s.used_since());
                }
            });
            used.expect("the loop is listed")
        };
        assert_eq!(scan(&mut r), None, "first scan: nothing known before");
        std::thread::sleep(std::time::Duration::from_millis(800));
        let used = scan(&mut r).expect("followed");
        child.kill().unwrap();
        child.wait().unwrap();
        used
    };
    let busy = used("timeout 0.1 sh -c 'while :; do :; done'");
    assert!(busy > 0.3, "0.8 s of 0.1 s CPU-bound steps counted {busy} s");
    let idle = used("sleep 0.1");
    assert!(idle < 0.1, "control: sleeping steps counted {idle} s");
    // A process new to a later scan: previous 0, its whole CPU time.
    let mut r = StatReader::new();
    r.for_each(Path::new("/proc"), 100.0, false, |_| {});
    let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let pid = child.id() as i32;
    let mut previous = None;
    r.for_each(Path::new("/proc"), 100.0, false, |s| {
        if s.pid == pid {
            previous = Some(s.previous);
        }
    });
    assert_eq!(previous, Some(Some(0.0)));
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Following processes keeps no descriptor open: each would hold a
/// 4 KiB kernel buffer charged to the container. Counted are this process's
/// descriptors into the children's `/proc` entries (other tests of this
/// binary open and close files meanwhile). Control: the count sees a
/// descriptor this test opens on a child's `stat`.
#[test]
fn following_processes_keeps_no_descriptor_open() {
    let mut children: Vec<_> =
        (0..20).map(|_| std::process::Command::new("sleep").arg("30").spawn().unwrap()).collect();
    let dirs: Vec<String> = children.iter().map(|c| format!("/proc/{}/", c.id())).collect();
    let into_children = || {
        let links =
            std::fs::read_dir("/proc/self/fd").unwrap().flatten().filter_map(|e| std::fs::read_link(e.path()).ok());
        links.filter(|l| dirs.iter().any(|d| l.to_string_lossy().starts_with(d.as_str()))).count()
    };
    let mut r = StatReader::new();
    let mut n = 0;
    for _ in 0..4 {
        r.for_each(Path::new("/proc"), 100.0, false, |_| n += 1);
    }
    assert!(n >= 80, "the children were followed");
    assert_eq!(into_children(), 0, "no descriptor per process");
    let extra = std::fs::File::open(format!("{}stat", dirs[0])).unwrap();
    assert_eq!(into_children(), 1, "control");
    drop(extra);
    for c in &mut children {
        c.kill().unwrap();
        c.wait().unwrap();
    }
}

#[test]
fn scans_see_new_and_ended_processes_and_the_previous_cpu_time() {
    let mut r = StatReader::new();
    let look = |r: &mut StatReader, pid: i32| {
        let (mut n, mut previous) = (0, None);
        r.for_each(Path::new("/proc"), 100.0, false, |s| {
            if s.pid == pid {
                n += 1;
                previous = s.previous;
            }
        });
        (n, previous)
    };
    let mut a = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let pa = a.id() as i32;
    assert_eq!(look(&mut r, pa), (1, None), "new: no previous CPU time");
    // A scan with nothing new (the listing of /proc may be skipped).
    let (n, previous) = look(&mut r, pa);
    assert_eq!(n, 1);
    assert!(previous.is_some(), "followed: the previous scan's CPU time");
    a.kill().unwrap();
    a.wait().unwrap();
    assert_eq!(look(&mut r, pa).0, 0, "an ended process is gone");
    // A process started after a scan is found by the next one.
    let mut b = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    assert_eq!(look(&mut r, b.id() as i32).0, 1);
    b.kill().unwrap();
    b.wait().unwrap();
}

#[test]
fn a_process_that_execs_shows_its_new_name() {
    // A kept process that execs shows its new name on the next scan.
    let mut r = StatReader::new();
    let mut child = std::process::Command::new("sh")
        .args(["-c", "read x; exec sleep 30"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let name_of = |r: &mut StatReader| {
        let mut n = String::new();
        r.for_each(Path::new("/proc"), 100.0, false, |p| {
            if p.pid == pid {
                n = p.name.to_owned();
            }
        });
        n
    };
    assert_eq!(name_of(&mut r), "sh");
    use std::io::Write;
    child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let mut renamed = String::new();
    for _ in 0..200 {
        renamed = name_of(&mut r);
        if renamed == "sleep" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(renamed, "sleep");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A child followed by earlier scans that ends and is reaped adds to its
/// parent's reaped CPU only what it used since the previous scan (what it
/// had used by then was counted with the child). Control: the child's own
/// CPU at that scan is well above the margin, so counting its whole CPU time
/// again would fail the bound.
#[test]
fn a_reaped_child_counts_only_its_cpu_since_the_previous_scan() {
    let mut parent = std::process::Command::new("sh")
        .args(["-c", "timeout 1 sh -c 'while :; do :; done'; sleep 30"])
        .spawn()
        .unwrap();
    let pid = parent.id() as i32;
    let mut r = StatReader::new();
    // (CPU of the parent's descendants, the parent's reaped CPU): the child
    // is `timeout`, which runs the loop; `timeout` reaps it, the parent
    // reaps `timeout`.
    let scan = |r: &mut StatReader| {
        let (mut all, mut reaped) = (Vec::new(), 0.0);
        r.for_each(Path::new("/proc"), 100.0, false, |s| {
            all.push((s.pid, s.ppid, s.cpu_seconds));
            if s.pid == pid {
                reaped = s.reaped_seconds;
            }
        });
        let children: Vec<i32> = all.iter().filter(|p| p.1 == pid).map(|p| p.0).collect();
        let below: f64 = all.iter().filter(|p| p.1 == pid || children.contains(&p.1)).map(|p| p.2).sum();
        (below, reaped)
    };
    std::thread::sleep(std::time::Duration::from_millis(100));
    scan(&mut r);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (c2, _) = scan(&mut r);
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let (_, reaped) = scan(&mut r);
    parent.kill().unwrap();
    parent.wait().unwrap();
    assert!(c2 > 0.2, "the loop computed {c2} s by the second scan");
    assert!(reaped <= 1.0 - c2 + 0.05, "reaped {reaped} s, the loop had {c2} s counted already");
    assert!(reaped > 0.0, "what it used after the second scan counts");
}

/// Review r16: the credit for ended processes walks each one's chain of
/// ended ancestors with a linear search per step: a chain of n processes,
/// each the parent of the next, that all end between two scans (a deep
/// recursion of `sh` or `make`, killed at once) costs about n³/4 steps in
/// PID 1. Measured (debug build, fake `/proc`): 1000 → 0.37 s, 2000 →
/// 2.9 s; 6000 would take over a minute, during which PID 1 neither reaps
/// nor passes signals on. Hang guard: 6000 ended in one scan within 10 s
/// (a linear credit takes milliseconds). Control: the same 6000 with no
/// parent links between them (each a child of pid 1).
#[test]
fn a_long_chain_of_ended_processes_is_credited_in_time() {
    assert!(ended_chain_scan(6000, true) < std::time::Duration::from_secs(10));
}

#[test]
fn control_many_ended_processes_without_a_chain_are_credited_in_time() {
    assert!(ended_chain_scan(6000, false) < std::time::Duration::from_secs(10));
}

/// A fake `/proc` (read from `stat`, another namespace) with `n` processes,
/// a chain when `chain` (pid 1000+i is the child of 999+i), all but the
/// first ended in the second scan; the time of that scan.
fn ended_chain_scan(n: usize, chain: bool) -> std::time::Duration {
    let dir = std::env::temp_dir().join(format!("labkit-chain-{}-{chain}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink("1", dir.join("self")).unwrap();
    for i in 0..n {
        let pid = 1000 + i;
        let ppid = if chain { pid - 1 } else { 1 };
        std::fs::create_dir_all(dir.join(pid.to_string())).unwrap();
        let line = format!("{pid} (sh) S {ppid} {pid} {pid} 0 -1 0 0 0 0 0 5 0 0 0 20 0 1 0 777 0 0\n");
        std::fs::write(dir.join(format!("{pid}/stat")), line).unwrap();
    }
    let mut r = StatReader::new();
    let mut seen = 0;
    r.for_each(&dir, 100.0, false, |_| seen += 1);
    assert_eq!(seen, n);
    for i in 1..n {
        std::fs::remove_dir_all(dir.join((1000 + i).to_string())).unwrap();
    }
    let t = std::time::Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    let d = dir.clone();
    std::thread::spawn(move || {
        let mut left = 0;
        r.for_each(&d, 100.0, false, |_| left += 1);
        let _ = tx.send(left);
    });
    // Wait at most 30 s (the thread is left behind when it takes longer).
    let left = rx.recv_timeout(std::time::Duration::from_secs(30));
    let took = t.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    if let Ok(left) = left {
        assert_eq!(left, 1, "the first process is left");
    }
    took
}
