//! One node, real tokio-postgres client, server on port 0.

use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::SimpleQueryMessage;

use crate::support::TestNode;

fn rows_affected(msgs: &[SimpleQueryMessage]) -> Vec<u64> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect()
}

fn texts(msgs: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_through_the_log_and_reads_see_them() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let c = node.client().await;

    tracing::info!("--- DDL and DML with row counts from the apply");
    let m = c
        .simple_query(
            "CREATE TABLE kv (k bigint PRIMARY KEY, v text);
             INSERT INTO kv VALUES (1, 'a'), (2, 'b');",
        )
        .await
        .unwrap();
    assert_eq!(rows_affected(&m), vec![0, 2]);
    assert_eq!(
        c.execute("INSERT INTO kv SELECT k + 10, v FROM kv", &[])
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        c.execute("UPDATE kv SET v = 'z' WHERE k > 10", &[])
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        c.execute("DELETE FROM kv WHERE k = 12", &[]).await.unwrap(),
        1
    );

    tracing::info!("--- reads: WHERE, ORDER BY, aggregates");
    let m = c
        .simple_query("SELECT k, v FROM kv WHERE k >= 2 ORDER BY k DESC")
        .await
        .unwrap();
    assert_eq!(
        texts(&m),
        vec![
            vec![Some("11".into()), Some("z".into())],
            vec![Some("2".into()), Some("b".into())]
        ]
    );
    let row = c.query_one("SELECT count(*) FROM kv", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 3);
    let m = c
        .simple_query("SELECT max(k), min(v), sum(k) FROM kv")
        .await
        .unwrap();
    assert_eq!(
        texts(&m),
        vec![vec![Some("11".into()), Some("a".into()), Some("14".into())]]
    );

    tracing::info!("--- extended protocol: parameters, RETURNING, binary results");
    let rows = c
        .query(
            "INSERT INTO kv (k, v) VALUES ($1, $2) RETURNING k, v",
            &[&20i64, &"twenty"],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i64>(0), 20);
    assert_eq!(rows[0].get::<_, &str>(1), "twenty");
    let stmt = c.prepare("SELECT v FROM kv WHERE k = $1").await.unwrap();
    let v: String = c.query_one(&stmt, &[&20i64]).await.unwrap().get(0);
    assert_eq!(v, "twenty");
    assert_eq!(
        c.execute("UPDATE kv SET v = $1 WHERE k = $2", &[&"x", &1i64])
            .await
            .unwrap(),
        1
    );

    tracing::info!("--- DROP TABLE");
    c.batch_execute("DROP TABLE kv").await.unwrap();
    let e = c.simple_query("SELECT * FROM kv").await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::UNDEFINED_TABLE));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_sqlstates_and_the_connection_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let c = node.client().await;
    c.batch_execute(
        "CREATE TABLE t (id integer PRIMARY KEY, name text NOT NULL, n integer CHECK (n > 0))",
    )
    .await
    .unwrap();
    c.batch_execute("INSERT INTO t VALUES (1, 'a', 1)")
        .await
        .unwrap();

    let cases: &[(&str, SqlState)] = &[
        (
            "INSERT INTO t VALUES (1, 'dup', 1)",
            SqlState::UNIQUE_VIOLATION,
        ),
        ("SELEC 1", SqlState::SYNTAX_ERROR),
        ("SELECT * FROM nope", SqlState::UNDEFINED_TABLE),
        ("SELECT nope FROM t", SqlState::UNDEFINED_COLUMN),
        ("CREATE TABLE t (x int)", SqlState::DUPLICATE_TABLE),
        (
            "INSERT INTO t (id) VALUES (2)",
            SqlState::NOT_NULL_VIOLATION,
        ),
        (
            "INSERT INTO t VALUES (3, 'c', -1)",
            SqlState::CHECK_VIOLATION,
        ),
        ("LISTEN chan", SqlState::FEATURE_NOT_SUPPORTED),
    ];
    for (sql, state) in cases {
        let e = c.simple_query(sql).await.unwrap_err();
        assert_eq!(e.code(), Some(state), "{sql}: {e:?}");
        // the same connection keeps serving
        let n: i64 = c
            .query_one("SELECT count(*) FROM t", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "after {sql}");
    }

    tracing::info!(
        "--- a failing statement in a multi-statement string rolls back the earlier ones"
    );
    let e = c
        .simple_query("INSERT INTO t VALUES (5, 'e', 5); INSERT INTO t VALUES (1, 'dup', 1)")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::UNIQUE_VIOLATION));
    let n: i64 = c
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "the whole string is one implicit transaction");

    tracing::info!("--- a syntax error anywhere runs nothing");
    let e = c
        .simple_query("INSERT INTO t VALUES (6, 'f', 6); SELEC 1")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::SYNTAX_ERROR));
    let n: i64 = c
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);

    tracing::info!("--- foreign keys are enforced");
    c.batch_execute("CREATE TABLE child (id integer PRIMARY KEY, t_id integer REFERENCES t(id))")
        .await
        .unwrap();
    let e = c
        .simple_query("INSERT INTO child VALUES (1, 42)")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::FOREIGN_KEY_VIOLATION));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_restart_and_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    {
        let c = node.client().await;
        c.batch_execute("CREATE TABLE kv (k integer PRIMARY KEY, v text)")
            .await
            .unwrap();
        for i in 0..50 {
            c.execute("INSERT INTO kv VALUES ($1, 'v')", &[&i])
                .await
                .unwrap();
        }
    }
    tracing::info!("--- build a snapshot, write more after it, restart");
    node.node
        .snapshot_now(Duration::from_secs(10))
        .await
        .unwrap();
    let snap_files: Vec<_> = std::fs::read_dir(dir.path().join("snapshots"))
        .unwrap()
        .collect();
    assert_eq!(snap_files.len(), 1, "one snapshot file");
    {
        let c = node.client().await;
        c.execute("INSERT INTO kv VALUES (100, 'after snapshot')", &[])
            .await
            .unwrap();
    }
    let hash_before = node.node.state_hash().await.unwrap();
    node.stop().await;

    let node = TestNode::start(dir.path()).await;
    let c = node.client().await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM kv", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 51);
    assert_eq!(node.node.state_hash().await.unwrap(), hash_before);

    tracing::info!("--- the snapshot is a plain SQLite file");
    let snap = std::fs::read_dir(dir.path().join("snapshots"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let db = rusqlite::Connection::open(&snap).unwrap();
    let n: i64 = db
        .query_row("SELECT count(*) FROM kv", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 50);
    node.stop().await;
}

/// COPY through tokio-postgres, which runs it in the extended protocol (Parse, Bind, Execute,
/// then CopyData and CopyDone): rows in as CSV in several messages, a bad row failing the whole
/// COPY with the connection still usable, rows out, and COPY inside a transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out_through_the_extended_protocol() {
    use futures::{SinkExt, StreamExt};
    use std::io::Cursor;
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let mut client = crate::support::connect(node.pg_addr).await;
    client
        .batch_execute("CREATE TABLE c (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let sink = client
        .copy_in("COPY c FROM STDIN (FORMAT csv)")
        .await
        .unwrap();
    futures::pin_mut!(sink);
    sink.send(Cursor::new(b"1,one\n2,\"t,".to_vec()))
        .await
        .unwrap();
    sink.send(Cursor::new(b"wo\"\n3,three\n".to_vec()))
        .await
        .unwrap();
    assert_eq!(sink.as_mut().finish().await.unwrap(), 3);

    let sink = client.copy_in("COPY c FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    sink.send(Cursor::new(b"4\tfour\nx\tbad\n".to_vec()))
        .await
        .unwrap();
    let e = sink.as_mut().finish().await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(&SqlState::INVALID_TEXT_REPRESENTATION),
        "{e}"
    );

    let txn = client.transaction().await.unwrap();
    let sink = txn.copy_in("COPY c (id) FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    sink.send(Cursor::new(b"5\n".to_vec())).await.unwrap();
    assert_eq!(sink.as_mut().finish().await.unwrap(), 1);
    txn.commit().await.unwrap();

    let stream = client
        .copy_out("COPY (SELECT id, v FROM c ORDER BY id) TO STDOUT")
        .await
        .unwrap();
    futures::pin_mut!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "1\tone\n2\tt,wo\n3\tthree\n5\t\\N\n"
    );
    let n: i64 = client
        .query_one("SELECT count(*) FROM c", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 4);

    // More rows than one log entry holds (24,000 rows, about 600 KB of text, 2.4 MB in the
    // log): written as a transaction of their own, in several entries, all or nothing. A
    // duplicate key in the last row writes none of them; without it, all are written.
    let rows = |from: i32, to: i32| -> Vec<u8> {
        (from..to)
            .map(|i| format!("{i}\tsome text value {i}\n"))
            .collect::<String>()
            .into_bytes()
    };
    let copy = |data: Vec<u8>| {
        let client = &client;
        async move {
            let sink = client.copy_in("COPY c FROM STDIN").await?;
            futures::pin_mut!(sink);
            sink.send(Cursor::new(data)).await?;
            sink.as_mut().finish().await
        }
    };
    let mut bad = rows(100, 24_100);
    bad.extend_from_slice(b"100\tagain\n");
    let e = copy(bad).await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::UNIQUE_VIOLATION), "{e}");
    let count = || async {
        client
            .query_one("SELECT count(*) FROM c", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    assert_eq!(
        count().await,
        4,
        "nothing of a failed large COPY is written"
    );
    assert_eq!(copy(rows(100, 24_100)).await.unwrap(), 24_000);
    assert_eq!(count().await, 24_004);
    // More COPY data than one COPY may carry (`COPY_IN_BYTES_MAX`, 64 MiB): refused as it
    // arrives (54000), nothing written, the connection still usable.
    {
        let sink = client.copy_in("COPY c FROM STDIN").await.unwrap();
        futures::pin_mut!(sink);
        let chunk = rows(1_000_000, 1_040_000);
        let mut sent = Ok(());
        for _ in 0..(sqlkeeper_session::COPY_IN_BYTES_MAX / chunk.len() + 2) {
            sent = sink.send(Cursor::new(chunk.clone())).await;
            if sent.is_err() {
                break;
            }
        }
        let e = match sent {
            Ok(()) => sink.as_mut().finish().await.unwrap_err(),
            Err(e) => e,
        };
        assert_eq!(e.code(), Some(&SqlState::PROGRAM_LIMIT_EXCEEDED), "{e}");
    }
    client
        .batch_execute("DELETE FROM c WHERE id >= 100")
        .await
        .unwrap();
    assert_eq!(count().await, 4);

    // A COPY the client abandons (tokio-postgres sends CopyFail when the sink is dropped)
    // writes nothing and leaves the connection in step.
    {
        let sink = client.copy_in("COPY c FROM STDIN").await.unwrap();
        futures::pin_mut!(sink);
        sink.send(Cursor::new(b"900\tgone\n".to_vec()))
            .await
            .unwrap();
    }
    let n: i64 = client
        .query_one("SELECT count(*) FROM c", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 4, "nothing of an abandoned COPY is written");
    node.stop().await;
}
