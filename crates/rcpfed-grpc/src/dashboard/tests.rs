#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;
use prost::Message as _;
use rcpfed_core::envelope::{STATEMENT_PAYLOAD_TYPE, SignedEnvelope};
use rcpfed_core::keys::SecretKey;
use rcpfed_core::members::Federation;
use rcpfed_proto::v1;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[test]
fn right_to_left_languages_are_known_by_their_primary_subtag() {
    assert_eq!(language_direction("ar"), "rtl");
    assert_eq!(language_direction("ar-EG"), "rtl");
    assert_eq!(language_direction("fa"), "rtl");
    assert_eq!(language_direction("en"), "ltr");
    assert_eq!(language_direction("fr-CA"), "ltr");
    assert_eq!(language_direction(""), "ltr");
}

/// A source with one policy summary (revisions 1 and 2 of one document) and a fixed log.
struct FixedSource {
    policies: Vec<PolicyStatement>,
}

impl DashboardSource for FixedSource {
    fn server_role(&self) -> &'static str {
        "hub"
    }

    fn log_view(&self, federation: &Federation) -> Result<LogView, StoreError> {
        Ok(LogView {
            viewpoint: "the hub's log".into(),
            checkpoint: Some(CheckpointView {
                size: 7,
                root: [0xab; 32],
                created_at_ms: Some(1_700_000_000_000),
                note: "rcpfed/test\n7\nq6urq6s=\n\n— gfmd sig\n".into(),
            }),
            cosignatures: vec![CosignatureView {
                witness_id: "colombo".into(),
                timestamp: 1_700_000_001,
            }],
            quorum: 1,
            final_size: Some(7),
            witnesses: federation
                .members()
                .map(|m| WitnessView {
                    id: m.id.clone(),
                    cosigned_size: Some(7),
                    state: "cosigned the latest checkpoint (tree size 7)".into(),
                })
                .collect(),
        })
    }

    fn policy_page(
        &self,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<PolicyStatement>, bool), StoreError> {
        let mut page = Vec::new();
        let mut bytes = 0;
        for p in self.policies.iter().filter(|p| p.feed_index > after) {
            if page.len() == limit || (!page.is_empty() && bytes + p.envelope.len() > max_bytes) {
                return Ok((page, true));
            }
            bytes += p.envelope.len();
            page.push(p.clone());
        }
        Ok((page, false))
    }
}

fn federation(key: &SecretKey) -> Federation {
    let text = format!(
        "federation_id = \"rcp-federation\"\nhub_id = \"gfmd\"\n\
         [[members]]\nid = \"gfmd\"\nname = \"GFMD\"\nkind = \"hub\"\nroles = [\"reader\"]\n\
         spiffe_id = \"spiffe://rcp-federation/node/gfmd\"\n\
         [[members.keys]]\nkey_id = \"{}\"\npublic_key = \"{}\"\n",
        key.key_id(),
        key.verify_key().to_base64()
    );
    Federation::from_toml(&text).expect("member file")
}

fn policy(key: &SecretKey, revision: u32, feed_index: u64, summary_en: &str) -> PolicyStatement {
    let text = |language: &str, text: &str| v1::LocalizedText {
        language: language.into(),
        text: text.into(),
    };
    let statement = v1::Statement {
        header: None,
        body: Some(v1::statement::Body::PolicySummary(v1::PolicySummary {
            title: vec![text("en", "Title <b>"), text("ar", "عنوان")],
            summary: vec![text("en", summary_en), text("ar", "ملخص")],
            status: v1::PolicyStatus::Adopted as i32,
            gcm_objectives: vec![6, 20],
            ..Default::default()
        })),
    };
    let envelope =
        SignedEnvelope::sign(STATEMENT_PAYLOAD_TYPE, statement.encode_to_vec(), key).encode();
    PolicyStatement {
        node_id: "gfmd".into(),
        document: "regions/gfmd/policies/p".into(),
        revision,
        feed_index,
        digest: Digest::of(&envelope),
        accepted_at_ms: 1_700_000_000_000,
        envelope,
    }
}

/// Serves the dashboard over an empty hub store and `source` on a loopback port.
async fn serve(source: FixedSource, key: &SecretKey) -> (std::net::SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(rcpfed_store::SqliteHubStore::open(&dir.path().join("hub.db")).unwrap());
    let routes = router(
        Arc::new(source),
        store,
        SharedFederation::new(federation(key)),
        "gfmd",
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Plain HTTP on loopback: the transport is tested with the listener.
    let http = crate::public_http::PublicHttp {
        listener,
        transport: crate::public_http::HttpTransport::Plain,
        access: crate::public_http::HttpAccess::Public,
    };
    tokio::spawn(crate::public_http::serve(
        http,
        routes,
        SERVED,
        std::future::pending(),
    ));
    (addr, dir)
}

/// One HTTP/1.1 GET: the status code, the headers (lower-case names) and the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_string())
}

async fn get_json(addr: std::net::SocketAddr, path: &str) -> serde_json::Value {
    let (status, head, body) = get(addr, path).await;
    assert_eq!(status, 200, "{path}: {body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn pages_are_served_with_a_policy_that_allows_only_their_own_files() {
    let key = SecretKey::from_seed(&[3; 32]);
    let (addr, _dir) = serve(FixedSource { policies: vec![] }, &key).await;
    let (status, head, _) = get(addr, "/").await;
    assert_eq!(status, 303);
    assert!(head.contains("location: /dashboard/"), "{head}");
    assert_eq!(get(addr, "/dashboard").await.0, 303);
    let (status, head, body) = get(addr, "/dashboard/").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(head.contains("content-security-policy: default-src 'none'; script-src 'self'"));
    assert!(body.contains("/dashboard/app.js"));
    let (status, head, body) = get(addr, "/dashboard/app.js").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/javascript"), "{head}");
    // The page never turns data into HTML.
    assert!(!body.contains("innerHTML") && !body.contains("insertAdjacentHTML"));
    assert_eq!(get(addr, "/dashboard/style.css").await.0, 200);
    assert_eq!(get(addr, "/dashboard/nothing").await.0, 404);
}

#[tokio::test]
async fn bad_query_parameters_are_refused_in_plain_words() {
    let key = SecretKey::from_seed(&[3; 32]);
    let (addr, _dir) = serve(FixedSource { policies: vec![] }, &key).await;
    let long = format!("/dashboard/api/series?indicator={}", "A".repeat(300));
    for (path, words) in [
        ("/dashboard/api/series", "parameter indicator is required"),
        (
            "/dashboard/api/series?indicator=mig_stock",
            "is not an indicator code",
        ),
        (
            "/dashboard/api/series?indicator=MIG_STOCK&page=2",
            "unknown parameter \"page\"",
        ),
        (
            "/dashboard/api/series?indicator=A&indicator=B",
            "given twice",
        ),
        (
            "/dashboard/api/series?indicator=%3Cscript%3E",
            "may hold only letters",
        ),
        (long.as_str(), "at most 256 are accepted"),
        (
            "/dashboard/api/coherence?number=0",
            "a report number from 1",
        ),
        (
            "/dashboard/api/coherence?number=x",
            "a report number from 1",
        ),
        ("/dashboard/api/members?all", "takes none"),
    ] {
        let (status, _, body) = get(addr, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains(words), "{path}: {body}");
    }
    let (status, _, body) = get(addr, "/dashboard/api/coherence?number=5").await;
    assert_eq!(
        (status, body.trim()),
        (404, "coherence report 5 does not exist")
    );
}

#[tokio::test]
async fn the_json_says_what_the_store_and_the_source_hold() {
    let key = SecretKey::from_seed(&[3; 32]);
    let source = FixedSource {
        policies: vec![
            policy(&key, 1, 3, "First revision."),
            policy(&key, 2, 5, "Second revision."),
        ],
    };
    let (addr, _dir) = serve(source, &key).await;

    let members = get_json(addr, "/dashboard/api/members").await;
    assert_eq!(members["members"][0]["id"], "gfmd");
    assert_eq!(members["members"][0]["keys"][0]["key_id"], key.key_id());
    assert_eq!(members["members"][0]["keys"][0]["status"], "active");

    // Only the latest revision, each text with its direction.
    let policies = get_json(addr, "/dashboard/api/policies").await;
    assert_eq!(policies["total_documents"], 1);
    let doc = &policies["documents"][0];
    assert_eq!(
        (doc["revision"].as_u64(), doc["log_index"].as_u64()),
        (Some(2), Some(4))
    );
    assert_eq!(doc["summary"][0]["text"], "Second revision.");
    assert_eq!(doc["summary"][1]["dir"], "rtl");
    assert_eq!(doc["title"][0]["dir"], "ltr");
    assert_eq!(doc["title"][0]["text"], "Title <b>");
    assert_eq!(doc["status"], "adopted");

    let log = get_json(addr, "/dashboard/api/log").await;
    assert_eq!(log["checkpoint"]["size"], 7);
    assert_eq!(log["checkpoint"]["root"], "ab".repeat(32));
    assert_eq!(log["cosignatures"][0]["timestamp_ms"], 1_700_000_001_000u64);

    // An empty store: no catalogue, no report, no observation.
    let overview = get_json(addr, "/dashboard/api/overview").await;
    assert_eq!(overview["server"], "hub");
    assert_eq!(overview["server_id"], "gfmd");
    assert_eq!(overview["feed_size"], 0);
    assert_eq!(
        get_json(addr, "/dashboard/api/catalogue").await["version"],
        0
    );
    assert!(get_json(addr, "/dashboard/api/coherence").await["report"].is_null());
    let series = get_json(addr, "/dashboard/api/series?indicator=MIG_STOCK").await;
    assert_eq!(series["points"].as_array().map(Vec::len), Some(0));
}

#[test]
fn policy_lists_stop_at_their_byte_budget() {
    let key = SecretKey::from_seed(&[3; 32]);
    let mut first = policy(&key, 1, 3, "First document.");
    let mut second = policy(&key, 1, 4, "Second document.");
    first.document = "regions/gfmd/policies/a".into();
    second.document = "regions/gfmd/policies/b".into();
    let one = first.envelope.len();
    let listed = |max_documents, max_bytes| {
        json::policies(
            &[first.clone(), second.clone()],
            false,
            max_documents,
            max_bytes,
        )
        .unwrap()
    };
    let both = listed(10, 2 * one + 100);
    assert_eq!(both["documents"].as_array().map(Vec::len), Some(2));
    assert_eq!(both["truncated"], false);
    // Over the budget, or over the count: the first only, and the list says it is cut.
    for cut in [listed(10, one + 1), listed(1, usize::MAX)] {
        assert_eq!(cut["documents"].as_array().map(Vec::len), Some(1));
        assert_eq!(cut["documents"][0]["document"], "regions/gfmd/policies/a");
        assert_eq!(
            (cut["total_documents"].as_u64(), &cut["truncated"]),
            (Some(2), &serde_json::Value::Bool(true))
        );
    }
    // At least one, whatever its size.
    assert_eq!(listed(10, 1)["documents"].as_array().map(Vec::len), Some(1));
}

/// Past hundreds of revisions the list still shows each document's latest revision, the most
/// recently accepted documents chosen first, within the count and the byte budget, and
/// without holding more than a page of earlier revisions.
#[test]
fn latest_policies_are_the_newest_revision_of_the_newest_documents() {
    let key = SecretKey::from_seed(&[4; 32]);
    let mut policies = Vec::new();
    let mut feed_index = 0;
    // Document a: 450 revisions (more than two pages), then b and c: one each.
    for (document, revisions) in [("a", 450u32), ("b", 1), ("c", 1)] {
        for revision in 1..=revisions {
            feed_index += 1;
            let mut p = policy(&key, revision, feed_index, "text");
            p.document = format!("regions/gfmd/policies/{document}");
            policies.push(p);
        }
    }
    let source = FixedSource { policies };
    let (all, left_out) = latest_policies(&source, 10, usize::MAX).unwrap();
    let mut seen: Vec<(String, u32)> = all
        .iter()
        .map(|p| (p.document.clone(), p.revision))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("regions/gfmd/policies/a".to_string(), 450),
            ("regions/gfmd/policies/b".to_string(), 1),
            ("regions/gfmd/policies/c".to_string(), 1),
        ]
    );
    assert!(!left_out);
    // Two documents at most: the two most recently accepted (c, then b).
    let (two, left_out) = latest_policies(&source, 2, usize::MAX).unwrap();
    let mut documents: Vec<&str> = two.iter().map(|p| p.document.as_str()).collect();
    documents.sort_unstable();
    assert_eq!(
        documents,
        ["regions/gfmd/policies/b", "regions/gfmd/policies/c"]
    );
    assert!(left_out);
    // A budget of one envelope: the newest document only (always at least one).
    let (one, left_out) = latest_policies(&source, 10, 1).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].document, "regions/gfmd/policies/c");
    assert!(left_out);
}

#[test]
fn latest_policies_read_large_summaries_a_few_at_a_time() {
    let key = SecretKey::from_seed(&[4; 32]);
    // Nine documents of about 1 MiB each: pages of a few statements (POLICY_PAGE_BYTES), not of
    // POLICY_PAGE; every document is still found.
    let policies: Vec<PolicyStatement> = (1..=9u64)
        .map(|feed_index| {
            let mut p = policy(&key, 1, feed_index, &"x".repeat(1 << 20));
            p.document = format!("regions/gfmd/policies/p{feed_index}");
            p
        })
        .collect();
    let source = FixedSource { policies };
    let (first, more) = source
        .policy_page(0, POLICY_PAGE, POLICY_PAGE_BYTES)
        .unwrap();
    assert!(
        more && first.len() < 9,
        "{} statements in one page",
        first.len()
    );
    let (all, left_out) = latest_policies(&source, 100, usize::MAX).unwrap();
    assert_eq!(all.len(), 9);
    assert!(!left_out);
}
