//! The recommended scaling block: what `simulate` runs without `--policy`, and what the
//! CRD's defaults should resolve to. The numbers were tuned on the shared traces
//! (bench/RESULTS.md); each carries the reason it has its value.

use marketplace_crds::v1alpha1 as api;

/// The recommended `spec.scaling` for a service whose replicas should each serve
/// `target_rps` requests/s, bounded by `max_replicas`.
pub fn default_scaling_spec(target_rps: f64, max_replicas: u32) -> api::ScalingSpec {
    api::ScalingSpec {
        min_replicas: 1,
        max_replicas: i32::try_from(max_replicas).unwrap_or(i32::MAX),
        metrics: vec![api::MetricSpec {
            type_: api::MetricType::RequestsPerSecond,
            target: target_rps,
            target_type: None,
            query: None,
        }],
        behavior: Some(api::ScalingBehavior {
            // The HPA's scale-up (max(100%, 4 pods) per 15 s) is fast enough: the bursts it
            // cannot follow are handled by burst mode.
            scale_up: None,
            // The HPA's scale-down (300 s window): on smooth traffic it is what keeps a dip
            // from becoming a scale-down undone a minute later (scale events); on noisy
            // traffic the predictive block's shorter window takes over where its floor
            // covers the answer (`defaults::PREDICTIVE_DOWN_WINDOW_SECONDS`).
            scale_down: None,
        }),
        // The HPA's 0.1: lower values cost more on steady traffic (World Cup) for nothing.
        tolerance: Some(0.1),
        burst: Some(api::BurstSpec {
            // One scrape interval: the shortest window with a new sample in it.
            window_seconds: Some(15),
            // 130%: load has outgrown the target's headroom (1 / 0.7 ≈ 143%) or is close.
            threshold_percent: Some(130),
            // A minute: long enough to ride out a sale's ramp, short enough that a false
            // alarm costs little (120 s cost ~0.5% more on the marketplace weeks).
            hold_seconds: Some(60),
        }),
        schedules: None,
        predictive: Some(api::PredictiveSpec {
            season_seconds: Some(86_400),
            seasons: Some(3),
            startup_seconds: Some(30),
            // The engine's default (scaling::defaults::PREDICTIVE_SIGMAS), chosen on the
            // measured frontier in bench/RESULTS.md.
            headroom_sigmas: None,
        }),
        fallback: None,
        // The HPA's sync period, aligned with the 15 s scrape: polling faster (5 s) or out
        // of phase (10 s) was no better on the shared traces.
        poll_interval_seconds: Some(15),
    }
}
