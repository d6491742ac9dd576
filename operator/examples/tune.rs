//! Tuning harness: replays trace files through the recommended policy with `key=value`
//! overrides of engine parameters the CRD does not expose, against the HPA and the oracle.
//!
//! `cargo run --release -p marketplace-operator --example tune -- ../shared/traces/*.csv marketplace:101 z=2.4 down=0`
//! A trace is a CSV file or `marketplace:SEED` (the synthetic week). Keys: z (predictive
//! sigmas), sat (saturation), lvl/nw (level/noise windows, s), wu (season warm-up, s), kept
//! (seasons), ne (noise exponent), phi (persistence), alpha (calibrated exceedance, 0 = fixed
//! z), skill (skill margin, <0 = off), hourly=0|1, hold (forecast floor hold, s), weekly=1,
//! pred=0, burst=0|1, bw/bt/bh (burst window, threshold ratio, hold), sw/hz (onset slope
//! window and horizon, s), bs (burst's minimum surprise, spreads), churn (churn guard,
//! spreads), sdown (scale-down window where the forecast floor covers it, s; <0 = none),
//! scv (noise share of the mean above which sdown applies), dstep/ustep (smallest scale-down/up, share), devery (s between scale-downs), tol, poll, up/down (scale-up/down windows, s), mw (metric window,
//! s). One line per trace: `name uc_ratio cost_ratio cost_oracle events_ratio ...`.
use std::collections::HashMap;
use std::error::Error;

use marketplace_operator::scaling::{Burst, Policy};
use marketplace_operator::simulate::{self, Controller, SimulateArgs, Synthetic, Trace};

fn main() -> Result<(), Box<dyn Error>> {
    let mut kv: HashMap<String, f64> = HashMap::new();
    let mut files = Vec::new();
    for a in std::env::args().skip(1) {
        match a.split_once('=') {
            Some((k, v)) => {
                kv.insert(k.to_string(), v.parse::<f64>()?);
            }
            None => files.push(a),
        }
    }
    let get = |k: &str| kv.get(k).copied();
    for f in files {
        let trace = if let Some(seed) = f.strip_prefix("marketplace:") {
            Synthetic::Marketplace.generate_seeded(seed.parse()?)
        } else if let Some(seed) = f.strip_prefix("social:") {
            Synthetic::Social.generate_seeded(seed.parse()?)
        } else {
            Trace::from_csv_file(std::path::Path::new(&f))?
        };
        let args = SimulateArgs {
            trace: None,
            synthetic: None,
            seed: 1,
            policy: None,
            startup_seconds: get("startup").unwrap_or(30.0),
            capacity_rps: None,
            target_utilization: 0.7,
            step_seconds: get("step").unwrap_or(1.0),
            scrape_interval_seconds: 15.0,
            max_replicas: 200,
            start_unix_seconds: 0.0,
            json: None,
            report: None,
        };
        let model = simulate::model_for(&trace, &args)?;
        let mut p: Policy =
            simulate::simulated_policy(simulate::policy_for(&args, &model)?, &model);
        let set = |v: &mut f64, k: &str| {
            if let Some(x) = get(k) {
                *v = x;
            }
        };
        set(&mut p.tolerance, "tol");
        set(&mut p.poll_interval, "poll");
        set(&mut p.scale_down.stabilization_window, "down");
        set(&mut p.scale_up.stabilization_window, "up");
        set(&mut p.metric_window, "mw");
        match get("burst") {
            Some(0.0) => p.burst = None,
            Some(_) if p.burst.is_none() => {
                p.burst = Some(Burst {
                    window: 15.0,
                    threshold: 1.3,
                    hold: 120.0,
                    slope_window: 30.0,
                    horizon: 45.0,
                    min_surprise: 4.0,
                })
            }
            _ => {}
        }
        if let Some(b) = p.burst.as_mut() {
            set(&mut b.window, "bw");
            set(&mut b.threshold, "bt");
            set(&mut b.hold, "bh");
            set(&mut b.slope_window, "sw");
            set(&mut b.horizon, "hz");
            set(&mut b.min_surprise, "bs");
        }
        if get("pred") == Some(0.0) {
            p.predictive = None;
        }
        if let Some(pr) = p.predictive.as_mut() {
            set(&mut pr.sigmas, "z");
            set(&mut pr.saturation, "sat");
            set(&mut pr.level_window, "lvl");
            set(&mut pr.noise_window, "nw");
            set(&mut pr.warmup, "wu");
            set(&mut pr.noise_exponent, "ne");
            set(&mut pr.persistence, "phi");
            set(&mut pr.exceedance, "alpha");
            set(&mut pr.skill_margin, "skill");
            set(&mut pr.floor_hold, "hold");
            set(&mut pr.churn_sigmas, "churn");
            set(&mut pr.down_step, "dstep");
            set(&mut pr.up_step, "ustep");
            set(&mut pr.down_window_cv, "scv");
            set(&mut pr.budget, "budget");
            set(&mut pr.budget_window, "bwin");
            set(&mut pr.down_every, "devery");
            if let Some(w) = get("sdown") {
                pr.down_window = (w >= 0.0).then_some(w);
            }
            if let Some(h) = get("hourly") {
                pr.hourly = h != 0.0;
            }
            if let Some(k) = get("kept") {
                pr.seasons_kept = k as u32;
            }
            if get("weekly") == Some(1.0) {
                pr.seasons = vec![86_400.0, 604_800.0];
            }
        }
        let controllers = vec![
            (
                "hpa".to_string(),
                Controller::Engine(Box::new(simulate::hpa(&model))),
            ),
            ("oracle".to_string(), Controller::Oracle),
            ("policy".to_string(), Controller::Engine(Box::new(p))),
        ];
        let r = simulate::simulate(&trace, &f, &model, &controllers, &|_| {})?;
        let (Some(h), Some(o), Some(q)) = (r.get("hpa"), r.get("oracle"), r.get("policy")) else {
            return Err("missing a replay".into());
        };
        // Where the HPA never fell short, the floor allows 60 s (the acceptance check's).
        let uc = if h.figures.under_capacity_seconds > 0.0 {
            q.figures.under_capacity_seconds / h.figures.under_capacity_seconds
        } else {
            q.figures.under_capacity_seconds / 60.0
        };
        let ch = q.figures.replica_seconds / h.figures.replica_seconds;
        let co = q.figures.replica_seconds / o.figures.replica_seconds;
        let ev = q.figures.scale_events as f64 / (h.figures.scale_events.max(1)) as f64;
        // The floor of the issue: never worse than the HPA.
        let ok = uc <= 1.0 && ch <= 1.02 && ev <= 1.5;
        println!(
            "{:<30} uc {:.3} cost {:.3} orc {:.3} events {:.2} {} (uc {:.0}/{:.0} s, events {}/{}, hpa/orc {:.3})",
            trace.name,
            uc,
            ch,
            co,
            ev,
            if ok { "ok" } else { "MISS" },
            q.figures.under_capacity_seconds,
            h.figures.under_capacity_seconds,
            q.figures.scale_events,
            h.figures.scale_events,
            h.figures.replica_seconds / o.figures.replica_seconds,
        );
        if get("modes") == Some(1.0) {
            println!("  decisions per mode: {:?}", q.modes);
        }
    }
    Ok(())
}
