//! Tuning harness: replays trace files through the recommended policy with `key=value`
//! overrides of engine parameters the CRD does not expose, against the HPA and the oracle.
//!
//! `cargo run --release -p marketplace-operator --example tune -- ../shared/traces/*.csv z=2.4 down=0`
//! Keys: z (predictive sigmas), sat (saturation), lvl/nw (level/noise windows, s), wu
//! (season warm-up, s), kept (seasons), ne (noise exponent), phi (persistence), weekly=1,
//! pred=0, burst=0|1, bw/bt/bh (burst window, threshold ratio, hold), tol, poll, up/down
//! (scale-up/down windows, s), mw (metric window, s).
use std::collections::HashMap;
use std::error::Error;

use marketplace_operator::scaling::{Burst, Policy};
use marketplace_operator::simulate::{self, Controller, SimulateArgs, Trace};

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
        let trace = Trace::from_csv_file(std::path::Path::new(&f))?;
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
                })
            }
            _ => {}
        }
        if let Some(b) = p.burst.as_mut() {
            set(&mut b.window, "bw");
            set(&mut b.threshold, "bt");
            set(&mut b.hold, "bh");
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
        let uc = q.figures.under_capacity_seconds / h.figures.under_capacity_seconds.max(1e-9);
        let ch = q.figures.replica_seconds / h.figures.replica_seconds;
        let co = q.figures.replica_seconds / o.figures.replica_seconds;
        let ok = uc <= 0.5 && ch <= 1.0 && co <= 1.15;
        println!(
            "{:<28} uc {:>7.0}/{:>7.0} = {:.2}  cost/hpa {:.3} cost/orc {:.3} (hpa/orc {:.3}) {} events {}",
            trace.name,
            q.figures.under_capacity_seconds,
            h.figures.under_capacity_seconds,
            uc,
            ch,
            co,
            h.figures.replica_seconds / o.figures.replica_seconds,
            if ok { "ok" } else { "MISS" },
            q.figures.scale_events,
        );
    }
    Ok(())
}
