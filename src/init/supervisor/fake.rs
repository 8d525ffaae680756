//! A fake [`Os`] for the supervisor's unit tests: a scripted process table
//! that reacts to signals as processes do, a virtual clock that only moves
//! while the supervisor waits, and a record of every `kill` and log line.
//! Nothing here touches the real system.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::libc;

use super::os::{Os, Reaped};
use crate::init::exit::Exit;
use crate::init::idle::{Busy, Watchdog};
use crate::init::procfs::ProcStat;

/// How a fake process takes a catchable stop signal (TERM, INT, HUP, QUIT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reaction {
    /// It dies of the signal.
    Dies,
    /// It catches and ignores it; SIGKILL ends it.
    Ignores,
    /// Stuck in the kernel (`D`): not even SIGKILL ends it.
    Stuck,
}

/// Something that happens at a point of virtual time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Happening {
    /// labinit receives this signal.
    Signal(i32),
    /// This process ends on its own.
    Exits(i32, Exit),
}

struct Proc {
    stat: ProcStat,
    reaction: Reaction,
}

/// One `kill` call as the supervisor made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Kill {
    /// Virtual time since the start.
    pub at: Duration,
    pub pid: i32,
    pub sig: i32,
}

pub(super) struct Fake {
    me: i32,
    start: Instant,
    clock: Duration,
    procs: BTreeMap<i32, Proc>,
    /// Ended children of labinit, in the order they ended.
    zombies: VecDeque<(i32, Exit)>,
    script: Vec<(Duration, Happening)>,
    /// Idle samples from this time on find nothing busy (before: busy).
    idle_from: Option<Duration>,
    /// `kill` fails with this errno for this pid.
    refuse: BTreeMap<i32, Errno>,
    waits: usize,
    /// A child of labinit ended since the last wait: SIGCHLD is pending.
    sigchld: bool,
    pub kills: Vec<Kill>,
    /// Every signal a process got (pid, signal), in order.
    pub delivered: Vec<(i32, i32)>,
    /// When each process ended (virtual time, pid).
    pub deaths: Vec<(Duration, i32)>,
    /// Log lines, `warning: ` before warnings.
    pub log: Vec<String>,
    pub released_pages: bool,
    pub restored_terminal: Option<i32>,
}

impl Fake {
    /// labinit as `me` (1: PID 1), nothing else running, time 0.
    pub(super) fn new(me: i32) -> Fake {
        let mut f = Fake {
            me,
            start: Instant::now(),
            clock: Duration::ZERO,
            procs: BTreeMap::new(),
            zombies: VecDeque::new(),
            script: Vec::new(),
            idle_from: None,
            refuse: BTreeMap::new(),
            waits: 0,
            sigchld: false,
            kills: Vec::new(),
            delivered: Vec::new(),
            deaths: Vec::new(),
            log: Vec::new(),
            released_pages: false,
            restored_terminal: None,
        };
        f.add(me, if me == 1 { 0 } else { 1 }, me, Reaction::Ignores);
        f
    }

    /// A process `pid`, child of `ppid`, leading its own group, in
    /// `session`.
    pub(super) fn add(&mut self, pid: i32, ppid: i32, session: i32, reaction: Reaction) -> &mut Fake {
        let stat = ProcStat {
            pid,
            name: format!("p{pid}"),
            state: if reaction == Reaction::Stuck { b'D' } else { b'S' },
            ppid,
            pgrp: pid,
            session,
            ticks: 0,
            children_ticks: 0,
            threads: 1,
            starttime: 0,
        };
        self.procs.insert(pid, Proc { stat, reaction });
        self
    }

    /// Put `pid` in the process group `pgrp`.
    pub(super) fn group(&mut self, pid: i32, pgrp: i32) -> &mut Fake {
        self.procs.get_mut(&pid).expect("a fake process").stat.pgrp = pgrp;
        self
    }

    /// At `at` (virtual time since the start), `what` happens.
    pub(super) fn at(&mut self, at: Duration, what: Happening) -> &mut Fake {
        self.script.push((at, what));
        self.script.sort_by_key(|(t, _)| *t);
        self
    }

    /// The idle watchdog finds nothing busy from `at` on.
    pub(super) fn idle_from(&mut self, at: Duration) -> &mut Fake {
        self.idle_from = Some(at);
        self
    }

    /// `kill` of `pid` fails with `errno`.
    pub(super) fn refuse(&mut self, pid: i32, errno: Errno) -> &mut Fake {
        self.refuse.insert(pid, errno);
        self
    }

    /// Virtual time now.
    pub(super) fn elapsed(&self) -> Duration {
        self.clock
    }

    /// Whether `pid` is alive (not ended, not a zombie).
    pub(super) fn alive(&self, pid: i32) -> bool {
        self.procs.get(&pid).is_some_and(|p| p.stat.state != b'Z')
    }

    /// The signals `pid` got, in order.
    pub(super) fn got(&self, pid: i32) -> Vec<i32> {
        self.delivered.iter().filter(|(p, _)| *p == pid).map(|(_, s)| *s).collect()
    }

    /// The first `kill` call that sent `sig`, if any.
    pub(super) fn first_kill(&self, sig: i32) -> Option<Kill> {
        self.kills.iter().find(|k| k.sig == sig).copied()
    }

    /// Whether a log line contains `text`.
    pub(super) fn logged(&self, text: &str) -> bool {
        self.log.iter().any(|l| l.contains(text))
    }

    fn end(&mut self, pid: i32, exit: Exit) {
        let me = self.me;
        let Some(p) = self.procs.get_mut(&pid) else { return };
        if p.stat.state == b'Z' {
            return;
        }
        // Its children are orphans now: labinit (PID 1 or subreaper) adopts them.
        let ppid = p.stat.ppid;
        self.deaths.push((self.clock, pid));
        for q in self.procs.values_mut() {
            if q.stat.ppid == pid {
                q.stat.ppid = me;
            }
        }
        if ppid == me {
            self.procs.get_mut(&pid).expect("present").stat.state = b'Z';
            self.zombies.push_back((pid, exit));
            self.sigchld = true;
        } else {
            // Its parent (part of the job) reaps it.
            self.procs.remove(&pid);
        }
    }

    fn deliver(&mut self, pid: i32, sig: i32) {
        self.delivered.push((pid, sig));
        let reaction = self.procs[&pid].reaction;
        let dies = match sig {
            libc::SIGKILL => reaction != Reaction::Stuck,
            libc::SIGTERM | libc::SIGINT | libc::SIGHUP | libc::SIGQUIT => reaction == Reaction::Dies,
            _ => false,
        };
        if dies {
            self.end(pid, Exit::Signal(sig));
        }
    }

    /// Live processes `kill(pid)` reaches.
    fn targets(&self, pid: i32) -> Vec<i32> {
        let live = self.procs.values().filter(|p| p.stat.state != b'Z' && p.stat.pid != self.me);
        match pid {
            -1 => live.map(|p| p.stat.pid).collect(),
            p if p < 0 => live.filter(|q| q.stat.pgrp == -p).map(|q| q.stat.pid).collect(),
            p => live.filter(|q| q.stat.pid == p).map(|q| q.stat.pid).collect(),
        }
    }

    /// Apply the first scripted happening; the signal, if it is one.
    fn happen(&mut self) -> Option<i32> {
        let (_, what) = self.script.remove(0);
        match what {
            Happening::Signal(sig) => Some(sig),
            Happening::Exits(pid, exit) => {
                self.end(pid, exit);
                std::mem::take(&mut self.sigchld).then_some(libc::SIGCHLD)
            }
        }
    }
}

impl Os for Fake {
    fn pid(&self) -> i32 {
        self.me
    }

    fn now(&self) -> Instant {
        self.start + self.clock
    }

    fn processes(&mut self) -> Vec<ProcStat> {
        self.procs.values().map(|p| p.stat.clone()).collect()
    }

    fn kill(&mut self, pid: i32, sig: i32) -> Result<(), Errno> {
        self.kills.push(Kill { at: self.clock, pid, sig });
        if let Some(e) = self.refuse.get(&pid) {
            return Err(*e);
        }
        let targets = self.targets(pid);
        if targets.is_empty() {
            return Err(Errno::ESRCH);
        }
        for t in targets {
            self.deliver(t, sig);
        }
        Ok(())
    }

    fn reap(&mut self) -> Reaped {
        if let Some((pid, exit)) = self.zombies.pop_front() {
            self.procs.remove(&pid);
            return Reaped::Child(pid, exit);
        }
        if self.procs.values().any(|p| p.stat.ppid == self.me) {
            Reaped::Running
        } else {
            Reaped::NoChildren
        }
    }

    fn wait_signal(&mut self, timeout: Duration) -> Option<i32> {
        self.waits += 1;
        assert!(self.waits < 100_000, "the supervisor does not end (virtual time {:?})", self.clock);
        if std::mem::take(&mut self.sigchld) {
            return Some(libc::SIGCHLD);
        }
        let until = self.clock + timeout;
        while let Some(&(at, _)) = self.script.first() {
            if at > until {
                break;
            }
            self.clock = self.clock.max(at);
            if let Some(sig) = self.happen() {
                return Some(sig);
            }
        }
        self.clock = until;
        None
    }

    fn idle_sample(&mut self, _: &mut Watchdog, _: &[i32], _: i32, _: Duration) -> Option<Busy> {
        let busy = self.idle_from.is_none_or(|t| self.clock < t);
        busy.then(|| Busy::Cpu { pid: 42, name: "python".into(), percent: 100.0 })
    }

    fn release_startup_pages(&mut self) {
        self.released_pages = true;
    }

    fn restore_terminal(&mut self, main: i32) {
        self.restored_terminal = Some(main);
    }

    fn info(&mut self, line: &str) {
        self.log.push(line.to_owned());
    }

    fn warn(&mut self, line: &str) {
        self.log.push(format!("warning: {line}"));
    }
}
