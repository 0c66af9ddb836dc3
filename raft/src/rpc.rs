//! The cluster wire protocol: length-delimited frames over TCP between nodes.
//!
//! Every connection starts with a `Hello` naming the sender and the node it meant to reach;
//! the receiver refuses a connection meant for another node id (a stale address must never
//! deliver Raft messages to the wrong node). With a cluster secret, both sides then prove
//! they know it ([`crate::peer_auth`]) before anything else is read. After that the
//! connection carries one request and one response at a time. A frame is `u32` big-endian
//! length + payload; the payload is a version byte (6) and JSON. Snapshot bytes travel as raw frames after an
//! `InstallSnapshot` header, on a connection of their own, so a large snapshot never delays
//! heartbeats or appends. Details: `docs/architecture.md`.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use openraft::alias::{SnapshotMetaOf, VoteOf};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sqlkeeper_engine::{LogIndex, Outcome, RequestId};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::peer_auth::{Nonce, PeerAuth, Proof, Side};
use crate::peer_tls::PeerStream;
use crate::types::{NodeId, NodeInfo, TypeConfig};

/// A write to replicate: statements the leader stamps, or a finished transaction. What a
/// follower forwards to the leader (`Request::ForwardWrite`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Proposal {
    /// Autocommit statements: one `Command::Execute`.
    Statements {
        /// The statements, in order.
        statements: Vec<sqlkeeper_engine::Statement>,
        /// The role they run as; `None` for a superuser.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<String>,
    },
    /// A finished transaction block: one `Command::Transaction`.
    Transaction(sqlkeeper_engine::TxnRecord),
    /// A run of the steps of a block too large for one entry: one
    /// `Command::TransactionPart`, proposed before the block's `Transaction`.
    TransactionPart {
        /// The request id of the block's commit.
        txn: sqlkeeper_engine::RequestId,
        /// The part's place, from 0.
        seq: u32,
        /// Its steps.
        steps: Vec<sqlkeeper_engine::TxnStep>,
    },
}

impl Proposal {
    /// An upper bound of the JSON size of the proposal's statements in the log.
    pub fn size_bound(&self) -> usize {
        match self {
            Proposal::Statements { statements, role } => {
                statements
                    .iter()
                    .map(sqlkeeper_engine::statement_size_bound)
                    .sum::<usize>()
                    + role.as_ref().map_or(0, |r| r.len() + 16)
            }
            Proposal::Transaction(r) => r.steps.iter().map(sqlkeeper_engine::step_size_bound).sum(),
            Proposal::TransactionPart { steps, .. } => {
                steps.iter().map(sqlkeeper_engine::step_size_bound).sum()
            }
        }
    }
}

/// Largest frame accepted. An AppendEntries carries at most `max_payload_entries` entries;
/// 64 MiB leaves room for large statements while bounding what a peer can make us buffer.
pub const FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Largest frame read before a peer has finished its handshake: a hello or a proof is about
/// 300 bytes, and a socket that has proved nothing must not make the node buffer a
/// [`FRAME_BYTES_MAX`] frame.
pub const HANDSHAKE_FRAME_BYTES_MAX: usize = 4096;

/// Snapshot bytes per frame: large enough to stream at disk speed, small enough that the
/// receiver's memory stays flat.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// Time allowed to open a TCP connection to a peer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Version byte of every frame's JSON. Version 2: `ForwardWrite` carries a `proposal`
/// (statements or a finished transaction) and entries may hold `Command::Transaction`.
/// Version 3: commands carry an `EntryHeader`, and outcomes may be deduplicated answers. Only
/// Version 4: a transaction is one `TxnRecord` (no base; read steps), and `ForwardWrite` has no
/// write-slot wait. Version 5: `Proposal::TransactionPart`, `Command::TransactionPart`, staged
/// transactions. Version 6: the hello carries a nonce, and a node with a cluster secret answers
/// it with a `Challenge` (peer authentication). Version 7: `Proposal::Statements` is a struct
/// with the statements' role (privileges). Only version 7 is accepted: a node of another
/// build is refused with a clear error instead of decoding a message it would misread.
pub(crate) const WIRE_VERSION: u8 = 7;

/// The `to` of a hello from a node that does not know who is at the address (a joining node).
/// No node has id 0 (`--node-id` must be positive).
pub const ANY_NODE: NodeId = 0;

/// A request from one node to another.
#[derive(Debug, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)]
pub enum Request {
    /// First message on a connection.
    Hello {
        /// The sender.
        from: NodeId,
        /// The node the sender meant to reach.
        to: NodeId,
        /// The sender's challenge to the receiver, when the receiver must prove the secret.
        nonce: Nonce,
    },
    /// The sender's answer to a `Challenge`: its proof of the cluster secret.
    Proof {
        /// HMAC of the handshake ([`crate::peer_auth`]).
        proof: Proof,
    },
    /// Raft AppendEntries (also heartbeats).
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// Raft RequestVote.
    Vote(VoteRequest<TypeConfig>),
    /// Raft pre-vote.
    PreVote(VoteRequest<TypeConfig>),
    /// Leadership transfer notice from the leader.
    TransferLeader(TransferLeaderRequest<TypeConfig>),
    /// A snapshot follows as raw frames of at most [`SNAPSHOT_CHUNK_BYTES`], then an empty
    /// frame.
    InstallSnapshot {
        /// The leader's vote.
        vote: VoteOf<TypeConfig>,
        /// Identity of the snapshot.
        meta: SnapshotMetaOf<TypeConfig>,
        /// Total bytes that follow.
        size: u64,
    },
    /// A write accepted by a follower, to be proposed by the leader.
    ForwardWrite {
        /// Deduplication key chosen by the node the client talks to.
        request_id: RequestId,
        /// The translated statements, or a finished transaction block.
        proposal: Proposal,
    },
    /// Asks the leader for a linearizable read index.
    ReadIndex,
    /// Membership and leadership operations, run on the leader.
    Admin(AdminOp),
    /// Asks a node for its addresses.
    Info,
    /// Switches the connection to pipelined replication: from now on the sender writes
    /// `AppendEntries` requests without waiting, and the receiver answers each, in order,
    /// with `StreamAppend`.
    StreamAppend,
}

/// Cluster administration, forwarded to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AdminOp {
    /// Add a non-voting member.
    AddLearner {
        /// New node.
        node_id: NodeId,
        /// Its addresses.
        info: NodeInfo,
    },
    /// Add a learner, then promote it to voter when it has caught up.
    AddNode {
        /// New node.
        node_id: NodeId,
        /// Its addresses.
        info: NodeInfo,
    },
    /// Remove a member (voter or learner).
    RemoveNode {
        /// The node.
        node_id: NodeId,
    },
    /// Move leadership to a node.
    TransferLeader {
        /// The node.
        node_id: NodeId,
    },
}

/// A response. `Err` strings are shown to the client of the original request.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    /// The receiver accepted the connection.
    HelloOk,
    /// The receiver requires the cluster secret: its own proof and its challenge to the sender.
    Challenge {
        /// The receiver's nonce.
        nonce: Nonce,
        /// The receiver's proof over both nonces.
        proof: Proof,
    },
    /// AppendEntries result.
    AppendEntries(Result<AppendEntriesResponse<TypeConfig>, String>),
    /// Vote or pre-vote result.
    Vote(Result<VoteResponse<TypeConfig>, String>),
    /// Transfer-leader result.
    TransferLeader(Result<TransferLeaderResponse<TypeConfig>, String>),
    /// Snapshot installed (or refused).
    InstallSnapshot(Result<SnapshotResponse<TypeConfig>, String>),
    /// Result of a forwarded write: outcome and log index, or why it was not done.
    ForwardWrite(Result<(Outcome, LogIndex), RemoteError>),
    /// The read index.
    ReadIndex(Result<LogIndex, RemoteError>),
    /// Result of an admin operation.
    Admin(Result<String, RemoteError>),
    /// Addresses of the node.
    Info(NodeInfo),
    /// Result of one pipelined AppendEntries.
    StreamAppend(Result<StreamAppendResult<TypeConfig>, String>),
    /// The request was refused.
    Refused(String),
}

/// Why a request the leader was asked to run did not run.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum RemoteError {
    /// The receiver is not (or no longer) the leader. Nothing was proposed: safe to retry.
    #[error("node is not the leader")]
    NotLeader {
        /// Who the receiver thinks leads.
        leader_id: Option<NodeId>,
        /// Its addresses.
        leader: Option<NodeInfo>,
    },
    /// The request may or may not have been applied (e.g. the leader lost leadership after
    /// proposing it). Retrying with the same request id is safe: the state machine dedups.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// The request failed.
    #[error("{0}")]
    Failed(String),
}

/// A framed connection.
pub struct Conn {
    framed: Framed<PeerStream, LengthDelimitedCodec>,
}

pub(crate) fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(FRAME_BYTES_MAX)
        .new_codec()
}

fn encode<T: Serialize>(v: &T) -> io::Result<Bytes> {
    let mut out = vec![WIRE_VERSION];
    serde_json::to_writer(&mut out, v).map_err(io::Error::other)?;
    Ok(Bytes::from(out))
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> io::Result<T> {
    match b.split_first() {
        Some((&WIRE_VERSION, body)) => {
            serde_json::from_slice(body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        }
        Some((v, _)) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unknown wire version {v}"),
        )),
        None => Err(io::Error::new(io::ErrorKind::InvalidData, "empty frame")),
    }
}

impl Conn {
    /// Wraps a connection's stream: TCP (with `TCP_NODELAY` set by the caller), or TLS over it.
    pub fn over(stream: PeerStream) -> Conn {
        Conn {
            framed: Framed::new(stream, codec()),
        }
    }

    /// Sets the largest frame this connection reads.
    pub fn set_frame_limit(&mut self, bytes: usize) {
        self.framed.codec_mut().set_max_frame_length(bytes);
    }

    /// Connects to `addr` and introduces ourselves as `from`, expecting node `to` there; with
    /// a cluster secret, both sides prove it before the connection is returned.
    pub async fn connect(
        addr: &str,
        from: NodeId,
        to: NodeId,
        auth: &PeerAuth,
    ) -> io::Result<Conn> {
        // Connect and hello under one deadline: a peer that accepts but never answers (stopped
        // process, full accept queue) must not hold the caller.
        let handshake = async {
            let stream = TcpStream::connect(addr).await?;
            let _ = stream.set_nodelay(true);
            let mut conn = match auth.tls() {
                Some(tls) => Conn::over(tls.connect(addr, stream).await?),
                None => Conn::over(Box::pin(stream)),
            };
            let nonce = PeerAuth::nonce()?;
            let denied = |why: String| io::Error::new(io::ErrorKind::PermissionDenied, why);
            match conn.call(&Request::Hello { from, to, nonce }).await? {
                Response::HelloOk if auth.is_required() => Err(denied(format!(
                    "the node at {addr} does not ask for the cluster secret: not talking to it \
                     (every member needs the same --peer-secret-file)"
                ))),
                Response::HelloOk => Ok(conn),
                Response::Challenge {
                    nonce: theirs,
                    proof,
                } => {
                    if !auth.is_required() {
                        return Err(denied(format!(
                            "the node at {addr} requires the cluster secret (--peer-secret-file)"
                        )));
                    }
                    if !auth.verify(Side::Server, &nonce, &theirs, from, to, &proof) {
                        return Err(denied(format!(
                            "the node at {addr} does not know the cluster secret"
                        )));
                    }
                    let proof = auth
                        .proof(Side::Client, &nonce, &theirs, from, to)
                        .ok_or_else(|| io::Error::other("no secret"))?;
                    match conn.call(&Request::Proof { proof }).await? {
                        Response::HelloOk => Ok(conn),
                        Response::Refused(why) => Err(denied(why)),
                        other => Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("unexpected reply to a proof {other:?}"),
                        )),
                    }
                }
                Response::Refused(why) => {
                    Err(io::Error::new(io::ErrorKind::ConnectionRefused, why))
                }
                other => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected hello reply {other:?}"),
                )),
            }
        };
        tokio::time::timeout(CONNECT_TIMEOUT, handshake)
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connect to {addr} timed out"),
                )
            })?
    }

    /// Connects to `addr` without knowing the id of the node there (used to join a cluster
    /// through any member). Such a connection may only carry `Admin` and `Info` requests.
    pub async fn connect_any(addr: &str, from: NodeId, auth: &PeerAuth) -> io::Result<Conn> {
        Conn::connect(addr, from, ANY_NODE, auth).await
    }

    /// Sends a message.
    pub async fn send<T: Serialize>(&mut self, msg: &T) -> io::Result<()> {
        self.framed.send(encode(msg)?).await
    }

    /// Sends raw bytes as one frame.
    pub async fn send_raw(&mut self, bytes: Bytes) -> io::Result<()> {
        self.framed.send(bytes).await
    }

    /// Receives one raw frame; `None` when the peer closed the connection.
    pub async fn recv_raw(&mut self) -> io::Result<Option<bytes::BytesMut>> {
        self.framed.next().await.transpose()
    }

    /// Receives a message; `None` when the peer closed the connection.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> io::Result<Option<T>> {
        match self.framed.next().await {
            None => Ok(None),
            Some(frame) => decode(&frame?).map(Some),
        }
    }

    /// Splits the connection into a sending half and a receiving half of raw frames, for
    /// pipelining.
    pub fn into_split(
        self,
    ) -> (
        ConnSink,
        impl futures::Stream<Item = io::Result<Bytes>> + Send + Unpin + 'static,
    ) {
        let (sink, stream) = self.framed.split();
        (ConnSink { sink }, stream.map(|r| r.map(|b| b.freeze())))
    }

    /// Sends a request and waits for its response.
    pub async fn call(&mut self, req: &Request) -> io::Result<Response> {
        self.send(req).await?;
        self.recv().await?.ok_or_else(|| {
            io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed the connection")
        })
    }
}

/// The sending half of a split connection.
pub struct ConnSink {
    sink: futures::stream::SplitSink<Framed<PeerStream, LengthDelimitedCodec>, Bytes>,
}

impl ConnSink {
    /// Sends a message.
    pub async fn send<T: Serialize>(&mut self, msg: &T) -> io::Result<()> {
        self.sink.send(encode(msg)?).await
    }

    /// Flushes and closes the sending direction.
    pub async fn close(&mut self) -> io::Result<()> {
        self.sink.close().await
    }
}

/// Decodes one received frame.
pub fn decode_frame<T: DeserializeOwned>(frame: &[u8]) -> io::Result<T> {
    decode(frame)
}
