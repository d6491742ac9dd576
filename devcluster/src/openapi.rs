//! OpenAPI v3 for kubectl: the root index (`/openapi/v3`) and one document per
//! group-version. `kubectl apply` checks that PATCH declares the `fieldValidation`
//! query parameter for the kind (else it refuses to validate), picks merge vs
//! strategic merge from the PATCH media types, and `kubectl explain` walks the
//! component schema tagged with the kind's `x-kubernetes-group-version-kind`.

use std::hash::{DefaultHasher, Hash, Hasher};

use serde_json::{Map, Value, json};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::schemars::JsonSchema;
use k8s_openapi::schemars::SchemaGenerator;
use k8s_openapi::schemars::generate::SchemaSettings;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::resources::{Registry, ResourceInfo};
use crate::typed;

/// Registers a built-in's schema (and everything it references) in the generator.
struct SchemaFor<'a>(&'a mut SchemaGenerator);

impl typed::KindVisitor for SchemaFor<'_> {
    type Out = String;
    fn visit<T: DeserializeOwned + Serialize + JsonSchema>(self) -> String {
        self.0.subschema_for::<T>();
        T::schema_name().into_owned()
    }
}

/// `marketplace.dev` + `v1alpha1` + `Kind` -> `dev.marketplace.v1alpha1.Kind` (upstream's naming).
fn schema_name(info: &ResourceInfo, version: &str) -> String {
    if info.builtin {
        let pkg = if info.group.is_empty() {
            "core"
        } else {
            info.group.split('.').next().unwrap_or("core")
        };
        return format!("io.k8s.api.{pkg}.{version}.{}", info.kind);
    }
    let reversed: Vec<&str> = info.group.split('.').rev().collect();
    format!("{}.{version}.{}", reversed.join("."), info.kind)
}

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

fn kind_schema(info: &ResourceInfo, version: &str) -> Value {
    let gvk = json!([{"group": info.group, "version": version, "kind": info.kind}]);
    let mut schema = info
        .version(version)
        .and_then(|v| v.schema.clone())
        .unwrap_or_else(|| {
            json!({
                "type": "object",
                "description": format!("{} is a built-in {} resource.", info.kind, info.api_version(version)),
                "properties": {
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                },
            })
        });
    if let Some(o) = schema.as_object_mut() {
        o.insert("x-kubernetes-group-version-kind".into(), gvk);
        let props = o.entry("properties").or_insert_with(|| json!({}));
        if let Some(p) = props.as_object_mut() {
            p.insert(
                "apiVersion".into(),
                json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}),
            );
            p.insert(
                "kind".into(),
                json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}),
            );
            p.insert(
                "metadata".into(),
                json!({"allOf": [{"$ref": format!("#/components/schemas/{OBJECT_META}")}], "description": "Standard object's metadata."}),
            );
        }
    }
    schema
}

fn param(name: &str, type_: &str) -> Value {
    json!({"name": name, "in": "query", "description": name, "schema": {"type": type_, "uniqueItems": true}})
}

fn operations(info: &ResourceInfo, version: &str, item: bool, schema: &str) -> Value {
    let gvk = json!({"group": info.group, "version": version, "kind": info.kind});
    let reference = json!({"$ref": format!("#/components/schemas/{schema}")});
    let body = |types: &[&str]| {
        let content: Map<String, Value> = types
            .iter()
            .map(|t| (t.to_string(), json!({"schema": reference})))
            .collect();
        json!({"content": content, "required": true})
    };
    let ok = json!({"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}});
    let op = |action: &str, params: Vec<Value>, request: Option<Value>| {
        let mut o = json!({
            "operationId": format!("{action}{}", info.kind),
            "parameters": params,
            "responses": ok,
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
        });
        if let Some(b) = request {
            o["requestBody"] = b;
        }
        o
    };
    let write_params = || {
        vec![
            param("dryRun", "string"),
            param("fieldManager", "string"),
            param("fieldValidation", "string"),
        ]
    };
    if item {
        // Strategic merge is accepted for built-ins but not declared: our schemas carry no
        // patch merge keys, and without the declaration kubectl builds its strategic
        // patch from its compiled-in types (exact keys and directives); for custom
        // resources it then uses merge patch, as against a real server.
        let patch_types = [
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/apply-patch+yaml",
        ];
        let mut patch_params = write_params();
        patch_params.push(param("force", "boolean"));
        json!({
            "get": op("get", vec![], None),
            "put": op("put", write_params(), Some(body(&["application/json", "application/yaml"]))),
            "patch": op("patch", patch_params, Some(body(&patch_types))),
            "delete": op("delete", vec![param("dryRun", "string"), param("propagationPolicy", "string")], None),
        })
    } else {
        json!({
            "get": op("list", vec![param("labelSelector", "string"), param("fieldSelector", "string"), param("watch", "boolean")], None),
            "post": op("post", write_params(), Some(body(&["application/json", "application/yaml"]))),
            "delete": op("deletecollection", vec![param("labelSelector", "string")], None),
        })
    }
}

pub fn document(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let resources: Vec<_> = reg.in_group_version(group, version).collect();
    if resources.is_empty() {
        return None;
    }
    let prefix = if group.is_empty() {
        "/api/v1".to_string()
    } else {
        format!("/apis/{group}/{version}")
    };
    let mut paths = Map::new();
    let mut schemas = Map::new();
    // Built-ins are described by k8s-openapi's schemas (the upstream ones, descriptions
    // included, so `kubectl explain deployment.spec` works); CRDs by their own.
    let mut generator = SchemaSettings::openapi3().into_generator();
    generator.subschema_for::<ObjectMeta>();
    let mut builtin_kinds = vec![];
    for r in resources {
        let typed = r
            .builtin
            .then(|| typed::with_type(&r.group, &r.plural, SchemaFor(&mut generator)))
            .flatten();
        let name = typed.clone().unwrap_or_else(|| schema_name(r, version));
        let collection = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{prefix}/{}", r.plural)
        };
        paths.insert(collection.clone(), operations(r, version, false, &name));
        paths.insert(
            format!("{collection}/{{name}}"),
            operations(r, version, true, &name),
        );
        match typed {
            Some(name) => builtin_kinds.push((
                name,
                json!([{"group": r.group, "version": version, "kind": r.kind}]),
            )),
            None => {
                schemas.insert(name, kind_schema(r, version));
            }
        }
    }
    for (k, v) in generator.take_definitions(true) {
        schemas.entry(k).or_insert(v);
    }
    for (name, gvk) in builtin_kinds {
        if let Some(o) = schemas.get_mut(&name).and_then(Value::as_object_mut) {
            o.insert("x-kubernetes-group-version-kind".into(), gvk);
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// The index kubectl reads first. The hash changes when a document does, which is how
/// kubectl's on-disk cache learns that a new CRD appeared.
pub fn root(reg: &Registry) -> Value {
    let mut paths = Map::new();
    let mut gvs: Vec<(String, String)> = vec![(String::new(), "v1".into())];
    for (g, vs) in reg.groups() {
        gvs.extend(vs.into_iter().map(|v| (g.clone(), v)));
    }
    for (g, v) in gvs {
        let Some(doc) = document(reg, &g, &v) else {
            continue;
        };
        let mut h = DefaultHasher::new();
        doc.to_string().hash(&mut h);
        let key = if g.is_empty() {
            "api/v1".to_string()
        } else {
            format!("apis/{g}/{v}")
        };
        paths.insert(
            key.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={:016X}", h.finish())}),
        );
    }
    json!({"paths": paths})
}

/// Rendered OpenAPI documents, rebuilt only when the registry changes (rendering the
/// built-ins' schemas is the expensive part, and kubectl fetches them on every apply).
#[derive(Debug, Default)]
pub struct Cache {
    generation: Option<u64>,
    entries: std::collections::HashMap<String, Option<bytes::Bytes>>,
}

impl Cache {
    /// The document under `key` (`""` for the root, else `group/version`), JSON-encoded.
    pub fn get(&mut self, reg: &Registry, key: &str) -> Option<bytes::Bytes> {
        if self.generation != Some(reg.generation()) {
            self.entries.clear();
            self.generation = Some(reg.generation());
        }
        self.entries
            .entry(key.to_string())
            .or_insert_with(|| {
                let doc = match key.split_once('/') {
                    None if key.is_empty() => Some(root(reg)),
                    Some((g, v)) => document(reg, g, v),
                    None => None,
                };
                doc.map(|d| bytes::Bytes::from(serde_json::to_vec(&d).unwrap_or_default()))
            })
            .clone()
    }
}
