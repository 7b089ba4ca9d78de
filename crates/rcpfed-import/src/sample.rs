//! The demo's bundled sample data (`data/sample/` in the repository), embedded so the binary's
//! demo works from any directory. See `data/sample/README.md` for what is real (with its
//! source) and what is illustrative.

use rcpfed_core::members::MemberStateFile;

/// `data/sample/rcps.csv`: regional consultative processes, inter-regional forums and the GFMD.
pub const RCPS_CSV: &str = include_str!("../../../data/sample/rcps.csv");
/// `data/sample/membership.csv`: member states of the demo's nodes, with dates where known.
pub const MEMBERSHIP_CSV: &str = include_str!("../../../data/sample/membership.csv");
/// `data/sample/figures.csv`: real published figures, each with its source.
pub const FIGURES_CSV: &str = include_str!("../../../data/sample/figures.csv");
/// `data/sample/indicators.csv`: the indicator catalogue (codes, units, custodians).
pub const INDICATORS_CSV: &str = include_str!("../../../data/sample/indicators.csv");

/// The nodes the demo runs, in order.
pub const DEMO_NODES: &[&str] = &["colombo", "abu-dhabi", "midwa"];
/// The id of the demo's hub in `RCPS_CSV`.
pub const DEMO_HUB: &str = "gfmd";
/// The name part of the indicator documents published from [`indicator_csv`].
pub const INDICATOR_DOCUMENT_NAME: &str = "remittances";

/// The policy summary TOML a demo node publishes.
pub fn policy_toml(node: &str) -> Option<&'static str> {
    match node {
        "colombo" => Some(include_str!("../../../data/sample/colombo/policy.toml")),
        "abu-dhabi" => Some(include_str!("../../../data/sample/abu-dhabi/policy.toml")),
        "midwa" => Some(include_str!("../../../data/sample/midwa/policy.toml")),
        _ => None,
    }
}

/// The indicator CSV a demo node publishes (none for MIDWA: no real figures for its states).
pub fn indicator_csv(node: &str) -> Option<&'static str> {
    match node {
        "colombo" => Some(include_str!("../../../data/sample/colombo/remittances.csv")),
        "abu-dhabi" => Some(include_str!(
            "../../../data/sample/abu-dhabi/remittances.csv"
        )),
        _ => None,
    }
}

fn reader(text: &'static str) -> csv::Reader<&'static [u8]> {
    csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes())
}

/// Name, kind ("RCP", "IRF" or "hub") and member states of `node_id` from [`RCPS_CSV`], with the
/// dated memberships of [`MEMBERSHIP_CSV`] where it lists the process (otherwise the undated
/// `members_iso3` list). `None` if the id is not in `RCPS_CSV`.
pub fn member_plan(node_id: &str) -> Option<(String, String, Vec<MemberStateFile>)> {
    let mut rcps = reader(RCPS_CSV);
    let headers = rcps.headers().ok()?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (id_col, name_col, kind_col, members_col) =
        (col("id")?, col("name")?, col("kind")?, col("members_iso3")?);
    let row = rcps
        .records()
        .filter_map(Result::ok)
        .find(|r| r.get(id_col) == Some(node_id))?;
    let name = row.get(name_col)?.to_owned();
    let kind = row.get(kind_col)?.to_owned();

    let mut membership = reader(MEMBERSHIP_CSV);
    let mheaders = membership.headers().ok()?.clone();
    let mcol = |name: &str| mheaders.iter().position(|h| h == name);
    let (rcp_col, iso_col, since_col, until_col) =
        (mcol("rcp")?, mcol("iso3")?, mcol("since")?, mcol("until")?);
    let mut states: Vec<MemberStateFile> = membership
        .records()
        .filter_map(Result::ok)
        .filter(|r| r.get(rcp_col) == Some(node_id))
        .map(|r| MemberStateFile {
            iso3: r.get(iso_col).unwrap_or_default().to_owned(),
            since: r.get(since_col).unwrap_or_default().to_owned(),
            until: r.get(until_col).unwrap_or_default().to_owned(),
        })
        .collect();
    if states.is_empty() {
        states = row
            .get(members_col)?
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|iso3| MemberStateFile {
                iso3: iso3.to_owned(),
                since: String::new(),
                until: String::new(),
            })
            .collect();
    }
    Some((name, kind, states))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{parse_indicator_csv, parse_policy_toml};

    #[test]
    fn midwa_lists_the_2025_withdrawals() {
        let (name, kind, states) = member_plan("midwa").unwrap();
        assert_eq!(name, "Migration Dialogue for West Africa");
        assert_eq!(kind, "RCP");
        assert_eq!(states.len(), 15);
        for iso3 in ["BFA", "MLI", "NER"] {
            let s = states.iter().find(|s| s.iso3 == iso3).unwrap();
            assert_eq!(s.until, "2025-01-29");
        }
        let sen = states.iter().find(|s| s.iso3 == "SEN").unwrap();
        assert!(sen.until.is_empty());
    }

    #[test]
    fn member_plans_of_every_demo_member() {
        let (_, kind, states) = member_plan("colombo").unwrap();
        assert_eq!((kind.as_str(), states.len()), ("RCP", 12));
        let (_, kind, states) = member_plan("abu-dhabi").unwrap();
        assert_eq!((kind.as_str(), states.len()), ("IRF", 16));
        let (_, kind, states) = member_plan(DEMO_HUB).unwrap();
        assert_eq!((kind.as_str(), states.len()), ("hub", 0));
        // Not in membership.csv: falls back to rcps.csv's undated list.
        let (_, _, states) = member_plan("igad-rcp").unwrap();
        assert_eq!(states.len(), 8);
        assert!(member_plan("nowhere").is_none());
    }

    #[test]
    fn every_sample_file_parses() {
        for node in DEMO_NODES {
            let doc = parse_policy_toml(policy_toml(node).unwrap()).unwrap();
            assert!(
                doc.document
                    .starts_with(&format!("regions/{node}/policies/")),
                "{node}"
            );
            let en = doc
                .summary
                .summary
                .iter()
                .find(|t| t.language == "en")
                .unwrap();
            assert!(
                en.text.starts_with(
                    "Illustrative sample summary for the rcpfed demo; not an official text."
                ),
                "{node}"
            );
            assert!(doc.summary.title.len() >= 2, "{node}");
            let (_, _, states) = member_plan(node).unwrap();
            if let Some(csv) = indicator_csv(node) {
                let docs = parse_indicator_csv(csv, node, INDICATOR_DOCUMENT_NAME).unwrap();
                assert_eq!(docs.len(), 1);
                assert_eq!(
                    docs[0].document,
                    format!("regions/{node}/indicators/remit_inflow/remittances")
                );
                for o in &docs[0].snapshot.observations {
                    assert!(
                        states.iter().any(|s| s.iso3 == o.ref_area),
                        "{node} {}",
                        o.ref_area
                    );
                    assert!(!o.source.is_empty());
                }
            }
            for c in &doc.summary.countries {
                assert!(states.iter().any(|s| &s.iso3 == c), "{node} {c}");
            }
        }
        let ar = parse_policy_toml(policy_toml("abu-dhabi").unwrap()).unwrap();
        assert!(ar.summary.title.iter().any(|t| t.language == "ar"));
        assert!(indicator_csv("midwa").is_none());
        let figures = parse_indicator_csv(FIGURES_CSV, "gfmd", "figures").unwrap();
        assert!(
            figures
                .iter()
                .any(|d| d.snapshot.indicator == "REMIT_INFLOW")
        );
    }

    #[test]
    fn sample_figures_are_copies_of_figures_csv() {
        let figures = parse_indicator_csv(FIGURES_CSV, "gfmd", "figures").unwrap();
        let remit = figures
            .iter()
            .find(|d| d.snapshot.indicator == "REMIT_INFLOW")
            .unwrap();
        for node in ["colombo", "abu-dhabi"] {
            let docs = parse_indicator_csv(indicator_csv(node).unwrap(), node, "r").unwrap();
            for o in &docs[0].snapshot.observations {
                let real = remit
                    .snapshot
                    .observations
                    .iter()
                    .find(|r| r.ref_area == o.ref_area && r.time_period == o.time_period)
                    .unwrap();
                assert_eq!(o, real, "{node} {}", o.ref_area);
            }
        }
    }
}
