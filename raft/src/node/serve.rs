//! The node answering its peers: the receiving side of the cluster protocol, one task per
//! incoming connection, dispatching each request to Raft or to the node once the peer has
//! introduced itself (and, with a cluster secret, proved it: [`crate::peer_auth`]).

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::storage::Snapshot;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tracing::Instrument;

use super::Node;
use crate::peer_auth::{PeerAuth, Side};
use crate::peer_tls::PeerStream;
use crate::rpc::{
    decode_frame, Conn, RemoteError, Request, Response, ANY_NODE, FRAME_BYTES_MAX,
    HANDSHAKE_FRAME_BYTES_MAX,
};
use crate::state_machine::SnapshotFile;

/// Incoming cluster connections served at once, after their handshake. A cluster of five
/// nodes opens a few connections per peer (heartbeat, replication, snapshot, forwarded
/// requests); 256 leaves room for clients of forwarded writes on every peer.
pub const CLUSTER_CONNECTIONS_MAX: usize = 256;

/// Connections that have not said hello yet, at most. When one more arrives, the oldest of
/// them is closed. A node sends its hello with its first bytes, so a flood of sockets that
/// never speak only pushes out other silent sockets: it cannot keep a peer's new connection
/// waiting, and accepting never stops.
pub const SILENT_CONNECTIONS_MAX: usize = 64;

/// While peers fail to authenticate, at most one warning per this interval (with the count of
/// failures since the last one): a scan or a misconfigured node must not flood the log.
const AUTH_FAILURE_LOG_EVERY: Duration = Duration::from_secs(10);

/// Largest snapshot a node accepts from a peer: far above a metadata store's size, and a
/// bound on the disk a misbehaving peer can fill.
const SNAPSHOT_BYTES_MAX: u64 = 16 * 1024 * 1024 * 1024;

/// Time a new connection has to introduce itself with its hello (and its proof). A socket that
/// says nothing, or stops halfway, is closed then.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Time a membership change may take, including a new voter catching up.
const ADMIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// What every connection's task shares: the places of connections past their handshake, the
/// connections that have not said hello (oldest first, to close when there are too many), and
/// the count of failed authentications not yet logged.
struct Gate {
    served: Arc<tokio::sync::Semaphore>,
    silent: Mutex<VecDeque<(u64, tokio::task::AbortHandle)>>,
    failures: Mutex<(u64, Option<Instant>)>,
}

impl Gate {
    /// Connection `id` has spoken: it is no longer closed to make room.
    fn spoke(&self, id: u64) {
        let mut h = self.silent.lock().unwrap_or_else(|p| p.into_inner());
        h.retain(|(i, _)| *i != id);
    }

    fn auth_failed(&self, peer: std::net::SocketAddr, why: &str) {
        let why = why.to_string();
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        f.0 += 1;
        let now = Instant::now();
        if f.1.is_none_or(|t| now - t >= AUTH_FAILURE_LOG_EVERY) {
            tracing::warn!(%peer, failures = f.0, %why, "a cluster peer failed to authenticate; its connection was closed");
            *f = (0, Some(now));
        }
    }
}

/// Serves cluster traffic from `listener` until the node shuts down.
pub async fn serve(listener: TcpListener, node: Arc<Node>) {
    let gate = Arc::new(Gate {
        served: Arc::new(tokio::sync::Semaphore::new(CLUSTER_CONNECTIONS_MAX)),
        silent: Mutex::new(VecDeque::new()),
        failures: Mutex::new((0, None)),
    });
    for id in 0u64.. {
        let (socket, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "cluster accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // Answers are small frames: sent at once, not held back for the peer's ACK of the
        // previous one (Nagle), which would add the peer's delayed-ACK time to every write.
        let _ = socket.set_nodelay(true);
        let node = node.clone();
        let span = tracing::debug_span!("peer", %peer);
        let g = gate.clone();
        // Registered under the lock, so the task cannot speak (and unregister) before it is
        // registered.
        let mut silent = gate.silent.lock().unwrap_or_else(|p| p.into_inner());
        let task = tokio::spawn(
            async move {
                let stream: PeerStream = match node.peer_auth.tls() {
                    // The TLS handshake counts as the connection's silence: it may be closed
                    // to make room until its first frame arrives, and it has the hello's time.
                    Some(tls) => {
                        match tokio::time::timeout(HELLO_TIMEOUT, tls.accept(socket)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                g.auth_failed(peer, &e.to_string());
                                g.spoke(id);
                                return;
                            }
                            Err(_) => {
                                g.spoke(id);
                                return;
                            }
                        }
                    }
                    None => Box::pin(socket),
                };
                let mut conn = Conn::over(stream);
                conn.set_frame_limit(HANDSHAKE_FRAME_BYTES_MAX);
                if let Err(e) = serve_conn(conn, peer, id, node, &g).await {
                    tracing::debug!(error = %e, "cluster connection ended");
                }
                g.spoke(id);
            }
            .instrument(span),
        );
        silent.push_back((id, task.abort_handle()));
        if silent.len() > SILENT_CONNECTIONS_MAX {
            if let Some((_, oldest)) = silent.pop_front() {
                oldest.abort();
            }
        }
    }
}

/// Reads the peer's hello and, with a cluster secret, runs the challenge–response. `Ok(None)`:
/// the connection was refused (and told why where it said hello). `Ok(Some(restricted))`: a
/// peer that may only send `Admin` and `Info` when `restricted` (it did not name this node).
async fn handshake(
    conn: &mut Conn,
    peer: std::net::SocketAddr,
    id: u64,
    node: &Node,
    gate: &Gate,
) -> io::Result<Option<bool>> {
    let first = conn.recv::<Request>().await;
    gate.spoke(id);
    let Some(Request::Hello { from, to, nonce }) = first? else {
        gate.auth_failed(peer, "no hello");
        return Ok(None);
    };
    if to != node.id() && to != ANY_NODE {
        let why = format!("this is node {}, not node {to}", node.id());
        conn.send(&Response::Refused(why)).await?;
        return Ok(None);
    }
    let auth: &PeerAuth = &node.peer_auth;
    if auth.is_required() {
        let ours = PeerAuth::nonce()?;
        let proof = auth
            .proof(Side::Server, &nonce, &ours, from, to)
            .ok_or_else(|| io::Error::other("no secret"))?;
        conn.send(&Response::Challenge { nonce: ours, proof })
            .await?;
        let proven = match conn.recv::<Request>().await? {
            Some(Request::Proof { proof }) => {
                auth.verify(Side::Client, &nonce, &ours, from, to, &proof)
            }
            _ => false,
        };
        if !proven {
            gate.auth_failed(peer, "no proof of the cluster secret");
            conn.send(&Response::Refused("peer authentication failed".into()))
                .await?;
            return Ok(None);
        }
    }
    tracing::debug!(from, "peer connected");
    conn.send(&Response::HelloOk).await?;
    Ok(Some(to == ANY_NODE))
}

async fn serve_conn(
    mut conn: Conn,
    peer: std::net::SocketAddr,
    id: u64,
    node: Arc<Node>,
    gate: &Gate,
) -> io::Result<()> {
    let restricted = match tokio::time::timeout(
        HELLO_TIMEOUT,
        handshake(&mut conn, peer, id, &node, gate),
    )
    .await
    {
        Ok(Ok(Some(restricted))) => restricted,
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(e)) => {
            gate.auth_failed(peer, "bad handshake frame");
            return Err(e);
        }
        Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "no hello in time")),
    };
    conn.set_frame_limit(FRAME_BYTES_MAX);
    let Ok(_permit) = gate.served.clone().try_acquire_owned() else {
        conn.send(&Response::Refused(format!(
            "this node serves {CLUSTER_CONNECTIONS_MAX} cluster connections at most"
        )))
        .await?;
        return Ok(());
    };
    while let Some(req) = conn.recv::<Request>().await? {
        if matches!(req, Request::StreamAppend) {
            if restricted {
                return Ok(());
            }
            return serve_stream_append(conn, node).await;
        }
        if restricted && !matches!(req, Request::Admin(_) | Request::Info) {
            conn.send(&Response::Refused(
                "this connection did not name its target node".into(),
            ))
            .await?;
            return Ok(());
        }
        let resp = match req {
            Request::Hello { .. } | Request::Proof { .. } => {
                Response::Refused("handshake already done".into())
            }
            Request::AppendEntries(r) => {
                let from_leader = r.vote.leader_id().node_id;
                let res = node
                    .raft()
                    .append_entries(r)
                    .await
                    .map_err(|e| e.to_string());
                if res.is_ok() {
                    node.touch_leader(from_leader);
                }
                Response::AppendEntries(res)
            }
            Request::Vote(r) => {
                Response::Vote(node.raft().vote(r).await.map_err(|e| e.to_string()))
            }
            Request::PreVote(r) => {
                Response::Vote(node.raft().pre_vote(r).await.map_err(|e| e.to_string()))
            }
            Request::TransferLeader(r) => Response::TransferLeader(
                node.raft()
                    .handle_transfer_leader(r)
                    .await
                    .map_err(|e| e.to_string()),
            ),
            Request::InstallSnapshot { vote, meta, size } => {
                let path = receive_snapshot(&mut conn, node.snapshot_dir(), size).await?;
                let snapshot = Snapshot {
                    meta,
                    snapshot: SnapshotFile::open(path.clone())?,
                };
                let res = node.raft().install_full_snapshot(vote, snapshot).await;
                // The state machine keeps its own copy under its own name.
                let _ = std::fs::remove_file(&path);
                Response::InstallSnapshot(res.map_err(|e| e.to_string()))
            }
            Request::ForwardWrite {
                request_id,
                proposal,
            } => Response::ForwardWrite(node.propose_forwarded(request_id, proposal).await),
            Request::ReadIndex => Response::ReadIndex(node.leader_read_index().await),
            Request::Admin(op) => Response::Admin(
                // A joining node may reach any member: forward to the leader from here.
                node.admin(op, ADMIN_TIMEOUT)
                    .await
                    .map_err(|e| RemoteError::Failed(e.to_string())),
            ),
            Request::Info => Response::Info(node.info()),
            Request::StreamAppend => Response::Refused("already handled".into()),
        };
        conn.send(&resp).await?;
    }
    Ok(())
}

/// Pipelined replication: feeds every AppendEntries on this connection to Raft as one stream
/// and answers each, in order. Ends when the sender closes its side or sends anything else.
async fn serve_stream_append(conn: Conn, node: Arc<Node>) -> io::Result<()> {
    use futures::StreamExt;
    let (mut sink, frames) = conn.into_split();
    let requests = futures::stream::unfold(frames, |mut frames| async move {
        let frame = frames.next().await?.ok()?;
        match decode_frame::<Request>(&frame) {
            Ok(Request::AppendEntries(r)) => Some((r, frames)),
            _ => None,
        }
    });
    let results = node.raft().stream_append(requests);
    futures::pin_mut!(results);
    while let Some(r) = results.next().await {
        let resp = match r {
            Ok(res) => {
                if res.is_ok() {
                    node.touch_leader(0);
                }
                Response::StreamAppend(Ok(res))
            }
            Err(fatal) => Response::StreamAppend(Err(fatal.to_string())),
        };
        sink.send(&resp).await?;
    }
    let _ = sink.close().await;
    Ok(())
}

/// Writes the raw frames that follow an `InstallSnapshot` header to a new file in the
/// snapshot directory and fsyncs it. The file is complete when this returns.
async fn receive_snapshot(conn: &mut Conn, dir: PathBuf, size: u64) -> io::Result<PathBuf> {
    if size > SNAPSHOT_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("snapshot of {size} bytes is over the {SNAPSHOT_BYTES_MAX}-byte limit"),
        ));
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let path = dir.join(format!("incoming-{nanos}.db.partial"));
    let result = async {
        let mut file = tokio::fs::File::create(&path).await?;
        let mut received = 0u64;
        loop {
            let Some(chunk) = conn.recv_raw().await? else {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "snapshot stream ended early",
                ));
            };
            if chunk.is_empty() {
                break;
            }
            received += chunk.len() as u64;
            if received > size {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "snapshot larger than announced",
                ));
            }
            file.write_all(&chunk).await?;
        }
        if received != size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("snapshot has {received} bytes, {size} announced"),
            ));
        }
        // Durable before Raft is told: install copies it, and a crash must not expose a
        // torn file (it keeps its .partial name, which start-up removes).
        file.sync_all().await
    }
    .await;
    match result {
        Ok(()) => Ok(path),
        Err(e) => {
            let _ = tokio::fs::remove_file(&path).await;
            Err(e)
        }
    }
}
