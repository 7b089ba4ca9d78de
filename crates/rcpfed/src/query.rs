//! `rcpfed query observations` and `rcpfed export sdmx`: the IndicatorService's query and SDMX
//! export, against the hub or any node's mirror (they answer identically).

use crate::client;
use crate::table::{Format, Output, Table};
use crate::view;
use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use rcpfed_proto::v1;
use rcpfed_proto::v1::indicator_service_client::IndicatorServiceClient;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use tonic::transport::Channel;

/// Where to send IndicatorService calls, and as whom.
#[derive(Args, Clone, Debug)]
pub struct EndpointArgs {
    /// The hub's endpoint, or a node's (nodes answer from their verified mirror).
    #[arg(
        long,
        visible_alias = "hub",
        env = "RCPFED_HUB_ENDPOINT",
        default_value = "https://localhost:50051"
    )]
    pub endpoint: String,
    /// PKI directory (from `rcpfed pki init`) holding ca.pem and members/<identity>/tls.*.
    #[arg(long, env = "RCPFED_PKI_DIR")]
    pub pki: PathBuf,
    /// Identity to call as (needs the reader role).
    #[arg(long, env = "RCPFED_IDENTITY", default_value = "operator")]
    pub identity: String,
}

impl EndpointArgs {
    /// An IndicatorService client.
    pub async fn indicator_client(&self) -> Result<IndicatorServiceClient<Channel>> {
        let tls = client::identity_files(&self.pki, &self.identity)?;
        Ok(
            IndicatorServiceClient::new(client::connect(&self.endpoint, "--endpoint", &tls).await?)
                .max_decoding_message_size(rcpfed_grpc::limits::MAX_MESSAGE_BYTES)
                .max_encoding_message_size(rcpfed_grpc::limits::MAX_MESSAGE_BYTES),
        )
    }
}

/// A dimension filter, `ID=VALUE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DimFilter {
    /// Dimension id, for example `SEX`.
    pub id: String,
    /// Code, for example `F`.
    pub value: String,
}

/// Parses `--dim ID=VALUE`.
pub fn parse_dim(text: &str) -> Result<DimFilter, String> {
    let (id, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not ID=VALUE (for example SEX=F)"))?;
    let (id, value) = (id.trim(), value.trim());
    if id.is_empty() || value.is_empty() {
        return Err(format!(
            "{text:?} needs both a dimension id and a code (for example SEX=F)"
        ));
    }
    Ok(DimFilter {
        id: id.to_ascii_uppercase(),
        value: value.to_string(),
    })
}

/// Parses an RFC 3339 moment (`2025-01-31T12:00:00Z`, any offset) or a date (`2025-01-31`,
/// midnight UTC).
pub fn parse_timestamp(text: &str) -> Result<prost_types::Timestamp, String> {
    use time::format_description::well_known::Rfc3339;
    let t = text.trim();
    let moment = match time::OffsetDateTime::parse(t, &Rfc3339) {
        Ok(m) => m,
        Err(e) => {
            let date_format = time::macros::format_description!("[year]-[month]-[day]");
            match time::Date::parse(t, &date_format) {
                Ok(d) => d.midnight().assume_utc(),
                Err(_) => {
                    return Err(format!(
                        "{text:?} is not an RFC 3339 time such as 2025-01-31T12:00:00Z, nor a date such as 2025-01-31 ({e})"
                    ));
                }
            }
        }
    };
    let nanos = moment.unix_timestamp_nanos();
    Ok(prost_types::Timestamp {
        seconds: i64::try_from(nanos.div_euclid(1_000_000_000)).map_err(|e| e.to_string())?,
        nanos: i32::try_from(nanos.rem_euclid(1_000_000_000)).map_err(|e| e.to_string())?,
    })
}

/// Which observations (the fields of `rcpfed.v1.ObservationQuery`).
#[derive(Args, Clone, Debug)]
pub struct FilterArgs {
    /// Indicator code, for example REMIT_INFLOW or SDG_10_7_3.
    #[arg(long)]
    pub indicator: String,
    /// Only this reference area (ISO 3166-1 alpha-3 or an aggregate such as WLD); repeat or
    /// separate with commas.
    #[arg(long = "area", value_delimiter = ',')]
    pub areas: Vec<String>,
    /// Only observations published by this node; repeat or separate with commas.
    #[arg(long = "node", value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// Only periods starting on or after this one's start (SDMX form: 2015, 2024-Q3, …).
    #[arg(long)]
    pub start: Option<String>,
    /// Only periods ending on or before this one's end.
    #[arg(long)]
    pub end: Option<String>,
    /// Only observations with this dimension value, ID=VALUE (for example SEX=F); repeat.
    #[arg(long = "dim", value_parser = parse_dim)]
    pub dims: Vec<DimFilter>,
    /// The view as it was at this moment (RFC 3339, or a date for midnight UTC).
    #[arg(long, value_parser = parse_timestamp)]
    pub as_of: Option<prost_types::Timestamp>,
    /// Only versions accepted after this moment, deletions included (RFC 3339 or a date).
    #[arg(long, value_parser = parse_timestamp)]
    pub updated_after: Option<prost_types::Timestamp>,
    /// Every version (superseded ones and deletions too), not only those in force.
    #[arg(long)]
    pub history: bool,
}

impl FilterArgs {
    /// The query message.
    pub fn query(&self) -> v1::ObservationQuery {
        let list = |v: &[String]| -> Vec<String> {
            v.iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        v1::ObservationQuery {
            indicator: self.indicator.trim().to_string(),
            ref_areas: list(&self.areas),
            start_period: self.start.clone().unwrap_or_default(),
            end_period: self.end.clone().unwrap_or_default(),
            dimensions: self
                .dims
                .iter()
                .map(|d| v1::Dimension {
                    id: d.id.clone(),
                    value: d.value.clone(),
                })
                .collect(),
            node_ids: list(&self.nodes),
            as_of: self.as_of,
            updated_after: self.updated_after,
            include_history: self.history,
        }
    }
}

/// `rcpfed query …`.
#[derive(Subcommand)]
pub enum QueryCommand {
    /// Query observations across all regions (IndicatorService.QueryObservations), every page.
    Observations(QueryArgs),
}

/// Arguments of `rcpfed query observations`.
#[derive(Args)]
pub struct QueryArgs {
    /// Where to ask: the hub by default, or a node with --endpoint.
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// What to select.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write here instead of to standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Records asked for per page (1 to 10000).
    #[arg(long, default_value_t = 1000, hide = true)]
    pub page_size: i32,
}

/// `rcpfed export sdmx` arguments.
#[derive(Args)]
pub struct ExportSdmxArgs {
    /// Where to ask: the hub by default, or a node with --endpoint.
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// What to export.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// SDMX-CSV 2.0 or SDMX-JSON 2.0 data, or the SDMX-ML 2.1 structures of the indicator.
    #[arg(long, value_enum)]
    pub format: SdmxFormat,
    /// The file to write.
    #[arg(long)]
    pub out: PathBuf,
}

/// SDMX message formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SdmxFormat {
    /// SDMX-CSV 2.0.
    Csv,
    /// SDMX-JSON 2.0 data message.
    Json,
    /// SDMX-ML 2.1 structure message: the indicator's dataflow, data structure, codelists,
    /// concept scheme and the data providers (for reading the CSV with sdmx1 or pysdmx).
    Structure,
}

/// Runs `rcpfed query …`.
pub async fn run(command: QueryCommand) -> Result<ExitCode> {
    let QueryCommand::Observations(args) = command;
    query_observations(&args).await
}

/// The column titles of the observation table.
pub const TABLE_HEADER: [&str; 12] = [
    "NODE",
    "AREA",
    "PERIOD",
    "DIMS",
    "VALUE",
    "UNIT",
    "STATUS",
    "ACTION",
    "REV",
    "FEED",
    "ACCEPTED",
    "SUPERSEDED",
];

/// One table row of an observation record.
pub fn table_row(r: &v1::ObservationRecord) -> Vec<String> {
    let o = r.observation.clone().unwrap_or_default();
    let p = r.provenance.clone().unwrap_or_default();
    vec![
        p.node_id,
        o.ref_area.clone(),
        o.time_period.clone(),
        view::dimensions(&o.dimensions),
        view::value(&o),
        o.unit_measure.clone(),
        o.obs_status.clone(),
        view::action(o.action),
        p.revision.to_string(),
        p.feed_index.to_string(),
        view::timestamp(p.accepted_at.as_ref()),
        view::timestamp(r.superseded_at.as_ref()),
    ]
}

/// The CSV columns of observation records.
pub const CSV_HEADER: [&str; 21] = [
    "node_id",
    "indicator",
    "ref_area",
    "time_period",
    "dimensions",
    "obs_value",
    "unit_mult",
    "unit_measure",
    "obs_status",
    "conf_status",
    "action",
    "document",
    "revision",
    "statement_digest",
    "feed_index",
    "position",
    "accepted_at",
    "superseded_at",
    "value",
    "source",
    "footnote",
];

/// One CSV row of an observation record (`value` is OBS_VALUE × 10^UNIT_MULT).
pub fn csv_row(r: &v1::ObservationRecord) -> Vec<String> {
    let o = r.observation.clone().unwrap_or_default();
    let p = r.provenance.clone().unwrap_or_default();
    vec![
        p.node_id,
        r.indicator.clone(),
        o.ref_area.clone(),
        o.time_period.clone(),
        view::csv_dimensions(&o.dimensions),
        view::raw(&o),
        o.unit_mult.to_string(),
        o.unit_measure.clone(),
        o.obs_status.clone(),
        o.conf_status.clone(),
        view::action(o.action),
        p.document,
        p.revision.to_string(),
        hex::encode(&p.statement_digest),
        p.feed_index.to_string(),
        p.position.to_string(),
        view::timestamp(p.accepted_at.as_ref()),
        view::timestamp(r.superseded_at.as_ref()),
        view::scaled(&o),
        o.source.clone(),
        o.footnote.clone(),
    ]
}

/// Writes records as they arrive: CSV rows and JSON array items are streamed; the table
/// needs every row for its widths, so it is kept until the end.
struct RecordWriter {
    format: Format,
    out: Output,
    table: Table,
    written: u64,
}

/// Rows as CSV text.
fn csv_text<I, R, S>(rows: I) -> Result<Vec<u8>>
where
    I: IntoIterator<Item = R>,
    R: IntoIterator<Item = S>,
    S: AsRef<[u8]>,
{
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in rows {
        w.write_record(row)?;
    }
    w.into_inner()
        .map_err(|e| anyhow::anyhow!("writing CSV: {}", e.error()))
}

impl RecordWriter {
    fn new(format: Format, out: Output) -> Result<Self> {
        let mut w = RecordWriter {
            format,
            out,
            table: Table::new(TABLE_HEADER),
            written: 0,
        };
        match format {
            Format::Csv => w.out.write_all(&csv_text([CSV_HEADER])?)?,
            Format::Json => w.out.write_all(b"[")?,
            Format::Table => {}
        }
        Ok(w)
    }

    fn add(&mut self, records: &[v1::ObservationRecord]) -> Result<()> {
        match self.format {
            Format::Table => {
                for r in records {
                    self.table.rows.push(table_row(r));
                }
            }
            Format::Csv => self
                .out
                .write_all(&csv_text(records.iter().map(csv_row))?)?,
            Format::Json => {
                for r in records {
                    let sep = if self.written == 0 { "\n  " } else { ",\n  " };
                    self.out.write_all(sep.as_bytes())?;
                    serde_json::to_writer(&mut self.out, &crate::pbjson::observation_record(r))?;
                    self.written += 1;
                }
                return Ok(());
            }
        }
        self.written += records.len() as u64;
        Ok(())
    }

    fn finish(mut self) -> Result<u64> {
        match self.format {
            Format::Table => {
                if self.table.is_empty() {
                    writeln!(self.out, "no observations match")?;
                } else {
                    self.out.write_all(self.table.render("").as_bytes())?;
                }
            }
            Format::Csv => {}
            Format::Json => {
                let end = if self.written == 0 { "]\n" } else { "\n]\n" };
                self.out.write_all(end.as_bytes())?;
            }
        }
        let n = self.written;
        self.out.finish()?;
        Ok(n)
    }
}

/// `rcpfed query observations`.
pub async fn query_observations(args: &QueryArgs) -> Result<ExitCode> {
    let mut rpc = args.endpoint.indicator_client().await?;
    let query = args.filter.query();
    let out = Output::open(args.out.as_deref())?;
    let mut writer = RecordWriter::new(args.format, out)?;
    let mut page_token = String::new();
    let mut pages = 0u64;
    let mut feed_size = 0;
    loop {
        let page = rpc
            .query_observations(v1::QueryObservationsRequest {
                query: Some(query.clone()),
                page_size: args.page_size,
                page_token: page_token.clone(),
            })
            .await
            .map_err(client::status_error)
            .with_context(|| format!("QueryObservations at {}", args.endpoint.endpoint))?
            .into_inner();
        pages += 1;
        feed_size = feed_size.max(page.feed_size);
        writer.add(&page.observations)?;
        if page.next_page_token.is_empty() {
            break;
        }
        if page.next_page_token == page_token {
            bail!("the server answered with the same page token twice; stopping");
        }
        page_token = page.next_page_token;
    }
    let n = writer.finish()?;
    let summary = format!(
        "{n} record(s) of {} in {pages} page(s) from {} (feed size {feed_size})",
        query.indicator, args.endpoint.endpoint
    );
    match (&args.out, args.format) {
        (Some(path), _) => println!("{summary}; wrote {}", path.display()),
        (None, Format::Table) => println!("{summary}"),
        _ => eprintln!("{summary}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `rcpfed export sdmx`: streams the pieces to a file (through FILE.partial, renamed when
/// complete) and prints the media type and the byte count.
pub async fn export_sdmx(args: &ExportSdmxArgs) -> Result<ExitCode> {
    use tokio::io::AsyncWriteExt as _;
    let mut rpc = args.endpoint.indicator_client().await?;
    let format = match args.format {
        SdmxFormat::Csv => v1::SdmxFormat::Csv,
        SdmxFormat::Json => v1::SdmxFormat::Json,
        SdmxFormat::Structure => v1::SdmxFormat::Structure,
    };
    let mut stream = rpc
        .export_sdmx(v1::ExportSdmxRequest {
            query: Some(args.filter.query()),
            format: format as i32,
        })
        .await
        .map_err(client::status_error)
        .with_context(|| format!("ExportSdmx at {}", args.endpoint.endpoint))?
        .into_inner();
    let tmp = crate::table::partial_path(&args.out);
    let file = tokio::fs::File::create(&tmp)
        .await
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut file = tokio::io::BufWriter::new(file);
    let mut media_type = String::new();
    let mut bytes = 0u64;
    let result: Result<()> = async {
        while let Some(piece) = stream.message().await.map_err(client::status_error)? {
            if media_type.is_empty() && !piece.media_type.is_empty() {
                media_type = piece.media_type;
            }
            file.write_all(&piece.data).await?;
            bytes += piece.data.len() as u64;
        }
        file.flush().await?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        drop(file);
        let _ = std::fs::remove_file(&tmp);
        return Err(e.context(format!(
            "exporting from {}; nothing was written to {}",
            args.endpoint.endpoint,
            args.out.display()
        )));
    }
    drop(file);
    std::fs::rename(&tmp, &args.out)
        .with_context(|| format!("moving {} to {}", tmp.display(), args.out.display()))?;
    println!(
        "wrote {}: {bytes} bytes of {}",
        args.out.display(),
        if media_type.is_empty() {
            "(no media type given)"
        } else {
            &media_type
        }
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: QueryCommand,
    }

    #[test]
    fn dims_are_id_equals_value() {
        assert_eq!(
            parse_dim("sex=F").unwrap(),
            DimFilter {
                id: "SEX".into(),
                value: "F".into()
            }
        );
        assert_eq!(parse_dim(" AGE = Y15T64 ").unwrap().value, "Y15T64");
        assert!(parse_dim("SEX").unwrap_err().contains("ID=VALUE"));
        assert!(parse_dim("SEX=").is_err());
        assert!(parse_dim("=F").is_err());
    }

    #[test]
    fn timestamps_are_rfc3339_or_dates() {
        let t = parse_timestamp("2025-01-01T00:00:00Z").unwrap();
        assert_eq!((t.seconds, t.nanos), (1_735_689_600, 0));
        let t = parse_timestamp("2025-01-01T02:00:00.5+02:00").unwrap();
        assert_eq!((t.seconds, t.nanos), (1_735_689_600, 500_000_000));
        let t = parse_timestamp("2025-01-01").unwrap();
        assert_eq!(t.seconds, 1_735_689_600);
        assert!(
            parse_timestamp("yesterday")
                .unwrap_err()
                .contains("RFC 3339")
        );
        assert!(parse_timestamp("2025-13-01T00:00:00Z").is_err());
    }

    #[test]
    fn the_command_line_becomes_the_query() {
        let cli = Cli::try_parse_from([
            "query",
            "observations",
            "--pki",
            "fed",
            "--indicator",
            "MIG_STOCK",
            "--area",
            "WLD,USA",
            "--area",
            "LKA",
            "--node",
            "colombo",
            "--start",
            "2015",
            "--end",
            "2024",
            "--dim",
            "SEX=F",
            "--as-of",
            "2025-01-01T00:00:00Z",
            "--updated-after",
            "2024-06-01",
            "--history",
            "--format",
            "csv",
        ])
        .unwrap();
        let QueryCommand::Observations(args) = cli.command;
        assert_eq!(args.format, Format::Csv);
        assert_eq!(args.endpoint.endpoint, "https://localhost:50051");
        let q = args.filter.query();
        assert_eq!(q.indicator, "MIG_STOCK");
        assert_eq!(q.ref_areas, ["WLD", "USA", "LKA"]);
        assert_eq!(q.node_ids, ["colombo"]);
        assert_eq!(
            (q.start_period.as_str(), q.end_period.as_str()),
            ("2015", "2024")
        );
        assert_eq!(q.dimensions.len(), 1);
        assert_eq!(q.as_of.unwrap().seconds, 1_735_689_600);
        assert_eq!(q.updated_after.unwrap().seconds, 1_717_200_000);
        assert!(q.include_history);

        let bad = Cli::try_parse_from([
            "query",
            "observations",
            "--pki",
            "fed",
            "--indicator",
            "X",
            "--as-of",
            "soon",
        ]);
        assert!(bad.is_err());
        let node = Cli::try_parse_from([
            "query",
            "observations",
            "--pki",
            "fed",
            "--indicator",
            "X",
            "--endpoint",
            "https://localhost:50061",
        ])
        .unwrap();
        let QueryCommand::Observations(args) = node.command;
        assert_eq!(args.endpoint.endpoint, "https://localhost:50061");
    }

    #[test]
    fn records_render_as_table_and_csv_rows() {
        let r = v1::ObservationRecord {
            indicator: "REMIT_INFLOW".into(),
            observation: Some(v1::Observation {
                action: v1::ObservationAction::Replace as i32,
                ref_area: "LMC_AGG".into(),
                time_period: "2023".into(),
                obs_value: Some(647.0),
                unit_mult: 9,
                unit_measure: "current USD".into(),
                obs_status: "A".into(),
                ..Default::default()
            }),
            provenance: Some(v1::Provenance {
                node_id: "colombo".into(),
                statement_digest: vec![0xab; 32],
                revision: 2,
                feed_index: 9,
                accepted_at: Some(prost_types::Timestamp {
                    seconds: 1_735_689_600,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            superseded_at: None,
        };
        assert_eq!(
            table_row(&r),
            [
                "colombo",
                "LMC_AGG",
                "2023",
                "",
                "647 ×10^9",
                "current USD",
                "A",
                "replace",
                "2",
                "9",
                "2025-01-01T00:00:00Z",
                ""
            ]
        );
        let row = csv_row(&r);
        assert_eq!(row.len(), CSV_HEADER.len());
        assert_eq!(row[5], "647");
        assert_eq!(row[18], "647000000000");
    }
}
