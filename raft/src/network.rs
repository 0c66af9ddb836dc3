//! openraft's network over the cluster wire protocol ([`crate::rpc`]).
//!
//! Each `PeerClient` owns at most one TCP connection, reused across calls and re-opened after
//! an error. openraft asks for separate clients for heartbeats, replication and snapshots, so
//! each purpose has its own connection and a snapshot transfer never delays a heartbeat.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use openraft::alias::{SnapshotOf, VoteOf};
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::OptionalSend;

use crate::peer_auth::PeerAuth;
use crate::rpc::{decode_frame, Conn, Request, Response, SNAPSHOT_CHUNK_BYTES};
use crate::state_machine::SnapshotFile;
use crate::types::{NodeId, NodeInfo, TypeConfig};

/// Least time a follower has to answer a pipelined AppendEntries that is in flight. openraft
/// passes the heartbeat interval as the RPC deadline; a follower busy with an fsync under load
/// can take longer, and a replication session that times out starts over on a new connection.
const PIPELINE_ANSWER_TIMEOUT_MIN: Duration = Duration::from_secs(2);

/// How often an idle replication session re-checks whether requests were sent.
const PIPELINE_IDLE_POLL: Duration = Duration::from_millis(50);

/// First wait before replication to a peer that failed is tried again; it doubles up to
/// [`BACKOFF_MAX`]. Short enough that a follower back from a pause catches up at once.
const BACKOFF_FIRST: Duration = Duration::from_millis(50);

/// Longest wait between replication attempts to an unreachable peer: it bounds both the load
/// a down peer causes (a connection attempt and two log lines every 2 s) and how late a peer
/// that comes back is noticed.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// While a peer stays unreachable, its failure is logged again at most this often.
const STILL_DOWN_LOG_EVERY: Duration = Duration::from_secs(30);

/// What this node last told the log about one peer: a warning when it becomes unreachable,
/// one every [`STILL_DOWN_LOG_EVERY`] while it stays so, and a note when it answers again.
/// Shared by the clients of one peer (heartbeat, replication), so they speak with one voice.
#[derive(Debug, Default)]
pub(crate) struct PeerHealth {
    down_since: Option<Instant>,
    failures: u64,
    last_report: Option<Instant>,
}

/// Health of each peer, by node id.
pub(crate) type PeerHealthMap = Arc<Mutex<HashMap<NodeId, PeerHealth>>>;

fn peer_failed(map: &PeerHealthMap, peer: NodeId, addr: &str, error: &dyn std::fmt::Display) {
    let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
    let h = m.entry(peer).or_default();
    let now = Instant::now();
    h.failures += 1;
    let since = *h.down_since.get_or_insert(now);
    if h.last_report
        .is_none_or(|t| now - t >= STILL_DOWN_LOG_EVERY)
    {
        h.last_report = Some(now);
        tracing::warn!(peer, %addr, failures = h.failures, down_for = ?(now - since), error = %error, "raft peer unreachable");
    }
}

fn peer_answered(map: &PeerHealthMap, peer: NodeId) {
    let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
    let Some(h) = m.get_mut(&peer) else { return };
    if let Some(since) = h.down_since.take() {
        tracing::info!(peer, failures = h.failures, down_for = ?since.elapsed(), "raft peer answers again");
        h.failures = 0;
        h.last_report = None;
    }
}

/// Makes network clients for peers.
#[derive(Clone)]
pub struct NetworkFactory {
    /// This node, announced in every connection's hello.
    pub(crate) me: NodeId,
    /// What the log was told about each peer (shared by all clients).
    pub(crate) health: PeerHealthMap,
    /// How connections prove the cluster secret.
    pub(crate) auth: PeerAuth,
}

/// A client for one peer and one purpose.
pub struct PeerClient {
    /// Replication clients pipeline AppendEntries on a connection of their own; heartbeat
    /// clients send one small request at a time on their reused connection.
    pipelined: bool,
    me: NodeId,
    target: NodeId,
    addr: String,
    conn: Option<Conn>,
    health: PeerHealthMap,
    auth: PeerAuth,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> PeerClient {
        PeerClient {
            pipelined: true,
            me: self.me,
            target,
            addr: node.raft_addr.clone(),
            conn: None,
            health: self.health.clone(),
            auth: self.auth.clone(),
        }
    }

    async fn new_heartbeat_client(&mut self, target: NodeId, node: &NodeInfo) -> PeerClient {
        PeerClient {
            pipelined: false,
            me: self.me,
            target,
            addr: node.raft_addr.clone(),
            conn: None,
            health: self.health.clone(),
            auth: self.auth.clone(),
        }
    }
}

impl PeerClient {
    async fn conn(&mut self) -> io::Result<&mut Conn> {
        if self.conn.is_none() {
            self.conn = Some(Conn::connect(&self.addr, self.me, self.target, &self.auth).await?);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| io::Error::other("connection vanished"))
    }

    /// One request/response with a deadline. Any failure drops the connection, so the next
    /// call starts clean (a late response can never be taken for the next request's).
    async fn call(
        &mut self,
        req: Request,
        ttl: Duration,
    ) -> Result<Response, RPCError<TypeConfig>> {
        let fut = async {
            let conn = self.conn().await?;
            conn.call(&req).await
        };
        match tokio::time::timeout(ttl, fut).await {
            Ok(Ok(resp)) => {
                peer_answered(&self.health, self.target);
                Ok(resp)
            }
            Ok(Err(e)) => {
                self.conn = None;
                peer_failed(&self.health, self.target, &self.addr, &e);
                Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
            Err(_) => {
                self.conn = None;
                let why = format!(
                    "node {} ({}) did not answer within {ttl:?}",
                    self.target, self.addr
                );
                peer_failed(&self.health, self.target, &self.addr, &why);
                Err(RPCError::Network(NetworkError::from_string(why)))
            }
        }
    }
}

fn remote<T>(r: Result<T, String>) -> Result<T, RPCError<TypeConfig>> {
    r.map_err(|e| RPCError::Network(NetworkError::from_string(e)))
}

fn unexpected<T>(resp: Response) -> Result<T, RPCError<TypeConfig>> {
    Err(RPCError::Network(NetworkError::from_string(format!(
        "unexpected response {resp:?}"
    ))))
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotFile;

    /// Waits between replication (and snapshot) attempts to a peer that failed: 50 ms,
    /// doubling to 2 s. openraft sleeps it while it hands out the next request of a session,
    /// so `stream_append` takes its first request before it connects.
    fn backoff(&self) -> Option<Backoff> {
        Some(Backoff::new(std::iter::successors(
            Some(BACKOFF_FIRST),
            |d| Some((*d * 2).min(BACKOFF_MAX)),
        )))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(Request::AppendEntries(rpc), option.hard_ttl())
            .await?
        {
            Response::AppendEntries(r) => remote(r),
            other => unexpected(other),
        }
    }

    /// Pipelined replication: requests go out as openraft produces them, on a connection of
    /// their own, and responses come back in order, so several AppendEntries are in flight
    /// to a follower at once instead of one round trip each.
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<
            BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>,
            RPCError<TypeConfig>,
        >,
    >
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + OptionalSend + Unpin + 'static,
    {
        if !self.pipelined {
            return openraft::network::stream_append_sequential(self, input, option);
        }
        Box::pin(async move {
            let unreachable = |e: io::Error| RPCError::Unreachable(Unreachable::new(&e));
            // The first request before the connection: openraft applies its backoff while it
            // hands out a request, so a peer that refuses connections is not retried in a
            // tight loop.
            let mut input = input;
            let Some(first) = input.next().await else {
                return Ok(Box::pin(futures::stream::empty()) as BoxStream<'s, _>);
            };
            let conn = match Conn::connect(&self.addr, self.me, self.target, &self.auth).await {
                Ok(c) => c,
                Err(e) => {
                    peer_failed(&self.health, self.target, &self.addr, &e);
                    return Err(unreachable(e));
                }
            };
            let (mut sink, responses) = conn.into_split();
            sink.send(&Request::StreamAppend)
                .await
                .map_err(unreachable)?;
            peer_answered(&self.health, self.target);
            let input = futures::stream::iter([first]).chain(input);
            // Requests sent, and whether the input has ended: a connection that closes before
            // every request was answered is an error, not the end of the stream.
            let sent = Arc::new(AtomicU64::new(0));
            let input_done = Arc::new(AtomicBool::new(false));
            let stop = tokio_util::sync::CancellationToken::new();
            {
                let (sent, input_done) = (sent.clone(), input_done.clone());
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut input = input;
                    loop {
                        // Stop pulling openraft's requests as soon as the response stream is
                        // dropped (the session ended): they belong to the next session.
                        let req = tokio::select! {
                            _ = stop.cancelled() => return,
                            r = input.next() => r,
                        };
                        let Some(req) = req else { break };
                        if sink.send(&Request::AppendEntries(req)).await.is_err() {
                            return;
                        }
                        sent.fetch_add(1, Ordering::SeqCst);
                    }
                    input_done.store(true, Ordering::SeqCst);
                    // No more requests: the receiver finishes its answers and closes.
                    let _ = sink.close().await;
                });
            }
            let mut received = 0u64;
            let stop_guard = Arc::new(stop.drop_guard());
            let ttl = option.hard_ttl();
            let target = self.target;
            let out = futures::stream::unfold(Some(responses), move |state| {
                let (sent, input_done) = (sent.clone(), input_done.clone());
                let _keep_writer = stop_guard.clone();
                received += 1;
                let answered = received - 1;
                async move {
                    let mut responses = state?;
                    // Only an answer that is due can time out: while nothing is in flight the
                    // session is idle, waiting for openraft to produce the next request.
                    let next = async {
                        loop {
                            if sent.load(Ordering::SeqCst) > answered {
                                let due = ttl.max(PIPELINE_ANSWER_TIMEOUT_MIN);
                                return tokio::time::timeout(due, responses.next()).await;
                            }
                            if input_done.load(Ordering::SeqCst) {
                                return Ok(responses.next().await);
                            }
                            if let Ok(r) =
                                tokio::time::timeout(PIPELINE_IDLE_POLL, responses.next()).await
                            {
                                return Ok(r);
                            }
                        }
                    };
                    let item = match next.await {
                        Err(_) => Err(RPCError::Network(NetworkError::from_string(format!(
                            "node {target} did not answer a pipelined append in time"
                        )))),
                        Ok(None)
                            if input_done.load(Ordering::SeqCst)
                                && answered >= sent.load(Ordering::SeqCst) =>
                        {
                            return None
                        }
                        Ok(None) => Err(RPCError::Unreachable(Unreachable::from_string(format!(
                            "node {target} closed the replication connection"
                        )))),
                        Ok(Some(Err(e))) => Err(RPCError::Network(NetworkError::new(&e))),
                        Ok(Some(Ok(frame))) => match decode_frame::<Response>(&frame) {
                            Ok(Response::StreamAppend(Ok(r))) => Ok(r),
                            Ok(Response::StreamAppend(Err(e))) => {
                                Err(RPCError::Network(NetworkError::from_string(e)))
                            }
                            Ok(other) => Err(RPCError::Network(NetworkError::from_string(
                                format!("unexpected response {other:?}"),
                            ))),
                            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
                        },
                    };
                    // The stream ends after an error or a rejected append.
                    let go_on = matches!(item, Ok(Ok(_)));
                    Some((item, go_on.then_some(responses)))
                }
            });
            Ok(Box::pin(out) as BoxStream<'s, _>)
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.call(Request::Vote(rpc), option.hard_ttl()).await? {
            Response::Vote(r) => remote(r),
            other => unexpected(other),
        }
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.call(Request::PreVote(rpc), option.hard_ttl()).await? {
            Response::Vote(r) => remote(r),
            other => unexpected(other),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(Request::TransferLeader(req), option.hard_ttl())
            .await?
        {
            Response::TransferLeader(r) => remote(r),
            other => unexpected(other),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, SnapshotFile>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let me = self.me;
        let target = self.target;
        let addr = self.addr.clone();
        let auth = self.auth.clone();
        let send = async move {
            // A fresh connection: a half-sent snapshot must not leave bytes on a reused one.
            let mut conn = Conn::connect(&addr, me, target, &auth).await?;
            let file = snapshot.snapshot.clone();
            let size = file.len()?;
            conn.send(&Request::InstallSnapshot {
                vote,
                meta: snapshot.meta.clone(),
                size,
            })
            .await?;
            let mut offset = 0u64;
            loop {
                // Positional reads off the async workers: the handle is shared with other
                // transfers of the same snapshot.
                let f = file.clone();
                let chunk = tokio::task::spawn_blocking(move || -> io::Result<Vec<u8>> {
                    let mut buf = vec![0u8; SNAPSHOT_CHUNK_BYTES];
                    let n = f.read_at(&mut buf, offset)?;
                    buf.truncate(n);
                    Ok(buf)
                })
                .await
                .map_err(io::Error::other)??;
                if chunk.is_empty() {
                    break;
                }
                offset += chunk.len() as u64;
                conn.send_raw(Bytes::from(chunk)).await?;
            }
            conn.send_raw(Bytes::new()).await?;
            conn.recv::<Response>().await?.ok_or_else(|| {
                io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed during snapshot")
            })
        };
        let resp = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            r = tokio::time::timeout(option.hard_ttl(), send) => r,
        };
        match resp {
            Ok(Ok(Response::InstallSnapshot(Ok(r)))) => Ok(r),
            Ok(Ok(Response::InstallSnapshot(Err(e)))) => {
                Err(StreamingError::Network(NetworkError::from_string(e)))
            }
            Ok(Ok(other)) => Err(StreamingError::Network(NetworkError::from_string(format!(
                "unexpected response {other:?}"
            )))),
            Ok(Err(e)) => Err(StreamingError::Unreachable(Unreachable::new(&e))),
            Err(_) => Err(StreamingError::Network(NetworkError::from_string(
                "snapshot transfer timed out",
            ))),
        }
    }
}
