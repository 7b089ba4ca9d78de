//! Partitions heal by themselves: node colombo reaches the hub only through a fault-injecting
//! proxy ([`FaultProxy`]) that drops, resets, delays, trickles, blackholes or half-opens the
//! link. After each fault heals, with no restart, every statement colombo published is at the
//! hub exactly once and in order, and colombo's mirror is the hub's feed. The convergence time
//! is printed. The node runs with short link timings (configuration keys `hub_*_ms`, set
//! through the environment) so the suite stays quick; the production defaults are longer.

use crate::faultproxy::{Fault, FaultProxy};
use crate::harness::Cluster;
use std::time::{Duration, Instant};

/// Short timings for the node's link to the hub (production: 5 s, 30 s, 20 s, 10 s).
const SHORT_LINK: [(&str, &str); 4] = [
    ("RCPFED_NODE_HUB_CONNECT_TIMEOUT_MS", "2000"),
    ("RCPFED_NODE_HUB_CALL_TIMEOUT_MS", "3000"),
    ("RCPFED_NODE_HUB_KEEPALIVE_INTERVAL_MS", "1000"),
    ("RCPFED_NODE_HUB_KEEPALIVE_TIMEOUT_MS", "2000"),
];

/// How long convergence may take after a fault heals: a generous bound for a loaded 2-core
/// machine; with the short timings it takes a few seconds (printed).
const CONVERGE: Duration = Duration::from_secs(40);

/// The hub, and node colombo behind a proxy in `mode`.
async fn proxied(mode: Fault) -> (Cluster, FaultProxy) {
    let mut c = Cluster::start(&[]).await;
    let proxy = FaultProxy::start(c.hub_addr(), mode).await;
    c.start_node_towards("colombo", &proxy.endpoint(), &SHORT_LINK)
        .await;
    (c, proxy)
}

/// Everything colombo published (`published` statements) is at the hub exactly once, in seq
/// order, delivered, and colombo's mirror equals the hub's feed.
async fn converged(c: &Cluster, published: u64) -> bool {
    let at_hub: Vec<u64> = c
        .hub_statements_of("colombo")
        .await
        .iter()
        .map(|r| r.seq)
        .collect();
    if at_hub != (1..=published).collect::<Vec<_>>() {
        assert!(
            at_hub.windows(2).all(|w| w[0] < w[1]) && at_hub.len() as u64 <= published,
            "colombo's statements at the hub are duplicated or out of order: {at_hub:?}"
        );
        return false;
    }
    c.delivered("colombo", published).await && c.mirrors_match_hub(&["colombo"]).await
}

/// Waits for convergence after a heal and prints how long it took.
async fn wait_converged(c: &Cluster, published: u64, what: &str) {
    let healed = Instant::now();
    assert_eventually!(
        c,
        CONVERGE,
        converged(c, published).await,
        "colombo converges after {what}"
    );
    assert!(
        c.equivocations().await.is_empty(),
        "no equivocation after {what}"
    );
    eprintln!(
        "converged after {what} in {:.1} s",
        healed.elapsed().as_secs_f64()
    );
}

/// Publishes `n` policy summaries on colombo (node-local: works while the hub is unreachable).
async fn publish(c: &Cluster, from: u64, n: u64) {
    for i in from..from + n {
        c.publish_policy("colombo", &format!("Partition statement {i}"))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_reset_delay_and_byte_by_byte_heal() {
    let (c, proxy) = proxied(Fault::Pass).await;
    c.wait_for_catalogue("colombo").await;
    let mut published = 0;
    publish(&c, published + 1, 1).await;
    published += 1;
    wait_converged(&c, published, "start-up").await;
    for fault in [Fault::Drop, Fault::Reset] {
        proxy.set(fault);
        publish(&c, published + 1, 2).await;
        published += 2;
        tokio::time::sleep(Duration::from_secs(2)).await;
        proxy.set(Fault::Pass);
        wait_converged(&c, published, &format!("{fault:?}")).await;
    }
    // Degraded links still deliver, in order, while degraded.
    for fault in [Fault::Delay(Duration::from_millis(300)), Fault::ByteByByte] {
        proxy.set(fault);
        publish(&c, published + 1, 2).await;
        published += 2;
        wait_converged(&c, published, &format!("{fault:?} (while it lasts)")).await;
        proxy.set(Fault::Pass);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole_and_half_open_heal_without_restart() {
    let (c, proxy) = proxied(Fault::Pass).await;
    c.wait_for_catalogue("colombo").await;
    publish(&c, 1, 1).await;
    let mut published = 1;
    wait_converged(&c, published, "start-up").await;
    for fault in [Fault::Blackhole, Fault::HalfOpen] {
        proxy.set(fault);
        publish(&c, published + 1, 2).await;
        published += 2;
        tokio::time::sleep(Duration::from_secs(8)).await;
        proxy.set(Fault::Pass);
        wait_converged(&c, published, &format!("an 8 s {fault:?}")).await;
    }
}

/// The case: a 45 s blackhole (about a minute in all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_45_second_blackhole_heals_without_restart() {
    let (c, proxy) = proxied(Fault::Pass).await;
    c.wait_for_catalogue("colombo").await;
    publish(&c, 1, 1).await;
    wait_converged(&c, 1, "start-up").await;
    proxy.set(Fault::Blackhole);
    publish(&c, 2, 2).await;
    tokio::time::sleep(Duration::from_secs(45)).await;
    proxy.set(Fault::Pass);
    wait_converged(&c, 3, "a 45 s blackhole").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_behind_a_blackhole_converges() {
    let (c, proxy) = proxied(Fault::Blackhole).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    proxy.set(Fault::Pass);
    let healed = Instant::now();
    c.wait_for_catalogue("colombo").await;
    eprintln!(
        "the node started behind a blackhole has the registry and catalogue {:.1} s after the heal",
        healed.elapsed().as_secs_f64()
    );
    publish(&c, 1, 2).await;
    wait_converged(&c, 2, "starting behind a blackhole").await;
}

/// SIGTERM stops the node within 10 s while its calls to the hub go unanswered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_node_within_10_s_while_the_hub_is_blackholed() {
    // Production timings: the node must not wait for a 30 s call timeout to stop.
    let mut c = Cluster::start(&[]).await;
    let proxy = FaultProxy::start(c.hub_addr(), Fault::Pass).await;
    c.start_node_towards("colombo", &proxy.endpoint(), &[])
        .await;
    c.wait_for_catalogue("colombo").await;
    publish(&c, 1, 1).await;
    wait_converged(&c, 1, "start-up").await;
    proxy.set(Fault::Blackhole);
    // A delivery now waits on the hub: the outbox, mirror stream and witness are all stuck.
    publish(&c, 2, 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let asked = Instant::now();
    let status = c.node_exit("colombo", true, Duration::from_secs(10)).await;
    assert!(
        status.is_some(),
        "node colombo did not stop within 10 s of SIGTERM while the hub was blackholed\n{}",
        c.logs()
    );
    eprintln!(
        "node stopped {:.1} s after SIGTERM ({:?})",
        asked.elapsed().as_secs_f64(),
        status
    );
}
