//! `simulate`'s input checks and outputs through the real binary, tried as a new user would:
//! each bad flag is blamed on itself, and the outputs' paths are printed.

use std::path::PathBuf;
use std::process::{Command, Output};

fn operator(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_marketplace-operator"))
        .args(args)
        .output()
        .expect("run marketplace-operator")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mkt-simcli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Runs `simulate --synthetic step` with extra flags; returns (success, stderr).
fn step_with(extra: &[&str]) -> (bool, String) {
    let mut args = vec!["simulate", "--synthetic", "step"];
    args.extend_from_slice(extra);
    let out = operator(&args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_zero_target_utilization_is_blamed_on_the_utilization() {
    let (ok, err) = step_with(&["--target-utilization", "0"]);
    assert!(!ok);
    assert!(err.contains("--target-utilization"), "{err}");
    assert!(!err.contains("capacity"), "{err}");
}

#[test]
fn a_trace_without_load_says_so() {
    let dir = scratch("zero");
    let trace = dir.join("idle.csv");
    std::fs::write(&trace, "t_seconds,requests_per_second\n0,0\n60,0\n120,0\n").expect("trace");
    let out = operator(&["simulate", "--trace", trace.to_str().unwrap_or_default()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no load"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn zero_max_replicas_is_refused() {
    let (ok, err) = step_with(&["--max-replicas", "0"]);
    assert!(!ok);
    assert!(err.contains("--max-replicas must be at least 1"), "{err}");
}

#[test]
fn a_negative_start_up_reaches_the_range_check() {
    let (ok, err) = step_with(&["--startup-seconds", "-5"]);
    assert!(!ok);
    assert!(
        err.contains("--startup-seconds must be ≥ 0, got -5"),
        "{err}"
    );
}

#[test]
fn the_outputs_paths_are_printed_and_the_marketplace_week_has_a_seed() {
    let dir = scratch("outputs");
    let json = dir.join("m.json");
    let html = dir.join("m.html");
    let out = operator(&[
        "simulate",
        "--synthetic",
        "marketplace",
        "--seed",
        "7",
        "--json",
        json.to_str().unwrap_or_default(),
        "--report",
        html.to_str().unwrap_or_default(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("report written to {}", html.display())),
        "{stdout}"
    );
    assert!(stdout.contains("synthetic-marketplace-7"), "{stdout}");
    let report = std::fs::read_to_string(&html).expect("report written");
    assert!(report.contains("Where the policy fell short"));
    let _ = std::fs::remove_dir_all(dir);
}
