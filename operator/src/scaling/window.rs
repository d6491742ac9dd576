//! Sliding windows over ticks, aggregated as they go so a decision never rescans history.

use std::collections::VecDeque;

use super::policy::Seconds;

/// Max (or min) over the values pushed in the last `window` seconds: a monotonic deque,
/// O(1) amortized per push, so a 3600 s stabilization window costs what a 15 s one does.
#[derive(Clone, Debug, Default)]
pub struct Extremum {
    /// Times increase front to back; values strictly decrease (for max) front to back.
    items: VecDeque<(Seconds, u32)>,
    keep_max: bool,
}

impl Extremum {
    pub fn max() -> Self {
        Self {
            items: VecDeque::new(),
            keep_max: true,
        }
    }

    pub fn min() -> Self {
        Self {
            items: VecDeque::new(),
            keep_max: false,
        }
    }

    fn dominates(&self, new: u32, old: u32) -> bool {
        if self.keep_max {
            new >= old
        } else {
            new <= old
        }
    }

    /// Forgets values recorded at or before `cutoff` (the HPA keeps those strictly after it).
    pub fn evict(&mut self, cutoff: Seconds) {
        while self.items.front().is_some_and(|(t, _)| *t <= cutoff) {
            self.items.pop_front();
        }
    }

    /// The extremum of what is held, combined with `with`.
    pub fn get(&self, with: u32) -> u32 {
        match self.items.front() {
            Some((_, v)) if self.keep_max => (*v).max(with),
            Some((_, v)) => (*v).min(with),
            None => with,
        }
    }

    pub fn push(&mut self, t: Seconds, v: u32) {
        while self
            .items
            .back()
            .is_some_and(|(_, old)| self.dominates(v, *old))
        {
            self.items.pop_back();
        }
        self.items.push_back((t, v));
    }
}

/// Mean of the samples pushed in the last `window` seconds, with a running sum.
#[derive(Clone, Debug, Default)]
pub struct Mean {
    items: VecDeque<(Seconds, f64)>,
    sum: f64,
}

impl Mean {
    pub fn push(&mut self, t: Seconds, v: f64) {
        self.items.push_back((t, v));
        self.sum += v;
    }

    /// Forgets samples at or before `cutoff`, always keeping the newest one so a window
    /// shorter than the poll period degenerates to "the latest sample".
    pub fn evict(&mut self, cutoff: Seconds) {
        while self.items.len() > 1 && self.items.front().is_some_and(|(t, _)| *t <= cutoff) {
            if let Some((_, v)) = self.items.pop_front() {
                self.sum -= v;
            }
        }
        if self.items.len() == 1 {
            // Resynchronize so rounding errors of the running sum never accumulate.
            self.sum = self.items.front().map_or(0.0, |(_, v)| *v);
        }
    }

    pub fn mean(&self) -> Option<f64> {
        if self.items.is_empty() {
            None
        } else {
            Some(self.sum / self.items.len() as f64)
        }
    }
}

/// Recent scale events, for the HPA's per-period rate limits.
#[derive(Clone, Debug, Default)]
pub struct Events {
    items: VecDeque<(Seconds, u32)>,
}

impl Events {
    pub fn push(&mut self, t: Seconds, change: u32) {
        self.items.push_back((t, change));
    }

    /// Forgets events older than the longest period any policy looks at.
    pub fn evict(&mut self, cutoff: Seconds) {
        while self.items.front().is_some_and(|(t, _)| *t <= cutoff) {
            self.items.pop_front();
        }
    }

    /// Replicas changed in (now - period, now], as the HPA's `getReplicasChangePerPeriod`.
    /// The list holds at most one event per tick inside the longest period, so this is short.
    pub fn change_since(&self, cutoff: Seconds) -> u32 {
        self.items
            .iter()
            .rev()
            .take_while(|(t, _)| *t > cutoff)
            .map(|(_, c)| *c)
            .sum()
    }

    /// The events kept, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (Seconds, u32)> + '_ {
        self.items.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extremum_tracks_the_max_over_a_sliding_window() {
        let mut w = Extremum::max();
        for (t, v) in [(0.0, 5), (15.0, 3), (30.0, 4), (45.0, 1)] {
            w.push(t, v);
        }
        w.evict(0.0);
        assert_eq!(w.get(0), 4);
        w.evict(30.0);
        assert_eq!(w.get(0), 1);
        assert_eq!(w.get(2), 2);
    }

    #[test]
    fn extremum_tracks_the_min_over_a_sliding_window() {
        let mut w = Extremum::min();
        for (t, v) in [(0.0, 1), (15.0, 3), (30.0, 2)] {
            w.push(t, v);
        }
        assert_eq!(w.get(9), 1);
        w.evict(0.0);
        assert_eq!(w.get(9), 2);
    }

    #[test]
    fn mean_keeps_the_latest_sample_when_the_window_is_shorter_than_a_tick() {
        let mut m = Mean::default();
        m.push(0.0, 2.0);
        m.push(10.0, 4.0);
        m.evict(5.0);
        assert_eq!(m.mean(), Some(4.0));
        m.evict(100.0);
        assert_eq!(m.mean(), Some(4.0));
    }
}
