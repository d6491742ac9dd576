//! `marketplace-operator crd`: the CustomResourceDefinitions as YAML, the same text that is
//! committed in `crds/` (a test keeps the two equal).

use marketplace_crds::SerializeCrd;

/// Every CRD as one YAML stream, documents separated by `---`.
pub fn all_crds_yaml() -> Result<String, SerializeCrd> {
    let docs = marketplace_crds::crds()
        .iter()
        .map(marketplace_crds::crd_yaml)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(docs.join("---\n"))
}
