//! Errors an operator can act on: a typo in an indicator code is refused with NOT_FOUND, the
//! closest code and the list of valid ones, by the hub and by a node, and the CLI fails
//! instead of printing no rows or writing a header-only export.

use crate::harness::{BIN, Cluster, reason};
use rcpfed_proto::v1;

fn typo_query() -> v1::ObservationQuery {
    v1::ObservationQuery {
        indicator: "REMIT_OUTFLOW".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_indicator_is_not_found_with_the_valid_codes_at_hub_node_and_cli() {
    let c = Cluster::start(&["colombo"]).await;
    for at in ["hub", "colombo"] {
        let status = c
            .query_observations(at, &typo_query(), 100)
            .await
            .expect_err("a typo must not answer an empty page");
        assert_eq!(status.code(), tonic::Code::NotFound, "{at}: {status:?}");
        assert_eq!(reason(&status), "UNKNOWN_INDICATOR", "{at}");
        assert!(
            status.message().contains("did you mean REMIT_INFLOW")
                && status.message().contains("MIG_STOCK"),
            "{at}: {}",
            status.message()
        );
    }
    // A known code still answers (empty, nothing published yet).
    let (rows, _) = c
        .query_observations(
            "hub",
            &v1::ObservationQuery {
                indicator: "REMIT_INFLOW".into(),
                ..Default::default()
            },
            100,
        )
        .await
        .expect("a known indicator");
    assert!(rows.is_empty());

    let out_file = c.root().join("typo.sdmx.csv");
    for args in [
        vec!["query", "observations", "--indicator", "REMIT_OUTFLOW"],
        vec![
            "export",
            "sdmx",
            "--indicator",
            "REMIT_OUTFLOW",
            "--format",
            "csv",
            "--out",
            out_file.to_str().unwrap(),
        ],
    ] {
        let out = tokio::process::Command::new(BIN.as_str())
            .args(&args)
            .args(["--hub", &c.hub_endpoint(), "--pki"])
            .arg(c.fed_dir())
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded: {stderr}");
        assert!(stderr.contains("REMIT_INFLOW"), "{args:?}: {stderr}");
    }
    assert!(
        !out_file.exists(),
        "a refused export must not leave a header-only file"
    );
}
