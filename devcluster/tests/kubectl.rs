//! The real `kubectl` (v1.32) against a running devcluster, through the generated
//! kubeconfig: the commands people and scripts use every day.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

struct Kubectl {
    kubeconfig: PathBuf,
    cache: PathBuf,
    dir: PathBuf,
}

impl Kubectl {
    fn new(cluster: &devcluster::DevCluster, test: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("devcluster-kubectl-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        cluster.write_kubeconfig(&kubeconfig).unwrap();
        Kubectl {
            kubeconfig,
            cache: dir.join("cache"),
            dir,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        // A private discovery/OpenAPI cache: ports are reused across runs.
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args);
        c
    }

    async fn run(&self, args: &[&str]) -> Output {
        let mut c = self.command(args);
        tokio::task::spawn_blocking(move || c.output().expect("kubectl runs"))
            .await
            .unwrap()
    }

    /// Run and require success; returns stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "kubectl {} failed: {}{}",
            args.join(" "),
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn file(&self, name: &str, contents: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, contents).unwrap();
        p.display().to_string()
    }
}

impl Drop for Kubectl {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

const WIDGET: &str = "apiVersion: test.devcluster.dev/v1
kind: Widget
metadata: {name: w1, namespace: shop}
spec: {color: red, replicas: 2, ports: [{name: http, port: 80}]}
";

#[tokio::test]
async fn kubectl_manages_a_custom_resource_end_to_end() {
    let (cluster, _client) = start().await;
    let k = Kubectl::new(&cluster, "crd");
    assert!(
        k.ok(&["apply", "-f", &fixture("widgets.yaml")])
            .await
            .contains("created")
    );
    // kubectl create sends protobuf for built-in kinds.
    assert!(
        k.ok(&["create", "namespace", "shop"])
            .await
            .contains("created")
    );

    let w = k.file("w.yaml", WIDGET);
    assert!(k.ok(&["apply", "-f", &w]).await.contains("created"));
    assert!(k.ok(&["apply", "-f", &w]).await.contains("unchanged"));
    let changed = k.file("w2.yaml", &WIDGET.replace("color: red", "color: blue"));
    assert!(
        k.ok(&["apply", "-f", &changed])
            .await
            .contains("configured")
    );
    assert!(
        k.ok(&["apply", "--server-side", "-f", &changed])
            .await
            .contains("serverside-applied")
    );

    let table = k.ok(&["get", "wdg", "-n", "shop"]).await;
    let header = table.lines().next().unwrap_or_default();
    for col in ["NAME", "COLOR", "REPLICAS", "READY", "AGE"] {
        assert!(header.contains(col), "header {header:?} lacks {col}");
    }
    assert!(table.contains("w1") && table.contains("blue"), "{table}");

    let explained = k.ok(&["explain", "widgets.spec.color"]).await;
    assert!(
        explained.contains("DESCRIPTION") && explained.contains("The widget's color."),
        "{explained}"
    );

    assert!(
        k.ok(&["scale", "widget/w1", "-n", "shop", "--replicas=4"])
            .await
            .contains("scaled")
    );
    assert_eq!(
        k.ok(&[
            "get",
            "widget",
            "w1",
            "-n",
            "shop",
            "-o",
            "jsonpath={.spec.replicas}"
        ])
        .await,
        "4"
    );

    let described = k.ok(&["describe", "widget", "w1", "-n", "shop"]).await;
    assert!(
        described.contains("Name:") && described.contains("w1") && described.contains("blue"),
        "{described}"
    );

    // get -w sees a label change as a MODIFIED event.
    let mut watch = k
        .command(&[
            "get",
            "widgets",
            "-n",
            "shop",
            "-w",
            "--output-watch-events",
            "--request-timeout=10s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    k.ok(&["label", "widget", "w1", "-n", "shop", "tier=core"])
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = watch.kill();
    let out = tokio::task::spawn_blocking(move || watch.wait_with_output().unwrap())
        .await
        .unwrap();
    let seen = String::from_utf8_lossy(&out.stdout);
    assert!(
        seen.contains("ADDED") && seen.contains("MODIFIED"),
        "watch output: {seen}"
    );

    k.ok(&[
        "delete",
        "widget",
        "w1",
        "-n",
        "shop",
        "--wait",
        "--timeout=20s",
    ])
    .await;
    let gone = k.run(&["get", "widget", "w1", "-n", "shop"]).await;
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("NotFound"));
    cluster.shutdown().await;
}

#[tokio::test]
async fn kubectl_rejects_invalid_objects_with_the_field_named() {
    let (cluster, _client) = start().await;
    let k = Kubectl::new(&cluster, "invalid");
    k.ok(&["apply", "-f", &fixture("widgets.yaml")]).await;
    k.ok(&["create", "namespace", "shop"]).await;
    let bad = k.file("bad.yaml", &WIDGET.replace("replicas: 2", "replicas: 50"));
    let out = k.run(&["apply", "-f", &bad]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.replicas") && err.contains("less than or equal to 10"),
        "{err}"
    );
    // kubectl asks for strict field validation: an unknown field is an error, not pruned.
    let unknown = k.file(
        "unknown.yaml",
        &WIDGET.replace("color: red", "color: red, colour: red"),
    );
    let out = k.run(&["apply", "-f", &unknown]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown field") && err.contains("spec.colour"),
        "{err}"
    );
    let cel = k.file("cel.yaml", &WIDGET.replace("replicas: 2", "replicas: 7"));
    let out = k.run(&["apply", "-f", &cel]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("red widgets come in fives at most"), "{err}");
    cluster.shutdown().await;
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: main
        image: main:1
        env: [{name: A, value: '1'}, {name: B, value: '2'}]
      - name: sidecar
        image: side:1
";

#[tokio::test]
async fn kubectl_apply_of_a_builtin_uses_strategic_merge_and_scale_works() {
    let (cluster, client) = start().await;
    let k = Kubectl::new(&cluster, "deploy");
    let d = k.file("d.yaml", DEPLOYMENT);
    assert!(k.ok(&["apply", "-f", &d]).await.contains("created"));
    // Drop env B and the sidecar from the manifest: client-side apply must remove them.
    let d2 = k.file(
        "d2.yaml",
        &DEPLOYMENT
            .replace(", {name: B, value: '2'}", "")
            .replace("      - name: sidecar\n        image: side:1\n", ""),
    );
    assert!(k.ok(&["apply", "-f", &d2]).await.contains("configured"));
    let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::default_namespaced(client.clone());
    let dep = api.get("web").await.unwrap();
    let containers = dep.spec.template.spec.unwrap().containers;
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0].env.as_ref().map(Vec::len), Some(1));
    let explained = k.ok(&["explain", "deployment.spec.replicas"]).await;
    assert!(explained.contains("Number of desired pods"), "{explained}");
    // A typo in a built-in kind is refused (kubectl asks for strict field validation).
    let typo = k.file(
        "typo.yaml",
        &DEPLOYMENT.replace("replicas: 1", "replcas: 1"),
    );
    let out = k.run(&["apply", "-f", &typo]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("unknown field \"spec.replcas\""),
        "{err}"
    );
    assert!(
        k.ok(&["scale", "deployment/web", "--replicas=3"])
            .await
            .contains("scaled")
    );
    assert_eq!(api.get("web").await.unwrap().spec.replicas, Some(3));
    let listed = k.ok(&["get", "deployments"]).await;
    let header = listed.lines().next().unwrap_or_default();
    assert!(
        header.contains("READY") && header.contains("UP-TO-DATE") && listed.contains("web"),
        "{listed}"
    );
    let svc = k.file("svc.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {selector: {app: web}, ports: [{port: 80}]}\n");
    k.ok(&["apply", "-f", &svc]).await;
    let services = k.ok(&["get", "services"]).await;
    assert!(
        services.contains("CLUSTER-IP")
            && services.contains("10.96.")
            && services.contains("80/TCP"),
        "{services}"
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn kubectl_generators_that_send_protobuf_are_understood() {
    let (cluster, client) = start().await;
    let k = Kubectl::new(&cluster, "generators");
    k.ok(&["create", "namespace", "gen"]).await;
    k.ok(&[
        "create",
        "deployment",
        "web",
        "-n",
        "gen",
        "--image=nginx:1.27",
        "--replicas=2",
        "--port=80",
    ])
    .await;
    k.ok(&[
        "expose",
        "deployment",
        "web",
        "-n",
        "gen",
        "--port=8080",
        "--target-port=80",
    ])
    .await;
    k.ok(&[
        "run",
        "one",
        "-n",
        "gen",
        "--image=busybox",
        "--env=A=1",
        "--labels=app=one",
    ])
    .await;
    k.ok(&[
        "create",
        "configmap",
        "cfg",
        "-n",
        "gen",
        "--from-literal=a=b",
    ])
    .await;
    k.ok(&[
        "create",
        "secret",
        "generic",
        "s",
        "-n",
        "gen",
        "--from-literal=k=v",
    ])
    .await;

    let d: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(client.clone(), "gen");
    let d = d.get("web").await.unwrap();
    assert_eq!(d.spec.replicas, Some(2));
    let c = &d.spec.template.spec.as_ref().unwrap().containers[0];
    assert_eq!(
        (
            c.image.as_deref(),
            c.ports.as_ref().unwrap()[0].container_port
        ),
        (Some("nginx:1.27"), 80)
    );
    let s: kube::Api<k8s_openapi::api::core::v1::Service> =
        kube::Api::namespaced(client.clone(), "gen");
    let port = s.get("web").await.unwrap().spec.unwrap().ports.unwrap()[0].clone();
    assert_eq!(
        (port.port, port.target_port),
        (
            8080,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(80))
        )
    );
    let p: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(client.clone(), "gen");
    let pod = p.get("one").await.unwrap();
    assert_eq!(
        pod.spec.unwrap().containers[0].env.as_ref().unwrap()[0]
            .value
            .as_deref(),
        Some("1")
    );
    let cm: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client.clone(), "gen");
    assert_eq!(cm.get("cfg").await.unwrap().data.unwrap()["a"], "b");
    let sec: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(client.clone(), "gen");
    assert_eq!(sec.get("s").await.unwrap().data.unwrap()["k"].0, b"v");
    cluster.shutdown().await;
}

#[tokio::test]
async fn kubectl_creates_rbac_batch_and_networking_objects_from_protobuf() {
    let (cluster, _client) = start().await;
    let k = Kubectl::new(&cluster, "generators2");
    k.ok(&["create", "namespace", "f"]).await;
    for args in [
        &[
            "create",
            "clusterrole",
            "viewer",
            "--verb=get,list",
            "--resource=pods",
        ][..],
        &[
            "create",
            "clusterrolebinding",
            "vb",
            "--clusterrole=viewer",
            "--user=alice",
        ],
        &[
            "create",
            "role",
            "r",
            "-n",
            "f",
            "--verb=get",
            "--resource=secrets",
        ],
        &[
            "create",
            "rolebinding",
            "rb",
            "-n",
            "f",
            "--clusterrole=viewer",
            "--serviceaccount=f:default",
        ],
        &[
            "create",
            "cronjob",
            "nightly",
            "-n",
            "f",
            "--image=busybox",
            "--schedule=0 1 * * *",
            "--",
            "true",
        ],
        &["create", "job", "once", "-n", "f", "--from=cronjob/nightly"],
        &[
            "create",
            "ingress",
            "ing",
            "-n",
            "f",
            "--rule=foo.com/bar=svc1:8080",
        ],
        &[
            "create",
            "poddisruptionbudget",
            "p",
            "-n",
            "f",
            "--selector=app=web",
            "--min-available=1",
        ],
        &["create", "quota", "q", "-n", "f", "--hard=cpu=1,pods=2"],
        &["create", "priorityclass", "high", "--value=1000"],
        &[
            "create",
            "deployment",
            "zero",
            "-n",
            "f",
            "--image=nginx",
            "--replicas=0",
        ],
    ] {
        assert!(
            k.ok(args).await.contains("created"),
            "kubectl {}",
            args.join(" ")
        );
    }
    let rules = k
        .ok(&[
            "get",
            "clusterrole",
            "viewer",
            "-o",
            "jsonpath={.rules[0].verbs}",
        ])
        .await;
    assert_eq!(rules, r#"["get","list"]"#);
    let subject = k
        .ok(&[
            "get",
            "rolebinding",
            "rb",
            "-n",
            "f",
            "-o",
            "jsonpath={.subjects[0].name}/{.roleRef.name}",
        ])
        .await;
    assert_eq!(subject, "default/viewer");
    let owner = k
        .ok(&[
            "get",
            "job",
            "once",
            "-n",
            "f",
            "-o",
            "jsonpath={.metadata.ownerReferences[0].name}",
        ])
        .await;
    assert_eq!(owner, "nightly");
    // An embedded Go struct (IngressRule's IngressRuleValue) is inlined, as in JSON.
    let backend = k
        .ok(&[
            "get",
            "ingress",
            "ing",
            "-n",
            "f",
            "-o",
            "jsonpath={.spec.rules[0].http.paths[0].backend.service.port.number}",
        ])
        .await;
    assert_eq!(backend, "8080");
    let replicas = k
        .ok(&[
            "get",
            "deploy",
            "zero",
            "-n",
            "f",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
        .await;
    assert_eq!(
        replicas, "0",
        "an explicit zero survives the protobuf decoding"
    );
}

#[tokio::test]
async fn kubectl_autoscale_creates_an_autoscaler_readable_in_v1_and_v2() {
    let (cluster, _client) = start().await;
    let k = Kubectl::new(&cluster, "autoscale");
    k.ok(&["create", "deployment", "web", "--image=nginx:1"])
        .await;
    assert!(
        k.ok(&[
            "autoscale",
            "deployment",
            "web",
            "--min=1",
            "--max=4",
            "--cpu-percent=70"
        ])
        .await
        .contains("autoscaled")
    );
    let v2 = k
        .ok(&[
            "get",
            "hpa.v2.autoscaling",
            "web",
            "-o",
            "jsonpath={.spec.metrics[0].resource.target.averageUtilization}",
        ])
        .await;
    assert_eq!(v2, "70");
}

#[tokio::test]
async fn kubectl_rollout_history_and_undo_follow_revisions() {
    let (cluster, _client) = start_with(devcluster::Config::with_workloads(
        std::time::Duration::from_millis(50),
    ))
    .await;
    let k = Kubectl::new(&cluster, "rollout");
    k.ok(&["create", "deployment", "web", "--image=nginx:1"])
        .await;
    k.ok(&["rollout", "status", "deploy/web", "--timeout=30s"])
        .await;
    k.ok(&["set", "image", "deploy/web", "nginx=nginx:2"]).await;
    k.ok(&["rollout", "status", "deploy/web", "--timeout=30s"])
        .await;
    let history = k.ok(&["rollout", "history", "deploy/web"]).await;
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    assert!(
        k.ok(&["rollout", "undo", "deploy/web"])
            .await
            .contains("rolled back")
    );
    k.ok(&["rollout", "status", "deploy/web", "--timeout=30s"])
        .await;
    let image = k
        .ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])
        .await;
    assert_eq!(image, "nginx:1");
    let revision = k
        .ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
        ])
        .await;
    assert_eq!(
        revision, "3",
        "the rolled-back template takes the next revision"
    );
}

#[tokio::test]
async fn kubectl_auth_can_i_logs_and_exec_answer() {
    let (cluster, _client) = start_with(devcluster::Config::with_workloads(
        std::time::Duration::from_millis(20),
    ))
    .await;
    let k = Kubectl::new(&cluster, "authlogs");
    assert_eq!(
        k.ok(&["auth", "can-i", "create", "deployments"])
            .await
            .trim(),
        "yes"
    );
    k.ok(&["run", "p", "--image=nginx"]).await;
    k.ok(&["wait", "--for=condition=Ready", "pod/p", "--timeout=30s"])
        .await;
    let logs = k.ok(&["logs", "p"]).await;
    assert!(logs.contains("started container p"), "{logs}");
    let out = k.run(&["exec", "p", "--", "ls"]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("simulated node"), "{err}");
    let token = k.ok(&["create", "token", "default"]).await;
    assert_eq!(token.trim().split('.').count(), 3, "{token}");
}
