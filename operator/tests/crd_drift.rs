//! crds/crds.yaml is what `marketplace-operator crd` prints: the committed CRDs never drift from
//! the Rust types.

#[test]
fn committed_crds_equal_the_generated_ones() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/crds.yaml");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let generated = marketplace_operator::crd::all_crds_yaml().expect("CRDs serialize");
    assert!(
        committed == generated,
        "crds/crds.yaml differs from the types in crds/src; regenerate it with:\n  cargo run -q -p marketplace-operator -- crd > crds/crds.yaml"
    );
}
