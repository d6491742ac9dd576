//! The install manifests (manifests/, kustomize): every overlay renders with the real
//! `kubectl kustomize`, the dev overlay applies server-side to a devcluster served by this
//! test process, the base's copy of the CRDs never drifts from crds/crds.yaml, and the RBAC
//! grants exactly the calls the operator makes (the list below).
//!
//! Every kubectl run is bounded and killed when it overruns.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::Api;
use serde_json::Value;

/// The operator's namespace, set by manifests/base/kustomization.yaml.
const NAMESPACE: &str = "marketplace-system";
/// The longest a kubectl command may run.
const KUBECTL_LIMIT: Duration = Duration::from_secs(90);

/// Where an API call reaches: every namespace (ClusterRole) or only the operator's own (Role).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    Cluster,
    Own,
}

/// Every (scope, API group, resource, verb) the operator's `run` uses. When the operator
/// starts a new kind of API call, add it here and its rule to manifests/base/rbac.yaml; the
/// tests below then require the rule and refuse rules nobody listed.
const REQUIRED: &[(Scope, &str, &str, &str)] = &[
    // controllers/marketplace_service/mod.rs: the controller's watch (reads go to its cache).
    (
        Scope::Cluster,
        "marketplace.dev",
        "marketplaceservices",
        "list",
    ),
    (
        Scope::Cluster,
        "marketplace.dev",
        "marketplaceservices",
        "watch",
    ),
    // Status by server-side apply: reconcile (mod.rs) and autoscalers (autoscaler.rs).
    (
        Scope::Cluster,
        "marketplace.dev",
        "marketplaceservices/status",
        "patch",
    ),
    // controllers/cache_tier.rs, and the MarketplaceService controller's watch of tiers.
    (Scope::Cluster, "marketplace.dev", "cachetiers", "list"),
    (Scope::Cluster, "marketplace.dev", "cachetiers", "watch"),
    (
        Scope::Cluster,
        "marketplace.dev",
        "cachetiers/status",
        "patch",
    ),
    // Owned Deployments: watched, read (get_opt), applied by the reconcile and the
    // autoscalers; a CacheTier's deleted on a mode switch. An apply that creates the
    // object is authorized as create as well.
    (Scope::Cluster, "apps", "deployments", "get"),
    (Scope::Cluster, "apps", "deployments", "list"),
    (Scope::Cluster, "apps", "deployments", "watch"),
    (Scope::Cluster, "apps", "deployments", "create"),
    (Scope::Cluster, "apps", "deployments", "patch"),
    (Scope::Cluster, "apps", "deployments", "delete"),
    // A PrimaryReplica CacheTier's StatefulSet.
    (Scope::Cluster, "apps", "statefulsets", "list"),
    (Scope::Cluster, "apps", "statefulsets", "watch"),
    (Scope::Cluster, "apps", "statefulsets", "create"),
    (Scope::Cluster, "apps", "statefulsets", "patch"),
    (Scope::Cluster, "apps", "statefulsets", "delete"),
    // Owned Services: watched and applied; a CacheTier's extra ones deleted on a switch.
    (Scope::Cluster, "", "services", "list"),
    (Scope::Cluster, "", "services", "watch"),
    (Scope::Cluster, "", "services", "create"),
    (Scope::Cluster, "", "services", "patch"),
    (Scope::Cluster, "", "services", "delete"),
    // A CacheTier's redis.conf ConfigMap.
    (Scope::Cluster, "", "configmaps", "list"),
    (Scope::Cluster, "", "configmaps", "watch"),
    (Scope::Cluster, "", "configmaps", "create"),
    (Scope::Cluster, "", "configmaps", "patch"),
    // A CacheTier's password Secret: read and created once, never listed.
    (Scope::Cluster, "", "secrets", "get"),
    (Scope::Cluster, "", "secrets", "create"),
    // Owned PodDisruptionBudgets: watched, applied, deleted when no longer wanted.
    (Scope::Cluster, "policy", "poddisruptionbudgets", "list"),
    (Scope::Cluster, "policy", "poddisruptionbudgets", "watch"),
    (Scope::Cluster, "policy", "poddisruptionbudgets", "create"),
    (Scope::Cluster, "policy", "poddisruptionbudgets", "patch"),
    (Scope::Cluster, "policy", "poddisruptionbudgets", "delete"),
    // controllers/preview_environment/: the watch, the finalizer by patch, the status.
    (
        Scope::Cluster,
        "marketplace.dev",
        "previewenvironments",
        "list",
    ),
    (
        Scope::Cluster,
        "marketplace.dev",
        "previewenvironments",
        "watch",
    ),
    (
        Scope::Cluster,
        "marketplace.dev",
        "previewenvironments",
        "patch",
    ),
    (
        Scope::Cluster,
        "marketplace.dev",
        "previewenvironments/status",
        "patch",
    ),
    // Preview namespaces: read, watched, listed by uid, applied, deleted.
    (Scope::Cluster, "", "namespaces", "get"),
    (Scope::Cluster, "", "namespaces", "list"),
    (Scope::Cluster, "", "namespaces", "watch"),
    (Scope::Cluster, "", "namespaces", "create"),
    (Scope::Cluster, "", "namespaces", "patch"),
    (Scope::Cluster, "", "namespaces", "delete"),
    // A preview's copies and its CacheTier: applied, deleted when no longer built.
    (
        Scope::Cluster,
        "marketplace.dev",
        "marketplaceservices",
        "create",
    ),
    (
        Scope::Cluster,
        "marketplace.dev",
        "marketplaceservices",
        "patch",
    ),
    (
        Scope::Cluster,
        "marketplace.dev",
        "marketplaceservices",
        "delete",
    ),
    (Scope::Cluster, "marketplace.dev", "cachetiers", "create"),
    (Scope::Cluster, "marketplace.dev", "cachetiers", "patch"),
    (Scope::Cluster, "marketplace.dev", "cachetiers", "delete"),
    // A preview namespace's quota and limits: applied.
    (Scope::Cluster, "", "resourcequotas", "create"),
    (Scope::Cluster, "", "resourcequotas", "patch"),
    (Scope::Cluster, "", "limitranges", "create"),
    (Scope::Cluster, "", "limitranges", "patch"),
    // A preview's policies and ingresses: applied, pruned.
    (
        Scope::Cluster,
        "networking.k8s.io",
        "networkpolicies",
        "list",
    ),
    (
        Scope::Cluster,
        "networking.k8s.io",
        "networkpolicies",
        "create",
    ),
    (
        Scope::Cluster,
        "networking.k8s.io",
        "networkpolicies",
        "patch",
    ),
    (
        Scope::Cluster,
        "networking.k8s.io",
        "networkpolicies",
        "delete",
    ),
    (Scope::Cluster, "networking.k8s.io", "ingresses", "list"),
    (Scope::Cluster, "networking.k8s.io", "ingresses", "create"),
    (Scope::Cluster, "networking.k8s.io", "ingresses", "patch"),
    (Scope::Cluster, "networking.k8s.io", "ingresses", "delete"),
    // kube::runtime::events::Recorder: a new Event, then a series patch on repeats.
    (Scope::Cluster, "events.k8s.io", "events", "create"),
    (Scope::Cluster, "events.k8s.io", "events", "patch"),
    // run.rs, kube-lease-manager: the leader election Lease in the operator's namespace.
    (Scope::Own, "coordination.k8s.io", "leases", "get"),
    (Scope::Own, "coordination.k8s.io", "leases", "create"),
    (Scope::Own, "coordination.k8s.io", "leases", "patch"),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("mkt-manifests-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the real kubectl with `args` (from the repository root), output to files in `dir`,
/// for at most KUBECTL_LIMIT; panics with its output unless it exits 0. Returns stdout.
fn kubectl(dir: &Path, kubeconfig: Option<&Path>, args: &[&str]) -> String {
    let stdout_path = dir.join("kubectl.stdout");
    let stderr_path = dir.join("kubectl.stderr");
    let stdout = std::fs::File::create(&stdout_path).expect("create kubectl's stdout file");
    let stderr = std::fs::File::create(&stderr_path).expect("create kubectl's stderr file");
    let mut command = Command::new("kubectl");
    if let Some(kubeconfig) = kubeconfig {
        // A private discovery cache: devcluster ports are reused across runs.
        command
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cache-dir")
            .arg(dir.join("cache"));
    }
    let mut child = command
        .args(args)
        .current_dir(repo())
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("kubectl starts (is it installed?)");
    let deadline = Instant::now() + KUBECTL_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll kubectl") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "kubectl {} ran longer than {KUBECTL_LIMIT:?}: {}",
                args.join(" "),
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    assert!(
        status.success(),
        "kubectl {} failed ({status}):\n{out}\n{}",
        args.join(" "),
        std::fs::read_to_string(&stderr_path).unwrap_or_default()
    );
    out
}

/// `kubectl kustomize <dir>`, parsed into its objects.
fn render(scratch: &Scratch, kustomization: &str) -> Vec<Value> {
    let yaml = kubectl(&scratch.0, None, &["kustomize", kustomization]);
    let docs: Vec<Value> =
        serde_saphyr::from_str_multiple(&yaml).expect("kustomize renders valid YAML");
    docs.into_iter().filter(Value::is_object).collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendered manifests"))
}

fn kinds(objects: &[Value]) -> BTreeSet<String> {
    objects
        .iter()
        .filter_map(|o| o["kind"].as_str().map(str::to_owned))
        .collect()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Every (group, resource, verb) the rules grant, with `*` left as written.
fn grants(role: &Value) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().into_iter().flatten() {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    out.insert((group.to_owned(), resource.to_owned(), verb.to_owned()));
                }
            }
        }
    }
    out
}

fn required(scope: Scope) -> BTreeSet<(String, String, String)> {
    REQUIRED
        .iter()
        .filter(|(s, ..)| *s == scope)
        .map(|(_, g, r, v)| ((*g).to_owned(), (*r).to_owned(), (*v).to_owned()))
        .collect()
}

fn the_operator_container(objects: &[Value]) -> &Value {
    let deployment = find(objects, "Deployment", "marketplace-operator");
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

#[test]
fn the_base_crds_are_a_byte_identical_copy_of_crds_yaml() {
    let original = std::fs::read(repo().join("crds/crds.yaml")).expect("read crds/crds.yaml");
    let copy = std::fs::read(repo().join("manifests/base/crds.yaml")).unwrap_or_default();
    assert!(
        copy == original,
        "manifests/base/crds.yaml differs from crds/crds.yaml; refresh it with:\n  cp crds/crds.yaml manifests/base/crds.yaml"
    );
}

#[test]
fn the_dev_overlay_renders_one_restricted_replica_in_its_namespace() {
    let scratch = Scratch::new("render-dev");
    let objects = render(&scratch, "manifests/overlays/dev");
    let expected = [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
    ];
    for kind in expected {
        assert!(
            kinds(&objects).contains(kind),
            "the dev overlay has no {kind}"
        );
    }
    assert!(
        !kinds(&objects).contains("PodMonitor"),
        "the dev overlay must not need the Prometheus Operator's CRDs"
    );
    let namespaced = [
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
    ];
    for o in objects.iter().filter(|o| {
        o["kind"]
            .as_str()
            .is_some_and(|kind| namespaced.contains(&kind))
    }) {
        assert_eq!(
            o["metadata"]["namespace"], NAMESPACE,
            "{} {} is outside {NAMESPACE}",
            o["kind"], o["metadata"]["name"]
        );
    }
    for binding in ["ClusterRoleBinding", "RoleBinding"] {
        let subject = &find(
            &objects,
            binding,
            match binding {
                "RoleBinding" => "marketplace-operator-leader-election",
                _ => "marketplace-operator",
            },
        )["subjects"][0];
        assert_eq!(subject["kind"], "ServiceAccount");
        assert_eq!(subject["name"], "marketplace-operator");
        assert_eq!(subject["namespace"], NAMESPACE, "{binding}'s subject");
    }

    let deployment = find(&objects, "Deployment", "marketplace-operator");
    assert_eq!(deployment["spec"]["replicas"], 1);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "marketplace-operator");
    let c = the_operator_container(&objects);
    assert_eq!(c["image"], "registry.example/marketplace-operator:0.1.0");
    assert_eq!(strings(&c["args"]), ["run"]);
    let env = |name: &str| {
        c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in the container's env"))
    };
    assert_eq!(
        env("POD_NAME")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert_eq!(
        env("POD_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert!(env("PROMETHEUS_URL")["value"].is_string());
    assert_eq!(c["ports"][0]["name"], "metrics");
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(c["resources"]["requests"].is_object());
    assert!(c["resources"]["limits"]["memory"].is_string());
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");

    let service = find(&objects, "Service", "marketplace-operator-metrics");
    assert_eq!(service["spec"]["ports"][0]["name"], "metrics");
}

#[test]
fn the_production_overlay_renders_two_replicas_and_a_pod_monitor() {
    let scratch = Scratch::new("render-production");
    let objects = render(&scratch, "manifests/overlays/production");
    let deployment = find(&objects, "Deployment", "marketplace-operator");
    assert_eq!(deployment["spec"]["replicas"], 2);

    let monitor = find(&objects, "PodMonitor", "marketplace-services");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["spec"]["namespaceSelector"]["any"], true);
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/managed-by"],
        "marketplace-operator"
    );
    // The operator's PromQL selects by `namespace` and `service` (metrics/queries.rs).
    let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
    assert_eq!(endpoint["port"], "http");
    let relabelings = endpoint["relabelings"].as_array().expect("relabelings");
    let sets = |target: &str, source: &str| {
        relabelings
            .iter()
            .any(|r| r["targetLabel"] == target && strings(&r["sourceLabels"]) == [source])
    };
    assert!(
        sets(
            "service",
            "__meta_kubernetes_pod_label_app_kubernetes_io_name"
        ),
        "the PodMonitor must set `service` from app.kubernetes.io/name"
    );
    assert!(
        sets("namespace", "__meta_kubernetes_namespace"),
        "the PodMonitor must keep `namespace`"
    );
}

#[test]
fn the_cluster_role_grants_every_call_the_operator_makes_and_nothing_else() {
    let scratch = Scratch::new("rbac");
    let objects = render(&scratch, "manifests/overlays/dev");
    for (kind, name, scope) in [
        ("ClusterRole", "marketplace-operator", Scope::Cluster),
        ("Role", "marketplace-operator-leader-election", Scope::Own),
    ] {
        let granted = grants(find(&objects, kind, name));
        assert!(
            granted
                .iter()
                .all(|(g, r, v)| g != "*" && r != "*" && v != "*"),
            "{kind} {name} uses a wildcard: {granted:?}"
        );
        let needed = required(scope);
        let missing: Vec<_> = needed.difference(&granted).collect();
        assert!(
            missing.is_empty(),
            "{kind} {name} (manifests/base/rbac.yaml) lacks rules the operator needs: {missing:?}"
        );
        let unused: Vec<_> = granted.difference(&needed).collect();
        assert!(
            unused.is_empty(),
            "{kind} {name} grants what the operator does not use (least privilege; or add \
             the call to REQUIRED): {unused:?}"
        );
    }
}

/// `kubectl apply --server-side -k manifests/overlays/dev`, off the async runtime (kubectl
/// blocks); its stdout.
async fn apply_dev_overlay(dir: &Path, kubeconfig: &Path) -> String {
    let (dir, kubeconfig) = (dir.to_path_buf(), kubeconfig.to_path_buf());
    tokio::task::spawn_blocking(move || {
        kubectl(
            &dir,
            Some(&kubeconfig),
            &[
                "apply",
                "--server-side",
                "--field-manager",
                "manifests-test",
                "-k",
                "manifests/overlays/dev",
            ],
        )
    })
    .await
    .expect("the kubectl task finishes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_overlay_applies_server_side_to_a_devcluster() {
    let scratch = Scratch::new("apply-dev");
    let kubeconfig = scratch.0.join("kubeconfig");
    let cluster = devcluster::DevCluster::start(devcluster::Config {
        kubeconfig: Some(kubeconfig.clone()),
        ..devcluster::Config::default()
    })
    .await
    .expect("start the devcluster");

    let out = apply_dev_overlay(&scratch.0, &kubeconfig).await;
    assert!(
        out.contains("deployment.apps/marketplace-operator serverside-applied"),
        "kubectl apply output: {out}"
    );

    let client = cluster.client().expect("a client for the devcluster");
    let bounded = Duration::from_secs(10);
    let deployment = tokio::time::timeout(
        bounded,
        Api::<Deployment>::namespaced(client.clone(), NAMESPACE).get("marketplace-operator"),
    )
    .await
    .expect("the read of the Deployment finishes")
    .expect("the Deployment was created");
    assert_eq!(
        deployment
            .spec
            .template
            .spec
            .and_then(|p| p.service_account_name)
            .as_deref(),
        Some("marketplace-operator")
    );
    tokio::time::timeout(
        bounded,
        Api::<ServiceAccount>::namespaced(client.clone(), NAMESPACE).get("marketplace-operator"),
    )
    .await
    .expect("the read of the ServiceAccount finishes")
    .expect("the ServiceAccount was created");
    let role = tokio::time::timeout(
        bounded,
        Api::<ClusterRole>::all(client.clone()).get("marketplace-operator"),
    )
    .await
    .expect("the read of the ClusterRole finishes")
    .expect("the ClusterRole was created");
    let rendered = render(&scratch, "manifests/overlays/dev");
    let expected = find(&rendered, "ClusterRole", "marketplace-operator")["rules"]
        .as_array()
        .map(Vec::len);
    assert_eq!(role.rules.map(|r| r.len()), expected);

    // Applying again changes nothing and still succeeds (GitOps tools re-apply forever).
    apply_dev_overlay(&scratch.0, &kubeconfig).await;
    cluster.shutdown().await;
}
