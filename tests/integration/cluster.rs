//! Multi-node clusters of real processes: writes through any node, read consistency levels,
//! leader failure, membership changes. Every test ends by asserting equal state hashes on all
//! caught-up nodes.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;

use crate::support::{connect, eventually, TestCluster, WAIT};

async fn token(c: &tokio_postgres::Client) -> i64 {
    let m = c.simple_query("SHOW sqlkeeper.log_index").await.unwrap();
    match &m[1] {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).unwrap().parse().unwrap(),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_accepts_writes_and_sessions_never_go_back_in_time() {
    // Node 3 applies every batch 300 ms late: a follower that lags behind the leader.
    let cluster = TestCluster::start(3, |id| {
        if id == 3 {
            vec!["--debug-apply-delay-ms".into(), "300".into()]
        } else {
            vec![]
        }
    })
    .await;
    let leader = cluster.leader().await;

    tracing::info!("--- writes through the leader and through each follower");
    {
        let c = cluster.client(leader).await;
        c.batch_execute("CREATE TABLE kv (k integer PRIMARY KEY, v text)")
            .await
            .unwrap();
    }
    for id in 1..=3u64 {
        let c = cluster.client(id).await;
        let n = c
            .execute(
                &format!("INSERT INTO kv VALUES ({id}, 'via node {id}')"),
                &[],
            )
            .await
            .unwrap();
        assert_eq!(n, 1);
        // A write through a node returns after that node applied it: the session reads it
        // back on the same node at once, even on the slow one.
        let v: String = c
            .query_one("SELECT v FROM kv WHERE k = $1", &[&(id as i32)])
            .await
            .unwrap()
            .get(0);
        assert_eq!(v, format!("via node {id}"));
    }

    tracing::info!("--- read-your-writes on the slow follower, token carried across connections");
    let on_leader = cluster.client(leader).await;
    on_leader
        .execute("INSERT INTO kv VALUES (100, 'fresh')", &[])
        .await
        .unwrap();
    let written_at = token(&on_leader).await;
    assert!(written_at > 0);
    let on_slow = cluster.client(3).await;
    on_slow
        .batch_execute(&format!("SET sqlkeeper.min_log_index = {written_at}"))
        .await
        .unwrap();
    let started = Instant::now();
    let rows = on_slow
        .query("SELECT v FROM kv WHERE k = 100", &[])
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        1,
        "the read waited for the follower to apply the token"
    );
    assert!(
        token(&on_slow).await >= written_at,
        "the token only moves forward"
    );
    tracing::info!(waited = ?started.elapsed(), "sequential read on the slow follower");

    tracing::info!("--- linearizable read on the slow follower after a write elsewhere");
    let other = cluster.client(leader).await;
    other
        .execute("INSERT INTO kv VALUES (200, 'linear')", &[])
        .await
        .unwrap();
    let fresh = cluster.client(3).await;
    fresh
        .batch_execute("SET sqlkeeper.read_consistency = 'linearizable'")
        .await
        .unwrap();
    let rows = fresh
        .query("SELECT v FROM kv WHERE k = 200", &[])
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        1,
        "a linearizable read sees every acknowledged write"
    );

    tracing::info!("--- bad settings are refused");
    let e = fresh
        .batch_execute("SET sqlkeeper.read_consistency = 'eventual'")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::INVALID_PARAMETER_VALUE));

    cluster.assert_state_hashes_equal().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_reads_refuse_past_max_staleness_when_partitioned() {
    let mut cluster = TestCluster::start(3, |_| vec![]).await;
    let leader = cluster.leader().await;
    let c = cluster.client(leader).await;
    c.batch_execute("CREATE TABLE t (a integer)").await.unwrap();
    c.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap();
    let at = token(&c).await;
    cluster.wait_applied(at).await;
    let isolated = cluster
        .live_ids()
        .into_iter()
        .find(|id| *id != leader)
        .unwrap();

    tracing::info!(isolated, "--- cut the node off: stop both other nodes");
    for id in cluster.live_ids() {
        if id != isolated {
            cluster.kill9(id);
        }
    }
    let s = cluster.client(isolated).await;
    s.batch_execute("SET sqlkeeper.read_consistency = 'stale'")
        .await
        .unwrap();
    let n: i64 = s
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "stale reads serve local state without a leader");
    s.batch_execute("SET sqlkeeper.max_staleness = '1s'")
        .await
        .unwrap();
    let err = eventually("a refused stale read", WAIT, || async {
        match s.query_one("SELECT count(*) FROM t", &[]).await {
            Err(e) => Ok(e),
            Ok(_) => Err("served"),
        }
    })
    .await;
    assert_eq!(err.code(), Some(&SqlState::CANNOT_CONNECT_NOW), "{err:?}");
    tracing::info!(?err, "refused");

    tracing::info!("--- the others come back; the cluster converges");
    for id in 1..=3 {
        if id != isolated {
            cluster.restart(id);
        }
    }
    let s = cluster.client(isolated).await;
    s.batch_execute("SET sqlkeeper.read_consistency = 'stale'; SET sqlkeeper.max_staleness = '5s'")
        .await
        .unwrap();
    eventually("stale reads after the leader came back", WAIT, || async {
        s.query_one("SELECT count(*) FROM t", &[]).await.map(|_| ())
    })
    .await;
    cluster.assert_state_hashes_equal().await;
}

/// Acknowledged writes so far, shared by the writer tasks, so a test can wait for progress
/// instead of sleeping.
#[derive(Default)]
struct Progress {
    acked: std::sync::atomic::AtomicUsize,
    acked_after: std::sync::atomic::AtomicUsize,
}

impl Progress {
    async fn wait(&self, what: &str, counter: impl Fn(&Progress) -> usize, at_least: usize) {
        eventually(what, WAIT, || async {
            let n = counter(self);
            if n >= at_least {
                Ok(())
            } else {
                Err(n)
            }
        })
        .await
    }
}

/// Writes unique ids through node `id` until `stop`, retrying after errors; returns the ids
/// whose insert was acknowledged and how many were acknowledged after `after` was set.
fn writer(
    addr: std::net::SocketAddr,
    base: i64,
    stop: Arc<AtomicBool>,
    after: Arc<AtomicBool>,
    progress: Arc<Progress>,
) -> tokio::task::JoinHandle<(Vec<i64>, usize)> {
    tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut acked_after = 0;
        let mut next = base;
        let mut client = None;
        while !stop.load(Ordering::Relaxed) {
            if client.is_none() {
                let conn_str = format!("host={} port={} user=postgres", addr.ip(), addr.port());
                client = tokio_postgres::connect(&conn_str, tokio_postgres::NoTls)
                    .await
                    .ok()
                    .map(|(c, conn)| {
                        tokio::spawn(async move {
                            let _ = conn.await;
                        });
                        c
                    });
            }
            let Some(c) = &client else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let id = next;
            next += 1;
            match c
                .execute(&format!("INSERT INTO acked VALUES ({id})"), &[])
                .await
            {
                Ok(_) => {
                    acked.push(id);
                    progress.acked.fetch_add(1, Ordering::Relaxed);
                    if after.load(Ordering::Relaxed) {
                        acked_after += 1;
                        progress.acked_after.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    if e.is_closed() {
                        client = None;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        (acked, acked_after)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_loses_no_acknowledged_write() {
    let mut cluster = TestCluster::start(3, |_| vec![]).await;
    let leader = cluster.leader().await;
    cluster
        .client(leader)
        .await
        .batch_execute("CREATE TABLE acked (id bigint PRIMARY KEY)")
        .await
        .unwrap();
    let followers: Vec<u64> = cluster
        .live_ids()
        .into_iter()
        .filter(|id| *id != leader)
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let after = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(Progress::default());
    let writers: Vec<_> = followers
        .iter()
        .map(|id| {
            writer(
                cluster.node(*id).pg_addr,
                *id as i64 * 1_000_000,
                stop.clone(),
                after.clone(),
                progress.clone(),
            )
        })
        .collect();

    tracing::info!("--- writes stream through both followers; kill -9 the leader");
    progress
        .wait(
            "writes before the kill",
            |p| p.acked.load(Ordering::Relaxed),
            50,
        )
        .await;
    cluster.kill9(leader);
    after.store(true, Ordering::Relaxed);
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);
    progress
        .wait(
            "writes after the kill",
            |p| p.acked_after.load(Ordering::Relaxed),
            50,
        )
        .await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = BTreeSet::new();
    for w in writers {
        let (ids, n_after) = w.await.unwrap();
        assert!(n_after > 0, "clients continue after the leader is gone");
        acked.extend(ids);
    }

    tracing::info!(
        acked = acked.len(),
        "--- the old leader rejoins and converges"
    );
    cluster.restart(leader);
    cluster.assert_state_hashes_equal().await;
    for id in cluster.live_ids() {
        let c = cluster.client(id).await;
        let rows = c.query("SELECT id FROM acked", &[]).await.unwrap();
        let present: BTreeSet<i64> = rows.iter().map(|r| r.get(0)).collect();
        let missing: Vec<_> = acked.difference(&present).collect();
        assert!(
            missing.is_empty(),
            "node {id} lost acknowledged writes: {missing:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_shrink_transfer_and_preferred_leader() {
    let mut cluster =
        TestCluster::start(3, |_| vec!["--preferred-leader".into(), "1".into()]).await;
    let leader = cluster.leader().await;
    cluster
        .client(leader)
        .await
        .batch_execute("CREATE TABLE acked (id bigint PRIMARY KEY)")
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let after = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    // Light load through node 2 for the whole test.
    let progress = Arc::new(Progress::default());
    let load = writer(
        cluster.node(2).pg_addr,
        0,
        stop.clone(),
        after.clone(),
        progress.clone(),
    );

    tracing::info!("--- grow 3 -> 5 with sqlkeeper.add_node");
    for id in [4u64, 5] {
        let added = cluster.add_process(
            vec!["--node-id".into(), id.to_string(), "--no-bootstrap".into()],
            None,
        );
        assert_eq!(added, id);
        let c = cluster.client(2).await;
        let row = c
            .query_one(
                &format!(
                    "SELECT sqlkeeper.add_node({id}, '{}')",
                    cluster.raft_addr(id)
                ),
                &[],
            )
            .await
            .unwrap();
        let msg: String = row.get(0);
        assert!(msg.contains("voter"), "{msg}");
    }
    cluster.wait_voters(5).await;
    let c = cluster.client(4).await;
    let rows = c
        .query(
            "SELECT node_id, role, voter FROM sqlkeeper.nodes ORDER BY node_id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 5);

    tracing::info!("--- a removed id is never reused; shrink back to 3");
    for id in [5u64, 4] {
        let c = cluster.client(1).await;
        c.query_one(&format!("SELECT sqlkeeper.remove_node({id})"), &[])
            .await
            .unwrap();
        cluster.stop(id);
    }
    cluster.wait_voters(3).await;
    let c = cluster.client(1).await;
    let e = c
        .query_one(
            &format!("SELECT sqlkeeper.add_node(5, '{}')", cluster.raft_addr(5)),
            &[],
        )
        .await
        .unwrap_err();
    let msg = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(msg.contains("never reused"), "{e:?}");

    tracing::info!("--- transfer leadership to node 3");
    // The call returns once node 3 leads. Leadership is not asked for again afterwards: the
    // preferred leader (node 1) takes it back within a few heartbeats, which a slow poll of
    // every node's status could see first (it did, once, on a loaded machine).
    let transferred: String = c
        .query_one("SELECT sqlkeeper.transfer_leader(3)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(transferred, "node 3 is now the leader");

    tracing::info!("--- the preferred leader takes leadership back (after a restart too)");
    eventually("leadership back on node 1", WAIT, || async {
        match cluster.leader().await {
            1 => Ok(()),
            other => Err(other),
        }
    })
    .await;
    cluster.kill9(1);
    let interim = cluster.leader().await;
    assert_ne!(interim, 1);
    cluster.restart(1);
    eventually(
        "leadership back on node 1 after its restart",
        WAIT,
        || async {
            match cluster.leader().await {
                1 => Ok(()),
                other => Err(other),
            }
        },
    )
    .await;

    stop.store(true, Ordering::Relaxed);
    let (ids, _) = load.await.unwrap();
    acked.lock().unwrap().extend(ids);
    assert!(!acked.lock().unwrap().is_empty());
    cluster.assert_state_hashes_equal().await;
    for id in cluster.live_ids() {
        let c = cluster.client(id).await;
        let present: BTreeSet<i64> = c
            .query("SELECT id FROM acked", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(
            acked.lock().unwrap().is_subset(&present),
            "node {id} lost acknowledged writes"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_a_three_node_cluster_and_stops_on_interrupt() {
    let dir = tempfile::tempdir().unwrap();
    // Ports chosen from free ones; the demo uses base + 0..3.
    let base_pg = free_port_block(3);
    let base_raft = free_port_block(3);
    let mut child = crate::support::binary()
        .args([
            "demo",
            "--nodes",
            "3",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ])
        .args([
            "--pg-port",
            &base_pg.to_string(),
            "--raft-port",
            &base_raft.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr =
        |i: u16| -> std::net::SocketAddr { format!("127.0.0.1:{}", base_pg + i).parse().unwrap() };
    let c2 = eventually("the demo cluster takes a write", WAIT, || async {
        let (c, conn) = tokio_postgres::connect(
            &format!("host=127.0.0.1 port={} user=postgres", base_pg + 1),
            tokio_postgres::NoTls,
        )
        .await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        c.simple_query("CREATE TABLE demo (a integer)").await?;
        Ok::<_, tokio_postgres::Error>(c)
    })
    .await;
    c2.execute("INSERT INTO demo VALUES (42)", &[])
        .await
        .unwrap();
    let c3 = connect(addr(2)).await;
    c3.batch_execute("SET sqlkeeper.read_consistency = 'linearizable'")
        .await
        .unwrap();
    let a: i32 = c3
        .query_one("SELECT a FROM demo", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(a, 42);
    let c1 = connect(addr(0)).await;
    let n: i64 = c1
        .query_one("SELECT count(*) FROM sqlkeeper.nodes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);

    tracing::info!("--- all three replicas hold the same state");
    let mut hashes = Vec::new();
    for i in 0..3u16 {
        let c = connect(addr(i)).await;
        // A linearizable read makes the node apply everything acknowledged first.
        c.batch_execute("SET sqlkeeper.read_consistency = 'linearizable'")
            .await
            .unwrap();
        c.query_one("SELECT count(*) FROM demo", &[]).await.unwrap();
        let h: String = c
            .query_one("SELECT sqlkeeper.state_hash()", &[])
            .await
            .unwrap()
            .get(0);
        hashes.push(h);
    }
    assert!(
        hashes.iter().all(|h| *h == hashes[0]),
        "replicas diverged: {hashes:?}"
    );

    tracing::info!("--- Ctrl-C stops every node");
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "demo exit status {status}");
    eventually(
        "node 1 stops serving after the demo stopped",
        WAIT,
        || async {
            match tokio_postgres::connect(
                &format!("host=127.0.0.1 port={base_pg} user=postgres"),
                tokio_postgres::NoTls,
            )
            .await
            {
                Err(_) => Ok(()),
                Ok(_) => Err("still serving"),
            }
        },
    )
    .await;
}

/// A base port with `n` consecutive free ports after it (checked by binding them).
fn free_port_block(n: u16) -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = l.local_addr().unwrap().port();
        drop(l);
        if base > 60000 {
            continue;
        }
        let ok = (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if ok {
            return base;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_catches_up_from_a_snapshot_file() {
    // Snapshots every 20 entries and no log kept behind them: a node that joins later can
    // only catch up by receiving a snapshot.
    let flags = |_| vec!["--debug-snapshot-every".to_string(), "20".to_string()];
    let mut cluster = TestCluster::start(1, flags).await;
    let c = cluster.client(1).await;
    c.batch_execute("CREATE TABLE kv (k integer PRIMARY KEY, v text)")
        .await
        .unwrap();
    for i in 0..100 {
        c.execute(&format!("INSERT INTO kv VALUES ({i}, 'v{i}')"), &[])
            .await
            .unwrap();
    }
    eventually("a snapshot at index 60 or later", WAIT, || async {
        let row = c
            .query_one("SELECT snapshot_index FROM sqlkeeper.status", &[])
            .await
            .unwrap();
        let snap: Option<i64> = row.get(0);
        if snap.unwrap_or(0) >= 60 {
            Ok(())
        } else {
            Err(snap)
        }
    })
    .await;

    tracing::info!("--- node 2 joins after the log was purged");
    let seed = cluster.raft_addr(1).to_string();
    cluster.add_process(
        vec![
            "--node-id".into(),
            "2".into(),
            "--debug-snapshot-every".into(),
            "20".into(),
        ],
        Some(&seed),
    );
    cluster.wait_voters(2).await;
    c.execute("INSERT INTO kv VALUES (1000, 'after join')", &[])
        .await
        .unwrap();
    let c2 = cluster.client(2).await;
    c2.batch_execute("SET sqlkeeper.read_consistency = 'linearizable'")
        .await
        .unwrap();
    let n: i64 = c2
        .query_one("SELECT count(*) FROM kv", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 101);
    let snap: Option<i64> = c2
        .query_one("SELECT snapshot_index FROM sqlkeeper.status", &[])
        .await
        .unwrap()
        .get(0);
    assert!(snap.is_some(), "node 2 holds a snapshot it received");
    cluster.assert_state_hashes_equal().await;
}

/// A transaction larger than one log entry, committed through a follower (its parts forwarded
/// to the leader one by one) while another session writes through the leader and a third node
/// is down; snapshots every 3 entries, so some are taken between the parts and the commit.
/// The block applies all or nothing on every node; a COPY outside a block that does not fit one
/// entry and fails at its last row leaves nothing; the node that was down catches up (from a
/// snapshot, the log behind it being purged); state hashes are equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_larger_than_one_entry_commits_through_a_follower() {
    use futures::SinkExt;
    use std::io::Cursor;
    let flags = |_| vec!["--debug-snapshot-every".to_string(), "3".to_string()];
    let mut cluster = TestCluster::start(3, flags).await;
    let leader = cluster.leader().await;
    let l = cluster.client(leader).await;
    l.batch_execute(
        "CREATE TABLE big (id int PRIMARY KEY, v text NOT NULL);
         CREATE TABLE other (id int PRIMARY KEY, n int NOT NULL)",
    )
    .await
    .unwrap();
    let mut others = (1..=3).filter(|id| *id != leader);
    let (follower, down) = (others.next().unwrap(), others.next().unwrap());
    cluster.wait_applied(applied_index(&l).await).await;
    cluster.stop(down);

    // 30,000 rows of about 25 bytes: about 4 MB in the log, several entries.
    let rows = |from: i32, to: i32| -> Vec<u8> {
        (from..to)
            .map(|i| format!("{i}\tvalue number {i:08}\n"))
            .collect::<String>()
            .into_bytes()
    };
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let writing = writing.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while writing.load(Ordering::SeqCst) {
                n += 1;
                l.execute("INSERT INTO other VALUES ($1, $1)", &[&n])
                    .await
                    .unwrap();
            }
            (l, n)
        })
    };
    let mut f = cluster.client(follower).await;
    let txn = f.transaction().await.unwrap();
    {
        let sink = txn.copy_in("COPY big FROM STDIN").await.unwrap();
        futures::pin_mut!(sink);
        sink.send(Cursor::new(rows(0, 30_000))).await.unwrap();
        assert_eq!(sink.as_mut().finish().await.unwrap(), 30_000);
    }
    txn.execute("UPDATE big SET v = 'first' WHERE id < 10", &[])
        .await
        .unwrap();
    txn.commit().await.unwrap();
    // Outside a block, rows that do not fit one entry, a duplicate key in the last one: none
    // are written.
    let mut bad = rows(30_000, 60_000);
    bad.extend_from_slice(b"0\tagain\n");
    let e = {
        let sink = f.copy_in("COPY big FROM STDIN").await.unwrap();
        futures::pin_mut!(sink);
        sink.send(Cursor::new(bad)).await.unwrap();
        sink.as_mut().finish().await.unwrap_err()
    };
    assert_eq!(e.code(), Some(&SqlState::UNIQUE_VIOLATION), "{e}");
    writing.store(false, Ordering::SeqCst);
    let (l, inserted) = writer.await.unwrap();
    assert!(inserted > 1, "the leader's session wrote meanwhile");

    cluster.restart(down);
    cluster.wait_voters(3).await;
    cluster.assert_state_hashes_equal().await;
    for id in 1..=3 {
        let c = cluster.client(id).await;
        c.batch_execute("SET sqlkeeper.read_consistency = 'linearizable'")
            .await
            .unwrap();
        let row = c
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE v = 'first'), (SELECT count(*) FROM other) FROM big",
                &[],
            )
            .await
            .unwrap();
        let counts: (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(counts, (30_000, 10, inserted as i64), "node {id}");
    }
    drop(l);
}

/// The node's applied index, as the session sees it.
async fn applied_index(c: &tokio_postgres::Client) -> i64 {
    c.query_one("SELECT applied_index FROM sqlkeeper.status", &[])
        .await
        .unwrap()
        .get(0)
}
