//! API types of the marketplace operator: group `marketplace.dev`, version `v1alpha1`.
//!
//! The doc comments on every field are what `kubectl explain` prints, so they are written for
//! the platform engineer reading them, not for the Rust reader. Cross-field rules live twice:
//! as CEL `x-kubernetes-validations` on the types (enforced by the API server) and as
//! `validate()` in Rust (run by the controllers, which must not trust that an old API server or
//! a `--validate=false` apply enforced them).

pub mod v1alpha1;
mod validation;

pub use validation::{FieldError, ValidationErrors};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray,
};
use kube::CustomResourceExt;

/// The API group of every kind in this crate.
pub const GROUP: &str = "marketplace.dev";

/// Every CustomResourceDefinition this crate defines, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        v1alpha1::MarketplaceService::crd(),
        v1alpha1::CacheTier::crd(),
        v1alpha1::PreviewEnvironment::crd(),
    ];
    for version in crds.iter_mut().flat_map(|c| c.spec.versions.iter_mut()) {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            drop_null_enum_values(schema);
        }
    }
    crds
}

/// schemars lists `null` among the values of an optional enum; with `nullable: true` beside it
/// that is redundant, and validators that check enum values against the node's `type` reject it.
fn drop_null_enum_values(schema: &mut JSONSchemaProps) {
    if let Some(values) = schema.enum_.as_mut() {
        values.retain(|v| !v.0.is_null());
    }
    let children = schema
        .properties
        .iter_mut()
        .flat_map(|p| p.values_mut())
        .chain(schema.items.iter_mut().flat_map(|items| match items {
            JSONSchemaPropsOrArray::Schema(s) => std::slice::from_mut(s.as_mut()),
            JSONSchemaPropsOrArray::Schemas(v) => v.as_mut_slice(),
        }));
    for child in children {
        drop_null_enum_values(child);
    }
    if let Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrBool::Schema(s)) =
        schema.additional_properties.as_mut()
    {
        drop_null_enum_values(s);
    }
}

/// Error turning a CRD into YAML.
#[derive(Debug, thiserror::Error)]
#[error("failed to serialize CustomResourceDefinition {name} to YAML")]
pub struct SerializeCrd {
    name: String,
    #[source]
    source: serde_saphyr::SerializeError,
}

/// The YAML document of one CRD, as committed in `crds/<plural>.yaml`.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String, SerializeCrd> {
    serde_saphyr::to_string(crd).map_err(|source| SerializeCrd {
        name: crd.metadata.name.clone().unwrap_or_default(),
        source,
    })
}
