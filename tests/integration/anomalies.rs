//! Isolation anomalies, PostgreSQL as the oracle: lost update, write skew (the on-call
//! doctors), read skew and a phantom, each as a two-session interleaving run at READ
//! COMMITTED, REPEATABLE READ and SERIALIZABLE against a real PostgreSQL and against a node.
//! For every case the test asserts what PostgreSQL did (so a broken scenario that shows
//! nothing fails here), what the node did, and that the node never allows an anomaly that
//! PostgreSQL's level rules out. The one place the node is stricter, write skew under
//! REPEATABLE READ, is the documented difference (docs/transactions.md, docs/compat.md).

use crate::support::{Postgres, TestNode};

const LEVELS: [&str; 3] = ["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"];

/// Two sessions' interleaved statements. `$level` in a step is replaced by the isolation
/// level, `$last` by the value the same session read last (a client-side read-modify-write).
struct Scenario {
    name: &'static str,
    setup: &'static str,
    steps: &'static [(usize, &'static str)],
    /// Run after both sessions finished; its single value goes to `anomaly`.
    check: &'static str,
    /// Whether the anomaly happened, from every step's result and the check.
    anomaly: fn(&Outcome) -> bool,
}

/// What one run saw.
#[derive(Debug)]
struct Outcome {
    /// Per step: the first column of its rows joined with ",", "ok", "ERROR <sqlstate>",
    /// or "skipped" (its session had already failed).
    results: Vec<String>,
    /// Sessions whose transaction failed with 40001.
    failed: [bool; 2],
    check: String,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "lost update (read, then write what was read plus one)",
        setup: "DROP TABLE IF EXISTS counter; CREATE TABLE counter (id int PRIMARY KEY, v int NOT NULL); INSERT INTO counter VALUES (1, 0)",
        steps: &[
            (0, "BEGIN ISOLATION LEVEL $level"),
            (0, "SELECT v FROM counter WHERE id = 1"),
            (1, "BEGIN ISOLATION LEVEL $level"),
            (1, "SELECT v FROM counter WHERE id = 1"),
            (0, "UPDATE counter SET v = $last + 1 WHERE id = 1"),
            (0, "COMMIT"),
            (1, "UPDATE counter SET v = $last + 1 WHERE id = 1"),
            (1, "COMMIT"),
        ],
        check: "SELECT v FROM counter WHERE id = 1",
        // Both committed an increment, yet the counter went up by one.
        anomaly: |o| o.failed == [false, false] && o.check == "1",
    },
    Scenario {
        name: "write skew (two doctors on call, each goes off call if the other is on)",
        setup: "DROP TABLE IF EXISTS doctors; CREATE TABLE doctors (name text PRIMARY KEY, on_call boolean NOT NULL); INSERT INTO doctors VALUES ('alice', true), ('bob', true)",
        steps: &[
            (0, "BEGIN ISOLATION LEVEL $level"),
            (0, "SELECT count(*) FROM doctors WHERE on_call"),
            (1, "BEGIN ISOLATION LEVEL $level"),
            (1, "SELECT count(*) FROM doctors WHERE on_call"),
            (0, "UPDATE doctors SET on_call = false WHERE name = 'alice'"),
            (1, "UPDATE doctors SET on_call = false WHERE name = 'bob'"),
            (0, "COMMIT"),
            (1, "COMMIT"),
        ],
        check: "SELECT count(*) FROM doctors WHERE on_call",
        anomaly: |o| o.check == "0",
    },
    Scenario {
        name: "read skew (a transfer commits between two reads)",
        setup: "DROP TABLE IF EXISTS acct; CREATE TABLE acct (id text PRIMARY KEY, bal int NOT NULL); INSERT INTO acct VALUES ('x', 50), ('y', 50)",
        steps: &[
            (0, "BEGIN ISOLATION LEVEL $level"),
            (0, "SELECT bal FROM acct WHERE id = 'x'"),
            (1, "BEGIN ISOLATION LEVEL $level"),
            (1, "UPDATE acct SET bal = bal - 25 WHERE id = 'x'"),
            (1, "UPDATE acct SET bal = bal + 25 WHERE id = 'y'"),
            (1, "COMMIT"),
            (0, "SELECT bal FROM acct WHERE id = 'y'"),
            (0, "COMMIT"),
        ],
        check: "SELECT sum(bal) FROM acct",
        // The reader saw x before and y after the transfer: 50 + 75.
        anomaly: |o| {
            let n = |i: usize| o.results[i].parse::<i64>().unwrap_or(0);
            o.results[1] != "skipped" && o.results[6] != "skipped" && n(1) + n(6) != 100
        },
    },
    Scenario {
        name: "phantom (a row matching the predicate appears between two counts)",
        setup: "DROP TABLE IF EXISTS items; CREATE TABLE items (id int PRIMARY KEY, cat text NOT NULL); INSERT INTO items VALUES (1, 'a')",
        steps: &[
            (0, "BEGIN ISOLATION LEVEL $level"),
            (0, "SELECT count(*) FROM items WHERE cat = 'a'"),
            (1, "BEGIN ISOLATION LEVEL $level"),
            (1, "INSERT INTO items VALUES (2, 'a')"),
            (1, "COMMIT"),
            (0, "SELECT count(*) FROM items WHERE cat = 'a'"),
            (0, "COMMIT"),
        ],
        check: "SELECT count(*) FROM items",
        anomaly: |o| o.results[1] != o.results[5] && o.results[5] != "skipped",
    },
];

/// PostgreSQL's documented behaviour for [`SCENARIOS`] x [`LEVELS`]: (anomaly, sessions
/// aborted with 40001).
const POSTGRES: [[(bool, usize); 3]; 4] = [
    [(true, 0), (false, 1), (false, 1)],
    [(true, 0), (true, 0), (false, 1)],
    [(true, 0), (false, 0), (false, 0)],
    [(true, 0), (false, 0), (false, 0)],
];

/// The node: PostgreSQL's table except write skew under REPEATABLE READ, which the node's
/// REPEATABLE READ (serializable, see docs/transactions.md) rules out by aborting one doctor.
const NODE: [[(bool, usize); 3]; 4] = [
    [(true, 0), (false, 1), (false, 1)],
    [(true, 0), (false, 1), (false, 1)],
    [(true, 0), (false, 0), (false, 0)],
    [(true, 0), (false, 0), (false, 0)],
];

fn value(msgs: &[tokio_postgres::SimpleQueryMessage]) -> String {
    let rows: Vec<String> = msgs
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_string()),
            _ => None,
        })
        .collect();
    if rows.is_empty() {
        "ok".into()
    } else {
        rows.join(",")
    }
}

async fn run(clients: &[tokio_postgres::Client; 2], s: &Scenario, level: &str) -> Outcome {
    clients[0].batch_execute(s.setup).await.unwrap();
    let mut last = [String::new(), String::new()];
    let mut failed = [false, false];
    let mut results = Vec::new();
    for &(who, step) in s.steps {
        let ends = step == "COMMIT" || step == "ROLLBACK";
        if failed[who] {
            if ends {
                clients[who].batch_execute("ROLLBACK").await.unwrap();
            }
            results.push("skipped".to_string());
            continue;
        }
        let sql = step.replace("$level", level).replace("$last", &last[who]);
        match clients[who].simple_query(&sql).await {
            Ok(msgs) => {
                let v = value(&msgs);
                if v != "ok" {
                    last[who] = v.clone();
                }
                results.push(v);
            }
            Err(e) => {
                let code = e.code().map(|c| c.code().to_string());
                assert_eq!(
                    code.as_deref(),
                    Some("40001"),
                    "{}: {level}: `{sql}` failed with something other than a serialization failure: {e:?}",
                    s.name
                );
                failed[who] = true;
                results.push(format!("ERROR {}", code.unwrap()));
                if !ends {
                    // The block is aborted; leave it.
                    let _ = clients[who].batch_execute("ROLLBACK").await;
                }
            }
        }
    }
    let check = value(&clients[0].simple_query(s.check).await.unwrap());
    Outcome {
        results,
        failed,
        check,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anomalies_behave_as_postgresql_isolation_levels_say() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let pg_clients = [pg.client().await, pg.client().await];
    let node_clients = [node.client().await, node.client().await];
    let mut report = String::new();
    for (i, s) in SCENARIOS.iter().enumerate() {
        for (j, level) in LEVELS.iter().enumerate() {
            let p = run(&pg_clients, s, level).await;
            let n = run(&node_clients, s, level).await;
            let seen = |o: &Outcome| ((s.anomaly)(o), o.failed.iter().filter(|f| **f).count());
            let (pg_seen, node_seen) = (seen(&p), seen(&n));
            report.push_str(&format!(
                "{} at {level}: PostgreSQL (anomaly, aborted) = {pg_seen:?} {:?} / node = {node_seen:?} {:?}\n",
                s.name, p.results, n.results
            ));
            assert_eq!(
                pg_seen, POSTGRES[i][j],
                "PostgreSQL did not do what its documentation says: {} at {level}: {p:?}",
                s.name
            );
            assert_eq!(
                node_seen, NODE[i][j],
                "{} at {level}: node {n:?}, PostgreSQL {p:?}",
                s.name
            );
            assert!(
                !node_seen.0 || pg_seen.0,
                "{} at {level}: the node allowed an anomaly PostgreSQL rules out",
                s.name
            );
        }
    }
    eprintln!("{report}");
    node.stop().await;
}
