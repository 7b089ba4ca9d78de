//! What operators and probes see on the plaintext ops port.

use crate::harness::{Cluster, TIMEOUT};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The health of `service` on the ops port: `Ok(status)`, or `Err` if the port does not answer.
async fn health(ops: SocketAddr, service: &str) -> Result<i32, String> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{ops}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .map(|r| r.into_inner().status)
        .map_err(|s| format!("{s:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_health_is_serving_then_stops_on_sigterm() {
    let mut c = Cluster::start(&["colombo"]).await;
    let ops = c.hub_ops();
    for service in ["", "rcpfed.v1.HubService"] {
        assert_eventually!(
            c,
            Duration::from_secs(10),
            health(ops, service).await == Ok(ServingStatus::Serving as i32),
            "hub ops health {service:?} is SERVING"
        );
    }
    let node_ops = {
        // The node's ops address is in its address file.
        let text = std::fs::read_to_string(c.root().join("colombo.addr.json")).expect("addr");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        v["ops"]
            .as_str()
            .expect("ops")
            .parse::<SocketAddr>()
            .expect("addr")
    };
    assert_eventually!(
        c,
        Duration::from_secs(10),
        health(node_ops, "rcpfed.v1.NodeService").await == Ok(ServingStatus::Serving as i32),
        "node ops health is SERVING"
    );

    // SIGTERM: the probe stops seeing SERVING (NOT_SERVING while draining, then no answer), and
    // the hub exits cleanly, even with a node's feed stream open.
    c.term_hub();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match health(ops, "").await {
            Ok(s) if s == ServingStatus::Serving as i32 => {}
            _ => break,
        }
        assert!(
            Instant::now() < deadline,
            "the hub still reports SERVING 15 s after SIGTERM\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = c
        .wait_hub_exit(Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("the hub did not exit within 15 s of SIGTERM\n{}", c.logs()));
    assert!(status.success(), "clean exit: {status}\n{}", c.logs());
    assert!(health(ops, "").await.is_err(), "nothing answers after exit");

    // Back up on the same port: SERVING again.
    c.start_hub().await;
    assert_eventually!(
        c,
        Duration::from_secs(10),
        health(ops, "").await == Ok(ServingStatus::Serving as i32),
        "hub ops health is SERVING after restart"
    );
}

/// The services a reflection endpoint lists, asked over the given protocol version.
async fn reflected_services(c: &Cluster, v1: bool) -> Vec<String> {
    reflected_services_at(c, c.hub_addr().port(), v1).await
}

/// The services the reflection endpoint on `port` lists.
async fn reflected_services_at(c: &Cluster, port: u16, v1: bool) -> Vec<String> {
    let channel = crate::harness::connect(port, &c.tls("operator"))
        .await
        .expect("connect");
    if v1 {
        use tonic_reflection::pb::v1::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = ServerReflectionClient::new(channel)
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("reflection v1")
            .into_inner();
        match stream
            .message()
            .await
            .expect("answer")
            .and_then(|r| r.message_response)
        {
            Some(MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect()
            }
            other => panic!("unexpected reflection v1 answer: {other:?}"),
        }
    } else {
        use tonic_reflection::pb::v1alpha::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = ServerReflectionClient::new(channel)
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("reflection v1alpha")
            .into_inner();
        match stream
            .message()
            .await
            .expect("answer")
            .and_then(|r| r.message_response)
        {
            Some(MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect()
            }
            other => panic!("unexpected reflection v1alpha answer: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_v1_and_v1alpha_both_describe_the_hub() {
    let c = Cluster::start(&[]).await;
    let v1 = reflected_services(&c, true).await;
    let v1alpha = reflected_services(&c, false).await;
    for service in ["rcpfed.v1.HubService", "grpc.health.v1.Health"] {
        assert!(
            v1.iter().any(|s| s == service),
            "v1 lacks {service}: {v1:?}"
        );
        assert!(
            v1alpha.iter().any(|s| s == service),
            "v1alpha lacks {service}: {v1alpha:?}"
        );
    }
    // The hub lists only what it serves.
    for absent in ["rcpfed.v1.NodeService", "rcpfed.v1.WitnessService"] {
        assert!(
            !v1.iter().any(|s| s == absent),
            "hub lists {absent}: {v1:?}"
        );
        assert!(!v1alpha.iter().any(|s| s == absent), "{v1alpha:?}");
    }
    // Each reflection service describes itself.
    assert!(
        v1.iter()
            .any(|s| s == "grpc.reflection.v1.ServerReflection"),
        "{v1:?}"
    );
    assert!(
        v1alpha
            .iter()
            .any(|s| s == "grpc.reflection.v1alpha.ServerReflection"),
        "{v1alpha:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_port_serves_http_health_for_http_probes_and_404_elsewhere() {
    let c = Cluster::start(&["colombo"]).await;
    for ops in [c.hub_ops(), c.node_ops("colombo")] {
        let ops = ops.to_string();
        let live = crate::harness::http_get(&ops, "/livez").await;
        assert!(live.starts_with("HTTP/1.1 200"), "{live}");
        let ready = crate::harness::http_get(&ops, "/readyz").await;
        assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
        assert!(ready.contains("SERVING"), "{ready}");
        for path in ["/", "/statements", "/metricsx"] {
            let answer = crate::harness::http_get(&ops, path).await;
            assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer}");
            assert!(answer.contains("/readyz"), "{path}: {answer}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_reflection_lists_exactly_the_node_services() {
    let c = Cluster::start(&["colombo"]).await;
    let port = c.node_addr("colombo").port();
    for v1 in [true, false] {
        let mut listed = reflected_services_at(&c, port, v1).await;
        listed.sort();
        // Both reflection versions are served on the port, so both are listed.
        let mut expected = vec![
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            "rcpfed.v1.IndicatorService",
            "rcpfed.v1.NodeService",
            "rcpfed.v1.WitnessService",
        ];
        expected.sort();
        assert_eq!(listed, expected, "v1 = {v1}");
    }
}

/// A node that cannot reach the hub says so: a warning with the reason and the backoff in its
/// log, `hub_reachable` false in GetNodeStatus, its `rcpfed.hub-link` health entry NOT_SERVING
/// (while the node itself stays SERVING and queues what it signs), and metrics; all of it
/// turns back when the hub returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_reach_the_hub_says_so() {
    use crate::harness::http_get;
    let mut c = Cluster::start(&["colombo"]).await;
    let ops = c.node_ops("colombo");
    let health = |service: &'static str| async move {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{ops}"))
            .expect("endpoint")
            .connect()
            .await
            .expect("ops port");
        HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .map(|r| r.into_inner().status)
            .unwrap_or(-1)
    };
    assert!(c.node_status("colombo").await.hub_reachable);
    assert_eq!(
        health("rcpfed.hub-link").await,
        ServingStatus::Serving as i32
    );

    c.stop_hub().await;
    // Something to deliver while the hub is away.
    c.publish_policy("colombo", "Signed while the hub is down")
        .await;
    assert_eventually!(
        c,
        Duration::from_secs(20),
        !c.node_status("colombo").await.hub_reachable,
        "the node reports the hub unreachable"
    );
    assert_eventually!(
        c,
        Duration::from_secs(5),
        health("rcpfed.hub-link").await == ServingStatus::NotServing as i32,
        "the hub-link health entry turns NOT_SERVING"
    );
    assert_eq!(
        health("").await,
        ServingStatus::Serving as i32,
        "the node itself still serves"
    );
    let metrics = http_get(&ops.to_string(), "/metrics").await;
    assert!(metrics.contains("rcpfed_node_hub_reachable 0"), "{metrics}");
    assert_eventually!(
        c,
        Duration::from_secs(5),
        http_get(&ops.to_string(), "/metrics")
            .await
            .contains("rcpfed_node_outbox_pending 1"),
        "the queued statement is in the metrics"
    );
    let log = std::fs::read_to_string(c.root().join("colombo.log")).expect("node log");
    let warning = log
        .lines()
        .find(|l| l.contains("cannot reach the hub"))
        .unwrap_or_else(|| panic!("no warning in the node's log:\n{log}"));
    assert!(
        warning.contains("WARN") && warning.contains("retry_in_ms"),
        "{warning}"
    );

    c.start_hub().await;
    assert_eventually!(
        c,
        Duration::from_secs(30),
        c.delivered("colombo", 1).await && c.node_status("colombo").await.hub_reachable,
        "delivered and reachable once the hub is back"
    );
    assert_eventually!(
        c,
        Duration::from_secs(5),
        health("rcpfed.hub-link").await == ServingStatus::Serving as i32,
        "the hub-link health entry is SERVING again"
    );
    let log = std::fs::read_to_string(c.root().join("colombo.log")).expect("node log");
    assert!(log.contains("the hub is reachable again"), "{log}");
    let status = c.node_status("colombo").await;
    assert!(status.last_hub_answer.is_some());
}

/// Per-RPC metrics on hub and node: calls by method and status code (refusals by admission
/// included) and latency histograms, plus build info.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_metrics_count_calls_by_method_and_code() {
    use crate::harness::http_get;
    use rcpfed_proto::v1;
    let c = Cluster::start(&["colombo"]).await;
    c.publish_policy("colombo", "Counted").await;
    assert_eventually!(c, TIMEOUT, c.delivered("colombo", 1).await, "delivered");
    let mut hub = c.hub_client("operator").await;
    let missing = hub
        .get_statement(v1::GetStatementRequest {
            name: "nodes/colombo/statements/99".into(),
        })
        .await;
    assert_eq!(
        missing.expect_err("no such statement").code(),
        tonic::Code::NotFound
    );
    // A role refusal, answered by admission before the handler.
    let mut as_operator = c.hub_client("operator").await;
    let refused = as_operator
        .submit_statement(v1::SubmitStatementRequest { envelope: None })
        .await;
    assert_eq!(
        refused.expect_err("operators do not publish").code(),
        tonic::Code::PermissionDenied
    );

    let hub_metrics = http_get(&c.hub_ops().to_string(), "/metrics").await;
    for line in [
        r#"rcpfed_rpc_requests_total{method="/rcpfed.v1.HubService/SubmitStatement",code="OK"}"#,
        r#"rcpfed_rpc_requests_total{method="/rcpfed.v1.HubService/GetStatement",code="NOT_FOUND"} 1"#,
        r#"rcpfed_rpc_requests_total{method="/rcpfed.v1.HubService/SubmitStatement",code="PERMISSION_DENIED"} 1"#,
        r#"rcpfed_rpc_duration_seconds_bucket{le="#,
        "rcpfed_build_info{version=",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
    ] {
        assert!(
            hub_metrics.contains(line),
            "hub /metrics lacks {line}:\n{hub_metrics}"
        );
    }
    let node_metrics = http_get(&c.node_ops("colombo").to_string(), "/metrics").await;
    for line in [
        r#"rcpfed_rpc_requests_total{method="/rcpfed.v1.NodeService/PublishDocument",code="OK"} 1"#,
        "rcpfed_node_hub_reachable 1",
        "rcpfed_node_outbox_pending 0",
    ] {
        assert!(
            node_metrics.contains(line),
            "node /metrics lacks {line}:\n{node_metrics}"
        );
    }
}

/// The value of the sample `series` (a metric name with its labels, exactly as exposed) in a
/// Prometheus text exposition, if present.
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// Log metrics: the hub's log size, checkpoint time, final size and cosignatures per witness;
/// each node's view of the hub's log, its mirror and witness progress (and so their lag), and
/// the age of its oldest undelivered statement. The hub's gauges start from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_metrics_show_size_age_cosignatures_and_lags() {
    use crate::harness::http_get;
    let mut c = Cluster::start(&["colombo", "midwa"]).await;
    c.publish_policy("colombo", "Counted in the log").await;
    assert_eventually!(c, TIMEOUT, c.delivered("colombo", 1).await, "delivered");
    let size = c.hub_checkpoint_size().await;
    assert!(size >= 1, "the log holds the statement");

    let hub = c.hub_ops().to_string();
    assert_eventually!(
        c,
        TIMEOUT,
        {
            let m = http_get(&hub, "/metrics").await;
            sample(&m, "rcpfed_hub_final_log_size") == Some(size as f64)
        },
        "the latest checkpoint becomes final in the metrics"
    );
    let m = http_get(&hub, "/metrics").await;
    assert_eq!(sample(&m, "rcpfed_hub_log_size"), Some(size as f64), "{m}");
    let signed_at = sample(&m, "rcpfed_hub_checkpoint_timestamp_seconds").unwrap_or(0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(
        (now - signed_at).abs() < 600.0,
        "checkpoint time {signed_at} is not about now ({now}):\n{m}"
    );
    for node in ["colombo", "midwa"] {
        let series = format!("rcpfed_hub_cosignatures_total{{witness=\"{node}\"}}");
        assert!(
            sample(&m, &series).is_some_and(|n| n >= 1.0),
            "no cosignature of {node} counted ({series}):\n{m}"
        );
        let series = format!("rcpfed_hub_witnessed_log_size{{witness=\"{node}\"}}");
        assert_eq!(sample(&m, &series), Some(size as f64), "{m}");
        let node_ops = c.node_ops(node).to_string();
        assert_eventually!(
            c,
            TIMEOUT,
            {
                let m = http_get(&node_ops, "/metrics").await;
                [
                    "rcpfed_node_hub_log_size",
                    "rcpfed_node_mirror_entries",
                    "rcpfed_node_view_applied",
                    "rcpfed_node_witnessed_log_size",
                ]
                .iter()
                .all(|series| sample(&m, series) == Some(size as f64))
                    && sample(&m, "rcpfed_node_mirror_lag_seconds") == Some(0.0)
            },
            "{node} reports the hub's log size, its mirror, its view and its witness caught up"
        );
        let m = http_get(&node_ops, "/metrics").await;
        assert_eq!(sample(&m, "rcpfed_node_witness_forked"), Some(0.0), "{m}");
        assert_eq!(
            sample(&m, "rcpfed_node_outbox_oldest_pending_timestamp_seconds"),
            Some(0.0),
            "nothing pending: {m}"
        );
    }

    // A statement that cannot be delivered: the age of the oldest pending one shows.
    c.stop_hub().await;
    c.publish_policy("colombo", "Waiting for the hub").await;
    let colombo = c.node_ops("colombo").to_string();
    assert_eventually!(
        c,
        Duration::from_secs(10),
        sample(
            &http_get(&colombo, "/metrics").await,
            "rcpfed_node_outbox_oldest_pending_timestamp_seconds"
        )
        .is_some_and(|t| (now - t).abs() < 600.0),
        "the oldest pending statement's time is exported"
    );
    // After a restart the hub's gauges come from the store (the ops port answers from the
    // start, before the store is open, so the gauges are awaited).
    c.start_hub().await;
    let hub_ops = c.hub_ops().to_string();
    assert_eventually!(
        c,
        TIMEOUT,
        {
            let m = http_get(&hub_ops, "/metrics").await;
            sample(&m, "rcpfed_hub_log_size").is_some_and(|n| n >= size as f64)
                && sample(&m, "rcpfed_hub_final_log_size").is_some_and(|n| n >= size as f64)
        },
        "log size and final size after restart"
    );
}
