//! The controllers' notion of time. The scaling engine takes time as input; this is where
//! that input comes from. `dev` runs it faster than real time, tests under
//! `tokio::time::pause()` step it, and `run` uses it at speed 1, where it is the wall clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::time::Instant;

/// Seconds since the Unix epoch that advance `speed` times faster than tokio's clock from the
/// moment the clock was made. Built on `tokio::time::Instant`, so a paused tokio runtime
/// pauses it too.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: Instant,
    origin_unix: f64,
    speed: f64,
}

impl Clock {
    /// Wall-clock time.
    pub fn system() -> Self {
        Self::scaled(unix_now(), 1.0)
    }

    /// Starts at `origin_unix` and runs `speed` times faster than real time. A speed that is
    /// not a positive finite number runs at real time.
    pub fn scaled(origin_unix: f64, speed: f64) -> Self {
        Self {
            origin: Instant::now(),
            origin_unix,
            speed: if speed.is_finite() && speed > 0.0 {
                speed
            } else {
                1.0
            },
        }
    }

    pub fn speed(&self) -> f64 {
        self.speed
    }

    /// Now, in seconds since the Unix epoch.
    pub fn now(&self) -> f64 {
        self.origin_unix + self.origin.elapsed().as_secs_f64() * self.speed
    }

    /// Now as a Kubernetes timestamp.
    pub fn time(&self) -> Time {
        time_at(self.now())
    }

    /// The real duration that `seconds` of this clock's time take.
    pub fn real(&self, seconds: f64) -> Duration {
        Duration::from_secs_f64((seconds / self.speed).clamp(0.0, 1e9))
    }

    /// Sleeps until this clock reads `unix` (at once if it already has).
    pub async fn sleep_until(&self, unix: f64) {
        let ahead = unix - self.now();
        if ahead > 0.0 {
            tokio::time::sleep(self.real(ahead)).await;
        }
    }

    /// Sleeps for `seconds` of this clock's time.
    pub async fn sleep(&self, seconds: f64) {
        tokio::time::sleep(self.real(seconds)).await;
    }
}

/// Wall-clock time in seconds since the Unix epoch (for Kubernetes timestamps, which are
/// wall-clock whatever the controllers' clock says).
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A Kubernetes timestamp for a Unix time (clamped to what a timestamp can hold).
pub fn time_at(unix: f64) -> Time {
    use k8s_openapi::jiff::Timestamp;
    // The float-to-int cast saturates (NaN gives 0); the clamp keeps it within years
    // -9999..=9999. (A clamp to ±1e18 ns would stop the clock at 2001-09-09.)
    let nanos = ((unix * 1e9) as i128).clamp(
        Timestamp::MIN.as_nanosecond(),
        Timestamp::MAX.as_nanosecond(),
    );
    Time(Timestamp::from_nanosecond(nanos).unwrap_or(Timestamp::UNIX_EPOCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_scaled_clock_runs_faster_than_tokio_time() {
        let clock = Clock::scaled(1_000.0, 60.0);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!((clock.now() - 1_120.0).abs() < 1e-6, "{}", clock.now());
        assert_eq!(clock.real(60.0), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn sleeping_until_a_past_instant_returns_at_once() {
        let clock = Clock::scaled(1_000.0, 10.0);
        let before = Instant::now();
        clock.sleep_until(900.0).await;
        assert_eq!(before.elapsed(), Duration::ZERO);
        clock.sleep_until(1_010.0).await;
        assert_eq!(before.elapsed(), Duration::from_secs(1));
    }

    #[test]
    fn a_bad_speed_runs_at_real_time() {
        assert_eq!(Clock::scaled(0.0, f64::NAN).speed(), 1.0);
        assert_eq!(Clock::scaled(0.0, -3.0).speed(), 1.0);
    }

    #[test]
    fn timestamps_are_the_unix_time() {
        assert_eq!(time_at(0.0).0.as_second(), 0);
        assert_eq!(time_at(86_400.5).0.as_second(), 86_400);
        // Past 2001-09-09 (1e18 ns), where an earlier clamp stopped every timestamp.
        assert_eq!(time_at(1_796_117_643.25).0.as_second(), 1_796_117_643);
        assert_eq!(time_at(f64::INFINITY).0, k8s_openapi::jiff::Timestamp::MAX);
        assert_eq!(time_at(f64::NAN).0.as_second(), 0);
    }
}
