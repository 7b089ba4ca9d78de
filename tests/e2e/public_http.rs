//! The public read-only HTTP listener of the hub and of nodes (issue 13, access): HTTPS by
//! default with the process's own certificate, and a readers-only mode in which only holders
//! of a federation certificate whose member has the reader role are answered. The limits on
//! anonymous clients (connections per address, slow headers, requests at once) are unit tests
//! of the listener; here the real processes and the real TLS are checked.

use crate::harness::{Cluster, PublicHttp};
use std::io::{Read as _, Write as _};

/// The status code and body of one GET over HTTPS, or the transport error.
fn get(public: &PublicHttp, path: &str) -> std::io::Result<(u16, String)> {
    let raw = public.exchange(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_and_nodes_serve_https_and_refuse_plain_http() {
    let c = Cluster::start_with_env(
        &["colombo"],
        &[
            ("RCPFED_HUB_HTTP_LISTEN", "127.0.0.1:0"),
            ("RCPFED_NODE_HTTP_LISTEN", "127.0.0.1:0"),
        ],
    )
    .await;
    let (hub, node) = (c.hub_http(), c.node_http("colombo"));
    let federation_id = c.federation().federation_id;
    tokio::task::spawn_blocking(move || {
        let (status, body) = get(&hub, "/tlog/checkpoint")
            .unwrap_or_else(|e| panic!("GET {}tlog/checkpoint: {e}", hub.url()));
        assert_eq!(status, 200, "{body}");
        assert!(
            body.lines()
                .next()
                .is_some_and(|origin| origin.contains(&federation_id)),
            "a checkpoint of this federation's log: {body}"
        );
        // The node's listener is up, over HTTPS too, and says what it serves.
        let (status, body) = get(&node, "/nothing-here").expect("HTTPS answer from the node");
        assert_eq!(status, 404, "{body}");
        assert!(body.contains("this listener serves"), "{body}");
        // Plain HTTP to the HTTPS port gets no HTTP answer.
        let mut tcp = std::net::TcpStream::connect(hub.addr).expect("tcp");
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        tcp.write_all(b"GET /tlog/checkpoint HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .expect("send");
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer);
        assert!(
            !answer.starts_with(b"HTTP/"),
            "plain HTTP answered: {}",
            String::from_utf8_lossy(&answer)
        );
    })
    .await
    .expect("checks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_mode_answers_only_members_with_the_reader_role() {
    let c = Cluster::start_with_env(
        &[],
        &[
            ("RCPFED_HUB_HTTP_LISTEN", "127.0.0.1:0"),
            ("RCPFED_HUB_HTTP_ACCESS", "readers"),
        ],
    )
    .await;
    let federation_id = c.federation().federation_id;
    // A certificate the federation CA signed for someone the registry does not know.
    rcpfed_pki::issue_member_cert(
        &rcpfed_pki::PkiLayout::new(c.fed_dir()),
        &federation_id,
        "stranger",
        rcpfed_pki::IdentityKind::Node,
        &[],
        1,
    )
    .expect("issue a certificate to a non-member");
    let anonymous = c.hub_http();
    let operator = anonymous.as_member(c.fed_dir(), "operator");
    let stranger = anonymous.as_member(c.fed_dir(), "stranger");
    tokio::task::spawn_blocking(move || {
        // Without a certificate the TLS handshake itself is refused.
        match get(&anonymous, "/tlog/checkpoint") {
            Err(_) => {}
            Ok((status, body)) => panic!("answered without a certificate: {status} {body}"),
        }
        let (status, body) = get(&operator, "/tlog/checkpoint").expect("an answer");
        assert_eq!(status, 200, "{body}");
        let (status, body) = get(&stranger, "/tlog/checkpoint").expect("an answer");
        assert_eq!(status, 403, "{body}");
        assert!(
            body.contains("reader role") && body.contains("not a member"),
            "{body}"
        );
    })
    .await
    .expect("checks");
}
