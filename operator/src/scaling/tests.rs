//! Engine tests: HPA table tests from the documented algorithm, one test per mode, and
//! properties (bounds, no scale-down on missing data, determinism).

use std::str::FromStr;

use proptest::prelude::*;

use super::*;

fn rps(target: f64) -> MetricPolicy {
    MetricPolicy {
        kind: MetricKind::RequestsPerSecond,
        target_type: TargetType::AverageValue,
        target,
    }
}

/// A tick where every one of `pods` ready pods reports `avg`.
fn tick(engine: &mut Engine, now: f64, current: u32, avg: f64) -> Decision {
    let readings = [MetricReading::average(avg, current)];
    engine.decide(&Observation {
        now,
        current_replicas: current,
        ready_replicas: current,
        metrics: &readings,
        pods: &[],
    })
}

fn engine(policy: Policy) -> Engine {
    Engine::new(policy).expect("valid policy")
}

/// Daily seasonality, learnt after one day, forecasting the mean (no headroom).
fn daily_season() -> Predictive {
    Predictive {
        seasons: vec![86_400.0],
        seasons_kept: 1,
        slot: 60.0,
        lead: 60.0,
        warmup: 86_400.0,
        sigmas: 0.0,
        level_window: 600.0,
        noise_window: 3600.0,
        saturation: 1.0,
        noise_exponent: 0.5,
        persistence: 0.0,
        exceedance: 0.0,
        skill_margin: -1.0,
        hourly: false,
        floor_hold: 0.0,
        churn_sigmas: 0.0,
        down_step: 0.0,
        up_step: 0.0,
        down_every: 0.0,
        down_window: None,
        down_window_cv: 0.0,
        budget: 0.0,
        budget_window: 86_400.0,
    }
}

/// The HPA with a `behavior` whose scale-down window is 0 (so the v2 rate policies apply).
fn hpa_no_window() -> Policy {
    let mut p = Policy::hpa(1, 100, 100.0);
    p.scale_down.stabilization_window = 0.0;
    p.legacy = false;
    p
}

// ---- HPA: the replica calculation ---------------------------------------------------------

#[test]
fn hpa_table_of_the_documented_replica_calculation() {
    // (current pods, per-pod value, target, tolerance, expected) — from "Algorithm details":
    // desired = ceil(current × value / target), no change within the tolerance.
    let table: &[(u32, f64, f64, f64, u32)] = &[
        (1, 200.0, 100.0, 0.1, 2),   // 200m vs 100m doubles
        (4, 50.0, 100.0, 0.1, 2),    // 50m vs 100m halves
        (10, 105.0, 100.0, 0.1, 10), // ratio 1.05: within tolerance
        // ratio 1.10: on the edge, and within since k8s 1.33's 1 - down <= r <= 1 + up
        // (before, |1 - 1.1| = 0.10000000000000009 > 0.1 scaled to 11).
        (10, 110.0, 100.0, 0.1, 10),
        (10, 90.0, 100.0, 0.1, 10),  // the lower edge, within either way
        (10, 111.0, 100.0, 0.1, 12), // ratio 1.11: ceil(11.1)
        (10, 91.0, 100.0, 0.1, 10),
        (10, 89.0, 100.0, 0.1, 9),
        (50, 90.0, 75.0, 0.1, 60), // the v1.33 tolerance post: 50 × 90/75 = 60
        (10, 105.0, 100.0, 0.0, 11), // no tolerance: ceil(10.5)
        (3, 0.0, 100.0, 0.1, 0),   // idle: the min clamp is applied later
    ];
    for &(current, value, target, tolerance, expected) in table {
        let m = rps(target);
        let got = replicas_for_metric(
            &m,
            &MetricReading::average(value, current),
            current,
            current,
            tolerance,
        )
        .expect("metric available");
        assert_eq!(
            got.replicas, expected,
            "current {current} value {value} target {target} tol {tolerance}"
        );
    }
}

#[test]
fn hpa_missing_pods_count_as_idle_on_scale_up_and_as_at_target_on_scale_down() {
    let m = rps(100.0);
    // 4 pods, 2 report 200: scale-up; missing count 0 → ratio 400/4/100 = 1.0 → within tolerance.
    let up = replicas_for_metric(&m, &MetricReading::average(200.0, 2), 4, 4, 0.1).expect("metric");
    assert_eq!(up.replicas, 4);
    // 4 pods, 2 report 300: ratio 3 → missing at 0 → 600/4/100 = 1.5 → ceil(1.5 × 4) = 6.
    let up = replicas_for_metric(&m, &MetricReading::average(300.0, 2), 4, 4, 0.1).expect("metric");
    assert_eq!(up.replicas, 6);
    // 4 pods, 2 report 20: scale-down; missing at 100 → (40 + 200)/4/100 = 0.6 → ceil(2.4) = 3.
    let down =
        replicas_for_metric(&m, &MetricReading::average(20.0, 2), 4, 4, 0.1).expect("metric");
    assert_eq!(down.replicas, 3);
}

#[test]
fn hpa_unready_cpu_pods_count_as_idle_only_on_scale_up() {
    let cpu = MetricPolicy {
        kind: MetricKind::Cpu,
        target_type: TargetType::Utilization,
        target: 50.0,
    };
    // 4 pods, 2 ready at 100%: ratio 2 → the 2 unready count as 0 → 200/4/50 = 1.0 → keep 4.
    let r =
        replicas_for_metric(&cpu, &MetricReading::average(100.0, 2), 4, 2, 0.1).expect("metric");
    assert_eq!(r.replicas, 4);
    // 2 ready at 10% (scale-down): unready pods are ignored → ceil(0.2 × 2) = 1.
    let r = replicas_for_metric(&cpu, &MetricReading::average(10.0, 2), 4, 2, 0.1).expect("metric");
    assert_eq!(r.replicas, 1);
}

#[test]
fn hpa_value_targets_scale_the_ready_pods_by_the_ratio() {
    let latency = MetricPolicy {
        kind: MetricKind::LatencyP99,
        target_type: TargetType::Value,
        target: 200.0,
    };
    let r = replicas_for_metric(&latency, &MetricReading::value(300.0), 5, 4, 0.1).expect("metric");
    assert_eq!(r.replicas, 6); // ceil(1.5 × 4 ready)
    let r = replicas_for_metric(&latency, &MetricReading::value(210.0), 5, 4, 0.1).expect("metric");
    assert_eq!(r.replicas, 5); // within tolerance: current
}

#[test]
fn hpa_several_metrics_combine_by_max() {
    let mut p = hpa_no_window();
    p.metrics.push(MetricPolicy {
        kind: MetricKind::InFlight,
        target_type: TargetType::AverageValue,
        target: 10.0,
    });
    let mut e = engine(p);
    let readings = [
        MetricReading::average(150.0, 4),
        MetricReading::average(30.0, 4),
    ];
    let d = e.decide(&Observation {
        now: 0.0,
        current_replicas: 4,
        ready_replicas: 4,
        metrics: &readings,
        pods: &[],
    });
    assert_eq!(d.desired, 8); // rps asks 6, in-flight asks 12 → rate limit: max(4 + 4, 2 × 4) = 8
    assert_eq!(d.mode, Mode::Limited);
    assert_eq!(
        d.explanation.metric.map(|m| m.kind),
        Some(MetricKind::InFlight)
    );
}

// ---- HPA: behavior -------------------------------------------------------------------------

#[test]
fn hpa_default_scale_up_is_the_larger_of_four_pods_and_double_per_15_s() {
    let mut e = engine(hpa_no_window());
    // 1 replica asking for 20: max(1 + 4, 2 × 1) = 5.
    assert_eq!(tick(&mut e, 0.0, 1, 2000.0).desired, 5);
    // 15 s later the period has passed: from 5, max(9, 10) = 10.
    assert_eq!(tick(&mut e, 15.0, 5, 400.0).desired, 10);
    // From 10, ask for 40: 2 × 10 = 20.
    assert_eq!(tick(&mut e, 30.0, 10, 400.0).desired, 20);
}

#[test]
fn hpa_scale_up_within_a_period_counts_what_was_already_added() {
    let mut e = engine(hpa_no_window());
    assert_eq!(tick(&mut e, 0.0, 1, 2000.0).desired, 5);
    // 5 s later, still inside the 15 s period that started at 1 replica: no more.
    let d = tick(&mut e, 5.0, 5, 400.0);
    assert_eq!(d.desired, 5);
    assert_eq!(d.mode, Mode::Limited);
}

#[test]
fn hpa_scale_down_waits_for_the_300_s_stabilization_window() {
    let mut e = engine(Policy::hpa(1, 100, 100.0));
    assert_eq!(tick(&mut e, 0.0, 10, 100.0).desired, 10);
    // Load halves: the highest recommendation of the last 300 s is still 10.
    for t in (15..300).step_by(15) {
        assert_eq!(tick(&mut e, f64::from(t), 10, 50.0).desired, 10, "t = {t}");
    }
    // At 300 s the recommendation of 10 made at 0 s is no longer after the cutoff.
    assert_eq!(tick(&mut e, 300.0, 10, 50.0).desired, 5);
}

#[test]
fn hpa_scale_down_policies_follow_select_policy() {
    // The documented example: 4 pods or 10% per 60 s; Max picks the bigger change.
    let mut p = hpa_no_window();
    p.scale_down.policies = vec![
        RatePolicy {
            kind: RateKind::Pods,
            value: 4,
            period: 60.0,
        },
        RatePolicy {
            kind: RateKind::Percent,
            value: 10,
            period: 60.0,
        },
    ];
    let mut e = engine(p.clone());
    assert_eq!(tick(&mut e, 0.0, 80, 10.0).desired, 72); // 10% of 80 = 8 > 4
    let mut e = engine(p.clone());
    assert_eq!(tick(&mut e, 0.0, 30, 10.0).desired, 26); // 10% of 30 = 3 < 4
    p.scale_down.select = Select::Min;
    let mut e = engine(p.clone());
    assert_eq!(tick(&mut e, 0.0, 80, 10.0).desired, 76);
    p.scale_down.select = Select::Disabled;
    let mut e = engine(p);
    let d = tick(&mut e, 0.0, 80, 10.0);
    assert_eq!((d.desired, d.mode), (80, Mode::Limited));
}

#[test]
fn hpa_scale_up_stabilization_takes_the_lowest_recent_recommendation() {
    let mut p = hpa_no_window();
    p.scale_up.stabilization_window = 60.0;
    let mut e = engine(p);
    assert_eq!(tick(&mut e, 0.0, 4, 100.0).desired, 4);
    // A spike 15 s later: the window still holds a recommendation of 4.
    assert_eq!(tick(&mut e, 15.0, 4, 200.0).desired, 4);
    assert_eq!(tick(&mut e, 61.0, 4, 200.0).desired, 8);
}

#[test]
fn hpa_clamps_to_min_and_max_before_reading_metrics() {
    let mut e = engine(Policy::hpa(2, 5, 100.0));
    let d = tick(&mut e, 0.0, 9, 1.0);
    assert_eq!((d.desired, d.mode), (5, Mode::Limited));
    let d = tick(&mut e, 15.0, 1, 1000.0);
    assert_eq!((d.desired, d.mode), (2, Mode::Limited));
    let d = tick(&mut e, 30.0, 5, 1000.0);
    assert_eq!(d.desired, 5);
}

#[test]
fn hpa_leaves_a_target_scaled_to_zero_alone() {
    let mut e = engine(Policy::hpa(1, 5, 100.0));
    let d = e.decide(&Observation {
        now: 0.0,
        current_replicas: 0,
        ready_replicas: 0,
        metrics: &[],
        pods: &[],
    });
    assert_eq!(d.desired, 0);
    assert_eq!(d.explanation.hold, Some(Hold::ScaledToZero));
}

// ---- Missing data and fallback -------------------------------------------------------------

#[test]
fn scale_down_is_held_when_metrics_are_missing() {
    let mut e = engine(hpa_no_window());
    let d = e.decide(&Observation {
        now: 0.0,
        current_replicas: 7,
        ready_replicas: 7,
        metrics: &[MetricReading::missing()],
        pods: &[],
    });
    assert_eq!((d.desired, d.mode), (7, Mode::Stable));
    assert_eq!(d.explanation.hold, Some(Hold::AllMetricsMissing));
}

#[test]
fn scale_down_is_held_when_one_of_two_metrics_is_missing() {
    let mut p = hpa_no_window();
    p.metrics.push(MetricPolicy {
        kind: MetricKind::InFlight,
        target_type: TargetType::AverageValue,
        target: 10.0,
    });
    let mut e = engine(p);
    let readings = [MetricReading::average(10.0, 8), MetricReading::missing()];
    let d = e.decide(&Observation {
        now: 0.0,
        current_replicas: 8,
        ready_replicas: 8,
        metrics: &readings,
        pods: &[],
    });
    assert_eq!(d.desired, 8);
    assert_eq!(d.explanation.hold, Some(Hold::SomeMetricsMissing));
    // A scale-up is still allowed on the metric that is there.
    let readings = [MetricReading::average(200.0, 8), MetricReading::missing()];
    let d = e.decide(&Observation {
        now: 15.0,
        current_replicas: 8,
        ready_replicas: 8,
        metrics: &readings,
        pods: &[],
    });
    assert_eq!(d.desired, 16);
}

#[test]
fn fallback_replicas_apply_after_the_failure_threshold() {
    let mut p = hpa_no_window();
    p.fallback = Some(Fallback {
        after_failures: 3,
        replicas: 6,
    });
    let mut e = engine(p);
    let missing = [MetricReading::missing()];
    for (i, expected) in [
        (0, (2, Mode::Stable)),
        (1, (2, Mode::Stable)),
        (2, (6, Mode::Fallback)),
    ] {
        let d = e.decide(&Observation {
            now: f64::from(i) * 15.0,
            current_replicas: 2,
            ready_replicas: 2,
            metrics: &missing,
            pods: &[],
        });
        assert_eq!((d.desired, d.mode), expected, "tick {i}");
    }
    // Fallback never lowers a higher count.
    let d = e.decide(&Observation {
        now: 45.0,
        current_replicas: 9,
        ready_replicas: 9,
        metrics: &missing,
        pods: &[],
    });
    assert_eq!((d.desired, d.mode), (9, Mode::Fallback));
    assert!(
        d.reason().contains("no metric available for 4 tick(s)"),
        "{}",
        d.reason()
    );
}

// ---- Burst ---------------------------------------------------------------------------------

#[test]
fn burst_scales_up_at_once_past_the_rate_policies() {
    let mut p = hpa_no_window();
    p.burst = Some(Burst {
        window: 6.0,
        threshold: 2.0,
        hold: 60.0,
        slope_window: 0.0,
        horizon: 0.0,
        min_surprise: 0.0,
    });
    let mut e = engine(p);
    assert_eq!(tick(&mut e, 0.0, 2, 100.0).desired, 2);
    // Load ×10: the HPA would allow 2 → 6; burst goes to 20 at once.
    let d = tick(&mut e, 15.0, 2, 1000.0);
    assert_eq!((d.desired, d.mode), (20, Mode::Burst));
    assert!(d.reason().contains("burst"), "{}", d.reason());
}

#[test]
fn burst_holds_replicas_until_the_hold_time_has_passed() {
    let mut p = hpa_no_window();
    p.burst = Some(Burst {
        window: 6.0,
        threshold: 2.0,
        hold: 60.0,
        slope_window: 0.0,
        horizon: 0.0,
        min_surprise: 0.0,
    });
    let mut e = engine(p);
    tick(&mut e, 0.0, 2, 100.0);
    assert_eq!(tick(&mut e, 15.0, 2, 1000.0).desired, 20);
    // Load drops back: no scale-down while the burst holds.
    let d = tick(&mut e, 30.0, 20, 10.0);
    assert_eq!((d.desired, d.mode), (20, Mode::Burst));
    let d = tick(&mut e, 75.0, 20, 10.0);
    assert_eq!(d.mode, Mode::ScaleDown);
    assert_eq!(d.desired, 2);
}

// ---- Schedules -----------------------------------------------------------------------------

#[test]
fn a_scheduled_floor_raises_replicas_in_its_time_zone() {
    let mut p = hpa_no_window();
    p.schedules.push(Schedule {
        name: "kickoff".into(),
        cron: croner::Cron::from_str("0 14 * * *").expect("valid cron"),
        time_zone: chrono_tz::Europe::Paris,
        duration: 3600.0,
        min_replicas: 12,
    });
    let mut e = engine(p);
    // 2026-07-01 12:00 UTC is 14:00 in Paris.
    let noon_utc = 1_782_907_200.0;
    assert_eq!(tick(&mut e, noon_utc - 60.0, 2, 100.0).desired, 2);
    // One lead (start-up + poll = 45 s) early, straight to the floor: no rate limit.
    let d = tick(&mut e, noon_utc - 45.0, 2, 100.0);
    assert_eq!((d.desired, d.mode), (12, Mode::Scheduled));
    assert!(
        d.reason().contains("schedule #0 holds a floor of 12"),
        "{}",
        d.reason()
    );
    assert_eq!(tick(&mut e, noon_utc + 3600.0, 12, 100.0 / 6.0).desired, 2);
}

// ---- Predictive ----------------------------------------------------------------------------

#[test]
fn predictive_scales_ahead_of_a_daily_peak() {
    let mut p = hpa_no_window();
    p.predictive = Some(daily_season());
    let mut e = engine(p);
    // Day 1: 2 replicas' worth, but 10 from 12:00 to 13:00. Run the engine through it.
    let mut current = 2;
    let mut t = 0.0;
    while t < 86_400.0 {
        let load = if (43_200.0..46_800.0).contains(&t) {
            1000.0
        } else {
            200.0
        };
        current = tick(&mut e, t, current, load / f64::from(current)).desired;
        t += 15.0;
    }
    // Day 2, one minute before noon: the reactive answer is 2, the forecast 10.
    let mut d = tick(
        &mut e,
        86_400.0 + 43_140.0,
        current,
        200.0 / f64::from(current),
    );
    let mut t = 86_400.0 + 43_140.0;
    while d.mode == Mode::Limited && t < 86_400.0 + 43_200.0 {
        t += 15.0;
        d = tick(&mut e, t, d.desired, 200.0 / f64::from(d.desired));
    }
    assert_eq!(d.mode, Mode::Predictive, "{}", d.reason());
    // More than the reactive 2, before the load has risen: the forecast saw noon coming.
    assert!(d.desired > 2, "{}", d.reason());
    assert!(d.reason().contains("forecast"), "{}", d.reason());
}

/// Three days of a daily pattern (2 replicas' worth, 10 from 12:00 to 13:00) at 15 s ticks,
/// as (time, requests/s); the target is 100 requests/s per replica.
fn three_days_with_a_noon_peak() -> Vec<(f64, f64)> {
    (0..3 * 86_400 / 15)
        .map(|i| {
            let t = f64::from(i) * 15.0;
            let load = if (43_200.0..46_800.0).contains(&(t % 86_400.0)) {
                1000.0
            } else {
                200.0
            };
            (t, load)
        })
        .collect()
}

#[test]
fn a_backfilled_engine_forecasts_the_peak_as_one_that_saw_the_days_live() {
    let mut p = hpa_no_window();
    // A 15-minute lead, so the forecast made a minute before noon reaches into the peak.
    p.predictive = Some(Predictive {
        seasons_kept: 3,
        lead: 900.0,
        ..daily_season()
    });
    let days = three_days_with_a_noon_peak();
    let mut live = engine(p.clone());
    let mut current = 2;
    for &(t, load) in &days {
        current = tick(&mut live, t, current, load / f64::from(current)).desired;
    }
    let mut restarted = engine(p.clone());
    // Shuffled by halves: the engine must order what a chunked range query returns.
    let demand: Vec<(f64, f64)> = days.iter().map(|&(t, load)| (t, load / 100.0)).collect();
    let (early, late) = demand.split_at(demand.len() / 2);
    let fed = restarted.backfill(&[late, early].concat());
    assert_eq!(fed, demand.len());

    // Day 4, one minute before noon: the same tick into both.
    let now = 3.0 * 86_400.0 + 43_140.0;
    let a = tick(&mut live, now, 2, 100.0);
    let b = tick(&mut restarted, now, 2, 100.0);
    let pr = p.predictive.as_ref().expect("predictive block");
    let forecast = |e: &Engine| {
        e.predictor
            .as_ref()
            .and_then(|f| f.forecast(pr, now))
            .expect("warmed up")
    };
    let (fa, fb) = (forecast(&live), forecast(&restarted));
    assert!(fa.seasonal > 1.5, "the live engine saw noon coming: {fa:?}");
    for (x, y) in [
        (fa.demand, fb.demand),
        (fa.mean, fb.mean),
        (fa.level, fb.level),
        (fa.seasonal, fb.seasonal),
        (fa.spread, fb.spread),
    ] {
        assert!((x - y).abs() < 1e-6, "live {fa:?}, backfilled {fb:?}");
    }
    assert_eq!(a.desired, b.desired, "{} / {}", a.reason(), b.reason());
    assert_eq!(b.mode, Mode::Predictive, "{}", b.reason());
}

#[test]
fn backfill_keeps_time_moving_forward_and_needs_a_predictive_block() {
    let mut p = hpa_no_window();
    p.predictive = Some(daily_season());
    let mut e = engine(p.clone());
    tick(&mut e, 1000.0, 2, 100.0);
    // Older than the live sample, or not a number: dropped, never recorded out of order.
    assert_eq!(
        e.backfill(&[(500.0, 3.0), (1000.0, 3.0), (1015.0, f64::NAN)]),
        0
    );
    assert_eq!(e.backfill(&[(1015.0, 3.0), (1030.0, 3.0)]), 2);
    let mut plain = engine(hpa_no_window());
    assert_eq!(plain.backfill(&[(0.0, 1.0)]), 0);
    assert!(plain.predictor.is_none());
}

#[test]
fn predictive_is_off_until_the_noise_is_learnt() {
    let mut p = hpa_no_window();
    p.predictive = Some(daily_season());
    let mut e = engine(p);
    for i in 0..100 {
        let d = tick(&mut e, f64::from(i) * 15.0, 2, 100.0);
        assert_ne!(d.mode, Mode::Predictive);
    }
}

#[test]
fn a_persistence_of_one_or_more_is_rejected() {
    let mut p = Policy::from_spec(&default_scaling_spec(50.0, 40)).expect("valid block");
    if let Some(pr) = p.predictive.as_mut() {
        pr.persistence = 1.0;
    }
    assert_eq!(
        p.validate(),
        Err(PolicyError::BadPredictive("persistence must be in [0, 1)"))
    );
}

#[test]
fn a_noise_exponent_outside_zero_to_one_is_rejected() {
    let mut p = Policy::from_spec(&default_scaling_spec(50.0, 40)).expect("valid block");
    if let Some(pr) = p.predictive.as_mut() {
        pr.noise_exponent = 1.5;
    }
    assert_eq!(
        p.validate(),
        Err(PolicyError::BadPredictive(
            "noise exponent must be in [0, 1]"
        ))
    );
}

#[test]
fn editing_the_policy_keeps_the_recorded_history() {
    let mut p = hpa_no_window();
    p.predictive = Some(daily_season());
    let mut e = engine(p.clone());
    for i in 0..400 {
        tick(&mut e, f64::from(i) * 15.0, 2, 100.0);
    }
    let before = e.predictor.as_ref().map(|f| f.seasonality().recorded());
    p.max_replicas = 50;
    e.update_policy(p.clone()).expect("valid edit");
    assert_eq!(
        e.predictor.as_ref().map(|f| f.seasonality().recorded()),
        before
    );
    p.predictive = p.predictive.map(|pr| Predictive {
        seasons: vec![604_800.0],
        ..pr
    });
    e.update_policy(p).expect("valid edit");
    assert_eq!(
        e.predictor.as_ref().map(|f| f.seasonality().recorded()),
        Some(0.0)
    );
}

// ---- The recommended block -----------------------------------------------------------------

#[test]
fn the_recommended_block_resolves_into_a_valid_policy() {
    let p = Policy::from_spec(&default_scaling_spec(50.0, 40)).expect("valid block");
    assert_eq!(p.metrics, vec![rps(50.0)]);
    assert!(p.burst.is_some() && p.predictive.is_some());
}

#[test]
fn an_hpa_shaped_spec_resolves_to_the_hpa_defaults() {
    let mut spec = default_scaling_spec(50.0, 40);
    spec.behavior = None;
    spec.tolerance = None;
    spec.burst = None;
    spec.predictive = None;
    spec.poll_interval_seconds = None;
    let p = Policy::from_spec(&spec).expect("valid block");
    assert_eq!(p, Policy::hpa(1, 40, 50.0));
}

#[test]
fn the_headroom_of_the_forecast_is_the_spec_s_choice() {
    let mut spec = default_scaling_spec(50.0, 40);
    let default = Policy::from_spec(&spec).expect("valid block");
    assert_eq!(
        default.predictive.as_ref().map(|p| p.sigmas),
        Some(defaults::PREDICTIVE_SIGMAS)
    );
    if let Some(p) = spec.predictive.as_mut() {
        p.headroom_sigmas = Some(1.5);
    }
    let tuned = Policy::from_spec(&spec).expect("valid block");
    assert_eq!(tuned.predictive.as_ref().map(|p| p.sigmas), Some(1.5));
}

#[test]
fn an_invalid_spec_names_the_field() {
    let mut spec = default_scaling_spec(50.0, 40);
    spec.min_replicas = 50;
    let err = Policy::from_spec(&spec).expect_err("min above max");
    assert!(
        err.to_string().contains("spec.scaling.minReplicas"),
        "{err}"
    );
}

// ---- Properties ----------------------------------------------------------------------------

fn any_policy() -> impl Strategy<Value = Policy> {
    (
        1u32..5,
        5u32..60,
        1.0f64..200.0,
        0.0f64..0.3,
        0.0f64..400.0,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(min, max, target, tolerance, down, burst, fallback)| {
            let mut p = Policy::hpa(min, max, target);
            p.tolerance = tolerance;
            p.scale_down.stabilization_window = down;
            if burst {
                p.burst = Some(Burst {
                    window: 15.0,
                    threshold: 1.5,
                    hold: 60.0,
                    slope_window: 0.0,
                    horizon: 0.0,
                    min_surprise: 0.0,
                });
            }
            if fallback {
                p.fallback = Some(Fallback {
                    after_failures: 2,
                    replicas: max,
                });
            }
            p
        })
}

/// (seconds since the previous tick, per-pod value or missing, ready fraction).
fn any_ticks() -> impl Strategy<Value = Vec<(f64, Option<f64>, f64)>> {
    prop::collection::vec(
        (
            1.0f64..60.0,
            prop::option::weighted(0.8, 0.0f64..5000.0),
            0.0f64..1.0,
        ),
        1..60,
    )
}

fn run(policy: &Policy, ticks: &[(f64, Option<f64>, f64)]) -> Vec<(Decision, u32)> {
    let mut e = engine(policy.clone());
    let mut current = policy.min_replicas;
    let mut now = 1_700_000_000.0;
    let mut out = Vec::new();
    for &(dt, value, ready_fraction) in ticks {
        now += dt;
        let ready = ((f64::from(current) * ready_fraction).round() as u32).min(current);
        let reading = match value {
            Some(v) => MetricReading::average(v, ready.max(1)),
            None => MetricReading::missing(),
        };
        let d = e.decide(&Observation {
            now,
            current_replicas: current,
            ready_replicas: ready,
            metrics: &[reading],
            pods: &[],
        });
        out.push((d, current));
        current = d.desired;
    }
    out
}

proptest! {
    #[test]
    fn desired_replicas_always_lie_within_min_and_max(policy in any_policy(), ticks in any_ticks()) {
        for (d, _) in run(&policy, &ticks) {
            prop_assert!(d.desired >= policy.min_replicas && d.desired <= policy.max_replicas, "{}", d);
        }
    }

    #[test]
    fn no_scale_down_happens_on_missing_data(policy in any_policy(), ticks in any_ticks()) {
        for ((d, current), &(_, value, _)) in run(&policy, &ticks).into_iter().zip(&ticks) {
            if value.is_none() {
                prop_assert!(d.desired >= current, "{}", d);
            }
        }
    }

    #[test]
    fn the_engine_is_deterministic(policy in any_policy(), ticks in any_ticks()) {
        prop_assert_eq!(run(&policy, &ticks), run(&policy, &ticks));
    }
}

// ---- HPA fidelity: ported from the HPA controller's table tests ---------------------------
// pkg/controller/podautoscaler/horizontal_test.go and replica_calculator_test.go, aggregated
// to the engine's input (the same pods, the same expectations).

#[test]
fn without_behavior_the_hpa_takes_its_legacy_path_of_at_most_double_or_four() {
    // horizontal_test.go TestScaleUpCMUnreadyAndHotCpuNoLessScale-like: from 3 pods at 3× the
    // target the v2 default would allow 7 (max(100%, +4)); the legacy path allows max(2 × 3, 4).
    let mut p = Policy::hpa(1, 100, 100.0);
    assert!(p.legacy);
    let mut e = engine(p.clone());
    assert_eq!(tick(&mut e, 0.0, 3, 300.0).desired, 6);
    p.legacy = false;
    let mut e = engine(p);
    assert_eq!(tick(&mut e, 0.0, 3, 300.0).desired, 7);
    // From 1 pod the legacy floor of 4 applies.
    let mut e = engine(Policy::hpa(1, 100, 100.0));
    assert_eq!(tick(&mut e, 0.0, 1, 1000.0).desired, 4);
}

#[test]
fn a_spec_without_behavior_resolves_to_the_legacy_path() {
    let mut spec = default_scaling_spec(10.0, 20);
    assert!(!Policy::from_spec(&spec).expect("valid").legacy);
    spec.behavior = None;
    assert!(Policy::from_spec(&spec).expect("valid").legacy);
}

#[test]
fn missing_pods_at_a_ratio_of_exactly_one_are_left_out() {
    // 2 pods, 1 reporting exactly at target, 1 missing: the HPA keeps 2.
    let m = rps(100.0);
    let got =
        replicas_for_metric(&m, &MetricReading::average(100.0, 1), 2, 2, 0.1).expect("a reading");
    assert_eq!(got.replicas, 2);
}

#[test]
fn missing_pods_of_a_utilization_metric_count_at_their_full_request_on_a_scale_down() {
    // replica_calculator_test.go TestReplicaCalcMissingMetricsUnneededScaleDown-like: target
    // 50%, 3 reporting at 10%, 1 missing: the missing one counts at max(100%, 50%) = 100%,
    // (30 + 100) / 4 = 32.5% → ceil(0.65 × 4) = 3.
    let cpu = MetricPolicy {
        kind: MetricKind::Cpu,
        target_type: TargetType::Utilization,
        target: 50.0,
    };
    let got =
        replicas_for_metric(&cpu, &MetricReading::average(10.0, 3), 4, 4, 0.1).expect("a reading");
    assert_eq!(got.replicas, 3);
    // A target above 100% fills missing pods at the target itself: (30 + 150) / 4 / 150.
    let high = MetricPolicy {
        target: 150.0,
        ..cpu
    };
    let got =
        replicas_for_metric(&high, &MetricReading::average(10.0, 3), 4, 4, 0.1).expect("a reading");
    assert_eq!(got.replicas, 2);
}

#[test]
fn a_value_target_scales_up_from_zero_replicas() {
    // getUsageRatioReplicaCount: from 0 replicas, ceil(ratio), no tolerance.
    let m = MetricPolicy {
        kind: MetricKind::Custom,
        target_type: TargetType::Value,
        target: 10.0,
    };
    let got = replicas_for_metric(&m, &MetricReading::value(25.0), 0, 0, 0.1).expect("a reading");
    assert_eq!(got.replicas, 3);
    let mut p = Policy::hpa(0, 10, 10.0);
    p.metrics = vec![m];
    let mut e = engine(p);
    let d = e.decide(&Observation {
        now: 0.0,
        current_replicas: 0,
        ready_replicas: 0,
        metrics: &[MetricReading::value(25.0)],
        pods: &[],
    });
    assert_eq!(d.desired, 3, "{}", d.reason());
}

#[test]
fn tolerance_can_differ_up_and_down() {
    // k8s 1.33 behavior.scaleUp.tolerance: 5% up, 10% down (the tolerance post's example).
    let m = rps(100.0);
    let tol = Tolerances {
        up: 0.05,
        down: 0.1,
    };
    let up = replicas_for_metric_within(&m, &MetricReading::average(107.0, 10), 10, 10, tol)
        .expect("a reading");
    assert_eq!(up.replicas, 11);
    let down = replicas_for_metric_within(&m, &MetricReading::average(93.0, 10), 10, 10, tol)
        .expect("a reading");
    assert_eq!(down.replicas, 10);
}

// ---- Beyond the HPA: onsets, evidence, churn ------------------------------------------------

#[test]
fn a_burst_is_sized_from_its_slope_over_one_start_up() {
    let mut p = hpa_no_window();
    p.burst = Some(Burst {
        window: 15.0,
        threshold: 1.3,
        hold: 60.0,
        slope_window: 30.0,
        horizon: 45.0,
        min_surprise: 0.0,
    });
    let mut e = engine(p);
    for t in [0.0, 15.0, 30.0] {
        assert_eq!(tick(&mut e, t, 4, 100.0).desired, 4);
    }
    // 400 requests/s at 15 s, 800 at 45 s: rising by 400 per 30 s, so when the replicas
    // asked for now serve (45 s later) it will be ~1400: 14 replicas, not the 8 it is now.
    let d = tick(&mut e, 45.0, 4, 200.0);
    assert_eq!(d.mode, Mode::Burst);
    assert!(d.desired >= 14, "{}", d.reason());
}

#[test]
fn the_forecast_quantile_is_calibrated_from_realized_errors() {
    // Noise with rare spikes: the fixed quantile starts at 0.5 spreads and must rise until
    // about 4% of forecasts are exceeded.
    let p = Predictive {
        sigmas: 0.5,
        exceedance: 0.04,
        lead: 60.0,
        ..daily_season()
    };
    let mut f = Predictor::new(&p);
    let mut seed: u64 = 7;
    for i in 0..20_000 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let u = (seed >> 33) as f64 / (1u64 << 31) as f64;
        let t = f64::from(i) * 15.0;
        f.observe(&p, t, 10.0 + 4.0 * (u - 0.5));
        if let Some(fc) = f.forecast(&p, t) {
            f.track(&p, t, &fc);
        }
    }
    assert!(f.quantile() > 1.0, "{}", f.quantile());
}

#[test]
fn a_forecast_that_does_not_beat_persistence_has_not_earned_its_place() {
    // A steady ramp with no noise: persistence (the latest sample) is nearly exact, the
    // lagging level is not, so the forecast must not raise the answer.
    let p = Predictive {
        sigmas: 3.0,
        skill_margin: 0.0,
        ..daily_season()
    };
    let mut f = Predictor::new(&p);
    for i in 0..2000 {
        let t = f64::from(i) * 15.0;
        f.observe(&p, t, 10.0 + t * 0.001);
        if let Some(fc) = f.forecast(&p, t) {
            f.track(&p, t, &fc);
        }
    }
    assert!(!f.skilled(&p));
    // Noise around a flat level: the level beats the noisy latest sample.
    let mut g = Predictor::new(&p);
    for i in 0..2000 {
        let t = f64::from(i) * 15.0;
        g.observe(&p, t, if i % 2 == 0 { 6.0 } else { 14.0 });
        if let Some(fc) = g.forecast(&p, t) {
            g.track(&p, t, &fc);
        }
    }
    assert!(g.skilled(&p));
}

// ---- The pod list, the HPA's conditions and its history -----------------------------------

fn cpu_utilization(target: f64) -> Policy {
    let mut p = Policy::hpa(1, 100, 1.0);
    p.metrics = vec![MetricPolicy {
        kind: MetricKind::Cpu,
        target_type: TargetType::Utilization,
        target,
    }];
    p
}

#[test]
fn given_the_pods_the_engine_decides_as_the_replica_calculator() {
    use pods::{
        ConditionStatus, Container, ContainerKind, Pod, PodMetric, PodPhase, ReadyCondition, Sample,
    };
    let now = 10_000.0;
    let containers = [Container {
        name: "app",
        kind: ContainerKind::Regular,
        request: Some(1000),
    }];
    let pod = |name, start: f64, status| Pod {
        name,
        phase: PodPhase::Running,
        deleting: false,
        ready: Some(ReadyCondition {
            status,
            last_transition: start + 20.0,
        }),
        start_time: Some(start),
        containers: &containers,
        pod_request: None,
    };
    // Two old pods at 90% of a 1-CPU request and one started 60 s ago, ready for 40 s, whose
    // 60 s sample still holds its start-up burst: the HPA sets that sample aside.
    let list = [
        pod("a", 0.0, ConditionStatus::True),
        pod("b", 0.0, ConditionStatus::True),
        pod("c", now - 60.0, ConditionStatus::True),
    ];
    let sample = |pod, value| Sample {
        pod,
        value,
        timestamp: now,
        window: 60.0,
    };
    let samples = [sample("a", 900), sample("b", 900), sample("c", 3000)];
    let input = [Some(PodMetric {
        pods: &list,
        samples: &samples,
        container: None,
        resource: "cpu",
    })];
    let mut e = engine(cpu_utilization(60.0));
    let d = e.decide(&Observation {
        now,
        current_replicas: 3,
        ready_replicas: 3,
        metrics: &[],
        pods: &input,
    });
    // 90% / 60% = 1.5 on the two that count; c as idle on a scale-up: (900 + 900 + 0) / 3000
    // = 60% → within tolerance → 3. An aggregate that averaged c's burst in would ask for 7.
    assert_eq!(d.desired, 3, "{d}");
    let m = d.explanation.metric.expect("metric used");
    assert_eq!(m.value, 90.0);
    assert_eq!(m.raw_average, Some(0.9));
    let expected = pods::resource_replicas(
        &input[0].expect("input"),
        3,
        60,
        Tolerances::symmetric(0.1),
        &pods::PodRules::default(),
        now,
    )
    .expect("a calculation");
    assert_eq!(expected.replicas, 3);

    // Past its initialization period c counts: (900 + 900 + 3000) / 3 = 160% → ceil(8) = 8,
    // cut by the legacy scale-up limit to max(2 × 3, 4) = 6.
    let later = now + 400.0;
    let samples = [
        Sample {
            timestamp: later,
            ..samples[0]
        },
        Sample {
            timestamp: later,
            ..samples[1]
        },
        Sample {
            timestamp: later,
            ..samples[2]
        },
    ];
    let input = [Some(PodMetric {
        pods: &list,
        samples: &samples,
        container: None,
        resource: "cpu",
    })];
    let d = e.decide(&Observation {
        now: later,
        current_replicas: 3,
        ready_replicas: 3,
        metrics: &[],
        pods: &input,
    });
    assert_eq!(d.desired, 6, "{d}");
    assert_eq!(d.explanation.metric.map(|m| m.replicas), Some(8));
    let conditions = d.hpa_conditions();
    let find = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| (c.status, c.reason))
    };
    assert_eq!(find("ScalingActive"), Some((true, "ValidMetricFound")));
    assert_eq!(find("AbleToScale"), Some((true, "SucceededRescale")));
    assert_eq!(find("ScalingLimited"), Some((true, "ScaleUpLimit")));

    // No pod counts (all pending): the metric fails, nothing is scaled down.
    let pending = [Pod {
        phase: PodPhase::Pending,
        ..list[0]
    }];
    let input = [Some(PodMetric {
        pods: &pending,
        samples: &samples,
        container: None,
        resource: "cpu",
    })];
    let d = e.decide(&Observation {
        now: later + 15.0,
        current_replicas: 6,
        ready_replicas: 0,
        metrics: &[],
        pods: &input,
    });
    assert_eq!(d.desired, 6);
    assert_eq!(
        d.explanation.problem,
        Some((0, MetricKind::Cpu, MetricProblem::NoTargetedMetrics))
    );
    let conditions = d.hpa_conditions();
    assert_eq!(conditions.len(), 1, "{conditions:?}");
    assert_eq!(
        (
            conditions[0].type_,
            conditions[0].status,
            conditions[0].reason
        ),
        ("ScalingActive", false, "FailedGetResourceMetric")
    );
}

#[test]
fn the_hpa_conditions_follow_its_controller() {
    let reasons = |d: &Decision| {
        d.hpa_conditions()
            .into_iter()
            .map(|c| (c.type_, c.status, c.reason))
            .collect::<Vec<_>>()
    };
    let mut e = engine(Policy::hpa(2, 10, 100.0));
    // At target: nothing to do.
    let d = tick(&mut e, 0.0, 4, 100.0);
    assert_eq!(
        reasons(&d),
        [
            ("ScalingActive", true, "ValidMetricFound"),
            ("AbleToScale", true, "ReadyForNewScale"),
            ("ScalingLimited", false, "DesiredWithinRange"),
        ]
    );
    // Load halves: the 300 s window holds the earlier recommendation of 4.
    let d = tick(&mut e, 15.0, 4, 50.0);
    assert_eq!(d.desired, 4);
    assert_eq!(reasons(&d)[1], ("AbleToScale", true, "ScaleDownStabilized"));
    // Far more than maxReplicas allows.
    let d = tick(&mut e, 30.0, 4, 1000.0);
    assert_eq!(d.desired, 8); // legacy rate: max(2 × 4, 4) before maxReplicas 10
    assert_eq!(reasons(&d)[2], ("ScalingLimited", true, "ScaleUpLimit"));
    let d = tick(&mut e, 45.0, 8, 1000.0);
    assert_eq!(d.desired, 10);
    assert_eq!(reasons(&d)[2], ("ScalingLimited", true, "TooManyReplicas"));
    // A target scaled to zero by hand: autoscaling is off.
    let d = tick(&mut e, 60.0, 0, 0.0);
    assert_eq!(reasons(&d), [("ScalingActive", false, "ScalingDisabled")]);
}

#[test]
fn the_recommendation_history_and_scale_events_are_the_hpa_s() {
    let mut p = Policy::hpa(1, 100, 100.0);
    p.scale_down.stabilization_window = 60.0;
    let mut e = engine(p);
    let mut current = 2;
    for (i, load) in [
        100.0, 300.0, 300.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0,
    ]
    .into_iter()
    .enumerate()
    {
        let now = i as f64 * 15.0;
        let desired = tick(&mut e, now, current, load).desired;
        // Each change is an event at its tick, of its size.
        let last = e.scale_events().last().copied();
        if desired != current {
            assert_eq!(
                last,
                Some(ScaleEvent {
                    at: now,
                    change: i64::from(desired) - i64::from(current)
                })
            );
        } else {
            assert!(last.is_none_or(|ev| ev.at < now));
        }
        current = desired;
    }
    // 60 s window at 15 s ticks: the recommendations of the last 60 s (t = 75 … 120).
    let history: Vec<(f64, u32)> = e.recommendations().collect();
    assert_eq!(
        history,
        [(75.0, 12), (90.0, 12), (105.0, 12), (120.0, 12)],
        "scaled to {current}"
    );
}

/// Replica-seconds of a policy over two days of 15 s polls on a load with a bot spike of
/// 4× every 10 minutes, replicas applied at once.
fn spend_on_bots(policy: Policy) -> (f64, u32) {
    let mut e = engine(policy);
    let (mut current, mut spent, mut events) = (10u32, 0.0, 0u32);
    let mut seed = 42u64;
    for i in 0..(2 * 86_400 / 15) {
        let now = f64::from(i) * 15.0;
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let noise = 1.0 + ((seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 0.3;
        let bot = if now % 600.0 < 60.0 { 4.0 } else { 1.0 };
        let demand = 20.0 * bot * noise;
        let readings = [MetricReading::average(
            demand * 10.0 / f64::from(current.max(1)),
            current,
        )];
        let d = e.decide(&Observation {
            now,
            current_replicas: current,
            ready_replicas: current,
            metrics: &readings,
            pods: &[],
        });
        if d.desired != current {
            events += 1;
        }
        current = d.desired;
        spent += f64::from(current) * 15.0;
    }
    (spent, events)
}

#[test]
fn the_extras_spend_within_their_budget_over_the_hpa_s_core() {
    let spec = default_scaling_spec(10.0, 500);
    let policy = Policy::from_spec(&spec).expect("valid");
    let mut core = policy.clone();
    core.predictive = None;
    core.burst = None;
    let mut unbounded = policy.clone();
    if let Some(p) = unbounded.predictive.as_mut() {
        p.budget = 0.0;
    }
    let (hpa, hpa_events) = spend_on_bots(core);
    let (ours, our_events) = spend_on_bots(policy);
    let (free, free_events) = spend_on_bots(unbounded);
    // Without a budget the extras overspend on a spike they cannot plan; with it, at most
    // the budget (2%) plus a day's lag of the ledger.
    assert!(free > 1.03 * hpa, "unbounded {free} vs hpa {hpa}");
    assert!(ours <= 1.03 * hpa, "budgeted {ours} vs hpa {hpa}");
    assert!(
        f64::from(our_events) <= 1.5 * f64::from(hpa_events),
        "events {our_events} (unbounded {free_events}) vs hpa {hpa_events}"
    );
}
