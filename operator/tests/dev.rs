//! `marketplace-operator dev` through the real binary: the controllers on the devcluster and
//! the simulator, given the same trace and model, must agree (issue: within 10%).

use std::path::PathBuf;
use std::process::Command;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mkt-dev-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The figures after "dev / sim:" in the summary: (under-capacity, replica-seconds).
fn ratios(stdout: &str) -> (f64, f64) {
    let line = stdout
        .lines()
        .find(|l| l.contains("dev / sim:"))
        .unwrap_or_else(|| panic!("no agreement line in:\n{stdout}"));
    let number = |key: &str| -> f64 {
        let rest = &line[line.find(key).unwrap_or_else(|| panic!("{key} in {line}")) + key.len()..];
        rest.trim_start()
            .split(|c: char| c == ',' || c.is_whitespace())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a number after {key} in {line}"))
    };
    (number("under-capacity"), number("replica-seconds"))
}

#[test]
fn a_load_step_through_the_controllers_matches_the_simulator_within_ten_percent() {
    let dir = scratch("step");
    // 12 minutes: quiet, a fourfold step at minute 3 for five minutes, then a third of it.
    let mut csv = String::from("t_seconds,requests_per_second\n");
    for minute in 0..12 {
        let rps = match minute {
            0..=2 => 100.0,
            3..=7 => 400.0,
            _ => 150.0,
        };
        csv.push_str(&format!("{},{rps}\n", minute * 60));
    }
    let trace = dir.join("step.csv");
    std::fs::write(&trace, csv).expect("trace");
    let report = dir.join("report.html");
    let out = Command::new(env!("CARGO_BIN_EXE_marketplace-operator"))
        .args([
            "dev",
            "--trace",
            trace.to_str().unwrap_or_default(),
            // Slow enough that the API server's round trips (tens of milliseconds in a debug
            // build, with three controllers at work) stay well under a simulated second: at
            // 15× each scale-up lost 1–2 simulated seconds to them, and the gap to the
            // simulator (which has no API server) came within noise of the 10% bound.
            "--speed",
            "10",
            "--kubeconfig",
            dir.join("kubeconfig").to_str().unwrap_or_default(),
            "--report",
            report.to_str().unwrap_or_default(),
        ])
        .output()
        .expect("run marketplace-operator dev");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "dev failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (under, cost) = ratios(&stdout);
    assert!(
        (0.9..=1.1).contains(&cost),
        "replica-seconds differ by more than 10%: {cost}\n{stdout}"
    );
    assert!(
        (0.9..=1.1).contains(&under),
        "under-capacity seconds differ by more than 10%: {under}\n{stdout}"
    );
    // The step must have cost the simulator some under-capacity, or the comparison is empty.
    let sim_under: f64 = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("all "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no totals line in:\n{stdout}"));
    assert!(sim_under > 100.0, "the step cost nothing: {stdout}");
    let html = std::fs::read_to_string(&report).expect("the report was written");
    assert_eq!(
        html.matches("<svg").count(),
        16,
        "two charts per run, two runs per service"
    );
    let _ = std::fs::remove_dir_all(dir);
}
