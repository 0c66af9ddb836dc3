//! The poison corpus (issue 9): statements and bytes that used to stop, stall or split a
//! cluster, sent to a real three-node cluster. After every case every node takes a write
//! within a few seconds and all state hashes are equal. At the end a node re-applies the tail
//! of the log (poison entries included) after losing its state, and a new node catches up from
//! a snapshot; both give the same answers to the poison statements as the others did.
//!
//! Every case, what it gets and why, is in `docs/reliability.md`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio_postgres::Client;

use crate::client_bytes::{bind, cstr, execute, msg, parse, sync, Raw};
use crate::support::{connect, eventually, TestCluster, WAIT};

/// "Within a few seconds": how long one node may take to accept the write after a case.
const WRITE_WITHIN: Duration = Duration::from_secs(5);

/// Snapshot (and purge the log) this often, so that the node added at the end can only catch
/// up from a snapshot.
const SNAPSHOT_EVERY: &str = "40";

/// A statement that never ends: every replica stops it at its step budget.
const ENDLESS_INSERT: &str = "INSERT INTO n WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL \
                              SELECT x + 1 FROM c) SELECT x FROM c";
const ENDLESS_SELECT: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
                              SELECT count(*) FROM c";

/// The SQLSTATE a statement ends with ("" for success).
async fn outcome(c: &Client, sql: &str) -> String {
    match c.batch_execute(sql).await {
        Ok(()) => String::new(),
        Err(e) => e
            .code()
            .map(|c| c.code().to_string())
            .unwrap_or_else(|| format!("no SQLSTATE: {e}")),
    }
}

async fn expect(c: &Client, sql: &str, state: &str) {
    let shown: String = sql.chars().take(120).collect();
    assert_eq!(outcome(c, sql).await, state, "{shown}");
}

/// Every live node accepts a write through itself within [`WRITE_WITHIN`]; then every node
/// has the same state. First every node catches up with the leader (bounded by `WAIT`): a
/// case may leave each replica a second of apply work, which a test machine running other
/// clusters beside this one may take longer to do; a stalled or stopped node never catches up.
async fn cluster_is_healthy(cluster: &TestCluster, case: &str) {
    let leader = cluster.leader().await;
    let applied = cluster
        .status(leader)
        .await
        .and_then(|s| s.2)
        .expect("leader status");
    cluster.wait_applied(applied).await;
    for id in cluster.live_ids() {
        let c = connect(cluster.node(id).pg_addr).await;
        let sql = format!("INSERT INTO heartbeat (node, note) VALUES ({id}, '{case}')");
        eventually(
            &format!("after {case}: node {id} takes a write"),
            WRITE_WITHIN,
            || async {
                match tokio::time::timeout(WRITE_WITHIN, c.batch_execute(&sql)).await {
                    Ok(Ok(())) => Ok(()),
                    other => Err(format!(
                        "{other:?}; its log ends with:\n{}",
                        cluster.node(id).log_tail(40)
                    )),
                }
            },
        )
        .await;
    }
    cluster.assert_state_hashes_equal().await;
}

/// The cases whose failure must not depend on which replica applies them, nor on whether it
/// replayed them or installed a snapshot: run again on the restarted node and the new node.
const DETERMINISTIC: &[(&str, &str)] = &[
    (
        "INSERT INTO ov (id, v) VALUES (9223372036854775807, 'max')",
        "22003",
    ),
    ("INSERT INTO n WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c", "54000"),
    ("INSERT INTO kv VALUES ('huge', lpad('x', 20000000, 'y'))", "54000"),
    ("INSERT INTO blobs (v) SELECT lpad('x', 1000000, 'y') FROM big WHERE x <= 10 RETURNING v", "54000"),
    ("DELETE FROM n WHERE x IN (SELECT x FROM n LIMIT 1)", "0A000"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_statement_stops_stalls_or_splits_the_cluster() {
    let flags = |_| {
        vec![
            "--debug-snapshot-every".to_string(),
            SNAPSHOT_EVERY.to_string(),
        ]
    };
    let mut cluster = TestCluster::start(3, flags).await;
    let leader = cluster.leader().await;
    let follower = cluster
        .live_ids()
        .into_iter()
        .find(|i| *i != leader)
        .unwrap();
    let l = cluster.client(leader).await;
    let f = cluster.client(follower).await;
    l.batch_execute(
        "CREATE TABLE heartbeat (id SERIAL PRIMARY KEY, node integer, note text);
         CREATE TABLE n (x bigint);
         CREATE TABLE kv (k text PRIMARY KEY, v text);
         CREATE TABLE blobs (id SERIAL PRIMARY KEY, v text);
         CREATE TABLE big (x integer PRIMARY KEY);
         INSERT INTO big WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000) SELECT x FROM c;",
    )
    .await
    .unwrap();
    let mut cases = 0;

    tracing::info!(
        "--- overflows: a row id at the largest bigint (SQLITE_FULL stopped every replica)"
    );
    {
        // `integer PRIMARY KEY` is SQLite's row id; SERIAL keys draw from sequences instead.
        l.batch_execute("CREATE TABLE ov (id integer PRIMARY KEY, v text)")
            .await
            .unwrap();
        // PostgreSQL: 22003 too (9223372036854775807 does not fit an int4).
        expect(&l, DETERMINISTIC[0].0, "22003").await;
        expect(&l, "INSERT INTO ov (id, v) VALUES (1, 'one')", "").await;
        expect(
            &f,
            "INSERT INTO ov (id, v) VALUES (9223372036854775807, 'a'), (2, 'b')",
            "22003",
        )
        .await;
        expect(&f, "UPDATE ov SET id = 9223372036854775807", "22003").await;
        // A BIGSERIAL key is not the row id: the largest bigint is an ordinary value, as in
        // PostgreSQL, and the sequence goes on from 1.
        l.batch_execute("CREATE TABLE ovb (id BIGSERIAL PRIMARY KEY, v text)")
            .await
            .unwrap();
        expect(
            &l,
            "INSERT INTO ovb (id, v) VALUES (9223372036854775807, 'max')",
            "",
        )
        .await;
        expect(&f, "INSERT INTO ovb (v) VALUES ('next')", "").await;
        l.batch_execute("CREATE SEQUENCE sq START WITH 9223372036854775807")
            .await
            .unwrap();
        expect(&l, "SELECT nextval('sq')", "").await;
        expect(&f, "SELECT nextval('sq')", "2200H").await;
        cases += 7;
        cluster_is_healthy(&cluster, "overflows").await;
    }

    tracing::info!("--- endless and huge work inside writes: stopped by the step budget");
    {
        // Refused on the node that accepts it, by the write's probe: nothing reaches the log.
        let before = cluster.status(leader).await.and_then(|s| s.2);
        expect(&l, ENDLESS_INSERT, "54000").await;
        expect(&f, ENDLESS_INSERT, "54000").await;
        let after = cluster.status(leader).await.and_then(|s| s.2);
        assert_eq!(before, after, "a hopeless write was proposed");
        expect(
            &l,
            "INSERT INTO n SELECT a.x FROM big a, big b, big c",
            "54000",
        )
        .await;
        // A multi-statement string is one entry: the insert before the endless read is
        // undone with it.
        expect(
            &f,
            &format!("INSERT INTO n VALUES (-7); {ENDLESS_SELECT}"),
            "54000",
        )
        .await;
        let n: i64 = l
            .query_one("SELECT count(*) FROM n WHERE x = -7", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0);
        // In a transaction block the statement fails on the proposing node, before the log.
        expect(
            &f,
            &format!("BEGIN; INSERT INTO n VALUES (-8); {ENDLESS_INSERT}"),
            "54000",
        )
        .await;
        expect(&f, "COMMIT", "").await;
        cases += 5;
        cluster_is_healthy(&cluster, "budget").await;
    }

    tracing::info!("--- huge values and results");
    {
        expect(&l, DETERMINISTIC[2].0, "54000").await;
        expect(&f, DETERMINISTIC[3].0, "54000").await;
        expect(
            &l,
            "INSERT INTO n VALUES (5); SELECT lpad('x', 1000000, 'y') FROM big WHERE x <= 10",
            "54000",
        )
        .await;
        // Under the limit, RETURNING rows reach the client (and are not kept in the state).
        let rows = f
            .query(
                "INSERT INTO blobs (v) SELECT lpad('x', 500000, 'y') FROM big WHERE x <= 4 RETURNING v",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 4);
        // A giant literal: over the size of a log entry, refused before the log.
        let literal = "y".repeat(600 * 1024);
        expect(
            &l,
            &format!("INSERT INTO kv VALUES ('lit', '{literal}')"),
            "54000",
        )
        .await;
        // A giant query string: over the SQL layer's limit.
        let giant = format!("SELECT '{}'", "z".repeat(sqlkeeper_sql::QUERY_BYTES_MAX));
        expect(&f, &giant, "54000").await;
        cases += 6;
        cluster_is_healthy(&cluster, "sizes").await;
    }

    tracing::info!("--- statements too deep or too complex");
    {
        let deep = format!(
            "INSERT INTO n VALUES ({}1{})",
            "(".repeat(5_000),
            ")".repeat(5_000)
        );
        expect(&l, &deep, "54001").await;
        let terms: Vec<String> = (0..600).map(|i| format!("SELECT {i}")).collect();
        expect(
            &f,
            &format!("INSERT INTO n {}", terms.join(" UNION ALL ")),
            "54001",
        )
        .await;
        cases += 2;
        cluster_is_healthy(&cluster, "complexity").await;
    }

    tracing::info!("--- writes whose rows would depend on reading order; planner statistics");
    {
        expect(&l, DETERMINISTIC[4].0, "0A000").await;
        expect(
            &f,
            "INSERT INTO kv SELECT 'agg', string_agg(v, ',') FROM blobs",
            "0A000",
        )
        .await;
        expect(
            &l,
            "DELETE FROM n WHERE x IN (SELECT x FROM n ORDER BY x LIMIT 1)",
            "",
        )
        .await;
        expect(&f, "ANALYZE", "").await;
        expect(&l, "ANALYZE big", "").await;
        expect(&l, "VACUUM", "").await;
        cases += 6;
        cluster_is_healthy(&cluster, "order").await;
    }

    tracing::info!("--- idle transaction blocks");
    {
        let leader = cluster.leader().await;
        let idle = cluster.client(leader).await;
        idle.batch_execute(
            "SET idle_in_transaction_session_timeout = 0; BEGIN; INSERT INTO n VALUES (-9)",
        )
        .await
        .unwrap();
        // Writes through every node go on: the idle block holds nothing they need. It goes
        // on too, its write to other rows than theirs intact.
        cluster_is_healthy(&cluster, "idle writer").await;
        expect(&idle, "INSERT INTO n VALUES (-10)", "").await;
        expect(&idle, "ROLLBACK", "").await;
        let read_only = cluster.client(follower).await;
        read_only
            .batch_execute(
                "SET idle_in_transaction_session_timeout = 0; \
                 BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM n",
            )
            .await
            .unwrap();
        cluster_is_healthy(&cluster, "idle reader").await;
        expect(&read_only, "COMMIT", "").await;
        // A client that vanishes inside a writing block.
        let gone = cluster.client(leader).await;
        gone.batch_execute("BEGIN; INSERT INTO n VALUES (-11)")
            .await
            .unwrap();
        drop(gone);
        cases += 3;
        cluster_is_healthy(&cluster, "vanished writer").await;
    }

    tracing::info!("--- reads: statement_timeout and cancellation");
    {
        let r = cluster.client(follower).await;
        r.batch_execute("SET statement_timeout = '300ms'")
            .await
            .unwrap();
        let started = Instant::now();
        expect(&r, ENDLESS_SELECT, "57014").await;
        assert!(started.elapsed() < Duration::from_secs(5));
        expect(&r, "SET statement_timeout = 0", "").await;
        let c = cluster.client(leader).await;
        let cancel = c.cancel_token();
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            cancel.cancel_query(tokio_postgres::NoTls).await
        });
        let started = Instant::now();
        expect(&c, ENDLESS_SELECT, "57014").await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the cancel did not stop the read"
        );
        canceller.await.unwrap().unwrap();
        // A client that disconnects while its endless write is being applied.
        let w = cluster.client(follower).await;
        let sent = tokio::spawn(async move { w.batch_execute(ENDLESS_INSERT).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        sent.abort();
        cases += 3;
        cluster_is_healthy(&cluster, "reads").await;
    }

    tracing::info!("--- malformed parameters and messages");
    {
        let addr = cluster.node(follower).pg_addr;
        let mut raw = Raw::session(addr).await;
        // A text bytea parameter with a multi-byte character inside its hex digits panicked.
        raw.send(&parse("", "INSERT INTO kv VALUES ('b', $1)", &[17]))
            .await;
        raw.send(&bind("", &[0], &[Some("\\xaé0".as_bytes())], &[]))
            .await;
        raw.send(&execute(0)).await;
        raw.send(&sync()).await;
        assert_eq!(raw.error().await.code, "22P02");
        raw.until_ready().await;
        // A parameter that is not a number, for an integer.
        raw.send(&parse("", "INSERT INTO n VALUES ($1)", &[20]))
            .await;
        raw.send(&bind("", &[0], &[Some(b"12abc")], &[])).await;
        raw.send(&execute(0)).await;
        raw.send(&sync()).await;
        assert_eq!(raw.error().await.code, "22P02");
        raw.until_ready().await;
        // Too many parameters for the statement.
        raw.send(&parse("", "SELECT $1::text", &[])).await;
        raw.send(&bind("", &[], &[Some(b"a"), Some(b"b")], &[]))
            .await;
        raw.send(&sync()).await;
        assert_eq!(raw.error().await.code, "08P01");
        raw.until_ready().await;
        raw.still_serves().await;
        // A message that announces a gigabyte: refused before it is buffered.
        let mut big = Raw::session(addr).await;
        let mut header = vec![b'Q'];
        header.extend_from_slice(&(1u32 << 30).to_be_bytes());
        big.send(&header).await;
        assert_eq!(big.error().await.code, "54000");
        big.closed().await;
        // An unknown message type.
        let mut odd = Raw::session(addr).await;
        odd.send(&msg(b'x', &cstr("?"))).await;
        assert_eq!(odd.error().await.code, "08P01");
        odd.closed().await;
        cases += 5;
        cluster_is_healthy(&cluster, "client bytes").await;
    }

    tracing::info!("--- a peer that sends corrupt frames to a node's Raft port");
    {
        let target = cluster.raft_addr(follower);
        for frame in corrupt_frames() {
            send_and_wait_for_close(target, &frame).await;
        }
        cases += 1;
        cluster_is_healthy(&cluster, "peer frames").await;
    }

    assert!(cases >= 25, "the corpus has {cases} cases");
    let expected: Vec<String> = DETERMINISTIC.iter().map(|(_, s)| s.to_string()).collect();

    tracing::info!(
        "--- a node loses its state and re-applies the tail of the log, poison included"
    );
    {
        // The poison statements once more, so they are in the log after the last snapshot.
        for (sql, state) in DETERMINISTIC {
            expect(&l, sql, state).await;
        }
        let victim = follower;
        cluster.kill9(victim);
        std::fs::remove_dir_all(cluster.data_dir(victim).join("state")).unwrap();
        cluster.restart(victim);
        cluster_is_healthy(&cluster, "restart").await;
        let v = cluster.client(victim).await;
        let mut got = Vec::new();
        for (sql, _) in DETERMINISTIC {
            got.push(outcome(&v, sql).await);
        }
        assert_eq!(got, expected, "the restarted node answers alike");
    }

    tracing::info!("--- a new node catches up from a snapshot and answers alike");
    {
        let seed = cluster.raft_addr(leader).to_string();
        let id = cluster.add_process(
            vec![
                "--node-id".into(),
                "4".into(),
                "--debug-snapshot-every".into(),
                SNAPSHOT_EVERY.into(),
            ],
            Some(&seed),
        );
        cluster.wait_voters(4).await;
        cluster_is_healthy(&cluster, "join").await;
        let c4 = cluster.client(id).await;
        let installed = cluster
            .node(id)
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("installed snapshot"));
        assert!(installed, "node 4 caught up from a snapshot");
        let mut got = Vec::new();
        for (sql, _) in DETERMINISTIC {
            got.push(outcome(&c4, sql).await);
        }
        assert_eq!(got, expected, "the node from a snapshot answers alike");
        cluster_is_healthy(&cluster, "after join").await;
    }
}

/// Frames a broken or hostile peer could send on a cluster connection.
fn corrupt_frames() -> Vec<Vec<u8>> {
    let frame = |body: &[u8]| {
        let mut f = (body.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(body);
        f
    };
    // Version 6 (the current one): what a node of this build would read.
    let nonce = format!("[{}]", ["7"; 32].join(","));
    let hello = format!("\x06{{\"Hello\":{{\"from\":9,\"to\":0,\"nonce\":{nonce}}}}}");
    let mut hello_then_garbage = frame(hello.as_bytes());
    hello_then_garbage.extend(frame(b"\x06{\"AppendEntries\":{\"vote\":7}}"));
    vec![
        frame(b"\x09{}"),                              // unknown wire version
        frame(b"\x06not json"),                        // not JSON
        frame(b""),                                    // empty frame
        frame(b"\x06{\"Hello\":{\"from\":1}}"),        // a hello missing its target
        hello_then_garbage,                            // a bad request after a good hello
        (200u32 * 1024 * 1024).to_be_bytes().to_vec(), // a frame over the limit
        vec![0xff; 3],                                 // a torn length
    ]
}

/// Sends `bytes` to a cluster port; the node must close the connection, not hang on it.
async fn send_and_wait_for_close(addr: SocketAddr, bytes: &[u8]) {
    use tokio::io::AsyncReadExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut sink = [0u8; 1024];
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the node kept a corrupt peer connection open"
    );
}
