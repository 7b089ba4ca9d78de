//! Streaming throughput on a 1,000,000-row file. Run in release:
//! `cargo test --release -p rcpfed-import --test throughput -- --ignored --nocapture`.

use rcpfed_import::{ImportError, read_indicator_csv_streaming, synthetic_plan};
use rcpfed_proto::v1::ObservationAction;
use std::time::Instant;

const ROWS: usize = 1_000_000;

/// A 1,000,000-row file: the synthetic plan's rows repeated (keys repeat, which the reader
/// does not check; the federation's validation would).
fn million_rows() -> Vec<u8> {
    let plan = synthetic_plan().expect("plan");
    let per = usize::try_from(plan.capacity())
        .expect("capacity")
        .min(ROWS);
    let mut one = Vec::new();
    plan.write_csv(per, 1, ObservationAction::Append, &mut one)
        .expect("rows");
    let header_end = one.iter().position(|&b| b == b'\n').expect("header") + 1;
    let (header, body) = one.split_at(header_end);
    let mut out = header.to_vec();
    let mut rows = 0;
    while rows < ROWS {
        let take = (ROWS - rows).min(per);
        let end = if take == per {
            body.len()
        } else {
            body.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .nth(take - 1)
                .map_or(body.len(), |(i, _)| i + 1)
        };
        out.extend_from_slice(&body[..end]);
        rows += take;
    }
    out
}

#[test]
#[ignore = "timing; run in release with --ignored"]
fn stream_a_million_rows() {
    let file = million_rows();
    let start = Instant::now();
    let mut values = 0.0;
    let summary = read_indicator_csv_streaming(
        std::io::BufReader::new(file.as_slice()),
        10_000,
        |b| -> Result<(), ImportError> {
            values += b
                .observations
                .iter()
                .filter_map(|o| o.obs_value)
                .sum::<f64>();
            Ok(())
        },
    )
    .expect("stream");
    let elapsed = start.elapsed();
    assert_eq!(summary.observations, ROWS);
    assert!(values > 0.0);
    println!(
        "{} rows ({} MB) in {:.3} s: {:.0} rows/s",
        summary.observations,
        file.len() / 1_000_000,
        elapsed.as_secs_f64(),
        ROWS as f64 / elapsed.as_secs_f64()
    );
}

#[test]
#[ignore = "timing; run in release with --ignored"]
fn iterate_and_parse_a_million_rows() {
    let file = million_rows();
    let start = Instant::now();
    let mut n = 0;
    for batch in rcpfed_import::IndicatorCsvBatches::new(file.as_slice(), 10_000).expect("header") {
        n += batch.expect("batch").observations.len();
    }
    let iterated = start.elapsed();
    assert_eq!(n, ROWS);
    let text = std::str::from_utf8(&file).expect("UTF-8");
    let start = Instant::now();
    let docs = rcpfed_import::parse_any_indicator_csv(text, "colombo", "load").expect("parse");
    let parsed = start.elapsed();
    assert_eq!(docs[0].snapshot.observations.len(), ROWS);
    println!(
        "owned batches: {:.3} s; whole file: {:.3} s",
        iterated.as_secs_f64(),
        parsed.as_secs_f64()
    );
}
