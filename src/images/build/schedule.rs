//! Which target may start now: the pure scheduling decisions of a build.

use crate::images::plan::{Plan, PlanParent};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Waiting,
    Running,
    Built,
    Failed,
    Skipped,
}

/// Which target may start now. A target starts once its in-plan parent is
/// built; a failure marks every waiting descendant skipped. Pure.
#[derive(Debug, Clone)]
pub struct Scheduler {
    pub names: Vec<String>,
    pub parent: Vec<Option<usize>>,
    pub state: Vec<State>,
}

impl Scheduler {
    pub(crate) fn new(plan: &Plan) -> Scheduler {
        let names: Vec<String> = plan.targets.iter().map(|t| t.name.clone()).collect();
        let parent = plan
            .targets
            .iter()
            .map(|t| match &t.parent {
                PlanParent::Target { target, .. } => names.iter().position(|n| n == target),
                PlanParent::Image { .. } => None,
            })
            .collect();
        let state = vec![State::Waiting; names.len()];
        Scheduler { names, parent, state }
    }

    /// Marks the next startable target running and returns it.
    pub(crate) fn next_ready(&mut self) -> Option<usize> {
        let i = (0..self.names.len()).find(|&i| {
            self.state[i] == State::Waiting && self.parent[i].is_none_or(|p| self.state[p] == State::Built)
        })?;
        self.state[i] = State::Running;
        Some(i)
    }

    /// Records a result; returns the targets newly skipped because of it.
    pub(crate) fn finish(&mut self, i: usize, ok: bool) -> Vec<usize> {
        self.state[i] = if ok { State::Built } else { State::Failed };
        let mut skipped = Vec::new();
        if !ok {
            // Targets are in parent-first order, so one pass covers grandchildren.
            for j in 0..self.names.len() {
                if let Some(p) = self.parent[j] {
                    let gone = p == i || skipped.contains(&p);
                    if gone && self.state[j] == State::Waiting {
                        self.state[j] = State::Skipped;
                        skipped.push(j);
                    }
                }
            }
        }
        skipped
    }

    pub(crate) fn count(&self, s: State) -> usize {
        self.state.iter().filter(|x| **x == s).count()
    }

    pub(crate) fn finished(&self) -> bool {
        self.count(State::Waiting) == 0 && self.count(State::Running) == 0
    }

    pub(crate) fn parent_name(&self, i: usize) -> Option<&str> {
        self.parent[i].map(|p| self.names[p].as_str())
    }
}
