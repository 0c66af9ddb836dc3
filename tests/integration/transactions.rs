//! Interactive transactions through real clients: tokio-postgres (simple and extended
//! protocol), a raw protocol client for the exact ReadyForQuery status bytes, and a
//! TPC-B-like bank workload with a restart.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{GenericClient, SimpleQueryMessage};

use crate::support::{eventually, Postgres, TestNode};

fn rows(msgs: &[SimpleQueryMessage]) -> Vec<Vec<String>> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// The rows of a simple query, as text.
async fn select(c: &tokio_postgres::Client, sql: &str) -> Vec<Vec<String>> {
    rows(&c.simple_query(sql).await.unwrap())
}

async fn count(c: &impl GenericClient, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

fn code(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no sqlstate: {e}"))
}

/// Prepares `sql` with its parameter types given: this server does not infer them yet (it
/// describes unknown parameters as text).
async fn typed(c: &impl GenericClient, sql: &str, types: &[Type]) -> tokio_postgres::Statement {
    c.prepare_typed(sql, types).await.unwrap()
}

async fn applied_index(c: &tokio_postgres::Client) -> i64 {
    c.query_one("SELECT applied_index FROM sqlkeeper.status", &[])
        .await
        .unwrap()
        .get(0)
}

/// A minimal Postgres protocol client that reports what tokio-postgres hides: command tags,
/// error codes and the ReadyForQuery status byte of every simple query.
struct RawClient {
    stream: TcpStream,
}

#[derive(Debug, Default)]
struct RawReply {
    tags: Vec<String>,
    errors: Vec<String>,
    status: char,
}

impl RawClient {
    async fn connect(addr: std::net::SocketAddr) -> RawClient {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut body = Vec::new();
        body.extend_from_slice(&196608i32.to_be_bytes());
        for s in ["user", "postgres", "database", "postgres"] {
            body.extend_from_slice(s.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut msg = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        msg.extend_from_slice(&body);
        stream.write_all(&msg).await.unwrap();
        let mut c = RawClient { stream };
        let r = c.read_until_ready().await;
        assert_eq!(r.status, 'I', "status after startup");
        c
    }

    async fn read_until_ready(&mut self) -> RawReply {
        let mut reply = RawReply::default();
        loop {
            let kind = self.stream.read_u8().await.unwrap();
            let len = self.stream.read_i32().await.unwrap() as usize;
            let mut payload = vec![0u8; len - 4];
            self.stream.read_exact(&mut payload).await.unwrap();
            match kind {
                b'C' => reply
                    .tags
                    .push(String::from_utf8_lossy(&payload[..payload.len() - 1]).into_owned()),
                b'E' => {
                    // Fields: type byte, NUL-terminated text; 'C' is the SQLSTATE.
                    let mut i = 0;
                    while i < payload.len() && payload[i] != 0 {
                        let field = payload[i];
                        let end = i + 1 + payload[i + 1..].iter().position(|b| *b == 0).unwrap();
                        if field == b'C' {
                            reply
                                .errors
                                .push(String::from_utf8_lossy(&payload[i + 1..end]).into_owned());
                        }
                        i = end + 1;
                    }
                }
                b'Z' => {
                    reply.status = payload[0] as char;
                    return reply;
                }
                _ => {}
            }
        }
    }

    /// Bind of a prepared statement that does not exist, then Sync: pgwire answers the error
    /// itself (26000), before any of our handlers runs.
    async fn bind_unknown_statement(&mut self) -> RawReply {
        let mut body = Vec::new();
        body.extend_from_slice(b"\0nosuch\0"); // portal "", statement "nosuch"
        body.extend_from_slice(&0i16.to_be_bytes()); // parameter formats
        body.extend_from_slice(&0i16.to_be_bytes()); // parameters
        body.extend_from_slice(&0i16.to_be_bytes()); // result formats
        let mut msg = vec![b'B'];
        msg.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        msg.extend_from_slice(&body);
        msg.extend_from_slice(&[b'S', 0, 0, 0, 4]);
        self.stream.write_all(&msg).await.unwrap();
        self.read_until_ready().await
    }

    async fn query(&mut self, sql: &str) -> RawReply {
        let mut msg = vec![b'Q'];
        msg.extend_from_slice(&((sql.len() + 5) as i32).to_be_bytes());
        msg.extend_from_slice(sql.as_bytes());
        msg.push(0);
        self.stream.write_all(&msg).await.unwrap();
        self.read_until_ready().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_for_query_status_and_tags_are_those_postgres_sends() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let mut c = RawClient::connect(node.pg_addr).await;
    let r = c.query("CREATE TABLE t (id int PRIMARY KEY)").await;
    assert_eq!(
        (r.tags.as_slice(), r.status),
        (&["CREATE TABLE".to_string()][..], 'I')
    );

    let r = c.query("BEGIN").await;
    assert_eq!((r.tags, r.status), (vec!["BEGIN".to_string()], 'T'));
    let r = c.query("INSERT INTO t VALUES (1)").await;
    assert_eq!((r.tags, r.status), (vec!["INSERT 0 1".to_string()], 'T'));
    let r = c.query("INSERT INTO t VALUES (1)").await;
    assert_eq!((r.errors, r.status), (vec!["23505".to_string()], 'E'));
    let r = c.query("SELECT 1").await;
    assert_eq!((r.errors, r.status), (vec!["25P02".to_string()], 'E'));
    // COMMIT of a failed block reports ROLLBACK and ends it.
    let r = c.query("COMMIT").await;
    assert_eq!(
        (r.tags, r.errors.len(), r.status),
        (vec!["ROLLBACK".to_string()], 0, 'I')
    );

    // Several statements in one query string, with the block opened and closed inside it.
    let r = c
        .query("BEGIN; INSERT INTO t VALUES (2); SAVEPOINT a; INSERT INTO t VALUES (2)")
        .await;
    assert_eq!(r.tags, vec!["BEGIN", "INSERT 0 1", "SAVEPOINT"]);
    assert_eq!((r.errors, r.status), (vec!["23505".to_string()], 'E'));
    let r = c.query("ROLLBACK TO a").await;
    assert_eq!((r.tags, r.status), (vec!["ROLLBACK".to_string()], 'T'));
    let r = c.query("RELEASE a; START TRANSACTION; END").await;
    assert_eq!(r.tags, vec!["RELEASE", "START TRANSACTION", "COMMIT"]);
    assert_eq!(r.status, 'I');
    let r = c.query("SELECT count(*) FROM t").await;
    assert_eq!((r.tags, r.status), (vec!["SELECT 1".to_string()], 'I'));
    let r = c.query("SAVEPOINT x").await;
    assert_eq!((r.errors, r.status), (vec!["25P01".to_string()], 'I'));
    let r = c.query("BEGIN; SELECT 1; ROLLBACK").await;
    assert_eq!(r.tags, vec!["BEGIN", "SELECT 1", "ROLLBACK"]);
    assert_eq!(r.status, 'I');
    // An error at Bind (answered by the protocol layer) fails the block too.
    let r = c.query("BEGIN").await;
    assert_eq!(r.status, 'T');
    let r = c.bind_unknown_statement().await;
    assert_eq!((r.errors, r.status), (vec!["26000".to_string()], 'E'));
    let r = c.query("SELECT 1").await;
    assert_eq!((r.errors, r.status), (vec!["25P02".to_string()], 'E'));
    let r = c.query("ROLLBACK").await;
    assert_eq!((r.tags, r.status), (vec!["ROLLBACK".to_string()], 'I'));
    // Outside a block it leaves the connection idle.
    let r = c.bind_unknown_statement().await;
    assert_eq!(r.status, 'I');
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_commit_roll_back_and_see_their_own_writes() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let mut a = node.client().await;
    let b = node.client().await;
    a.batch_execute(
        "CREATE TABLE acc (id serial PRIMARY KEY, name text UNIQUE NOT NULL, bal int NOT NULL)",
    )
    .await
    .unwrap();

    tracing::info!(
        "--- commit: RETURNING ids, own writes visible inside, nothing outside before COMMIT"
    );
    let tx = a.transaction().await.unwrap();
    let id: i32 = tx
        .query_one(
            &typed(
                &tx,
                "INSERT INTO acc (name, bal) VALUES ($1, $2) RETURNING id",
                &[Type::TEXT, Type::INT4],
            )
            .await,
            &[&"alice", &10i32],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(id, 1);
    let n = tx
        .execute(
            &typed(
                &tx,
                "UPDATE acc SET bal = bal + $1 WHERE name = $2",
                &[Type::INT4, Type::TEXT],
            )
            .await,
            &[&5i32, &"alice"],
        )
        .await
        .unwrap();
    assert_eq!(n, 1, "row count of an update inside the transaction");
    let bal: i32 = tx
        .query_one(
            &typed(&tx, "SELECT bal FROM acc WHERE id = $1", &[Type::INT4]).await,
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(bal, 15, "the transaction reads its own write");
    assert_eq!(
        count(&b, "SELECT count(*) FROM acc").await,
        0,
        "not visible before COMMIT"
    );
    tx.commit().await.unwrap();
    assert_eq!(count(&b, "SELECT count(*) FROM acc").await, 1);

    tracing::info!("--- rollback");
    let tx = a.transaction().await.unwrap();
    tx.execute("INSERT INTO acc (name, bal) VALUES ('bob', 1)", &[])
        .await
        .unwrap();
    assert_eq!(count(&tx, "SELECT count(*) FROM acc").await, 2);
    tx.rollback().await.unwrap();
    assert_eq!(count(&b, "SELECT count(*) FROM acc").await, 1);

    tracing::info!("--- savepoints: a failed statement is undone alone after ROLLBACK TO");
    let m = a
        .simple_query(
            "BEGIN;
             INSERT INTO acc (name, bal) VALUES ('carol', 3);
             SAVEPOINT s1;
             INSERT INTO acc (name, bal) VALUES ('dave', 4);
             SAVEPOINT s2;",
        )
        .await
        .unwrap();
    assert!(!m.is_empty());
    let e = a
        .simple_query("INSERT INTO acc (name, bal) VALUES ('carol', 9)")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::UNIQUE_VIOLATION));
    let e = a.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
    let e = a.simple_query("ROLLBACK TO nosuch").await.unwrap_err();
    assert_eq!(code(&e), "3B001");
    a.simple_query("ROLLBACK TO s1").await.unwrap();
    let m = a
        .simple_query("SELECT name FROM acc ORDER BY id")
        .await
        .unwrap();
    assert_eq!(
        rows(&m),
        vec![vec!["alice"], vec!["carol"]],
        "dave was rolled back to s1"
    );
    a.simple_query("INSERT INTO acc (name, bal) VALUES ('erin', 5); RELEASE s1; COMMIT")
        .await
        .unwrap();
    let m = b
        .simple_query("SELECT name FROM acc ORDER BY id")
        .await
        .unwrap();
    assert_eq!(rows(&m), vec![vec!["alice"], vec!["carol"], vec!["erin"]]);

    tracing::info!("--- savepoint names: unquoted ones fold, quoted ones are case-sensitive");
    a.batch_execute(
        "BEGIN; SAVEPOINT Outer; INSERT INTO acc (name, bal) VALUES ('s1', 1);
         SAVEPOINT \"A\"; INSERT INTO acc (name, bal) VALUES ('s2', 1);
         SAVEPOINT a; INSERT INTO acc (name, bal) VALUES ('s3', 1);
         ROLLBACK TO \"A\"",
    )
    .await
    .unwrap();
    let m = a
        .simple_query("SELECT name FROM acc WHERE name LIKE 's%' ORDER BY name")
        .await
        .unwrap();
    assert_eq!(
        rows(&m),
        vec![vec!["s1"]],
        "ROLLBACK TO \"A\" undid what followed it, a included"
    );
    a.batch_execute("ROLLBACK TO outer; RELEASE OUTER; COMMIT")
        .await
        .unwrap();
    let m = b
        .simple_query("SELECT count(*) FROM acc WHERE name LIKE 's%'")
        .await
        .unwrap();
    assert_eq!(rows(&m), vec![vec!["0"]]);

    tracing::info!("--- transactional DDL: a failing migration leaves no trace");
    let e = a
        .batch_execute(
            "BEGIN;
             CREATE TABLE audit (id serial PRIMARY KEY, what text);
             ALTER TABLE acc ADD COLUMN note text;
             CREATE INDEX acc_note ON acc (note);
             INSERT INTO audit (what) VALUES ('migrated');
             INSERT INTO acc (name, bal) VALUES (NULL, 0);",
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::NOT_NULL_VIOLATION));
    a.batch_execute("ROLLBACK").await.unwrap();
    let e = b.simple_query("SELECT * FROM audit").await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::UNDEFINED_TABLE));
    let e = b.simple_query("SELECT note FROM acc").await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::UNDEFINED_COLUMN));
    // The same migration commits; a table created in the block is described (extended
    // protocol) and written inside it.
    let tx = a.transaction().await.unwrap();
    tx.batch_execute("CREATE TABLE audit (id serial PRIMARY KEY, what text); ALTER TABLE acc ADD COLUMN note text")
        .await
        .unwrap();
    let id: i32 = tx
        .query_one(
            &typed(
                &tx,
                "INSERT INTO audit (what) VALUES ($1) RETURNING id",
                &[Type::TEXT],
            )
            .await,
            &[&"migrated"],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(id, 1);
    tx.commit().await.unwrap();
    assert_eq!(count(&b, "SELECT count(*) FROM audit").await, 1);

    tracing::info!("--- read-only transactions never touch the log");
    let before = applied_index(&b).await;
    let tx = a.build_transaction().read_only(true).start().await.unwrap();
    assert_eq!(count(&tx, "SELECT count(*) FROM acc").await, 3);
    let e = tx
        .execute("INSERT INTO acc (name, bal) VALUES ('x', 0)", &[])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::READ_ONLY_SQL_TRANSACTION));
    tx.rollback().await.unwrap();
    let tx = a.transaction().await.unwrap();
    assert_eq!(count(&tx, "SELECT count(*) FROM acc").await, 3);
    tx.commit().await.unwrap();
    assert_eq!(
        applied_index(&b).await,
        before,
        "no entry for read-only transactions"
    );

    tracing::info!("--- READ COMMITTED (the default) reads the latest state at every statement");
    let tx = a.transaction().await.unwrap();
    assert_eq!(count(&tx, "SELECT count(*) FROM acc").await, 3);
    b.batch_execute("INSERT INTO acc (name, bal) VALUES ('frank', 6)")
        .await
        .unwrap();
    assert_eq!(count(&tx, "SELECT count(*) FROM acc").await, 4);
    tx.commit().await.unwrap();

    tracing::info!("--- REPEATABLE READ reads one snapshot");
    let tx = a
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await
        .unwrap();
    assert_eq!(count(&tx, "SELECT count(*) FROM acc").await, 4);
    b.batch_execute("INSERT INTO acc (name, bal) VALUES ('grace', 7)")
        .await
        .unwrap();
    assert_eq!(
        count(&tx, "SELECT count(*) FROM acc").await,
        4,
        "repeatable: a write committed meanwhile is not seen"
    );
    tx.commit().await.unwrap();
    assert_eq!(count(&a, "SELECT count(*) FROM acc").await, 5);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_write_gets_40001_and_nothing_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let mut a = node.client().await;
    let b = node.client().await;
    a.batch_execute(
        "CREATE TABLE acc (id int PRIMARY KEY, bal int); INSERT INTO acc VALUES (1, 100), (2, 100)",
    )
    .await
    .unwrap();
    // a reads, b changes what a read, a writes: a's SERIALIZABLE transaction cannot be
    // serialized.
    let tx = a
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::Serializable)
        .start()
        .await
        .unwrap();
    let bal: i32 = tx
        .query_one("SELECT bal FROM acc WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(bal, 100);
    b.batch_execute("UPDATE acc SET bal = bal - 30 WHERE id = 1")
        .await
        .unwrap();
    let e = tx
        .execute(
            &typed(&tx, "UPDATE acc SET bal = $1 WHERE id = 2", &[Type::INT4]).await,
            &[&(bal + 50)],
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::T_R_SERIALIZATION_FAILURE), "{e}");
    let e = tx.execute("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
    tx.rollback().await.unwrap();
    let m = b
        .simple_query("SELECT bal FROM acc ORDER BY id")
        .await
        .unwrap();
    assert_eq!(
        rows(&m),
        vec![vec!["70"], vec!["100"]],
        "only b's write applied"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_and_idle_timeout_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let b = node.client().await;
    b.batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();

    tracing::info!("--- a client disconnects inside a writing block");
    {
        let c = node.client().await;
        c.batch_execute("BEGIN; INSERT INTO t VALUES (1)")
            .await
            .unwrap();
    } // dropped: the connection closes
    tokio::time::timeout(
        Duration::from_secs(5),
        b.batch_execute("INSERT INTO t VALUES (2)"),
    )
    .await
    .expect("an autocommit write does not wait for the block")
    .unwrap();
    assert_eq!(count(&b, "SELECT count(*) FROM t WHERE id = 1").await, 0);

    tracing::info!("--- a client goes idle in a transaction past its timeout");
    let c = node.client().await;
    c.batch_execute(
        "SET idle_in_transaction_session_timeout = '300ms'; BEGIN; INSERT INTO t VALUES (3)",
    )
    .await
    .unwrap();
    // Another session's write does not wait for the idle block.
    tokio::time::timeout(
        Duration::from_secs(5),
        b.batch_execute("INSERT INTO t VALUES (4)"),
    )
    .await
    .expect("the write does not wait for the idle block")
    .unwrap();
    // Staying idle past the timeout is what is tested: this sleep is the input, not a wait
    // for a condition.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let e = c
        .simple_query("INSERT INTO t VALUES (5)")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "25P03", "{e}");
    assert!(
        c.is_closed() || c.simple_query("SELECT 1").await.is_err(),
        "the connection is closed"
    );
    let m = b
        .simple_query("SELECT id FROM t ORDER BY id")
        .await
        .unwrap();
    assert_eq!(rows(&m), vec![vec!["2"], vec!["4"]]);
    node.stop().await;
}

/// TPC-B-like transfers from 8 clients for 30 s, retried on 40001: no transfer lost or
/// duplicated, balances add up, and everything committed survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_transfers_keep_their_invariants_and_survive_a_restart() {
    const CLIENTS: usize = 8;
    const ACCOUNTS: i32 = 100;
    const TELLERS: i32 = 10;
    const BRANCHES: i32 = 2;
    const RUN: Duration = Duration::from_secs(30);
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let setup = node.client().await;
    let values =
        |n: i32, row: &dyn Fn(i32) -> String| (1..=n).map(row).collect::<Vec<_>>().join(", ");
    setup
        .batch_execute(&format!(
            "CREATE TABLE accounts (aid int PRIMARY KEY, bid int NOT NULL, abalance int NOT NULL);
             CREATE TABLE tellers (tid int PRIMARY KEY, bid int NOT NULL, tbalance int NOT NULL);
             CREATE TABLE branches (bid int PRIMARY KEY, bbalance int NOT NULL);
             CREATE TABLE history (client int, seq int, aid int, tid int, bid int, delta int,
                                   mtime timestamptz DEFAULT now(), PRIMARY KEY (client, seq));
             INSERT INTO branches VALUES {};
             INSERT INTO tellers VALUES {};
             INSERT INTO accounts VALUES {};",
            values(BRANCHES, &|i| format!("({i}, 0)")),
            values(TELLERS, &|i| format!("({i}, {}, 0)", 1 + i % BRANCHES)),
            values(ACCOUNTS, &|i| format!("({i}, {}, 0)", 1 + i % BRANCHES)),
        ))
        .await
        .unwrap();
    let committed: Arc<Mutex<HashSet<(i32, i32)>>> = Arc::default();
    let retries = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for client in 0..CLIENTS as i32 {
        let mut c = node.client().await;
        let committed = committed.clone();
        let retries = retries.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut seq = 0;
            let mut rng = 0x9E37_79B9u64.wrapping_mul(client as u64 + 1);
            let mut next = move |n: i32| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng % n as u64) as i32 + 1
            };
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                let (aid, tid, delta) = (next(ACCOUNTS), next(TELLERS), next(10_000) - 5_000);
                loop {
                    let r: Result<(), tokio_postgres::Error> = async {
                        let tx = c.transaction().await?;
                        let int4 = |n| vec![Type::INT4; n];
                        let s = tx.prepare_typed("UPDATE accounts SET abalance = abalance + $1 WHERE aid = $2", &int4(2)).await?;
                        tx.execute(&s, &[&delta, &aid]).await?;
                        let s = tx.prepare_typed("SELECT abalance, bid FROM accounts WHERE aid = $1", &int4(1)).await?;
                        let bid: i32 = tx.query_one(&s, &[&aid]).await?.get(1);
                        let s = tx.prepare_typed("UPDATE tellers SET tbalance = tbalance + $1 WHERE tid = $2", &int4(2)).await?;
                        tx.execute(&s, &[&delta, &tid]).await?;
                        let s = tx.prepare_typed("UPDATE branches SET bbalance = bbalance + $1 WHERE bid = $2", &int4(2)).await?;
                        tx.execute(&s, &[&delta, &bid]).await?;
                        let s = tx
                            .prepare_typed(
                                "INSERT INTO history (client, seq, aid, tid, bid, delta) VALUES ($1, $2, $3, $4, $5, $6)",
                                &int4(6),
                            )
                            .await?;
                        tx.execute(&s, &[&client, &seq, &aid, &tid, &bid, &delta]).await?;
                        tx.commit().await
                    }
                    .await;
                    match r {
                        Ok(()) => {
                            committed.lock().unwrap().insert((client, seq));
                            break;
                        }
                        Err(e) if e.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE) => {
                            retries.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("client {client}: {e:?}"),
                    }
                }
            }
        }));
    }
    tokio::time::sleep(RUN).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let committed = committed.lock().unwrap().clone();
    tracing::info!(
        transfers = committed.len(),
        retries = retries.load(Ordering::Relaxed),
        "bank run finished"
    );
    assert!(
        committed.len() > 100,
        "only {} transfers in {RUN:?}",
        committed.len()
    );

    let check = |c: tokio_postgres::Client, committed: HashSet<(i32, i32)>| async move {
        let history: HashSet<(i32, i32)> = c
            .query("SELECT client, seq FROM history", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(
            count(&c, "SELECT count(*) FROM history").await as usize,
            history.len()
        );
        assert_eq!(
            history, committed,
            "history holds exactly the acknowledged transfers"
        );
        let sums = select(
            &c,
            "SELECT (SELECT sum(abalance) FROM accounts), (SELECT sum(tbalance) FROM tellers),
                        (SELECT sum(bbalance) FROM branches), (SELECT sum(delta) FROM history)",
        )
        .await;
        let h = sums[0][3].clone();
        assert_eq!(
            sums[0],
            vec![h.clone(), h.clone(), h.clone(), h],
            "balances equal the sum of the history deltas"
        );
        // Per account too: each balance is the sum of its transfers.
        let wrong = count(
            &c,
            "SELECT count(*) FROM accounts a WHERE abalance <> (SELECT coalesce(sum(delta), 0) FROM history h WHERE h.aid = a.aid)",
        )
        .await;
        assert_eq!(wrong, 0);
    };
    check(node.client().await, committed.clone()).await;
    drop(setup);
    node.stop().await;
    let node = TestNode::start(dir.path()).await;
    check(node.client().await, committed).await;
    node.stop().await;
}

/// The sum of the balances and the (worker, seq) of every transfer, as one node sees them.
async fn balances_and_transfers(c: &tokio_postgres::Client) -> (i64, HashSet<(i64, i64)>) {
    let m = c.simple_query("SELECT sum(bal) FROM acc").await.unwrap();
    let total = rows(&m)[0][0].parse().unwrap();
    let m = c
        .simple_query("SELECT worker, seq FROM transfers")
        .await
        .unwrap();
    let present = rows(&m)
        .iter()
        .map(|r| (r[0].parse().unwrap(), r[1].parse().unwrap()))
        .collect();
    (total, present)
}

/// One transfer as an interactive block through `c`, statement by statement.
async fn transfer(
    c: &tokio_postgres::Client,
    worker: i64,
    seq: i64,
    from: i64,
    to: i64,
    amount: i64,
) -> Result<(), tokio_postgres::Error> {
    c.batch_execute("BEGIN").await?;
    let r = async {
        // Read the balance, debit, read it again (the block sees its own write), credit.
        let m = c
            .simple_query(&format!("SELECT bal FROM acc WHERE id = {from}"))
            .await?;
        assert_eq!(rows(&m).len(), 1, "the account is there");
        c.batch_execute(&format!(
            "UPDATE acc SET bal = bal - {amount} WHERE id = {from}"
        ))
        .await?;
        let m = c
            .simple_query(&format!("SELECT bal FROM acc WHERE id = {from}"))
            .await?;
        assert_eq!(rows(&m).len(), 1, "the block reads its own write");
        c.batch_execute(&format!(
            "UPDATE acc SET bal = bal + {amount} WHERE id = {to}"
        ))
        .await?;
        c.batch_execute(&format!(
            "INSERT INTO transfers (worker, seq, amount) VALUES ({worker}, {seq}, {amount})"
        ))
        .await?;
        c.batch_execute("COMMIT").await
    }
    .await;
    if r.is_err() && !c.is_closed() {
        let _ = c.batch_execute("ROLLBACK").await;
    }
    r
}

/// Transactions through the leader and both followers, with the leader killed and restarted
/// in the middle: money is conserved on every node, every acknowledged transfer is there
/// once, and the replicas end identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_on_every_node_survive_a_leader_kill_and_converge() {
    const ACCOUNTS: i64 = 10;
    const TOTAL: i64 = ACCOUNTS * 1000;
    let mut cluster = crate::support::TestCluster::start(3, |_| vec![]).await;
    let leader = cluster.leader().await;
    let c = cluster.client(leader).await;
    let values: Vec<String> = (1..=ACCOUNTS).map(|i| format!("({i}, 1000)")).collect();
    c.batch_execute(&format!(
        "CREATE TABLE acc (id int PRIMARY KEY, bal int NOT NULL);
         CREATE TABLE transfers (worker int, seq int, amount int, PRIMARY KEY (worker, seq));
         INSERT INTO acc VALUES {}",
        values.join(", ")
    ))
    .await
    .unwrap();

    tracing::info!("--- without contention, a follower commits a transaction");
    // The follower's new session may start before the follower applied the tables (sequential
    // reads order a session's own history only): wait until every node has them.
    cluster.wait_applied(applied_index(&c).await).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let f = cluster.client(follower).await;
    transfer(&f, 99, 1, 1, 2, 5).await.unwrap();
    let m = f
        .simple_query("SELECT count(*) FROM transfers")
        .await
        .unwrap();
    assert_eq!(
        rows(&m),
        vec![vec!["1"]],
        "the follower reads its own commit"
    );
    tracing::info!("--- a read-only block on a follower reads one state and proposes nothing");
    let before = applied_index(&f).await;
    f.batch_execute("BEGIN READ ONLY").await.unwrap();
    let m = f.simple_query("SELECT sum(bal) FROM acc").await.unwrap();
    assert_eq!(rows(&m), vec![vec![TOTAL.to_string()]]);
    f.batch_execute("COMMIT").await.unwrap();
    f.batch_execute("BEGIN").await.unwrap();
    let m = f
        .simple_query("SELECT count(*) FROM transfers")
        .await
        .unwrap();
    assert_eq!(rows(&m), vec![vec!["1"]]);
    f.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        applied_index(&f).await,
        before,
        "no entry for read-only blocks"
    );
    let acknowledged: Arc<Mutex<HashSet<(i64, i64)>>> = Arc::default();
    acknowledged.lock().unwrap().insert((99, 1));
    let maybe: Arc<Mutex<HashSet<(i64, i64)>>> = Arc::default();

    tracing::info!("--- workers on every node; the leader is killed half way");
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (worker, node) in [(1i64, 1u64), (2, 2), (3, 3), (4, leader)] {
        let addr = cluster.node(node).pg_addr;
        let (stop, acknowledged, maybe) = (stop.clone(), acknowledged.clone(), maybe.clone());
        tasks.push(tokio::spawn(async move {
            let c = crate::support::connect(addr).await;
            let (mut seq, mut retries, mut rng) = (0i64, 0u64, worker as u64 * 7919);
            while !stop.load(Ordering::Relaxed) && !c.is_closed() {
                seq += 1;
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let from = (rng >> 33) as i64 % ACCOUNTS + 1;
                let to = (rng >> 17) as i64 % ACCOUNTS + 1;
                match transfer(&c, worker, seq, from, to, (rng >> 45) as i64 % 100).await {
                    Ok(()) => {
                        acknowledged.lock().unwrap().insert((worker, seq));
                    }
                    Err(e) => match e.code().map(|c| c.code()) {
                        // Nothing applied: conflicts, no leader, node unavailable.
                        Some("40001") | Some("57P03") => retries += 1,
                        // Maybe applied: the commit went out and the answer did not come back.
                        _ => {
                            maybe.lock().unwrap().insert((worker, seq));
                            if !c.is_closed() {
                                retries += 1;
                            }
                        }
                    },
                }
            }
            (worker, retries)
        }));
    }
    let addrs: Vec<_> = (1..=3).map(|id| cluster.node(id).pg_addr).collect();
    let count_on = |id: u64| {
        let addr = addrs[id as usize - 1];
        async move {
            let c = crate::support::connect(addr).await;
            let m = c
                .simple_query("SELECT count(*) FROM transfers")
                .await
                .unwrap();
            rows(&m)[0][0].parse::<usize>().unwrap()
        }
    };
    let progress = |node: u64, at_least: usize| {
        let count_on = &count_on;
        async move {
            let n = count_on(node).await;
            if n >= at_least {
                Ok(())
            } else {
                Err(n)
            }
        }
    };
    eventually(
        "30 transfers before the kill",
        Duration::from_secs(30),
        || progress(leader, 30),
    )
    .await;
    cluster.kill9(leader);
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);
    let before = count_on(new_leader).await;
    eventually(
        "30 transfers after the kill",
        Duration::from_secs(30),
        || progress(new_leader, before + 30),
    )
    .await;
    cluster.restart(leader);
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let (worker, retries) = t.await.unwrap();
        tracing::info!(worker, retries, "worker finished");
    }

    tracing::info!("--- every node: money conserved, acknowledged transfers present once");
    cluster.assert_state_hashes_equal().await;
    let acknowledged = acknowledged.lock().unwrap().clone();
    let maybe = maybe.lock().unwrap().clone();
    for id in cluster.live_ids() {
        let c = cluster.client(id).await;
        let (total, present) = balances_and_transfers(&c).await;
        assert_eq!(total, TOTAL, "node {id}");
        assert!(
            acknowledged.is_subset(&present),
            "node {id} lost acknowledged transfers: {:?}",
            acknowledged.difference(&present).collect::<Vec<_>>()
        );
        let unexplained: Vec<_> = present
            .difference(&acknowledged)
            .filter(|t| !maybe.contains(t))
            .collect();
        assert!(
            unexplained.is_empty(),
            "node {id} has transfers nobody committed: {unexplained:?}"
        );
    }
    tracing::info!(
        acknowledged = acknowledged.len(),
        maybe = maybe.len(),
        "transfers"
    );
}

/// The measurement: bank transfers (read a balance, debit, credit) in blocks on every
/// node of a 3-node cluster, beside clients on every node that insert rows and increment one
/// counter in other tables, for 60 s. At least 90% of transfer attempts commit; money is
/// conserved on every node; every acknowledged transfer is there; the replicas end identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_transfers_beside_other_writers_commit_at_least_90_percent() {
    const ACCOUNTS: i64 = 100;
    const TOTAL: i64 = ACCOUNTS * 1000;
    const RUN: Duration = Duration::from_secs(60);
    const COMMIT_SHARE_MIN: f64 = 0.90;
    let cluster = crate::support::TestCluster::start(3, |_| vec![]).await;
    let leader = cluster.leader().await;
    let c = cluster.client(leader).await;
    let values: Vec<String> = (1..=ACCOUNTS).map(|i| format!("({i}, 1000)")).collect();
    c.batch_execute(&format!(
        "CREATE TABLE acc (id int PRIMARY KEY, bal int NOT NULL);
         CREATE TABLE transfers (worker int, seq int, amount int, PRIMARY KEY (worker, seq));
         CREATE TABLE events (node int, seq int, PRIMARY KEY (node, seq));
         CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL);
         INSERT INTO counter VALUES (1, 0);
         INSERT INTO acc VALUES {}",
        values.join(", ")
    ))
    .await
    .unwrap();
    let applied = applied_index(&c).await;
    for id in 1..=3 {
        let c = cluster.client(id).await;
        eventually("the tables everywhere", Duration::from_secs(20), || {
            let c = &c;
            async move {
                let now = applied_index(c).await;
                if now >= applied {
                    Ok(())
                } else {
                    Err(now)
                }
            }
        })
        .await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    tracing::info!("--- on every node: one client inserts, one increments, two transfer");
    let mut load = Vec::new();
    for node in 1..=3u64 {
        for increments in [false, true] {
            let addr = cluster.node(node).pg_addr;
            let stop = stop.clone();
            load.push(tokio::spawn(async move {
                let c = crate::support::connect(addr).await;
                let (mut done, mut seq) = (0u64, 0i64);
                while !stop.load(Ordering::Relaxed) {
                    seq += 1;
                    let sql = if increments {
                        "UPDATE counter SET n = n + 1 WHERE id = 1".to_string()
                    } else {
                        format!("INSERT INTO events VALUES ({node}, {seq})")
                    };
                    c.batch_execute(&sql).await.unwrap();
                    done += 1;
                }
                done
            }));
        }
    }
    let acknowledged: Arc<Mutex<HashSet<(i64, i64)>>> = Arc::default();
    let mut workers = Vec::new();
    for worker in 1..=6i64 {
        let addr = cluster.node(1 + (worker as u64 - 1) % 3).pg_addr;
        let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
        workers.push(tokio::spawn(async move {
            let c = crate::support::connect(addr).await;
            let (mut seq, mut aborted, mut rng) = (0i64, 0u64, worker as u64 * 7919);
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let from = (rng >> 33) as i64 % ACCOUNTS + 1;
                let to = (rng >> 17) as i64 % ACCOUNTS + 1;
                match transfer(&c, worker, seq, from, to, (rng >> 45) as i64 % 100).await {
                    Ok(()) => {
                        acknowledged.lock().unwrap().insert((worker, seq));
                    }
                    Err(e) if e.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE) => {
                        aborted += 1
                    }
                    Err(e) => panic!("worker {worker}: {e:?}"),
                }
            }
            aborted
        }));
    }
    tokio::time::sleep(RUN).await;
    stop.store(true, Ordering::Relaxed);
    let mut aborted = 0;
    for w in workers {
        aborted += w.await.unwrap();
    }
    let mut other_writes = 0;
    for l in load {
        other_writes += l.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let committed = acknowledged.len() as u64;
    let share = committed as f64 / (committed + aborted) as f64;
    eprintln!(
        "bank beside other writers, {RUN:?}: {committed} transfers committed, {aborted} aborted with 40001 ({:.1}% committed), {other_writes} other writes",
        share * 100.0
    );
    assert!(
        committed >= 100,
        "only {committed} transfers committed in {RUN:?}"
    );
    assert!(
        other_writes >= 100,
        "only {other_writes} other writes in {RUN:?}"
    );
    assert!(
        share >= COMMIT_SHARE_MIN,
        "{committed} committed, {aborted} aborted: {:.1}% < {:.0}%",
        share * 100.0,
        COMMIT_SHARE_MIN * 100.0
    );

    cluster.assert_state_hashes_equal().await;
    for id in 1..=3 {
        let c = cluster.client(id).await;
        let (total, present) = balances_and_transfers(&c).await;
        assert_eq!(total, TOTAL, "node {id}");
        assert_eq!(
            present, acknowledged,
            "node {id} holds exactly the acknowledged transfers"
        );
    }
}

/// Blocks that insert into the same SERIAL table at once (as ORMs do, reading the new ids
/// back) all commit with the ids they saw: each node hands its blocks sequence values
/// reserved for it through the log. Random values a block reads are not the ones it writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_blocks_get_distinct_serial_ids_and_commit() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let setup = node.client().await;
    setup
        .batch_execute(
            "CREATE TABLE parent (id SERIAL PRIMARY KEY, v text);
             CREATE TABLE child (id BIGSERIAL PRIMARY KEY, parent int REFERENCES parent (id), u text)",
        )
        .await
        .unwrap();
    const SESSIONS: usize = 4;
    const ROUNDS: usize = 40;
    let mut clients = Vec::new();
    for _ in 0..SESSIONS {
        clients.push(node.client().await);
    }
    let mut seen = HashSet::new();
    for round in 0..ROUNDS {
        // Every session opens a block and inserts before any of them commits.
        let mut ids = Vec::new();
        for (i, c) in clients.iter().enumerate() {
            c.batch_execute("BEGIN").await.unwrap();
            let id: i32 = c
                .query_one(
                    "INSERT INTO parent (v) VALUES ($1) RETURNING id",
                    &[&format!("{round}-{i}")],
                )
                .await
                .unwrap()
                .get(0);
            let drawn = select(c, "SELECT gen_random_uuid()").await;
            let stored = select(
                c,
                &format!(
                    "INSERT INTO child (parent, u) VALUES ({id}, gen_random_uuid()) RETURNING u"
                ),
            )
            .await;
            assert_ne!(
                drawn, stored,
                "a read's random value is not the next write's"
            );
            ids.push(id);
        }
        for c in &clients {
            c.batch_execute("COMMIT").await.unwrap();
        }
        for id in ids {
            assert!(seen.insert(id), "id {id} handed out twice");
        }
    }
    let c = node.client().await;
    assert_eq!(
        count(&c, "SELECT count(*) FROM parent").await as usize,
        SESSIONS * ROUNDS
    );
    let m = c
        .simple_query("SELECT count(*) FROM parent p JOIN child ch ON ch.parent = p.id")
        .await
        .unwrap();
    assert_eq!(rows(&m), vec![vec![(SESSIONS * ROUNDS).to_string()]]);
    // An autocommit insert takes a value no block was given.
    let id: i32 = c
        .query_one("INSERT INTO parent (v) VALUES ('auto') RETURNING id", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!seen.contains(&id));

    tracing::info!("--- one statement that needs more values than one reservation gives");
    c.batch_execute("BEGIN").await.unwrap();
    let m = c
        .simple_query(
            "INSERT INTO parent (v) WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 500) SELECT 'bulk' FROM n",
        )
        .await
        .unwrap();
    assert!(matches!(
        m.last(),
        Some(SimpleQueryMessage::CommandComplete(500))
    ));
    c.batch_execute("COMMIT").await.unwrap();

    tracing::info!(
        "--- a table dropped and created again starts from 1; old reservations are not used"
    );
    c.batch_execute(
        "DROP TABLE child; DROP TABLE parent; CREATE TABLE parent (id SERIAL PRIMARY KEY, v text)",
    )
    .await
    .unwrap();
    c.batch_execute("BEGIN").await.unwrap();
    let id: i32 = c
        .query_one("INSERT INTO parent (v) VALUES ('again') RETURNING id", &[])
        .await
        .unwrap()
        .get(0);
    c.batch_execute("COMMIT").await.unwrap();
    assert_eq!(id, 1);
    tracing::info!("--- the engine's reservation function is not for clients");
    let e = c
        .batch_execute("SELECT _sqlkeeper_reserve('parent_id_seq', 9223372036854775807)")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42883");
    node.stop().await;
}

/// READ COMMITTED: what a block reads of a table it wrote is checked at COMMIT, so the rows a
/// client saw of its own writes are the rows that commit (in PostgreSQL a row lock makes the
/// concurrent writer wait; here the block fails with 40001 instead). Reads of tables it did
/// not write are not checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_reads_of_own_writes_are_what_commits() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let (a, b) = (node.client().await, node.client().await);
    a.batch_execute(
        "CREATE TABLE acc (id int PRIMARY KEY, bal int NOT NULL);
         CREATE TABLE prices (id int PRIMARY KEY, p int NOT NULL);
         INSERT INTO acc VALUES (1, 100), (2, 100);
         INSERT INTO prices VALUES (1, 10);",
    )
    .await
    .unwrap();
    tracing::info!("--- a concurrent write to another table does not matter");
    a.batch_execute("BEGIN; UPDATE acc SET bal = bal - 10 WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(
        select(&a, "SELECT bal FROM acc WHERE id = 1").await,
        vec![vec!["90"]]
    );
    assert_eq!(
        select(&a, "SELECT p FROM prices WHERE id = 1").await,
        vec![vec!["10"]]
    );
    b.batch_execute("UPDATE prices SET p = 11 WHERE id = 1")
        .await
        .unwrap();
    a.batch_execute("COMMIT").await.unwrap();

    tracing::info!("--- the row it read back changed before COMMIT: 40001, nothing applied");
    a.batch_execute("BEGIN; UPDATE acc SET bal = bal - 10 WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(
        select(&a, "SELECT bal FROM acc WHERE id = 1").await,
        vec![vec!["80"]]
    );
    b.batch_execute("UPDATE acc SET bal = bal - 5 WHERE id = 1")
        .await
        .unwrap();
    let e = a.batch_execute("COMMIT").await.unwrap_err();
    assert_eq!(code(&e), "40001");
    assert_eq!(
        select(&b, "SELECT bal FROM acc WHERE id = 1").await,
        vec![vec!["85"]]
    );

    tracing::info!("--- the concurrent write came before the read: the block sees and commits it");
    a.batch_execute("BEGIN; UPDATE acc SET bal = bal - 10 WHERE id = 1")
        .await
        .unwrap();
    b.batch_execute("UPDATE acc SET bal = bal - 5 WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(
        select(&a, "SELECT bal FROM acc WHERE id = 1").await,
        vec![vec!["70"]]
    );
    a.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        select(&b, "SELECT bal FROM acc WHERE id = 1").await,
        vec![vec!["70"]]
    );
    node.stop().await;
}

/// What one statement of [`rebuild_script`] gave: its rows, or its SQLSTATE.
async fn outcome(c: &tokio_postgres::Client, sql: &str) -> Result<Vec<Vec<String>>, String> {
    match c.simple_query(sql).await {
        Ok(m) => Ok(rows(&m)),
        Err(e) => Err(code(&e)),
    }
}

/// A migration's block that rebuilds a table other tables reference (as Alembic runs one), on
/// `c`: every statement's outcome, then the state after `COMMIT`.
async fn rebuild_script(c: &tokio_postgres::Client) -> Vec<Result<Vec<Vec<String>>, String>> {
    c.batch_execute(
        "CREATE TABLE parent (id int PRIMARY KEY, name text);
         CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent (id) ON DELETE CASCADE);
         INSERT INTO parent VALUES (1, 'a'), (2, 'b');
         INSERT INTO child VALUES (10, 1), (20, 2);",
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    for sql in [
        "BEGIN",
        "INSERT INTO parent VALUES (3, 'c')",
        // A rebuild of `parent`, which `child` references.
        "ALTER TABLE parent ALTER COLUMN name SET NOT NULL",
        "INSERT INTO child VALUES (30, 3)",
        "SAVEPOINT s",
        // The parent does not exist: the statement fails and is undone.
        "INSERT INTO child VALUES (40, 99)",
        "ROLLBACK TO SAVEPOINT s",
        "ALTER TABLE parent ADD CONSTRAINT parent_name_key UNIQUE (name)",
        "SELECT id, parent_id FROM child ORDER BY id",
        "COMMIT",
        // After the block: foreign keys enforced, with their actions, and still on `parent`.
        "INSERT INTO child VALUES (50, 77)",
        "DELETE FROM parent WHERE id = 1",
        "SELECT id, parent_id FROM child ORDER BY id",
        "SELECT conname, confrelid::regclass::text FROM pg_constraint WHERE contype = 'f'",
        "INSERT INTO parent VALUES (4, NULL)",
        "INSERT INTO parent VALUES (5, 'c')",
    ] {
        out.push(outcome(c, sql).await);
    }
    out
}

/// A transaction block that rebuilds a table other tables reference commits, with its foreign
/// keys checked after each statement (a child without its parent is 23503 and undone) and the
/// references untouched; after it, foreign keys are enforced with their actions again. Run on
/// PostgreSQL 15 first: every statement's outcome is PostgreSQL's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_rebuilds_a_referenced_table_as_a_migration_does() {
    let pg = crate::support::Postgres::start();
    let expected = rebuild_script(&pg.client().await).await;
    assert_eq!(expected[5], Err("23503".to_string()), "{expected:?}");
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let got = rebuild_script(&node.client().await).await;
    assert_eq!(got, expected);
    node.stop().await;
}

/// What the second session of [`same_row_waits`] saw in each case, and the balances after.
async fn same_row_case(
    a: &Arc<tokio_postgres::Client>,
    b: &Arc<tokio_postgres::Client>,
    first: &str,
    second: &'static str,
    end_first: &str,
) -> (Result<Vec<Vec<String>>, String>, Vec<Vec<String>>) {
    a.batch_execute("UPDATE acc SET bal = 100").await.unwrap();
    a.batch_execute(&format!("BEGIN; {first}")).await.unwrap();
    let task = {
        let b = b.clone();
        tokio::spawn(async move {
            b.batch_execute("BEGIN").await.unwrap();
            let mut last = Ok(Vec::new());
            for stmt in second.split(';') {
                last = outcome(&b, stmt).await;
                if last.is_err() {
                    b.batch_execute("ROLLBACK").await.unwrap();
                    return last;
                }
            }
            b.batch_execute("COMMIT").await.map_err(|e| code(&e))?;
            last
        })
    };
    // The second session waits for the first one's row until the first block ends: it has
    // not answered within this time (a bound on a wait that must not end, not a sleep).
    let mut task = task;
    assert!(
        tokio::time::timeout(Duration::from_millis(400), &mut task)
            .await
            .is_err(),
        "the second session did not wait for the first one's row: {second}"
    );
    a.batch_execute(end_first).await.unwrap();
    let seen = task.await.unwrap();
    (seen, select(a, "SELECT id, bal FROM acc ORDER BY id").await)
}

/// Both sessions' outcomes of the same-row cases on one server.
async fn same_row_waits(
    a: tokio_postgres::Client,
    b: tokio_postgres::Client,
) -> Vec<(Result<Vec<Vec<String>>, String>, Vec<Vec<String>>)> {
    a.batch_execute(
        "DROP TABLE IF EXISTS acc; CREATE TABLE acc (id int PRIMARY KEY, bal int NOT NULL);
         INSERT INTO acc VALUES (1, 100), (2, 100)",
    )
    .await
    .unwrap();
    let (a, b) = (Arc::new(a), Arc::new(b));
    let debit = "UPDATE acc SET bal = bal - 10 WHERE id = 1";
    let read_back = "UPDATE acc SET bal = bal - 20 WHERE id = 1; SELECT bal FROM acc WHERE id = 1";
    let mut seen = Vec::new();
    for (second, end_first) in [
        // The second block reads back the row the first one changed: it sees the first
        // block's commit, and its own COMMIT succeeds.
        (read_back, "COMMIT"),
        // RETURNING gives the row after the first block's commit.
        (
            "UPDATE acc SET bal = bal * 2 WHERE id = 1 RETURNING bal",
            "COMMIT",
        ),
        // The first block rolls back: the second sees the row as it was.
        (read_back, "ROLLBACK"),
    ] {
        seen.push(same_row_case(&a, &b, debit, second, end_first).await);
    }
    seen
}

/// Two `READ COMMITTED` blocks that change the same row, as PostgreSQL runs them: the second
/// waits for the first (here at its first read of the row or its `RETURNING`, in PostgreSQL at
/// its `UPDATE`), then sees the first one's commit (or not, after a rollback), and both
/// commit. The same interleavings run against PostgreSQL 15 give the same rows. A cycle of
/// such waits fails one of the two blocks with 40P01, and the other commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_blocks_wait_for_a_row_another_block_changed() {
    let pg = Postgres::start();
    let expected = same_row_waits(pg.client().await, pg.client().await).await;
    assert_eq!(
        expected[0],
        (
            Ok(vec![vec!["70".to_string()]]),
            vec![
                vec!["1".into(), "70".into()],
                vec!["2".into(), "100".into()]
            ]
        ),
        "PostgreSQL"
    );
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let got = same_row_waits(node.client().await, node.client().await).await;
    assert_eq!(got, expected);

    // A cycle: each block moves money towards the row the other one changed.
    for (name, a, b) in [
        ("PostgreSQL", pg.client().await, pg.client().await),
        ("node", node.client().await, node.client().await),
    ] {
        a.batch_execute("UPDATE acc SET bal = 100").await.unwrap();
        a.batch_execute("BEGIN; UPDATE acc SET bal = bal - 10 WHERE id = 1")
            .await
            .unwrap();
        b.batch_execute("BEGIN; UPDATE acc SET bal = bal - 5 WHERE id = 2")
            .await
            .unwrap();
        let (a, b) = (Arc::new(a), Arc::new(b));
        let run = |c: Arc<tokio_postgres::Client>, stmt: &'static str| {
            tokio::spawn(async move {
                match c.simple_query(stmt).await {
                    Ok(_) => c.batch_execute("COMMIT").await.map_err(|e| code(&e)),
                    Err(e) => {
                        c.batch_execute("ROLLBACK").await.unwrap();
                        Err(code(&e))
                    }
                }
            })
        };
        let first = run(
            a.clone(),
            "UPDATE acc SET bal = bal + 10 WHERE id = 2 RETURNING bal",
        );
        let second = run(
            b.clone(),
            "UPDATE acc SET bal = bal + 5 WHERE id = 1 RETURNING bal",
        );
        let outcomes = [first.await.unwrap(), second.await.unwrap()];
        let deadlocks = outcomes
            .iter()
            .filter(|o| o.as_ref().is_err_and(|c| c == "40P01"))
            .count();
        assert_eq!(deadlocks, 1, "{name}: {outcomes:?}");
        assert!(outcomes.iter().any(Result::is_ok), "{name}: {outcomes:?}");
        assert_eq!(
            select(&a, "SELECT sum(bal) FROM acc").await,
            vec![vec!["200"]],
            "{name}"
        );
    }
    node.stop().await;
}
