//! SDMX-CSV 2.0 data messages written from stored observation versions: one row per version,
//! with the custom provenance columns SDMX-CSV 2.0 allows.

use crate::layout::{
    ATTRIBUTES, OBS_VALUE, REF_AREA, SdmxAction, SdmxError, SdmxStructure, TIME_PERIOD,
    attribute_values, dimension_value, number, rfc3339_ms,
};
use rcpfed_core::versions::ObservationRow;

/// Custom SDMX-CSV columns (allowed by SDMX-CSV 2.0) carrying each row's provenance.
const PROVENANCE_COLUMNS: [&str; 6] = [
    "PROVIDER",
    "STATEMENT_DIGEST",
    "FEED_INDEX",
    "POSITION",
    "ACCEPTED_AT",
    "SUPERSEDED_AT",
];

/// Appends one RFC 4180 field: quoted (with inner quotes doubled) when it holds a comma, a
/// quote or a line break.
pub fn csv_field(value: &str, out: &mut String) {
    if value.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

fn csv_line<'a>(fields: impl IntoIterator<Item = &'a str>, out: &mut String) {
    for (i, field) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(field, out);
    }
    out.push_str("\r\n");
}

/// The SDMX-CSV 2.0 header line: `STRUCTURE,STRUCTURE_ID,ACTION`, the dimensions in key
/// order, `OBS_VALUE`, the attributes, then the custom provenance columns.
pub fn csv_header(structure: &SdmxStructure, out: &mut String) {
    let mut columns: Vec<&str> = vec!["STRUCTURE", "STRUCTURE_ID", "ACTION", REF_AREA];
    columns.extend(structure.disaggregations.iter().map(|d| d.id.as_str()));
    columns.push(TIME_PERIOD);
    columns.push(OBS_VALUE);
    columns.extend(ATTRIBUTES.iter().map(|(id, _)| *id));
    columns.extend(PROVENANCE_COLUMNS);
    csv_line(columns, out);
}

/// One SDMX-CSV 2.0 line for a stored version. A deletion carries only its key (and its
/// provenance): in SDMX-CSV a `D` row with values would delete only those values.
pub fn csv_row(
    structure: &SdmxStructure,
    row: &ObservationRow,
    out: &mut String,
) -> Result<(), SdmxError> {
    let obs = &row.observation;
    let p = &row.provenance;
    structure.check_dimensions(obs, p)?;
    let action = SdmxAction::of(obs.action, structure.history);
    let structure_id = structure.structure_id();
    let mut fields: Vec<String> = Vec::with_capacity(32);
    fields.push("dataflow".to_string());
    fields.push(structure_id);
    fields.push(action.csv_code().to_string());
    fields.push(obs.ref_area.clone());
    for dim in &structure.disaggregations {
        fields.push(dimension_value(dim, obs).to_string());
    }
    fields.push(obs.time_period.clone());
    if action == SdmxAction::Delete {
        fields.extend(std::iter::repeat_n(String::new(), 1 + ATTRIBUTES.len()));
    } else {
        fields.push(obs.obs_value.map(number).unwrap_or_default());
        fields.extend(attribute_values(obs));
    }
    fields.push(p.node_id.clone());
    fields.push(p.digest.to_hex());
    fields.push(p.feed_index.to_string());
    fields.push(p.position.to_string());
    fields.push(rfc3339_ms(p.accepted_at_ms));
    fields.push(row.superseded_at_ms.map(rfc3339_ms).unwrap_or_default());
    csv_line(fields.iter().map(String::as_str), out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::tests::structure;
    use crate::test_support::{obs, row};
    use rcpfed_core::Digest;
    use rcpfed_core::statement::ObservationAction;

    #[test]
    fn csv_quotes_only_when_needed() {
        let mut out = String::new();
        for f in ["plain", "a,b", "say \"hi\"", "two\nlines", "cr\r", ""] {
            csv_field(f, &mut out);
            out.push('|');
        }
        assert_eq!(
            out,
            "plain|\"a,b\"|\"say \"\"hi\"\"\"|\"two\nlines\"|\"cr\r\"||"
        );
    }

    #[test]
    fn csv_header_and_rows() {
        let s = structure(false, &["SEX"]);
        let mut out = String::new();
        csv_header(&s, &mut out);
        csv_row(
            &s,
            &row(
                "node-a",
                7,
                0,
                obs(ObservationAction::Append, "FRA", "2024", &[("SEX", "F")]),
            ),
            &mut out,
        )
        .expect("row");
        let lines: Vec<&str> = out.split("\r\n").collect();
        assert_eq!(
            lines[0],
            "STRUCTURE,STRUCTURE_ID,ACTION,REF_AREA,SEX,AGE,TIME_PERIOD,OBS_VALUE,OBS_STATUS,\
             CONF_STATUS,UNIT_MEASURE,UNIT_MULT,COMMENT_OBS,SOURCE_DETAIL,PROVIDER,\
             STATEMENT_DIGEST,FEED_INDEX,POSITION,ACCEPTED_AT,SUPERSEDED_AT"
        );
        assert_eq!(
            lines[1],
            format!(
                "dataflow,GFMD:SDG_10_7_3(1.2.0),I,FRA,F,_T,2024,12.5,A,,persons,3,\
                 \"say \"\"hi\"\", twice\",IOM,node-a,{},7,0,2024-05-01T12:00:00Z,",
                Digest::of(b"node-a").to_hex()
            )
        );
        assert_eq!(lines[2], "");
    }

    #[test]
    fn csv_history_actions() {
        let s = structure(true, &[]);
        let mut superseded = row(
            "node-a",
            3,
            1,
            obs(ObservationAction::Append, "FRA", "2023", &[]),
        );
        superseded.superseded_at_ms = Some(1_714_564_800_500);
        let replace = row(
            "node-a",
            4,
            0,
            obs(ObservationAction::Replace, "FRA", "2023", &[]),
        );
        let delete = row(
            "node-a",
            5,
            0,
            obs(ObservationAction::Delete, "FRA", "2023", &[]),
        );
        let mut out = String::new();
        for r in [&superseded, &replace, &delete] {
            csv_row(&s, r, &mut out).expect("row");
        }
        let lines: Vec<Vec<&str>> = out
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .map(|l| l.split(',').collect())
            .collect();
        assert_eq!(lines[0][2], "R");
        // The footnote holds a quoted comma; the last column is SUPERSEDED_AT.
        assert_eq!(lines[0].last(), Some(&"2024-05-01T12:00:00.5Z"));
        assert_eq!(lines[1][2], "R");
        assert_eq!(lines[2][2], "D");
        // A deletion carries its key and provenance, no value and no attributes.
        assert_eq!(&lines[2][3..7], ["FRA", "_T", "_T", "2023"]);
        assert!(
            lines[2][7..14].iter().all(|f| f.is_empty()),
            "{:?}",
            lines[2]
        );
        assert_eq!(lines[2][14], "node-a");

        // Without history, a version in force is information.
        let current = structure(false, &[]);
        let mut out = String::new();
        csv_row(&current, &replace, &mut out).expect("row");
        assert!(
            out.starts_with("dataflow,GFMD:SDG_10_7_3(1.2.0),I,"),
            "{out}"
        );
    }
}
