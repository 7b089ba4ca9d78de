//! Policy summaries written as TOML.

use crate::{ImportError, line_of};
use rcpfed_proto::v1::{LocalizedText, PolicyStatus, PolicySummary, Reference};
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// A policy summary read from TOML, with the logical document it is a revision of.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyDoc {
    /// Logical document name, for example "regions/colombo/policies/2024-dhaka-declaration".
    pub document: String,
    /// The body.
    pub summary: PolicySummary,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    document: Spanned<String>,
    status: Spanned<String>,
    #[serde(default)]
    meeting: String,
    #[serde(default)]
    meeting_date: String,
    #[serde(default)]
    countries: Vec<String>,
    #[serde(default)]
    gcm_objectives: Vec<u32>,
    #[serde(default)]
    sdg_targets: Vec<String>,
    title: BTreeMap<String, String>,
    #[serde(default)]
    summary: BTreeMap<String, String>,
    #[serde(default)]
    references: Vec<ReferenceFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReferenceFile {
    title: String,
    url: String,
    #[serde(default)]
    sha256: Option<Spanned<String>>,
}

fn status_of(word: &str) -> Option<PolicyStatus> {
    match word {
        "draft" => Some(PolicyStatus::Draft),
        "adopted" => Some(PolicyStatus::Adopted),
        "superseded" => Some(PolicyStatus::Superseded),
        "withdrawn" => Some(PolicyStatus::Withdrawn),
        _ => None,
    }
}

fn texts(map: BTreeMap<String, String>) -> Vec<LocalizedText> {
    map.into_iter()
        .map(|(language, text)| LocalizedText {
            language,
            text: text.trim().to_owned(),
        })
        .collect()
}

/// Parses a policy summary written as TOML.
///
/// ```toml
/// document = "regions/abu-dhabi/policies/2024-7th-ministerial-consultation"  # required
/// status = "adopted"            # required: draft | adopted | superseded | withdrawn
/// meeting = "7th Ministerial Consultation of the Abu Dhabi Dialogue"
/// meeting_date = "2024-02-01"   # YYYY-MM-DD; leave out when unknown
/// countries = ["ARE", "IND"]    # ISO 3166-1 alpha-3
/// gcm_objectives = [6, 18]      # Global Compact for Migration objectives, 1 to 23
/// sdg_targets = ["10.7", "8.8"]
///
/// [title]                       # required; one entry per BCP 47 language tag
/// en = "..."
/// fr = "..."
///
/// [summary]                     # one entry per language
/// en = """..."""
///
/// [[references]]                # zero or more
/// title = "..."
/// url = "https://..."
/// sha256 = "hex"                # optional: SHA-256 of the referenced document, 64 hex digits
/// ```
///
/// Unknown keys are refused. Titles and summaries are emitted sorted by language tag and
/// trimmed, so the same file always gives the same bytes.
pub fn parse_policy_toml(text: &str) -> Result<PolicyDoc, ImportError> {
    let file: PolicyFile = toml::from_str(text).map_err(|e| {
        let message = e.message().trim().to_owned();
        match e.span() {
            Some(span) => ImportError::at_line(line_of(text, span.start), message),
            None => ImportError::file(message),
        }
    })?;
    let at = |span: std::ops::Range<usize>, message: String| {
        ImportError::at_line(line_of(text, span.start), message)
    };
    let document = file.document.get_ref().trim().to_owned();
    if document.is_empty() {
        return Err(at(
            file.document.span(),
            "document must name the logical document, for example \"regions/colombo/policies/2024-dhaka-declaration\"".to_owned(),
        ));
    }
    let status_word = file.status.get_ref().trim();
    let Some(status) = status_of(status_word) else {
        return Err(at(
            file.status.span(),
            format!(
                "status {status_word:?} is not one of \"draft\", \"adopted\", \"superseded\", \"withdrawn\""
            ),
        ));
    };
    let mut references = Vec::with_capacity(file.references.len());
    for r in file.references {
        let sha256 = match &r.sha256 {
            None => Vec::new(),
            Some(hex_text) => {
                let bytes = hex::decode(hex_text.get_ref().trim())
                    .ok()
                    .filter(|b| b.len() == 32);
                bytes.ok_or_else(|| {
                    at(
                        hex_text.span(),
                        format!(
                            "sha256 {:?} is not 64 hexadecimal digits",
                            hex_text.get_ref()
                        ),
                    )
                })?
            }
        };
        references.push(Reference {
            title: r.title.trim().to_owned(),
            url: r.url.trim().to_owned(),
            sha256,
        });
    }
    let summary = PolicySummary {
        title: texts(file.title),
        summary: texts(file.summary),
        meeting: file.meeting.trim().to_owned(),
        meeting_date: file.meeting_date.trim().to_owned(),
        status: status as i32,
        countries: file.countries.iter().map(|c| c.trim().to_owned()).collect(),
        gcm_objectives: file.gcm_objectives,
        sdg_targets: file
            .sdg_targets
            .iter()
            .map(|t| t.trim().to_owned())
            .collect(),
        references,
    };
    Ok(PolicyDoc { document, summary })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const GOOD: &str = r#"
document = "regions/abu-dhabi/policies/x"
status = "adopted"
meeting = "7th Ministerial Consultation of the Abu Dhabi Dialogue"
meeting_date = "2024-02-01"
countries = ["ARE", "IND"]
gcm_objectives = [6, 18]
sdg_targets = ["10.7", "8.8"]
[title]
fr = "Titre"
en = "Title"
ar = "عنوان"
[summary]
en = """
Text.
"""
[[references]]
title = "Ref"
url = "https://example.org/a"
sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
[[references]]
title = "Ref 2"
url = "https://example.org/b"
"#;

    #[test]
    fn parses_every_field() {
        let doc = parse_policy_toml(GOOD).unwrap();
        assert_eq!(doc.document, "regions/abu-dhabi/policies/x");
        let s = doc.summary;
        assert_eq!(s.status, PolicyStatus::Adopted as i32);
        let langs: Vec<_> = s.title.iter().map(|t| t.language.as_str()).collect();
        assert_eq!(langs, ["ar", "en", "fr"]);
        assert_eq!(s.summary[0].text, "Text.");
        assert_eq!(s.countries, ["ARE", "IND"]);
        assert_eq!(s.gcm_objectives, [6, 18]);
        assert_eq!(s.sdg_targets, ["10.7", "8.8"]);
        assert_eq!(s.meeting_date, "2024-02-01");
        assert_eq!(s.references.len(), 2);
        assert_eq!(s.references[0].sha256.len(), 32);
        assert!(s.references[1].sha256.is_empty());
    }

    #[test]
    fn refuses_unknown_keys_with_a_line() {
        let text = GOOD.replace("meeting_date =", "meting_date =");
        let err = parse_policy_toml(&text).unwrap_err();
        assert_eq!(err.line, Some(5), "{err}");
        assert!(err.message.contains("meting_date"), "{err}");
        let text = GOOD.replace("url = \"https://example.org/b\"", "uri = \"x\"");
        assert!(parse_policy_toml(&text).is_err());
    }

    #[test]
    fn refuses_unknown_status() {
        let text = GOOD.replace("\"adopted\"", "\"approved\"");
        let err = parse_policy_toml(&text).unwrap_err();
        assert_eq!(err.line, Some(3));
        assert!(
            err.to_string().starts_with("line 3: status \"approved\""),
            "{err}"
        );
    }

    #[test]
    fn refuses_bad_digest_and_missing_fields() {
        let text = GOOD.replace("e3b0c442", "zz");
        let err = parse_policy_toml(&text).unwrap_err();
        assert_eq!(err.line, Some(20), "{err}");
        let err = parse_policy_toml("status = \"draft\"\n[title]\nen = \"t\"\n").unwrap_err();
        assert!(err.message.contains("document"), "{err}");
        let err = parse_policy_toml("document = \"d\"\nstatus = \"draft\"\n").unwrap_err();
        assert!(err.message.contains("title"), "{err}");
        let text = GOOD.replace("[6, 18]", "[6, -1]");
        assert!(parse_policy_toml(&text).is_err());
    }
}
