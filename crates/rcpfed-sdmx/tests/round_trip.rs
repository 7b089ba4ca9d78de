//! What the writers write reads back: SDMX-CSV through this crate's own SDMX-CSV reading rules
//! (the rules rcpfed-import applies when such a file is published again), SDMX-JSON through a
//! JSON parser and the message's own value indices.

use rcpfed_core::Digest;
use rcpfed_core::statement::{Observation, ObservationAction};
use rcpfed_core::versions::{ObservationProvenance, ObservationRow};
use rcpfed_sdmx::columns::Column;
use rcpfed_sdmx::csv_read::{
    action_of, check_structure, detect, header_columns, structure_id_code,
};
use rcpfed_sdmx::{JsonMeta, SdmxJsonWriter, SdmxStructure, csv_header, csv_row};
use std::collections::BTreeSet;

fn row(
    feed_index: u64,
    action: ObservationAction,
    area: &str,
    sex: Option<&str>,
) -> ObservationRow {
    ObservationRow {
        indicator: "MIG_STOCK".into(),
        observation: Observation {
            action,
            ref_area: area.into(),
            time_period: "2023-Q2".into(),
            dimensions: sex
                .map(|s| ("SEX".to_string(), s.to_string()))
                .into_iter()
                .collect(),
            obs_value: (action != ObservationAction::Delete).then_some(0.1 + 0.2),
            obs_status: "E".into(),
            unit_measure: "persons".into(),
            unit_mult: 6,
            conf_status: "F".into(),
            footnote: "revised, \"twice\"\nsee annex".into(),
            source: "UN DESA".into(),
        },
        provenance: ObservationProvenance {
            node_id: "colombo".into(),
            digest: Digest::of(&feed_index.to_be_bytes()),
            document: "stock".into(),
            revision: 1,
            feed_index,
            position: 0,
            accepted_at_ms: 1_714_564_800_000,
        },
        superseded_at_ms: None,
    }
}

fn rows() -> Vec<ObservationRow> {
    vec![
        row(3, ObservationAction::Append, "LKA", Some("F")),
        row(4, ObservationAction::Replace, "IND", None),
        row(5, ObservationAction::Delete, "LKA", Some("F")),
    ]
}

fn structure(history: bool) -> SdmxStructure {
    let found = BTreeSet::from(["SEX".to_string()]);
    SdmxStructure::new("MIG_STOCK", None, "GFMD", &found, history)
}

#[test]
fn sdmx_csv_reads_back_under_the_import_rules() -> Result<(), Box<dyn std::error::Error>> {
    let structure = structure(true);
    let mut text = String::new();
    csv_header(&structure, &mut text);
    for r in rows() {
        csv_row(&structure, &r, &mut text)?;
    }
    assert_eq!(detect(text.as_bytes()), Some(b','));

    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let header = records.next().ok_or("no header")??;
    let names: Vec<String> = header.iter().map(str::to_owned).collect();
    let columns = header_columns(&names, 1).map_err(|e| e.message)?;
    let at = |column: &Column| {
        columns
            .iter()
            .position(|c| c == column)
            .ok_or(format!("no {column:?} column"))
    };
    let sex = Column::Dimension("SEX".into());
    for (record, written) in records.zip(rows()) {
        let record = record?;
        let cell = |column: &Column| -> Result<String, String> {
            Ok(record.get(at(column)?).unwrap_or_default().to_owned())
        };
        let obs = &written.observation;
        check_structure(&cell(&Column::Structure)?)?;
        assert_eq!(
            structure_id_code(&cell(&Column::StructureId)?)?,
            "MIG_STOCK"
        );
        let expected_action = match obs.action {
            ObservationAction::Append | ObservationAction::Replace => ObservationAction::Replace,
            ObservationAction::Delete => ObservationAction::Delete,
        };
        assert_eq!(action_of(&cell(&Column::Action)?), Some(expected_action));
        assert_eq!(cell(&Column::RefArea)?, obs.ref_area);
        assert_eq!(cell(&Column::TimePeriod)?, obs.time_period);
        // An absent SEX is written as the total it stands for.
        let sex_written = obs.dimensions.first().map_or("_Z", |(_, v)| v.as_str());
        assert_eq!(cell(&sex)?, sex_written);
        if obs.action == ObservationAction::Delete {
            // A deletion carries its key only.
            assert_eq!(cell(&Column::ObsValue)?, "");
            assert_eq!(cell(&Column::Footnote)?, "");
            continue;
        }
        assert_eq!(cell(&Column::ObsValue)?.parse::<f64>()?, 0.1 + 0.2);
        assert_eq!(cell(&Column::ObsStatus)?, obs.obs_status);
        assert_eq!(cell(&Column::ConfStatus)?, obs.conf_status);
        assert_eq!(cell(&Column::UnitMeasure)?, obs.unit_measure);
        assert_eq!(cell(&Column::UnitMult)?, obs.unit_mult.to_string());
        assert_eq!(cell(&Column::Footnote)?, obs.footnote);
        assert_eq!(cell(&Column::Source)?, obs.source);
    }
    // The provenance columns are read as ignored, never as dimensions.
    let dimensions: Vec<&Column> = columns
        .iter()
        .filter(|c| matches!(c, Column::Dimension(_)))
        .collect();
    assert_eq!(dimensions, [&sex]);
    Ok(())
}

#[test]
fn sdmx_json_reads_back_by_its_value_indices() -> Result<(), Box<dyn std::error::Error>> {
    let mut writer = SdmxJsonWriter::new(structure(false));
    let meta = JsonMeta {
        id: "RT".into(),
        prepared_ms: 0,
        sender: "GFMD".into(),
    };
    let mut text = String::new();
    writer.begin(&meta, &mut text);
    let written: Vec<ObservationRow> = rows()
        .into_iter()
        .filter(|r| r.observation.action != ObservationAction::Delete)
        .collect();
    for r in &written {
        writer.row(r, &mut text)?;
    }
    writer.finish(&mut text);

    let message: serde_json::Value = serde_json::from_str(&text)?;
    let structure = &message["data"]["structures"][0];
    let dimensions = structure["dimensions"]["observation"]
        .as_array()
        .ok_or("no dimensions")?;
    let attributes = structure["attributes"]["observation"]
        .as_array()
        .ok_or("no attributes")?;
    let value_of = |component: &serde_json::Value, index: &serde_json::Value| {
        let index = index.as_u64().and_then(|i| usize::try_from(i).ok());
        let value = &component["values"][index.unwrap_or(usize::MAX)];
        value["id"]
            .as_str()
            .or(value["value"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let mut read = Vec::new();
    for set in message["data"]["dataSets"]
        .as_array()
        .ok_or("no data sets")?
    {
        for (key, values) in set["observations"].as_object().ok_or("no observations")? {
            let key: Vec<String> = key
                .split(':')
                .zip(dimensions)
                .map(|(i, d)| value_of(d, &serde_json::json!(i.parse::<u64>().ok())))
                .collect();
            let values = values.as_array().ok_or("not an array")?;
            let attribute_values: Vec<String> = attributes
                .iter()
                .zip(&values[1..])
                .map(|(a, i)| value_of(a, i))
                .collect();
            read.push((key, values[0].as_f64(), attribute_values));
        }
    }
    let expected: Vec<(Vec<String>, Option<f64>, Vec<String>)> = written
        .iter()
        .map(|r| {
            let o = &r.observation;
            let sex = o.dimensions.first().map_or("_Z", |(_, v)| v.as_str());
            (
                vec![o.ref_area.clone(), sex.to_owned(), o.time_period.clone()],
                o.obs_value,
                vec![
                    o.obs_status.clone(),
                    o.conf_status.clone(),
                    o.unit_measure.clone(),
                    o.unit_mult.to_string(),
                    o.footnote.clone(),
                    o.source.clone(),
                ],
            )
        })
        .collect();
    assert_eq!(read, expected);
    Ok(())
}
