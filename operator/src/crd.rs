//! `marketplace-operator crd`: the CustomResourceDefinitions as YAML, the same text that is
//! committed in `crds/` (a test keeps the two equal).
//!
//! schemars copies a field's doc comment into `description` with its line breaks, so
//! `kubectl explain` would break sentences wherever the Rust source wrapped. The descriptions
//! are reflowed here, once, for every CRD: wrapped lines are joined with a space, while
//! paragraph breaks (blank lines) and markdown list items keep their own lines.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
    JSONSchemaPropsOrStringArray,
};
use marketplace_crds::SerializeCrd;

/// Every CRD as one YAML stream, documents separated by `---`.
pub fn all_crds_yaml() -> Result<String, SerializeCrd> {
    let docs = crds()
        .iter()
        .map(marketplace_crds::crd_yaml)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(docs.join("---\n"))
}

/// Every CRD of [`marketplace_crds::crds`], its descriptions reflowed for `kubectl explain`.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut crds = marketplace_crds::crds();
    for crd in &mut crds {
        reflow_descriptions(crd);
    }
    crds
}

/// Reflows every `description` of `crd`: those of its schema nodes, at any depth, and those of
/// its printer columns.
fn reflow_descriptions(crd: &mut CustomResourceDefinition) {
    for version in &mut crd.spec.versions {
        for column in version.additional_printer_columns.iter_mut().flatten() {
            reflow(&mut column.description);
        }
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            visit_schemas(schema, &mut |node| reflow(&mut node.description));
        }
    }
}

fn reflow(description: &mut Option<String>) {
    if let Some(text) = description.as_mut() {
        *text = join_wrapped_lines(text);
    }
}

/// Calls `f` on `schema` and on every schema nested in it.
fn visit_schemas(schema: &mut JSONSchemaProps, f: &mut dyn FnMut(&mut JSONSchemaProps)) {
    f(schema);
    let maps = [
        &mut schema.properties,
        &mut schema.pattern_properties,
        &mut schema.definitions,
    ];
    for child in maps.into_iter().flatten().flat_map(|m| m.values_mut()) {
        visit_schemas(child, f);
    }
    let lists = [&mut schema.all_of, &mut schema.any_of, &mut schema.one_of];
    for child in lists.into_iter().flatten().flatten() {
        visit_schemas(child, f);
    }
    if let Some(child) = schema.not.as_deref_mut() {
        visit_schemas(child, f);
    }
    match schema.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(child)) => visit_schemas(child, f),
        Some(JSONSchemaPropsOrArray::Schemas(children)) => {
            for child in children {
                visit_schemas(child, f);
            }
        }
        None => {}
    }
    let or_bools = [
        &mut schema.additional_items,
        &mut schema.additional_properties,
    ];
    for or_bool in or_bools.into_iter().flatten() {
        if let JSONSchemaPropsOrBool::Schema(child) = or_bool {
            visit_schemas(child, f);
        }
    }
    for dependency in schema.dependencies.iter_mut().flat_map(|d| d.values_mut()) {
        if let JSONSchemaPropsOrStringArray::Schema(child) = dependency {
            visit_schemas(child, f);
        }
    }
}

/// Joins the lines a doc comment wrapped inside a paragraph with a single space. A blank line
/// stays a paragraph break (a run of blank lines becomes one, `"\n\n"`), and a line that starts a
/// markdown list item (`- `, `* `, `1. `) stays on its own line; a list item's wrapped
/// continuation lines are joined onto it.
fn join_wrapped_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut previous_blank = false;
    for (i, line) in text.split('\n').enumerate() {
        let line = line.trim_end();
        let blank = line.trim_start().is_empty();
        if i > 0 {
            if blank && previous_blank {
                continue;
            }
            if blank || previous_blank || starts_list_item(line) {
                out.push('\n');
            } else {
                out.push(' ');
                out.push_str(line.trim_start());
                previous_blank = false;
                continue;
            }
        }
        out.push_str(line);
        previous_blank = blank;
    }
    out
}

/// Whether `line` starts a markdown list item: `- `, `* ` or `<digits>. `, after any indentation.
fn starts_list_item(line: &str) -> bool {
    let line = line.trim_start();
    if line.starts_with("- ") || line.starts_with("* ") {
        return true;
    }
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && line[digits..].starts_with(". ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_doc_lines_become_one_sentence_in_descriptions() {
        let wrapped = "The domains of the peer services this one calls (e.g. orders calls `inventory` and\n`payments`). Each peer's URL is injected as `<DOMAIN>_URL`.";
        assert_eq!(
            join_wrapped_lines(wrapped),
            "The domains of the peer services this one calls (e.g. orders calls `inventory` and `payments`). Each peer's URL is injected as `<DOMAIN>_URL`."
        );
    }

    #[test]
    fn paragraph_breaks_and_list_items_keep_their_lines() {
        let text = "First paragraph,\nwrapped.\n\n\nThe modes:\n- `Off`: no\n  scaling\n* `Reactive`\n1. one\n10. ten\n\n\tIndented paragraph\nwrapped.";
        assert_eq!(
            join_wrapped_lines(text),
            "First paragraph, wrapped.\n\nThe modes:\n- `Off`: no scaling\n* `Reactive`\n1. one\n10. ten\n\n\tIndented paragraph wrapped."
        );
    }

    #[test]
    fn lines_that_only_look_like_list_items_are_joined() {
        assert_eq!(
            join_wrapped_lines("at most\n-1 or\n*bold* or\n2.5 or\n1.x"),
            "at most -1 or *bold* or 2.5 or 1.x"
        );
    }

    #[test]
    fn whitespace_around_wrapped_lines_is_one_space() {
        assert_eq!(
            join_wrapped_lines("one  \n   two\r\nthree\n \t \nfour"),
            "one two three\n\nfour"
        );
    }

    #[test]
    fn text_without_newlines_is_unchanged() {
        for text in ["", "One line.", "  leading and: `- ` inside"] {
            assert_eq!(join_wrapped_lines(text), text.trim_end());
        }
    }

    #[test]
    fn nested_schema_and_printer_column_descriptions_are_reflowed() {
        let mut crd = marketplace_crds::crds()
            .into_iter()
            .next()
            .expect("at least one CRD");
        let version = &mut crd.spec.versions[0];
        let columns = version
            .additional_printer_columns
            .get_or_insert_with(Vec::new);
        columns.push(Default::default());
        for column in columns.iter_mut() {
            column.description = Some("a printer\ncolumn".into());
        }
        let root = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .expect("a schema");
        let nested = JSONSchemaProps {
            description: Some("a nested\nschema".into()),
            ..Default::default()
        };
        root.additional_properties =
            Some(JSONSchemaPropsOrBool::Schema(Box::new(JSONSchemaProps {
                items: Some(JSONSchemaPropsOrArray::Schemas(vec![nested.clone()])),
                any_of: Some(vec![nested.clone()]),
                not: Some(Box::new(nested.clone())),
                ..nested.clone()
            })));

        reflow_descriptions(&mut crd);

        let descriptions = descriptions_of(&mut crd);
        assert!(descriptions.contains(&"a printer column".to_owned()));
        assert_eq!(
            descriptions
                .iter()
                .filter(|d| d.as_str() == "a nested schema")
                .count(),
            4
        );
        assert!(descriptions.iter().all(|d| !d.contains("a nested\n")));
    }

    #[test]
    fn no_generated_description_has_a_line_break_inside_a_paragraph() {
        let mut descriptions = Vec::new();
        for mut crd in crds() {
            descriptions.extend(descriptions_of(&mut crd));
        }
        assert!(!descriptions.is_empty());
        let offending: Vec<&String> = descriptions
            .iter()
            .filter(|d| has_line_break_inside_paragraph(d))
            .collect();
        assert!(
            offending.is_empty(),
            "descriptions that break a paragraph mid-line: {offending:#?}"
        );
    }

    #[test]
    fn depends_on_reads_as_one_paragraph_in_kubectl_explain() {
        let mut crd = crds()
            .into_iter()
            .find(|c| c.spec.names.kind == "MarketplaceService")
            .expect("the MarketplaceService CRD");
        let depends_on = crd.spec.versions[0]
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|s| s.properties.as_mut()?.get_mut("spec"))
            .and_then(|s| s.properties.as_mut()?.get_mut("dependsOn"))
            .and_then(|s| s.description.clone())
            .expect("spec.dependsOn has a description");
        assert!(!depends_on.contains('\n'), "{depends_on:?}");
        assert!(depends_on.contains("calls `inventory` and `payments`"));
        assert!(depends_on.contains("`INVENTORY_URL`"));
        assert!(!depends_on.contains("PEER_"));
    }

    /// A `\n` that is neither part of a paragraph break (`\n\n`) nor the start of a list item.
    fn has_line_break_inside_paragraph(text: &str) -> bool {
        let lines: Vec<&str> = text.split('\n').collect();
        lines.windows(2).any(|pair| {
            let [before, after] = pair else { return false };
            !before.is_empty() && !after.is_empty() && !starts_list_item(after)
        })
    }

    fn descriptions_of(crd: &mut CustomResourceDefinition) -> Vec<String> {
        let mut out = Vec::new();
        for version in &mut crd.spec.versions {
            for column in version.additional_printer_columns.iter().flatten() {
                out.extend(column.description.clone());
            }
            if let Some(schema) = version
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
            {
                visit_schemas(schema, &mut |node| out.extend(node.description.clone()));
            }
        }
        out
    }
}
