//! The operations endpoint (issue 13, `--http-addr`): `/metrics` scraped with the Prometheus
//! Python client's parser on every node of a cluster, whose values move as writes happen;
//! `/health` answers; `/ready` is 503 on a node that has no leader and 200 on a cluster's.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use crate::clients::{output_of, python, script_command};
use crate::support::{eventually, NodeProcess, TestCluster, WAIT};

/// The address node `p` serves its endpoint on, from its start-up line.
pub(crate) fn http_addr(p: &NodeProcess) -> SocketAddr {
    let log = p.log.lock().unwrap();
    let line = log
        .iter()
        .find(|l| l.contains("sqlkeeper is ready"))
        .expect("a start-up line");
    line.split("http_addr=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no http_addr in {line}"))
}

/// `GET path` over HTTP/1.0: the status code and the body.
pub(crate) fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

/// Every sample of a scrape, by name and then by its labels (as `k=v,…`).
type Samples = BTreeMap<String, BTreeMap<String, f64>>;

async fn scrape(addr: SocketAddr) -> Samples {
    let mut cmd = script_command(python(), "metrics_scrape.py");
    cmd.arg(format!("http://{addr}/metrics"));
    let text = output_of("metrics_scrape.py", cmd).await;
    assert!(text.contains("== OK"), "{text}");
    let json = text
        .lines()
        .find_map(|l| l.strip_prefix("SAMPLES "))
        .expect("samples");
    let parsed: Vec<(String, BTreeMap<String, String>, f64)> = serde_json::from_str(json).unwrap();
    let mut out = Samples::new();
    for (name, labels, value) in parsed {
        let key: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.entry(name).or_default().insert(key.join(","), value);
    }
    out
}

fn value(s: &Samples, name: &str, labels: &str) -> f64 {
    s.get(name)
        .and_then(|m| m.get(labels))
        .copied()
        .unwrap_or_else(|| panic!("no sample {name}{{{labels}}} in {:?}", s.get(name)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_writes_and_ready_waits_for_a_leader() {
    // A node that waits to be added has no leader: alive, not ready.
    let lone_dir = tempfile::tempdir().unwrap();
    let lone = NodeProcess::start(
        lone_dir.path(),
        &["--no-bootstrap", "--http-addr", "127.0.0.1:0"],
    );
    let lone_http = http_addr(&lone);
    assert_eq!(get(lone_http, "/health").0, 200);
    let (status, body) = get(lone_http, "/ready");
    assert_eq!(
        (status, body.trim()),
        (503, "not ready: no leader is known")
    );
    assert_eq!(get(lone_http, "/nothing").0, 404);

    let cluster = TestCluster::start(3, |_| {
        vec!["--http-addr".to_string(), "127.0.0.1:0".to_string()]
    })
    .await;
    let leader = cluster.leader().await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let http: Vec<SocketAddr> = (1..=3).map(|id| http_addr(cluster.node(id))).collect();
    let at = |id: u64| http[id as usize - 1];
    for id in 1..=3 {
        eventually(&format!("node {id} is ready"), WAIT, || async {
            match get(at(id), "/ready") {
                (200, _) => Ok(()),
                other => Err(other),
            }
        })
        .await;
    }

    let c = cluster.client(follower).await;
    c.batch_execute("CREATE TABLE m (id int PRIMARY KEY)")
        .await
        .unwrap();
    let before_leader = scrape(at(leader)).await;
    let before_follower = scrape(at(follower)).await;
    assert_eq!(
        value(&before_leader, "sqlkeeper_raft_role", "role=leader"),
        1.0
    );
    assert_eq!(
        value(&before_follower, "sqlkeeper_raft_role", "role=follower"),
        1.0
    );
    assert_eq!(
        value(&before_follower, "sqlkeeper_raft_role", "role=leader"),
        0.0
    );
    assert!(value(&before_leader, "sqlkeeper_raft_term", "") >= 1.0);
    for id in (1..=3).filter(|id| *id != leader) {
        // Present for each follower (its value is whatever it is at this instant).
        value(
            &before_leader,
            "sqlkeeper_replication_lag_entries",
            &format!("follower={id}"),
        );
    }
    assert!(value(&before_follower, "sqlkeeper_client_connections", "") >= 1.0);

    const WRITES: usize = 30;
    for i in 0..WRITES {
        c.execute("INSERT INTO m VALUES ($1)", &[&(i as i32)])
            .await
            .unwrap();
    }
    let e = c.batch_execute("SELECT 1/0").await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("22012"));

    let after_leader = scrape(at(leader)).await;
    let after_follower = scrape(at(follower)).await;
    let moved = |before: &Samples, after: &Samples, name: &str, labels: &str| {
        value(after, name, labels)
            - before
                .get(name)
                .and_then(|m| m.get(labels))
                .copied()
                .unwrap_or(0.0)
    };
    let w = WRITES as f64;
    assert!(
        moved(
            &before_leader,
            &after_leader,
            "sqlkeeper_raft_applied_index",
            ""
        ) >= w
    );
    assert!(
        moved(
            &before_leader,
            &after_leader,
            "sqlkeeper_raft_commit_index",
            ""
        ) >= w
    );
    assert!(
        moved(
            &before_leader,
            &after_leader,
            "sqlkeeper_proposals_total",
            "result=committed"
        ) >= w
    );
    assert!(
        moved(
            &before_leader,
            &after_leader,
            "sqlkeeper_proposal_seconds_count",
            ""
        ) >= w
    );
    assert!(
        moved(
            &before_leader,
            &after_leader,
            "sqlkeeper_log_append_seconds_count",
            ""
        ) >= w
    );
    assert!(
        moved(
            &before_follower,
            &after_follower,
            "sqlkeeper_applied_entries_total",
            ""
        ) >= w
    );
    assert!(
        moved(
            &before_follower,
            &after_follower,
            "sqlkeeper_apply_seconds_count",
            ""
        ) >= 1.0
    );
    assert_eq!(
        moved(
            &before_follower,
            &after_follower,
            "sqlkeeper_statements_total",
            "command=INSERT"
        ),
        w
    );
    assert_eq!(
        moved(
            &before_follower,
            &after_follower,
            "sqlkeeper_errors_total",
            "class=22"
        ),
        1.0
    );
    // Histograms in Prometheus's form: cumulative buckets up to +Inf, which is the count.
    let buckets = &after_leader["sqlkeeper_proposal_seconds_bucket"];
    assert_eq!(
        buckets["le=+Inf"],
        value(&after_leader, "sqlkeeper_proposal_seconds_count", "")
    );
    drop(lone);
}
