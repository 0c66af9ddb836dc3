//! The node answering its peers: the receiving side of the cluster protocol, one task per
//! incoming connection, dispatching each request to Raft or to the node.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::storage::Snapshot;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tracing::Instrument;

use super::Node;
use crate::rpc::{decode_frame, Conn, RemoteError, Request, Response, ANY_NODE};
use crate::state_machine::SnapshotFile;

/// Incoming cluster connections served at once. A cluster of five nodes opens a few
/// connections per peer (heartbeat, replication, snapshot, forwarded requests); 256 leaves
/// room for clients of forwarded writes on every peer.
pub const CLUSTER_CONNECTIONS_MAX: usize = 256;

/// Largest snapshot a node accepts from a peer: far above a metadata store's size, and a
/// bound on the disk a misbehaving peer can fill.
const SNAPSHOT_BYTES_MAX: u64 = 16 * 1024 * 1024 * 1024;

/// Time a new connection has to introduce itself with its hello. A socket that says nothing
/// would otherwise hold one of the [`CLUSTER_CONNECTIONS_MAX`] places for good.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Time a membership change may take, including a new voter catching up.
const ADMIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Serves cluster traffic from `listener` until the node shuts down.
pub async fn serve(listener: TcpListener, node: Arc<Node>) {
    let limit = Arc::new(tokio::sync::Semaphore::new(CLUSTER_CONNECTIONS_MAX));
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
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
        tokio::spawn(
            async move {
                if let Err(e) = serve_conn(Conn::new(socket), node).await {
                    tracing::debug!(error = %e, "cluster connection ended");
                }
                drop(permit);
            }
            .instrument(span),
        );
    }
}

async fn serve_conn(mut conn: Conn, node: Arc<Node>) -> io::Result<()> {
    let hello = tokio::time::timeout(HELLO_TIMEOUT, conn.recv::<Request>())
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no hello in time"))??;
    let restricted = match hello {
        Some(Request::Hello { from, to }) if to == node.id() || to == ANY_NODE => {
            tracing::debug!(from, "peer connected");
            conn.send(&Response::HelloOk).await?;
            to == ANY_NODE
        }
        Some(Request::Hello { to, .. }) => {
            let why = format!("this is node {}, not node {to}", node.id());
            conn.send(&Response::Refused(why)).await?;
            return Ok(());
        }
        _ => return Ok(()),
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
            Request::Hello { .. } => Response::Refused("hello twice".into()),
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
            } => Response::ForwardWrite(node.propose(request_id, proposal).await),
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
