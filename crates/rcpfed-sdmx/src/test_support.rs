//! Observations, rows and a catalogue shared by the writers' unit tests (the structure built
//! from them is `layout::tests::structure`, so this module needs nothing of the crate).

use rcpfed_core::Digest;
use rcpfed_core::statement::{Observation, ObservationAction};
use rcpfed_core::versions::{ObservationProvenance, ObservationRow};
use rcpfed_proto::v1;

pub(crate) fn obs(
    action: ObservationAction,
    area: &str,
    period: &str,
    dims: &[(&str, &str)],
) -> Observation {
    Observation {
        action,
        ref_area: area.into(),
        time_period: period.into(),
        dimensions: dims
            .iter()
            .map(|(i, v)| ((*i).to_string(), (*v).to_string()))
            .collect(),
        obs_value: (action != ObservationAction::Delete).then_some(12.5),
        obs_status: "A".into(),
        unit_measure: "persons".into(),
        unit_mult: 3,
        conf_status: String::new(),
        footnote: "say \"hi\", twice".into(),
        source: "IOM".into(),
    }
}

pub(crate) fn row(node: &str, feed_index: u64, position: u64, o: Observation) -> ObservationRow {
    ObservationRow {
        indicator: "SDG_10_7_3".into(),
        observation: o,
        provenance: ObservationProvenance {
            node_id: node.into(),
            digest: Digest::of(node.as_bytes()),
            document: "doc".into(),
            revision: 1,
            feed_index,
            position,
            accepted_at_ms: 1_714_564_800_000,
        },
        superseded_at_ms: None,
    }
}

pub(crate) fn catalogue() -> v1::CatalogueDocument {
    v1::CatalogueDocument {
        agency: "GFMD".into(),
        catalogue_version: "1.2.0".into(),
        dimensions: vec![
            v1::ConceptDefinition {
                id: "REF_AREA".into(),
                name: "Reference area".into(),
                codelist: "CL_AREA".into(),
            },
            v1::ConceptDefinition {
                id: "SEX".into(),
                name: "Sex".into(),
                codelist: "CL_SEX".into(),
            },
            v1::ConceptDefinition {
                id: "AGE".into(),
                name: "Age".into(),
                codelist: "CL_AGE".into(),
            },
        ],
        attributes: vec![v1::ConceptDefinition {
            id: "OBS_STATUS".into(),
            name: "Observation status".into(),
            codelist: "CL_OBS_STATUS".into(),
        }],
        codelists: vec![
            v1::CodelistDefinition {
                id: "CL_SEX".into(),
                codes: vec![v1::CodeDefinition {
                    id: "F".into(),
                    name: "Female".into(),
                }],
                ..Default::default()
            },
            v1::CodelistDefinition {
                id: "CL_OBS_STATUS".into(),
                codes: vec![v1::CodeDefinition {
                    id: "A".into(),
                    name: "Normal value".into(),
                }],
                ..Default::default()
            },
        ],
        indicators: vec![v1::IndicatorDefinition {
            code: "SDG_10_7_3".into(),
            name: "Migrant deaths".into(),
            dimensions: vec![
                v1::IndicatorDimension {
                    id: "SEX".into(),
                    required: false,
                    default_code: "_T".into(),
                },
                v1::IndicatorDimension {
                    id: "AGE".into(),
                    required: false,
                    default_code: "_T".into(),
                },
            ],
            ..Default::default()
        }],
        ..Default::default()
    }
}
