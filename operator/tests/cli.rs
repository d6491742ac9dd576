//! The command-line contract of DESIGN.md, through the real binary: `crd`, `simulate` with a
//! policy file and with bad input, `dev` and `run` on bad input, and a closed stdout.

use std::path::PathBuf;
use std::process::{Command, Output};

fn operator(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_marketplace-operator"))
        .args(args)
        .output()
        .expect("run marketplace-operator")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mkt-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn crd_prints_every_kind_as_one_yaml_stream() {
    let out = operator(&["crd"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("kind: CustomResourceDefinition").count(), 3);
    for kind in ["MarketplaceService", "CacheTier", "PreviewEnvironment"] {
        assert!(text.contains(&format!("kind: {kind}")), "{kind} missing");
    }
}

#[test]
fn simulate_runs_a_policy_file_and_writes_the_documented_json() {
    let dir = scratch("policy");
    let trace = dir.join("trace.csv");
    let mut csv = String::from("t_seconds,requests_per_second\n");
    for minute in 0..240 {
        let rps = if (60..120).contains(&minute) {
            400.0
        } else {
            100.0
        };
        csv.push_str(&format!("{},{rps}\n", minute * 60));
    }
    std::fs::write(&trace, csv).expect("trace");
    let policy = dir.join("orders.yaml");
    std::fs::write(
        &policy,
        "apiVersion: marketplace.dev/v1alpha1\nkind: MarketplaceService\nmetadata: {name: orders}\n\
         spec:\n  domain: orders\n  image: orders:1\n  scaling:\n    minReplicas: 2\n    maxReplicas: 60\n\
         \x20   metrics: [{type: RequestsPerSecond, target: 10}]\n\
         \x20   behavior: {scaleDown: {stabilizationWindowSeconds: 60}}\n",
    )
    .expect("policy");
    let json = dir.join("out.json");
    let out = operator(&[
        "simulate",
        "--trace",
        trace.to_str().unwrap_or_default(),
        "--policy",
        policy.to_str().unwrap_or_default(),
        "--capacity-rps",
        "20",
        "--json",
        json.to_str().unwrap_or_default(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
            .expect("valid JSON");
    let names: Vec<&str> = doc["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for name in ["hpa", "keda", "kpa", "oracle", "policy"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let policy = doc["policies"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "policy"))
        .expect("policy entry");
    for field in [
        "under_capacity_seconds",
        "unserved_requests",
        "replica_seconds",
        "replica_seconds_per_burst",
        "scale_events",
        "peak_replicas",
    ] {
        assert!(
            policy[field].is_number(),
            "{field} is not a number: {policy}"
        );
    }
    // The model's target wins over the file's (every policy is judged at the same 70% of a
    // 20 rps replica, 14 rps): 400 rps needs ceil(400 / 14) = 29 replicas.
    assert_eq!(policy["peak_replicas"], 29, "{policy}");
    assert!(doc["model"].is_object());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn simulate_names_the_bad_line_of_a_malformed_trace() {
    let dir = scratch("bad");
    let trace = dir.join("bad.csv");
    std::fs::write(
        &trace,
        "t_seconds,requests_per_second\n0,10\n60,ten\n120,12\n",
    )
    .expect("trace");
    let out = operator(&["simulate", "--trace", trace.to_str().unwrap_or_default()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.csv:3:") && err.contains("\"ten\""),
        "error must name line 3 and the value: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_policy_file_without_a_scaling_block_is_refused() {
    let dir = scratch("noscaling");
    let policy = dir.join("fixed.yaml");
    std::fs::write(
        &policy,
        "apiVersion: marketplace.dev/v1alpha1\nkind: MarketplaceService\nmetadata: {name: x}\nspec: {domain: x, image: x, replicas: 3}\n",
    )
    .expect("policy");
    let out = operator(&[
        "simulate",
        "--synthetic",
        "step",
        "--policy",
        policy.to_str().unwrap_or_default(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no spec.scaling block"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn crd_piped_into_head_ends_quietly() {
    // The CRDs are larger than a pipe's buffer, so the writer meets a closed pipe.
    let out = Command::new("bash")
        .args([
            "-c",
            &format!(
                "set -o pipefail; '{}' crd | head -n 1",
                env!("CARGO_BIN_EXE_marketplace-operator")
            ),
        ])
        .output()
        .expect("run bash");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {err}", out.status.code());
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

#[test]
fn dev_refuses_a_speed_that_is_not_positive() {
    let dir = scratch("devspeed");
    let kubeconfig = dir.join("k");
    let out = operator(&[
        "dev",
        "--speed",
        "0",
        "--kubeconfig",
        kubeconfig.to_str().unwrap_or_default(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--speed must be a positive number"), "{err}");
    assert!(!kubeconfig.exists(), "nothing should start on bad input");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn run_without_a_cluster_says_what_is_missing() {
    let out = Command::new(env!("CARGO_BIN_EXE_marketplace-operator"))
        .args(["run", "--metrics-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("run marketplace-operator");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Kubernetes client"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
