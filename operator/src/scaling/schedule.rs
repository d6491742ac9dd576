//! Scheduled floors: "from 13:30 Europe/Paris every match day, for 3 h, at least 30".
//!
//! Engine time is seconds since the Unix epoch; each schedule is evaluated in its own time
//! zone (so daylight-saving changes move the window with the local clock). Cron searches
//! are cached until the next boundary, so a tick usually costs two comparisons.

use chrono::{DateTime, TimeZone, Utc};

use super::policy::{Schedule, Seconds};

#[derive(Clone, Debug, Default)]
pub struct ScheduleState {
    /// The window currently known: [start, end), and when to look again.
    start: Seconds,
    end: Seconds,
    recheck_at: Seconds,
    valid: bool,
}

fn to_utc(t: Seconds) -> Option<DateTime<Utc>> {
    let secs = t.floor();
    let nanos = ((t - secs) * 1e9) as u32;
    Utc.timestamp_opt(secs as i64, nanos.min(999_999_999))
        .single()
}

fn seconds(t: &DateTime<impl TimeZone>) -> Seconds {
    t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) / 1e9
}

impl ScheduleState {
    /// Whether `schedule` holds a floor at `now`. The floor starts `lead` seconds before the
    /// cron time, so replicas started for it are ready when the peak starts, and ends on
    /// time.
    pub fn active(&mut self, schedule: &Schedule, now: Seconds, lead: Seconds) -> bool {
        // Evaluated on a clock running `lead` ahead, where the window ends `lead` later.
        let ahead = now + lead;
        if !self.valid || ahead >= self.recheck_at || ahead < self.start {
            self.refresh(schedule, ahead, lead);
        }
        self.valid && ahead >= self.start && ahead < self.end
    }

    fn refresh(&mut self, schedule: &Schedule, now: Seconds, lead: Seconds) {
        let Some(utc) = to_utc(now) else {
            self.valid = false;
            return;
        };
        let local = utc.with_timezone(&schedule.time_zone);
        let previous = schedule.cron.find_previous_occurrence(&local, true).ok();
        let next = schedule.cron.find_next_occurrence(&local, false).ok();
        let (start, end) = match previous {
            Some(p) => {
                let s = seconds(&p);
                (s, s + schedule.duration + lead)
            }
            None => (f64::NEG_INFINITY, f64::NEG_INFINITY),
        };
        let next = next.map_or(f64::INFINITY, |n| seconds(&n));
        self.start = start;
        self.end = end;
        // Look again when the current window closes or the next one opens, whichever first.
        self.recheck_at = if end > now { end.min(next) } else { next };
        self.valid = true;
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn paris_afternoons() -> Schedule {
        Schedule {
            name: "match".into(),
            cron: croner::Cron::from_str("30 13 * * *").expect("valid cron"),
            time_zone: chrono_tz::Europe::Paris,
            duration: 3.0 * 3600.0,
            min_replicas: 30,
        }
    }

    fn at(s: &str) -> Seconds {
        seconds(&DateTime::parse_from_rfc3339(s).expect("valid time"))
    }

    #[test]
    fn a_floor_holds_from_the_local_cron_time_for_its_duration() {
        let s = paris_afternoons();
        let mut st = ScheduleState::default();
        // 13:30 in Paris is 11:30 UTC in summer (CEST).
        assert!(!st.active(&s, at("2026-07-01T11:29:00Z"), 0.0));
        assert!(st.active(&s, at("2026-07-01T11:30:00Z"), 0.0));
        assert!(st.active(&s, at("2026-07-01T14:29:59Z"), 0.0));
        assert!(!st.active(&s, at("2026-07-01T14:30:00Z"), 0.0));
    }

    #[test]
    fn a_floor_starts_one_lead_early_and_ends_on_time() {
        let s = paris_afternoons();
        let mut st = ScheduleState::default();
        assert!(!st.active(&s, at("2026-07-01T11:29:00Z"), 45.0));
        assert!(st.active(&s, at("2026-07-01T11:29:15Z"), 45.0));
        assert!(st.active(&s, at("2026-07-01T14:29:59Z"), 45.0));
        assert!(!st.active(&s, at("2026-07-01T14:30:00Z"), 45.0));
    }

    #[test]
    fn a_floor_follows_daylight_saving_time() {
        let s = paris_afternoons();
        let mut st = ScheduleState::default();
        // In winter (CET) 13:30 in Paris is 12:30 UTC.
        assert!(!st.active(&s, at("2026-01-15T12:00:00Z"), 0.0));
        assert!(st.active(&s, at("2026-01-15T12:30:00Z"), 0.0));
    }
}
