//! The operations endpoint (`--http-addr`): `/metrics` in Prometheus's text format, `/health`
//! (the process answers) and `/ready` (200 once the node knows a leader and has applied what
//! its log held at start, 503 with the reason before). Served by tiny_http on a thread of its
//! own, so a scrape never waits for the async runtime and never slows it.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use metrics::Unit;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sqlkeeper_raft::Node;

/// Upper bounds of the latency histograms' buckets, in seconds: from a fast fsync (100 µs) to
/// a write that waited for an election (10 s).
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Installs the process's metrics recorder and describes every metric the crates record.
pub fn install_recorder() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)
        .context("histogram buckets")?
        .install_recorder()
        .context("install the metrics recorder")?;
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        "sqlkeeper_raft_role",
        "1 for the node's Raft role, 0 for the others"
    );
    describe_gauge!("sqlkeeper_raft_term", "the node's current Raft term");
    describe_gauge!(
        "sqlkeeper_raft_last_log_index",
        "the last index in the node's log (-1: none)"
    );
    describe_gauge!(
        "sqlkeeper_raft_commit_index",
        "the highest index the node knows committed"
    );
    describe_gauge!(
        "sqlkeeper_raft_applied_index",
        "the highest index the node has applied"
    );
    describe_gauge!(
        "sqlkeeper_raft_snapshot_index",
        "the index of the node's newest snapshot"
    );
    describe_gauge!(
        "sqlkeeper_replication_lag_entries",
        "on the leader: entries of its log each follower has not acknowledged"
    );
    describe_gauge!(
        "sqlkeeper_state_wal_bytes",
        Unit::Bytes,
        "size of the state database's write-ahead log"
    );
    describe_gauge!(
        "sqlkeeper_client_connections",
        "client connections open now"
    );
    describe_counter!(
        "sqlkeeper_client_connections_total",
        "client connections accepted"
    );
    describe_counter!(
        "sqlkeeper_statements_total",
        "statements that succeeded, by command tag"
    );
    describe_counter!(
        "sqlkeeper_errors_total",
        "errors sent to clients, by SQLSTATE class"
    );
    describe_counter!(
        "sqlkeeper_proposals_total",
        "commands this node proposed as leader, committed or refused"
    );
    describe_histogram!(
        "sqlkeeper_proposal_seconds",
        Unit::Seconds,
        "from proposing a command to its being applied on the leader"
    );
    describe_counter!("sqlkeeper_applied_entries_total", "log entries applied");
    describe_histogram!(
        "sqlkeeper_apply_seconds",
        Unit::Seconds,
        "applying one batch of entries to the state"
    );
    describe_histogram!(
        "sqlkeeper_log_append_seconds",
        Unit::Seconds,
        "appending entries to the Raft log: one SQLite commit and its fsync"
    );
    describe_histogram!(
        "sqlkeeper_read_wait_seconds",
        Unit::Seconds,
        "what a read waited for its consistency (session token, linearizable barrier)"
    );
    Ok(handle)
}

/// Serves the endpoint on `addr` from a thread of its own; returns the bound address.
pub fn serve(
    addr: SocketAddr,
    node: Arc<Node>,
    handle: PrometheusHandle,
) -> anyhow::Result<SocketAddr> {
    let server = tiny_http::Server::http(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen for HTTP on {addr}: {e}"))?;
    let bound = server
        .server_addr()
        .to_ip()
        .context("the HTTP listener has no IP address")?;
    std::thread::Builder::new()
        .name("sqlkeeper-http".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let get = *request.method() == tiny_http::Method::Get;
                let (status, body, content_type) = match (get, request.url()) {
                    (true, "/metrics") => {
                        node.record_metrics();
                        handle.run_upkeep();
                        (200, handle.render(), "text/plain; version=0.0.4")
                    }
                    (true, "/health") => (200, "ok\n".to_string(), "text/plain"),
                    (true, "/ready") => match node.readiness() {
                        Ok(()) => (200, "ready\n".to_string(), "text/plain"),
                        Err(why) => (503, format!("not ready: {why}\n"), "text/plain"),
                    },
                    (true, _) => (404, "not found\n".to_string(), "text/plain"),
                    (false, _) => (405, "only GET\n".to_string(), "text/plain"),
                };
                let mut response = tiny_http::Response::from_string(body).with_status_code(status);
                if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", content_type) {
                    response = response.with_header(h);
                }
                // A client that went away is no concern of the node's.
                let _ = request.respond(response);
            }
        })
        .context("start the HTTP thread")?;
    Ok(bound)
}
