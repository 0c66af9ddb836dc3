//! A sqlkeeper node: its data directory, its Raft instance, and the calls the protocol layer
//! makes (write through the log, read locally). Here: starting a node, its status and
//! errors. The rest by concern: `config` (settings and Raft constants), `data_dir` (identity,
//! boot counter), `writes` (propose, retry, wait for apply), `forward` (run where the leader
//! is, read index), `membership` (admin calls, members, joining, preferred leader), `blocks`
//! (transaction blocks on the block writer), `reads` (local reads), `fatal_watch`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, ForwardToLeader, LinearizableReadError, RaftError};
use openraft::Instant as _;
use openraft::{ChangeMembers, Config, Raft, ReadPolicy, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use sqlkeeper_engine::{
    Block, BlockError, BlockWriter, Command, Done, EngineError, EntryHeader, ExecError, HeldRead,
    LogIndex, Outcome, ReadPool, ReadView, RequestId, Stamp, Statement, Ticket, TxnRecord, Value,
    Work, REMOVED_NODES_TABLE,
};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::log_store::LogStore;
use crate::network::NetworkFactory;
pub use crate::rpc::Proposal;
use crate::rpc::{AdminOp, Conn, RemoteError, Request, Response};
use crate::state_machine::StateMachineStore;
use crate::types::{NodeId, NodeInfo, TypeConfig};

mod blocks;
mod config;
mod data_dir;
mod fatal_watch;
mod forward;
mod membership;
mod observe;
mod reads;
mod restore;
mod serve;
mod writes;

use self::{config::*, data_dir::*, fatal_watch::*, membership::*, reads::*};
pub use config::{
    NodeConfig, BACKUP_BYTES_MAX, ELECTION_TIMEOUT_MAX, ELECTION_TIMEOUT_MIN, HEARTBEAT_INTERVAL,
    LOG_KEPT_BEHIND_SNAPSHOT, SNAPSHOT_EVERY_ENTRIES,
};
pub use membership::MemberRow;
pub use restore::{restore, RestoreConfig, Restored};
pub use sqlkeeper_engine::COMMAND_BYTES_MAX;
pub use writes::WRITE_RETRY_BACKOFF;

/// Errors the session maps to SQLSTATEs (`From<NodeError> for ClientError` in `sqlkeeper-session`).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The write could not reach a leader before its deadline; nothing was applied.
    #[error("no leader accepted the write{}", match .leader_id { Some(l) => format!("; the leader is node {l}"), None => String::new() })]
    NotLeader {
        /// The current leader, if known.
        leader_id: Option<NodeId>,
        /// Its Postgres address, if known.
        leader_pg_addr: Option<String>,
    },
    /// The leader was lost after the write was proposed and the retries ran out: it may or
    /// may not have been applied.
    #[error("the outcome of the write is unknown: the leader changed while it was in flight")]
    OutcomeUnknown {
        /// The last known leader.
        leader_id: Option<NodeId>,
    },
    /// A statement failed deterministically.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// The node cannot serve right now (shutting down, no leader, ...): retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The node has failed and is stopping.
    #[error("node failed: {0}")]
    Fatal(String),
}

impl From<EngineError> for NodeError {
    fn from(e: EngineError) -> NodeError {
        match e {
            EngineError::Exec(e) => NodeError::Exec(e),
            EngineError::Fatal(f) => NodeError::Fatal(f.0),
        }
    }
}

/// Errors starting a node: these are user mistakes or environment problems, printed as one
/// line by the binary.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory cannot be created or written.
    #[error("cannot use data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The data directory was created by another node.
    #[error("data directory {path} belongs to node {found}, not node {wanted}")]
    WrongNode {
        /// The directory.
        path: PathBuf,
        /// Node id recorded in it.
        found: NodeId,
        /// Node id this process was started with.
        wanted: NodeId,
    },
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// The node's Raft state right now, for `sqlkeeper.status` and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// This node.
    pub node_id: NodeId,
    /// leader, follower, learner, candidate or shutdown.
    pub role: &'static str,
    /// Current term.
    pub term: u64,
    /// Known leader.
    pub leader_id: Option<NodeId>,
    /// Highest committed index known here.
    pub commit_index: Option<u64>,
    /// Highest applied index.
    pub applied_index: Option<u64>,
    /// Index of the newest snapshot.
    pub snapshot_index: Option<u64>,
    /// Size of the state database's write-ahead log file, in bytes.
    pub wal_bytes: u64,
}

/// A running node.
pub struct Node {
    id: NodeId,
    raft: Raft<TypeConfig, StateMachineStore>,
    reads: Arc<ReadPool>,
    /// This node's addresses as advertised to peers.
    info: NodeInfo,
    snapshot_dir: PathBuf,
    /// Request ids: this node's id plus a serial, `boot << BOOT_SERIAL_SHIFT | counter`, so ids
    /// do not repeat across restarts.
    next_serial: AtomicU64,
    random: RandomState,
    /// When a leader last replicated to this node successfully (followers and learners).
    last_leader_contact: Mutex<Option<Instant>>,
    /// Open connections to peers for forwarded requests, reused one request at a time.
    peer_conns: Mutex<HashMap<NodeId, Vec<Conn>>>,
    /// Postgres addresses of peers learned with `Info` requests (members added by
    /// `--initial-cluster` are known only by their Raft address).
    pg_addrs: Mutex<HashMap<NodeId, String>>,
    /// Set to a message when the node has failed and must stop; the binary waits on it.
    fatal: watch::Receiver<Option<String>>,
    /// The writer connection of transaction blocks: each block statement holds it for its
    /// replay and itself, never across a client's round trip.
    block_writer: Arc<BlockWriter>,
    /// How peers prove the cluster secret, on connections this node opens and accepts.
    peer_auth: crate::peer_auth::PeerAuth,
    /// The last index in the log when the node started: it is ready once it has applied it.
    start_log_index: Option<u64>,
}

/// The file at `path` in chunks of at most `chunk_bytes`.
fn read_chunks(path: &Path, chunk_bytes: usize) -> io::Result<Vec<Vec<u8>>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut chunks = Vec::new();
    loop {
        let mut chunk = Vec::with_capacity(chunk_bytes);
        (&mut file)
            .take(chunk_bytes as u64)
            .read_to_end(&mut chunk)?;
        if chunk.is_empty() {
            return Ok(chunks);
        }
        chunks.push(chunk);
    }
}

fn role_of(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Learner => "learner",
        ServerState::Candidate => "candidate",
        ServerState::Shutdown => "shutdown",
    }
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl Node {
    /// Opens the data directory, starts Raft and its cluster listener, and bootstraps or
    /// joins a cluster if the directory is new: `--initial-cluster` (the smallest id
    /// initializes), `--join` (ask a member to add us), or neither (a single-node cluster).
    pub async fn start(
        config: NodeConfig,
        raft_listener: TcpListener,
    ) -> Result<Arc<Node>, StartError> {
        prepare_data_dir(&config.data_dir, config.node_id)?;
        let boot = next_boot(&config.data_dir)?;
        let other =
            |what: &'static str| move |e: io::Error| StartError::Other(format!("{what}: {e}"));
        let raft_addr = raft_listener
            .local_addr()
            .map_err(other("read raft listener address"))?
            .to_string();
        let snapshot_dir = config.data_dir.join("snapshots");
        let log = LogStore::open(&config.data_dir.join("raft")).map_err(other("open raft log"))?;
        let sm = StateMachineStore::open(
            &config.data_dir.join("state"),
            &snapshot_dir,
            config.node_id,
        )
        .map_err(other("open state machine"))?
        .with_apply_delay(config.apply_delay);
        let reads = sm.read_pool();
        let block_writer = sm.block_writer();
        let raft_config = Config {
            cluster_name: "sqlkeeper".into(),
            heartbeat_interval: HEARTBEAT_INTERVAL.as_millis() as u64,
            election_timeout_min: ELECTION_TIMEOUT_MIN.as_millis() as u64,
            election_timeout_max: ELECTION_TIMEOUT_MAX.as_millis() as u64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(
                config.snapshot_every.unwrap_or(SNAPSHOT_EVERY_ENTRIES),
            ),
            max_in_snapshot_log_to_keep: if config.snapshot_every.is_some() {
                0
            } else {
                LOG_KEPT_BEHIND_SNAPSHOT
            },
            purge_batch_size: if config.snapshot_every.is_some() {
                1
            } else {
                256
            },
            // Followers further behind than this get a snapshot instead of log entries.
            replication_lag_threshold: config.snapshot_every.unwrap_or(SNAPSHOT_EVERY_ENTRIES) + 1,
            install_snapshot_timeout: 60_000,
            enable_pre_vote: Some(true),
            max_payload_entries: MAX_PAYLOAD_ENTRIES,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::Other(format!("raft config: {e}")))?;
        let network = NetworkFactory {
            me: config.node_id,
            health: Default::default(),
            auth: config.peer_auth.clone(),
        };
        let raft = Raft::new(config.node_id, Arc::new(raft_config), network, log, sm)
            .await
            .map_err(|e| StartError::Other(format!("start raft: {e}")))?;
        let info = NodeInfo {
            raft_addr: raft_addr.clone(),
            pg_addr: config.pg_addr.clone(),
        };
        let (fatal_tx, fatal_rx) = watch::channel(None);
        tokio::spawn(watch_raft(raft.clone(), fatal_tx));
        let node = Arc::new(Node {
            id: config.node_id,
            raft: raft.clone(),
            reads,
            info: info.clone(),
            snapshot_dir,
            next_serial: AtomicU64::new(boot << BOOT_SERIAL_SHIFT),
            random: RandomState::new(),
            last_leader_contact: Mutex::new(None),
            peer_conns: Mutex::new(HashMap::new()),
            pg_addrs: Mutex::new(HashMap::new()),
            fatal: fatal_rx,
            block_writer,
            peer_auth: config.peer_auth.clone(),
            start_log_index: raft.metrics().borrow_watched().last_log_index,
        });
        tokio::spawn(serve::serve(raft_listener, node.clone()));

        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Other(format!("read raft state: {e}")))?;
        if !initialized {
            match (&config.initial_cluster, &config.join) {
                (Some(members), _) => {
                    if !members.contains_key(&config.node_id) {
                        return Err(StartError::Other(format!(
                            "--initial-cluster does not list this node (id {})",
                            config.node_id
                        )));
                    }
                    let first = members.keys().next().copied();
                    if first == Some(config.node_id) {
                        let nodes: BTreeMap<NodeId, NodeInfo> = members
                            .iter()
                            .map(|(id, addr)| {
                                let pg_addr = if *id == config.node_id {
                                    info.pg_addr.clone()
                                } else {
                                    String::new()
                                };
                                (
                                    *id,
                                    NodeInfo {
                                        raft_addr: addr.clone(),
                                        pg_addr,
                                    },
                                )
                            })
                            .collect();
                        raft.initialize(nodes)
                            .await
                            .map_err(|e| StartError::Other(format!("initialize cluster: {e}")))?;
                        tracing::info!(
                            node_id = config.node_id,
                            members = members.len(),
                            "initialized a new cluster"
                        );
                    }
                }
                (None, Some(addr)) => {
                    tokio::spawn(join_cluster(node.clone(), addr.clone()));
                }
                (None, None) if config.no_bootstrap => {
                    tracing::info!(node_id = config.node_id, "waiting to be added to a cluster");
                }
                (None, None) => {
                    raft.initialize(BTreeMap::from([(config.node_id, info.clone())]))
                        .await
                        .map_err(|e| {
                            StartError::Other(format!("bootstrap single-node cluster: {e}"))
                        })?;
                    tracing::info!(
                        node_id = config.node_id,
                        "bootstrapped a new single-node cluster"
                    );
                }
            }
        }
        if let Some(preferred) = config.preferred_leader {
            tokio::spawn(keep_preferred_leader(node.clone(), preferred));
        }
        Ok(node)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The Raft instance.
    pub(crate) fn raft(&self) -> &Raft<TypeConfig, StateMachineStore> {
        &self.raft
    }

    /// This node's addresses.
    pub fn info(&self) -> NodeInfo {
        self.info.clone()
    }

    pub(crate) fn snapshot_dir(&self) -> PathBuf {
        self.snapshot_dir.clone()
    }

    /// Records that the current leader just replicated to us.
    pub(crate) fn touch_leader(&self, _leader: NodeId) {
        *self
            .last_leader_contact
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// Time since this node last knew it was in contact with a working leader: on the
    /// leader, since a quorum last acknowledged it; elsewhere, since the leader last
    /// replicated to it. `None` if never.
    pub fn staleness(&self) -> Option<Duration> {
        let m = self.raft.metrics().borrow_watched().clone();
        if m.state == ServerState::Leader {
            // A sole voter is its own quorum: it is never out of contact with itself.
            if m.membership_config.membership().voter_ids().count() == 1 {
                return Some(Duration::ZERO);
            }
            return m.last_quorum_acked.as_ref().map(|i| i.elapsed());
        }
        self.last_leader_contact
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|i| i.elapsed())
    }

    /// Resolves when the node has failed; carries the reason.
    pub async fn failed(&self) -> String {
        let mut rx = self.fatal.clone();
        loop {
            if let Some(msg) = rx.borrow().clone() {
                return msg;
            }
            if rx.changed().await.is_err() {
                return "raft stopped".into();
            }
        }
    }

    /// Waits until this node has applied `index` (bounded by `timeout`).
    pub async fn wait_applied(&self, index: LogIndex, timeout: Duration) -> Result<(), NodeError> {
        self.raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index.0), "wait for apply")
            .await
            .map(|_| ())
            .map_err(|e| {
                NodeError::Unavailable(format!("node has not applied log index {index}: {e}"))
            })
    }

    /// The node's Raft state right now.
    pub fn status(&self) -> NodeStatus {
        let m = self.raft.metrics().borrow_watched().clone();
        NodeStatus {
            node_id: self.id,
            role: role_of(m.state),
            term: m.current_term,
            leader_id: m.current_leader,
            commit_index: m.local_committed.as_ref().map(|l| l.index),
            applied_index: m.last_applied.as_ref().map(|l| l.index),
            snapshot_index: m.snapshot.as_ref().map(|l| l.index),
            wal_bytes: self.reads.wal_bytes(),
        }
    }

    /// Hash of the applied state (see `engine::state_hash`).
    pub async fn state_hash(&self) -> Result<[u8; 32], NodeError> {
        self.read(INTERNAL_READ_TIMEOUT, |v| {
            v.state_hash().map_err(EngineError::from)
        })
        .await
    }

    /// A consistent copy of the applied state as an SQLite file's bytes, in chunks of
    /// `chunk_bytes`, and the log index it is at: what `sqlkeeper backup` receives. Written from
    /// one read transaction (as a snapshot is, so applies go on), to a file in the snapshot
    /// directory named as a snapshot being built (start-up removes it after a crash), read
    /// chunk by chunk (the copy is in memory once), then removed.
    pub async fn backup(&self, chunk_bytes: usize) -> Result<(u64, Vec<Vec<u8>>), NodeError> {
        let reads = self.reads.clone();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = self
            .snapshot_dir
            .join(format!("building-backup-{nanos}.db"));
        tokio::task::spawn_blocking(move || {
            let copied = reads.write_snapshot(&path);
            let read = copied.and_then(|info| {
                let size = std::fs::metadata(&path)
                    .map_err(|e| sqlkeeper_engine::Fatal(format!("backup copy: {e}")))?
                    .len();
                if size > BACKUP_BYTES_MAX {
                    return Ok(Err(NodeError::Exec(ExecError::new(
                        "54000",
                        format!(
                            "the state is {size} bytes; a backup through a session sends at most \
                             {BACKUP_BYTES_MAX} (copy a snapshot file from the data directory instead)"
                        ),
                    ))));
                }
                let chunks = read_chunks(&path, chunk_bytes.max(1))
                    .map_err(|e| sqlkeeper_engine::Fatal(format!("backup copy: {e}")))?;
                Ok(Ok((info.applied_index.map_or(0, |i| i.0), chunks)))
            });
            let _ = std::fs::remove_file(&path);
            match read {
                Ok(r) => r,
                Err(f) => Err(NodeError::Unavailable(format!("backup failed: {}", f.0))),
            }
        })
        .await
        .map_err(|e| NodeError::Unavailable(format!("backup task: {e}")))?
    }

    /// Asks Raft to build a snapshot now and waits for it.
    pub async fn snapshot_now(&self, timeout: Duration) -> Result<(), NodeError> {
        let applied = self.raft.metrics().borrow_watched().last_applied;
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| NodeError::Fatal(e.to_string()))?;
        if let Some(applied) = applied {
            self.raft
                .wait(Some(timeout))
                .metrics(
                    |m| {
                        m.snapshot
                            .as_ref()
                            .is_some_and(|s| s.index >= applied.index)
                    },
                    "snapshot covers the applied index",
                )
                .await
                .map_err(|e| NodeError::Unavailable(e.to_string()))?;
        }
        Ok(())
    }

    /// Stops Raft. Applied state and the log are durable already.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}
