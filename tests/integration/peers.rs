//! Authenticated peers (issue 13): with `--peer-secret-file`, nodes prove the cluster secret to
//! each other by challenge–response before any request is read. A node without the secret, or
//! with another one, cannot join; frames written straight to a Raft port by a process that
//! does not know the secret (a forged `ForwardWrite` with raw SQL, a vote, appended entries, a
//! membership change) are refused and change nothing; and a flood of idle connections to
//! every Raft port does not stop elections, replication or a restarted node catching up.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{eventually, TestCluster, WAIT};

/// The cluster secret of these tests (the file holds it on its first line).
const SECRET: &str = "a3f1c9e07b5d42688e1f0a9c3b7d6e25-test-cluster";

/// Wire version byte of the cluster protocol (`raft/src/rpc.rs`).
const WIRE_VERSION: u8 = 7;

/// A process that speaks the cluster protocol's framing by hand, knowing no secret.
struct RawPeer {
    stream: TcpStream,
}

impl RawPeer {
    async fn connect(addr: SocketAddr) -> RawPeer {
        RawPeer {
            stream: TcpStream::connect(addr).await.unwrap(),
        }
    }

    async fn send(&mut self, json: &str) {
        let mut frame = ((json.len() + 1) as u32).to_be_bytes().to_vec();
        frame.push(WIRE_VERSION);
        frame.extend_from_slice(json.as_bytes());
        // The node may already have closed the connection: what it answered is checked next.
        let _ = self.stream.write_all(&frame).await;
    }

    /// The next frame as JSON, or `None` when the node closed the connection.
    async fn recv(&mut self) -> Option<serde_json::Value> {
        let read = async {
            let mut len = [0u8; 4];
            self.stream.read_exact(&mut len).await.ok()?;
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            self.stream.read_exact(&mut body).await.ok()?;
            assert_eq!(body.first(), Some(&WIRE_VERSION));
            Some(serde_json::from_slice(&body[1..]).unwrap())
        };
        tokio::time::timeout(WAIT, read)
            .await
            .expect("the node neither answered nor closed the connection")
    }

    /// Whether the node closed the connection (after any frames it sent first).
    async fn closed(&mut self) -> bool {
        let mut buf = [0u8; 256];
        tokio::time::timeout(WAIT, async {
            loop {
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => {}
                }
            }
        })
        .await
        .unwrap_or(false)
    }
}

fn hello(from: u64, to: u64) -> String {
    let nonce = vec!["1"; 32].join(",");
    format!(r#"{{"Hello":{{"from":{from},"to":{to},"nonce":[{nonce}]}}}}"#)
}

/// What a hostile process would send once connected: raw SQLite SQL that skips the translator,
/// a vote for a far term, entries from a forged leader, a membership change.
fn forged_requests(to: u64) -> Vec<(&'static str, String)> {
    vec![
        (
            "ForwardWrite",
            r#"{"ForwardWrite":{"request_id":{"origin":9,"serial":1},"proposal":{"Statements":{"statements":[{"sql":"CREATE TABLE bypass (x)","params":[]}]}}}}"#.to_string(),
        ),
        (
            "Vote",
            r#"{"Vote":{"vote":{"leader_id":{"term":1000,"node_id":9},"committed":false},"last_log_id":{"leader_id":{"term":999,"node_id":9},"index":1000000}}}"#.to_string(),
        ),
        (
            "AppendEntries",
            r#"{"AppendEntries":{"vote":{"leader_id":{"term":1000,"node_id":9},"committed":true},"prev_log_id":null,"leader_commit":null,"entries":[]}}"#.to_string(),
        ),
        (
            "Admin",
            format!(r#"{{"Admin":{{"RemoveNode":{{"node_id":{to}}}}}}}"#),
        ),
    ]
}

fn secret_file(dir: &tempfile::TempDir, name: &str, secret: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    path.to_str().unwrap().to_string()
}

async fn members(cluster: &TestCluster, via: u64) -> i64 {
    cluster
        .client(via)
        .await
        .query_one("SELECT count(*) FROM sqlkeeper.nodes", &[])
        .await
        .unwrap()
        .get(0)
}

/// Node `id`'s highest Raft term, read from its status.
async fn term(cluster: &TestCluster, id: u64) -> i64 {
    cluster
        .client(id)
        .await
        .query_one("SELECT term FROM sqlkeeper.status", &[])
        .await
        .unwrap()
        .get(0)
}

fn log_has(cluster: &TestCluster, id: u64, text: &str) -> bool {
    cluster
        .node(id)
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains(text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_must_prove_the_cluster_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(&dir, "secret", SECRET);
    let other = secret_file(&dir, "other", &SECRET.replace('a', "b"));
    let flags = {
        let secret = secret.clone();
        move |_| vec!["--peer-secret-file".to_string(), secret.clone()]
    };
    // Joining through node 1 works with the secret: both sides prove it.
    let mut cluster = TestCluster::start(3, flags).await;
    let leader = cluster.leader().await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    cluster
        .client(follower)
        .await
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await
        .unwrap();

    // A node without the secret, and one with another secret, cannot join; each says why, and
    // so does the member they tried.
    let via = cluster.raft_addr(1).to_string();
    let without = cluster.add_process(vec!["--node-id".into(), "4".into()], Some(&via));
    let wrong = cluster.add_process(
        vec![
            "--node-id".into(),
            "5".into(),
            "--peer-secret-file".into(),
            other,
        ],
        Some(&via),
    );
    for (id, says) in [
        (without, "requires the cluster secret"),
        (wrong, "does not know the cluster secret"),
        (1, "a cluster peer failed to authenticate"),
    ] {
        eventually(&format!("node {id} logs \"{says}\""), WAIT, || async {
            if log_has(&cluster, id, says) {
                Ok(())
            } else {
                Err(cluster.node(id).log_tail(5))
            }
        })
        .await;
    }
    assert_eq!(members(&cluster, 1).await, 3);
    cluster.kill9(without);
    cluster.kill9(wrong);

    // Frames written straight to every Raft port by a process without the secret: after a
    // hello, the node answers with its challenge; anything but a valid proof is refused and the
    // connection closed. Without a hello, or with a wrong proof, likewise.
    let terms_before: Vec<i64> = {
        let mut t = Vec::new();
        for id in 1..=3 {
            t.push(term(&cluster, id).await);
        }
        t
    };
    for id in 1..=3u64 {
        let addr = cluster.raft_addr(id);
        for (what, forged) in forged_requests(id) {
            // Instead of the proof.
            let mut p = RawPeer::connect(addr).await;
            p.send(&hello(9, id)).await;
            let challenge = p.recv().await.expect("a challenge");
            assert!(challenge.get("Challenge").is_some(), "{challenge}");
            p.send(&forged).await;
            assert_eq!(
                p.recv().await,
                Some(serde_json::json!({"Refused": "peer authentication failed"})),
                "{what} on node {id}"
            );
            assert!(p.closed().await, "{what} on node {id}");
            // Without a hello.
            let mut p = RawPeer::connect(addr).await;
            p.send(&forged).await;
            assert!(p.closed().await, "{what} without a hello on node {id}");
        }
        // A wrong proof.
        let mut p = RawPeer::connect(addr).await;
        p.send(&hello(9, id)).await;
        p.recv().await.expect("a challenge");
        p.send(&format!(
            r#"{{"Proof":{{"proof":[{}]}}}}"#,
            vec!["0"; 32].join(",")
        ))
        .await;
        assert_eq!(
            p.recv().await,
            Some(serde_json::json!({"Refused": "peer authentication failed"}))
        );
    }
    for id in 1..=3 {
        let e = cluster
            .client(id)
            .await
            .query("SELECT * FROM bypass", &[])
            .await
            .unwrap_err();
        assert_eq!(e.code().map(|c| c.code()), Some("42P01"), "{e:?}");
        assert_eq!(term(&cluster, id).await, terms_before[id as usize - 1]);
    }
    assert_eq!(members(&cluster, leader).await, 3);
    assert_eq!(cluster.leader().await, leader);

    // A flood of idle connections to every Raft port, re-opened as the nodes close them. The
    // leader is killed: the survivors elect a new one (new connections between them), take
    // writes through a follower, and the old leader restarts and catches up.
    let flood = Flood::start((1..=3).map(|id| cluster.raft_addr(id)).collect()).await;
    cluster.kill9(leader);
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);
    let new_follower = (1..=3)
        .find(|id| *id != leader && *id != new_leader)
        .unwrap();
    cluster
        .client(new_follower)
        .await
        .batch_execute("INSERT INTO t SELECT g FROM generate_series(2, 100) g")
        .await
        .unwrap();
    cluster.restart(leader);
    eventually("the restarted node has every row", WAIT, || async {
        let n: i64 = cluster
            .client(leader)
            .await
            .query_one("SELECT count(*) FROM t", &[])
            .await
            .map_err(|e| format!("{e:?}"))?
            .get(0);
        if n == 100 {
            Ok(())
        } else {
            Err(format!("{n} rows"))
        }
    })
    .await;
    let opened = flood.stop().await;
    // More than the sockets it holds: the nodes closed silent ones to make room.
    assert!(
        opened > 3 * FLOOD_SOCKETS,
        "the flood opened {opened} connections"
    );
    cluster.assert_state_hashes_equal().await;
}

/// Mutual TLS between nodes (`--peer-tls-ca`, `--peer-tls-cert`, `--peer-tls-key`): nodes with
/// certificates of the cluster CA form a cluster and replicate over TLS; a node whose
/// certificate another CA signed cannot join (the member it asks refuses its certificate and
/// says so); a process that speaks the cluster protocol in clear gets no answer but a closed
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_over_mutual_tls_need_a_certificate_of_the_cluster_ca() {
    let dir = tempfile::tempdir().unwrap();
    crate::tls::ca(dir.path(), "cluster");
    crate::tls::ca(dir.path(), "rogue");
    let ext = "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth";
    crate::tls::signed(dir.path(), "cluster", "node", ext);
    crate::tls::signed(dir.path(), "rogue", "intruder", ext);
    let file = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let tls_flags = |cert: &str| {
        vec![
            "--peer-tls-ca".to_string(),
            file("cluster.pem"),
            "--peer-tls-cert".to_string(),
            file(&format!("{cert}.pem")),
            "--peer-tls-key".to_string(),
            file(&format!("{cert}.key")),
        ]
    };
    let node_flags = tls_flags("node");
    let mut cluster = TestCluster::start(3, move |_| node_flags.clone()).await;
    let leader = cluster.leader().await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    cluster
        .client(follower)
        .await
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)")
        .await
        .unwrap();

    // The intruder trusts the cluster's CA, but its own certificate is another CA's.
    let via = cluster.raft_addr(1).to_string();
    let mut flags = vec!["--node-id".to_string(), "4".to_string()];
    flags.extend(tls_flags("intruder"));
    let intruder = cluster.add_process(flags, Some(&via));
    eventually(
        "node 1 refuses the intruder's certificate",
        WAIT,
        || async {
            if log_has(&cluster, 1, "a cluster peer failed to authenticate") {
                Ok(())
            } else {
                Err(cluster.node(1).log_tail(5))
            }
        },
    )
    .await;
    assert_eq!(members(&cluster, 1).await, 3);
    cluster.kill9(intruder);

    // In clear: the TLS listener answers no frame, and closes.
    for id in 1..=3 {
        let mut p = RawPeer::connect(cluster.raft_addr(id)).await;
        p.send(&hello(9, id)).await;
        let mut seen = Vec::new();
        let closed = tokio::time::timeout(WAIT, p.stream.read_to_end(&mut seen)).await;
        assert!(closed.is_ok(), "node {id} kept a clear connection open");
        assert!(
            !String::from_utf8_lossy(&seen).contains("Hello"),
            "node {id} answered in clear: {seen:?}"
        );
    }
    cluster.assert_state_hashes_equal().await;
}

/// Idle sockets kept open to each address.
const FLOOD_SOCKETS: usize = 300;

/// Connections that say nothing, held open to each address and re-opened when the node
/// closes them.
struct Flood {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    opened: Arc<AtomicUsize>,
}

impl Flood {
    async fn start(addrs: Vec<SocketAddr>) -> Flood {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let opened = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        let sockets = addrs.len() * FLOOD_SOCKETS;
        for addr in addrs {
            for _ in 0..FLOOD_SOCKETS {
                let mut stopped = stopped.clone();
                let opened = opened.clone();
                tasks.push(tokio::spawn(async move {
                    while !*stopped.borrow() {
                        let Ok(mut s) = TcpStream::connect(addr).await else {
                            // The node is down (killed and not yet back): try again later.
                            tokio::select! {
                                _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                                _ = stopped.changed() => break,
                            }
                        };
                        opened.fetch_add(1, Ordering::Relaxed);
                        let mut buf = [0u8; 64];
                        tokio::select! {
                            _ = s.read(&mut buf) => {}
                            _ = stopped.changed() => break,
                        }
                        // Closed by the node: a moment, then a new one.
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                }));
            }
        }
        // Every socket is open before the test goes on.
        eventually("the flood's sockets are open", WAIT, || async {
            let n = opened.load(Ordering::Relaxed);
            if n >= sockets {
                Ok(())
            } else {
                Err(n)
            }
        })
        .await;
        Flood {
            stop,
            tasks,
            opened,
        }
    }

    /// Stops the flood; the number of connections it opened.
    async fn stop(self) -> usize {
        let _ = self.stop.send(true);
        for t in self.tasks {
            t.await.unwrap();
        }
        self.opened.load(Ordering::Relaxed)
    }
}
