//! A sqlkeeper node: its data directory, its Raft instance, and the calls the protocol layer
//! makes (write through the log, read locally).

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
use crate::rpc::{AdminOp, Conn, RemoteError, Request, Response};
use crate::state_machine::StateMachineStore;
use crate::types::{NodeId, NodeInfo, TypeConfig};

/// Entries between two automatic snapshots. A snapshot copies the whole database; at
/// metadata-store sizes (MBs) a copy every 10,000 writes costs little and bounds both the
/// log on disk and the replay time after a restart.
pub const SNAPSHOT_EVERY_ENTRIES: u64 = 10_000;

/// Entries kept in the log behind a snapshot, so a follower that is slightly behind can catch
/// up from the log instead of receiving a whole snapshot.
pub const LOG_KEPT_BEHIND_SNAPSHOT: u64 = 1_000;

/// Raft heartbeat. Election timeouts are 4-8 heartbeats; these suit a LAN or one machine.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);
/// Lower bound of the randomized election timeout.
pub const ELECTION_TIMEOUT_MIN: Duration = Duration::from_millis(400);
/// Upper bound of the randomized election timeout.
pub const ELECTION_TIMEOUT_MAX: Duration = Duration::from_millis(800);

/// Largest encoded command (statements and parameters). A log entry must fit, with up to
/// `MAX_PAYLOAD_ENTRIES` others, in one cluster frame (`rpc::FRAME_BYTES_MAX`); a metadata
/// store's statements are far smaller.
pub const COMMAND_BYTES_MAX: usize = 512 * 1024;

/// Entries per AppendEntries request: bounds a replication frame to about
/// `MAX_PAYLOAD_ENTRIES * COMMAND_BYTES_MAX`.
const MAX_PAYLOAD_ENTRIES: u64 = 64;

/// Idle connections kept per peer for forwarded requests.
const PEER_CONNECTIONS_KEPT: usize = 8;

/// Bound on the node's own reads (the removed-node check, the state hash): they are small,
/// but a read never runs unbounded.
const INTERNAL_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Pause between retries of a write or read index while the leader changes.
pub const WRITE_RETRY_BACKOFF: Duration = Duration::from_millis(50);

/// How often the leader checks whether the preferred leader is ready to take over.
const PREFERRED_LEADER_CHECK: Duration = Duration::from_millis(500);
/// The preferred leader counts as caught up within this many entries of the leader's log.
const PREFERRED_LEADER_LAG_MAX: u64 = 8;

/// Name of the identity file in the data directory.
const IDENTITY_FILE: &str = "node.json";
/// Version of the data directory layout.
const DATA_DIR_FORMAT: u32 = 1;

/// How to start a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id. Never reused for another node.
    pub node_id: NodeId,
    /// Where everything durable lives.
    pub data_dir: PathBuf,
    /// Address for Raft traffic (advertised to peers).
    pub raft_addr: String,
    /// Address for Postgres clients (advertised to peers).
    pub pg_addr: String,
    /// `--initial-cluster`: every member of a static cluster with its Raft address. The
    /// member with the smallest id initializes it, once.
    pub initial_cluster: Option<BTreeMap<NodeId, String>>,
    /// `--join`: a member's Raft address; this node asks to be added (learner, then voter).
    pub join: Option<String>,
    /// `--no-bootstrap`: a new data directory waits to be added by a member.
    pub no_bootstrap: bool,
    /// `--preferred-leader`: leadership moves back to this node whenever it is a healthy,
    /// caught-up voter.
    pub preferred_leader: Option<NodeId>,
    /// Test hook: delay before each applied batch (simulates a slow follower).
    pub apply_delay: Duration,
    /// Test hook: snapshot every N entries and keep no log behind the snapshot.
    pub snapshot_every: Option<u64>,
}

/// Errors the protocol layer maps to SQLSTATEs (see `pgwire-server`'s `sqlstate` function).
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

/// A snapshot of the node's Raft state, for `sqlkeeper.status` and tests.
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

#[derive(Serialize, Deserialize)]
struct Identity {
    node_id: NodeId,
    format: u32,
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
}

/// A write to replicate: statements the leader stamps, or a finished transaction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Proposal {
    /// Autocommit statements: one `Command::Execute`.
    Statements(Vec<Statement>),
    /// A finished transaction block: one `Command::Transaction`.
    Transaction(TxnRecord),
}

/// One member as `sqlkeeper.nodes` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    /// Node id.
    pub node_id: NodeId,
    /// Raft address.
    pub raft_addr: String,
    /// Postgres address, if known.
    pub pg_addr: Option<String>,
    /// leader, follower or learner.
    pub role: &'static str,
    /// Whether it votes.
    pub voter: bool,
    /// Highest log index the leader knows it has (only on the leader).
    pub matched_index: Option<u64>,
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

/// Request serials are `boot << BOOT_SERIAL_SHIFT | counter`: 2^40 requests per start, 2^24
/// starts; unique across restarts whatever the clock does, as deduplication requires.
const BOOT_SERIAL_SHIFT: u32 = 40;

/// Name of the file counting the node's starts.
const BOOT_FILE: &str = "boot";

/// Counts this start in the data directory and returns its number. Write, fsync, rename,
/// fsync the directory: a crash leaves the old count or the new one, and a count is never
/// handed out twice (a crash after the rename but before use only skips a number).
fn next_boot(dir: &Path) -> Result<u64, StartError> {
    let path = dir.join(BOOT_FILE);
    let dir_err = |source: io::Error| StartError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    let previous: u64 = match std::fs::read_to_string(&path) {
        Ok(s) => s
            .trim()
            .parse()
            .map_err(|_| StartError::Other(format!("{} is not a number", path.display())))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(dir_err(e)),
    };
    let boot = previous + 1;
    let tmp = dir.join(format!("{BOOT_FILE}.partial"));
    std::fs::write(&tmp, boot.to_string()).map_err(dir_err)?;
    sqlkeeper_snapshots::fsync_file(&tmp).map_err(|e| StartError::Other(e.to_string()))?;
    std::fs::rename(&tmp, &path).map_err(dir_err)?;
    sqlkeeper_snapshots::fsync_dir(dir).map_err(|e| StartError::Other(e.to_string()))?;
    Ok(boot)
}

/// Creates the data directory (or checks an existing one) and its identity file.
fn prepare_data_dir(dir: &Path, node_id: NodeId) -> Result<(), StartError> {
    let dir_err = |source: io::Error| StartError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(dir_err)?;
    let identity_path = dir.join(IDENTITY_FILE);
    match std::fs::read(&identity_path) {
        Ok(bytes) => {
            let id: Identity = serde_json::from_slice(&bytes).map_err(|e| {
                StartError::Other(format!("cannot read {}: {e}", identity_path.display()))
            })?;
            if id.node_id != node_id {
                return Err(StartError::WrongNode {
                    path: dir.to_path_buf(),
                    found: id.node_id,
                    wanted: node_id,
                });
            }
            if id.format != DATA_DIR_FORMAT {
                return Err(StartError::Other(format!(
                    "data directory {} has layout version {}, this build reads {DATA_DIR_FORMAT}",
                    dir.display(),
                    id.format
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let bytes = serde_json::to_vec(&Identity {
                node_id,
                format: DATA_DIR_FORMAT,
            })
            .map_err(|e| StartError::Other(e.to_string()))?;
            // Write, fsync, rename, fsync dir: a crash leaves either no identity (the directory
            // is then treated as new) or a complete one.
            let tmp = dir.join(format!("{IDENTITY_FILE}.partial"));
            std::fs::write(&tmp, bytes).map_err(dir_err)?;
            sqlkeeper_snapshots::fsync_file(&tmp).map_err(|e| StartError::Other(e.to_string()))?;
            std::fs::rename(&tmp, &identity_path).map_err(dir_err)?;
            sqlkeeper_snapshots::fsync_dir(dir).map_err(|e| StartError::Other(e.to_string()))?;
            Ok(())
        }
        Err(e) => Err(dir_err(e)),
    }
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
        });
        tokio::spawn(crate::server::serve(raft_listener, node.clone()));

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

    fn stamp(&self, serial: u64) -> Stamp {
        let unix_micros = now_micros();
        Stamp {
            unix_micros,
            seed: self.random.hash_one((serial, unix_micros)),
        }
    }

    fn new_request_id(&self) -> RequestId {
        RequestId {
            origin: self.id,
            serial: self.next_serial.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Proposes a command on this node, which must be the leader (a write forwarded to it).
    pub(crate) async fn propose(
        &self,
        request_id: RequestId,
        proposal: Proposal,
    ) -> Result<(Outcome, LogIndex), RemoteError> {
        self.propose_now(request_id, proposal).await
    }

    /// Proposes a command on this node, which must be the leader. The leader fixes the time
    /// and seed of autocommit statements.
    async fn propose_now(
        &self,
        request_id: RequestId,
        proposal: Proposal,
    ) -> Result<(Outcome, LogIndex), RemoteError> {
        let command = match proposal {
            Proposal::Statements(statements) => Command::Execute {
                header: Some(EntryHeader::current()),
                request_id: Some(request_id),
                stamp: self.stamp(request_id.serial),
                statements,
            },
            Proposal::Transaction(record) => Command::Transaction {
                header: Some(EntryHeader::current()),
                request_id: Some(request_id),
                record,
            },
        };
        match self.raft.client_write(command).await {
            Ok(resp) => Ok((resp.data, LogIndex(resp.log_id.index))),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(ForwardToLeader {
                leader_id,
                leader_node,
                ..
            }))) => Err(RemoteError::NotLeader {
                leader_id,
                leader: leader_node,
            }),
            Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(f))) => Err(
                RemoteError::Unknown(format!("the entry was discarded by a leader change: {f}")),
            ),
            Err(RaftError::APIError(e)) => Err(RemoteError::Failed(e.to_string())),
            // Raft stopped: the entry may have been appended before it did.
            Err(RaftError::Fatal(f)) => Err(RemoteError::Unknown(f.to_string())),
        }
    }

    /// Calls a peer over a pooled connection.
    async fn call_peer(
        &self,
        target: NodeId,
        addr: &str,
        req: &Request,
        ttl: Duration,
    ) -> io::Result<Response> {
        let pooled = self
            .peer_conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&target)
            .and_then(|v| v.pop());
        let mut conn = match pooled {
            Some(c) => c,
            None => Conn::connect(addr, self.id, target).await?,
        };
        let resp = tokio::time::timeout(ttl, conn.call(req))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("node {target} did not answer in {ttl:?}"),
                )
            })??;
        let mut pool = self.peer_conns.lock().unwrap_or_else(|p| p.into_inner());
        let v = pool.entry(target).or_default();
        if v.len() < PEER_CONNECTIONS_KEPT {
            v.push(conn);
        }
        Ok(resp)
    }

    /// The current leader and its addresses, waiting up to an election for one to emerge.
    async fn leader(&self) -> Option<(NodeId, NodeInfo)> {
        let deadline = Instant::now() + ELECTION_TIMEOUT_MAX * 3;
        loop {
            let m = self.raft.metrics().borrow_watched().clone();
            if let Some(l) = m.current_leader {
                if let Some(info) = m.membership_config.membership().get_node(&l) {
                    return Some((l, info.clone()));
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One attempt to run a request where the leader is: `local` on this node if it leads,
    /// else `req` forwarded to the leader, whose answer `extract` takes apart. Returns the
    /// result and, when the request was forwarded, the leader it went to. A request that may
    /// have reached the leader without an answer is `RemoteError::Unknown`.
    async fn on_leader_once<T, Fut>(
        &self,
        deadline: Instant,
        local: impl FnOnce(Duration) -> Fut,
        req: impl FnOnce() -> Request,
        extract: fn(Response) -> Option<Result<T, RemoteError>>,
    ) -> (Result<T, RemoteError>, Option<(NodeId, NodeInfo)>)
    where
        Fut: std::future::Future<Output = Result<T, RemoteError>>,
    {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100));
        match self.leader().await {
            Some((l, _)) if l == self.id => (local(left).await, None),
            Some((l, info)) => {
                let r = match self.call_peer(l, &info.raft_addr, &req(), left).await {
                    Ok(resp) => {
                        let text = format!("{resp:?}");
                        extract(resp).unwrap_or_else(|| {
                            Err(RemoteError::Failed(format!("unexpected response {text}")))
                        })
                    }
                    Err(e) => Err(RemoteError::Unknown(e.to_string())),
                };
                (r, Some((l, info)))
            }
            None => (
                Err(RemoteError::NotLeader {
                    leader_id: None,
                    leader: None,
                }),
                None,
            ),
        }
    }

    /// Replicates `statements` as one log entry and returns what applying it produced, with
    /// the entry's log index. The statements run all-or-nothing. On a follower the write is
    /// forwarded to the leader, and this returns only after this node has applied the entry
    /// too, so the session's next read here sees it. A leader change is retried with the same
    /// request id, which the state machine deduplicates, so a retried write is never applied
    /// twice.
    pub async fn write(
        &self,
        statements: Vec<Statement>,
        timeout: Duration,
    ) -> Result<(Outcome, LogIndex), NodeError> {
        self.write_proposal(Proposal::Statements(statements), timeout)
            .await
    }

    /// Replicates a finished transaction block as one entry (see [`Node::write`]). The
    /// outcome is 40001 if its statements return other results at its place in the log.
    pub async fn commit_block(
        &self,
        record: TxnRecord,
        timeout: Duration,
    ) -> Result<(Outcome, LogIndex), NodeError> {
        self.write_proposal(Proposal::Transaction(record), timeout)
            .await
    }

    async fn write_proposal(
        &self,
        proposal: Proposal,
        timeout: Duration,
    ) -> Result<(Outcome, LogIndex), NodeError> {
        let statements: Vec<&Statement> = match &proposal {
            Proposal::Statements(s) => s.iter().collect(),
            Proposal::Transaction(r) => r.steps.iter().flat_map(|s| s.statements()).collect(),
        };
        let size = encoded_size_bound(&statements);
        if size > COMMAND_BYTES_MAX {
            return Err(NodeError::Exec(ExecError::new(
                "54000",
                format!("the statement and its parameters take up to {size} bytes in the log; the limit is {COMMAND_BYTES_MAX}"),
            )));
        }
        let request_id = self.new_request_id();
        let deadline = Instant::now() + timeout;
        let mut unknown = false;
        let mut last_leader = None;
        loop {
            let (result, forwarded_to) = self
                .on_leader_once(
                    deadline,
                    |left| {
                        let proposal = proposal.clone();
                        async move {
                            match tokio::time::timeout(left, self.propose_now(request_id, proposal))
                                .await
                            {
                                Ok(r) => r,
                                // Proposed, maybe committed: retried with the same id, deduplicated.
                                Err(_) => Err(RemoteError::Unknown(
                                    "the write did not commit in time".into(),
                                )),
                            }
                        }
                    },
                    || Request::ForwardWrite {
                        request_id,
                        proposal: proposal.clone(),
                    },
                    |resp| match resp {
                        Response::ForwardWrite(r) => Some(r),
                        _ => None,
                    },
                )
                .await;
            if forwarded_to.is_some() {
                last_leader = forwarded_to;
            }
            match result {
                Ok((outcome, index)) => {
                    let left = deadline
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_secs(1));
                    // The entry is committed: the write is done whatever happens next. If this
                    // node is slow to apply it, the session's token (the entry's index) still
                    // makes its next read here wait for it; never report a committed write as
                    // failed, or a client retry would apply it twice.
                    if let Err(e) = self.wait_applied(index, left).await {
                        tracing::debug!(error = %e, "write committed; local apply is behind");
                    }
                    if let Some(d) = outcome.deduplicated.filter(|d| d.rows_lost) {
                        // A retry found the write applied by an earlier attempt whose answer was
                        // lost; the state keeps a digest of the answer, not its rows.
                        let mut e = ExecError::new(
                            "40003",
                            format!(
                                "the write was applied (log entry {}) by an earlier attempt whose answer was lost, and the rows it returned were not kept",
                                d.first_index
                            ),
                        );
                        e.detail = Some("read the rows back instead of retrying".into());
                        return Err(NodeError::Exec(e));
                    }
                    return Ok((outcome, index));
                }
                // An earlier attempt may have been applied: this one's failure does not make
                // the write's outcome known.
                Err(RemoteError::Failed(m)) if unknown => {
                    tracing::debug!(error = %m, "write failed after an attempt with an unknown outcome");
                    return Err(NodeError::OutcomeUnknown {
                        leader_id: last_leader.map(|(id, _)| id),
                    });
                }
                Err(RemoteError::Failed(m)) => return Err(NodeError::Unavailable(m)),
                Err(RemoteError::Unknown(m)) => {
                    unknown = true;
                    tracing::debug!(error = %m, "write outcome unknown; retrying with the same request id");
                }
                Err(RemoteError::NotLeader { leader_id, leader }) => {
                    if let (Some(l), Some(info)) = (leader_id, leader) {
                        last_leader = Some((l, info));
                    }
                }
            }
            if Instant::now() >= deadline {
                let (leader_id, leader_pg_addr) = match last_leader {
                    Some((id, info)) => (Some(id), self.pg_addr_of(id, &info)),
                    None => (None, None),
                };
                return Err(if unknown {
                    NodeError::OutcomeUnknown { leader_id }
                } else {
                    NodeError::NotLeader {
                        leader_id,
                        leader_pg_addr,
                    }
                });
            }
            tokio::time::sleep(WRITE_RETRY_BACKOFF).await;
        }
    }

    /// A linearizable read index, on the leader: confirms leadership with a quorum.
    pub(crate) async fn leader_read_index(&self) -> Result<LogIndex, RemoteError> {
        match self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
            Ok(read) => Ok(LogIndex(read.index())),
            Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => {
                Err(RemoteError::NotLeader {
                    leader_id: f.leader_id,
                    leader: f.leader_node,
                })
            }
            Err(e) => Err(RemoteError::Failed(e.to_string())),
        }
    }

    /// Obtains a linearizable read index (from the leader, over the network on a follower)
    /// and waits until this node has applied it.
    pub async fn linearizable_barrier(&self, timeout: Duration) -> Result<LogIndex, NodeError> {
        let deadline = Instant::now() + timeout;
        loop {
            let (r, _) = self
                .on_leader_once(
                    deadline,
                    |_| self.leader_read_index(),
                    || Request::ReadIndex,
                    |resp| match resp {
                        Response::ReadIndex(r) => Some(r),
                        _ => None,
                    },
                )
                .await;
            match r {
                Ok(index) => {
                    let left = deadline
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(100));
                    self.wait_applied(index, left).await?;
                    return Ok(index);
                }
                Err(e) if Instant::now() >= deadline => {
                    return Err(NodeError::Unavailable(format!(
                        "no linearizable read index: {e}"
                    )));
                }
                Err(_) => tokio::time::sleep(WRITE_RETRY_BACKOFF).await,
            }
        }
    }

    /// Runs a membership or leadership operation on the leader (forwarding it there).
    pub async fn admin(&self, op: AdminOp, timeout: Duration) -> Result<String, NodeError> {
        let deadline = Instant::now() + timeout;
        loop {
            let (r, _) = self
                .on_leader_once(
                    deadline,
                    |left| {
                        let op = op.clone();
                        async move {
                            match tokio::time::timeout(left, self.admin_on_leader(op)).await {
                                Ok(r) => r,
                                Err(_) => Err(RemoteError::Failed(format!(
                                    "the operation did not finish within {timeout:?} (is the new node reachable?)"
                                ))),
                            }
                        }
                    },
                    || Request::Admin(op.clone()),
                    |resp| match resp {
                        Response::Admin(r) => Some(r),
                        _ => None,
                    },
                )
                .await;
            match r {
                Ok(msg) => return Ok(msg),
                Err(RemoteError::Failed(m)) => {
                    return Err(NodeError::Exec(ExecError::new("55000", m)))
                }
                Err(e) if Instant::now() >= deadline => {
                    return Err(NodeError::Unavailable(format!("{e}")));
                }
                Err(_) => tokio::time::sleep(WRITE_RETRY_BACKOFF).await,
            }
        }
    }

    /// Runs an admin operation; this node must be the leader.
    pub(crate) async fn admin_on_leader(&self, op: AdminOp) -> Result<String, RemoteError> {
        let not_leader = |e: &RaftError<TypeConfig, ClientWriteError<TypeConfig>>| {
            e.forward_to_leader().map(|f| RemoteError::NotLeader {
                leader_id: f.leader_id,
                leader: f.leader_node.clone(),
            })
        };
        let m = self.raft.metrics().borrow_watched().clone();
        if m.state != ServerState::Leader {
            return Err(RemoteError::NotLeader {
                leader_id: m.current_leader,
                leader: None,
            });
        }
        let membership = m.membership_config.membership().clone();
        if let AdminOp::AddLearner { node_id, info } | AdminOp::AddNode { node_id, info } = &op {
            if let Some(existing) = membership.get_node(node_id) {
                if existing != info {
                    return Err(RemoteError::Failed(format!(
                        "node id {node_id} is already a member with other addresses"
                    )));
                }
                // A retried join finds itself added; finish the promotion if it was cut short.
                let voter = membership.voter_ids().any(|v| v == *node_id);
                if matches!(op, AdminOp::AddNode { .. }) && !voter {
                    self.raft
                        .change_membership(
                            ChangeMembers::AddVoterIds(BTreeSet::from([*node_id])),
                            false,
                        )
                        .await
                        .map_err(|e| {
                            not_leader(&e).unwrap_or_else(|| RemoteError::Failed(e.to_string()))
                        })?;
                    return Ok(format!("node {node_id} promoted to voter"));
                }
                return Ok(format!("node {node_id} is already a member"));
            }
        }
        match op {
            AdminOp::AddLearner { node_id, info } => {
                self.check_id_unused(node_id).await?;
                self.raft
                    .add_learner(node_id, info, false)
                    .await
                    .map_err(|e| {
                        not_leader(&e).unwrap_or_else(|| RemoteError::Failed(e.to_string()))
                    })?;
                Ok(format!("node {node_id} added as a learner"))
            }
            AdminOp::AddNode { node_id, info } => {
                self.check_id_unused(node_id).await?;
                self.raft
                    .add_learner(node_id, info, true)
                    .await
                    .map_err(|e| {
                        not_leader(&e).unwrap_or_else(|| RemoteError::Failed(e.to_string()))
                    })?;
                self.raft
                    .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([node_id])), false)
                    .await
                    .map_err(|e| {
                        not_leader(&e).unwrap_or_else(|| RemoteError::Failed(e.to_string()))
                    })?;
                Ok(format!("node {node_id} added as a voter"))
            }
            AdminOp::RemoveNode { node_id } => {
                if membership.get_node(&node_id).is_none() {
                    return Err(RemoteError::Failed(format!(
                        "node {node_id} is not a member"
                    )));
                }
                // Record the id first: it must never be accepted again, even if the removal
                // is interrupted and retried.
                let stmt = Statement {
                    sql: format!(
                        "INSERT OR IGNORE INTO {REMOVED_NODES_TABLE} (node_id) VALUES (?1)"
                    ),
                    params: vec![Value::Integer(node_id as i64)],
                };
                self.propose(self.new_request_id(), Proposal::Statements(vec![stmt]))
                    .await?;
                let change = if membership.voter_ids().any(|v| v == node_id) {
                    ChangeMembers::RemoveVoters(BTreeSet::from([node_id]))
                } else {
                    ChangeMembers::RemoveNodes(BTreeSet::from([node_id]))
                };
                self.raft
                    .change_membership(change, false)
                    .await
                    .map_err(|e| {
                        not_leader(&e).unwrap_or_else(|| RemoteError::Failed(e.to_string()))
                    })?;
                Ok(format!("node {node_id} removed"))
            }
            AdminOp::TransferLeader { node_id } => {
                if !membership.voter_ids().any(|v| v == node_id) {
                    return Err(RemoteError::Failed(format!(
                        "node {node_id} is not a voter"
                    )));
                }
                if node_id == self.id {
                    return Ok(format!("node {node_id} is already the leader"));
                }
                self.raft
                    .trigger()
                    .transfer_leader(node_id)
                    .await
                    .map_err(|e| RemoteError::Failed(e.to_string()))?;
                self.raft
                    .wait(Some(ELECTION_TIMEOUT_MAX * 10))
                    .current_leader(node_id, "leadership transfer")
                    .await
                    .map_err(|e| {
                        RemoteError::Failed(format!(
                            "leadership did not move to node {node_id}: {e}"
                        ))
                    })?;
                Ok(format!("node {node_id} is now the leader"))
            }
        }
    }

    async fn check_id_unused(&self, node_id: NodeId) -> Result<(), RemoteError> {
        // A leader elected moments ago may not have applied a removal yet: read at the
        // commit index.
        self.leader_read_index().await?;
        let removed = self
            .read(INTERNAL_READ_TIMEOUT, move |v| {
                v.query(&Statement {
                    sql: format!("SELECT 1 FROM {REMOVED_NODES_TABLE} WHERE node_id = ?1"),
                    params: vec![Value::Integer(node_id as i64)],
                })
                .map_err(EngineError::from)
            })
            .await
            .map_err(|e| RemoteError::Failed(e.to_string()))?;
        if !removed.rows.is_empty() {
            return Err(RemoteError::Failed(format!(
                "node id {node_id} belonged to a removed node and is never reused; choose a new id"
            )));
        }
        Ok(())
    }

    /// The Postgres address of a member, if known.
    fn pg_addr_of(&self, id: NodeId, info: &NodeInfo) -> Option<String> {
        if !info.pg_addr.is_empty() {
            return Some(info.pg_addr.clone());
        }
        self.pg_addrs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// Every member as the leader sees it (matched index only on the leader). Postgres
    /// addresses not in the membership are asked from the members themselves.
    pub async fn members(&self) -> Vec<MemberRow> {
        let m = self.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let mut rows = Vec::new();
        for (id, info) in membership.nodes() {
            let mut pg_addr = if *id == self.id {
                Some(self.info.pg_addr.clone())
            } else {
                self.pg_addr_of(*id, info)
            };
            if pg_addr.is_none() {
                if let Ok(Response::Info(i)) = self
                    .call_peer(
                        *id,
                        &info.raft_addr,
                        &Request::Info,
                        Duration::from_millis(300),
                    )
                    .await
                {
                    self.pg_addrs
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(*id, i.pg_addr.clone());
                    pg_addr = Some(i.pg_addr);
                }
            }
            let voter = voters.contains(id);
            let role = if m.current_leader == Some(*id) {
                "leader"
            } else if voter {
                "follower"
            } else {
                "learner"
            };
            let matched_index = if m.state == ServerState::Leader {
                if *id == self.id {
                    m.last_log_index
                } else {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(id).cloned().flatten())
                        .map(|l| l.index)
                }
            } else {
                None
            };
            rows.push(MemberRow {
                node_id: *id,
                raft_addr: info.raft_addr.clone(),
                pg_addr,
                role,
                voter,
                matched_index,
            });
        }
        rows
    }

    /// Time and seed for a transaction block, fixed when it begins.
    pub fn new_stamp(&self) -> Stamp {
        self.stamp(self.next_serial.fetch_add(1, Ordering::Relaxed))
    }

    /// Opens a read transaction that stays open across statements (the read view of a
    /// `REPEATABLE READ` or `SERIALIZABLE` block), reading with the block's `stamp`.
    pub async fn hold_read(&self, stamp: Stamp) -> Result<HeldRead, NodeError> {
        let reads = self.reads.clone();
        tokio::task::spawn_blocking(move || reads.hold(stamp))
            .await
            .map_err(|e| NodeError::Fatal(format!("read task: {e}")))?
            .map_err(|e| NodeError::Fatal(e.0))
    }

    /// Runs `f` on a held read transaction (see [`Node::read`] for cancellation and the
    /// timeout).
    pub async fn read_held<T, F>(
        &self,
        held: Arc<HeldRead>,
        timeout: Duration,
        f: F,
    ) -> Result<T, NodeError>
    where
        T: Send + 'static,
        F: FnOnce(&ReadView<'_>) -> Result<T, EngineError> + Send + 'static,
    {
        interruptible(timeout, move |on_start, on_end| {
            held.read(on_start, move |v| {
                let r = f(v);
                on_end();
                r
            })
        })
        .await
    }

    /// Does `work` for a transaction block on this node's writer connection for blocks, on
    /// the latest applied state (see `sqlkeeper_engine::BlockWriter::run`). Returns what it
    /// did and the applied index it ran at. If the returned future is dropped, or `timeout`
    /// passes first (57014), the statement is cancelled: it is not recorded, and the block is
    /// as it was before it.
    ///
    /// A statement that needs sequence values when none are reserved for this node gets them
    /// here (one ordinary entry calling `_sqlkeeper_reserve`) and runs again.
    pub async fn run_block(
        &self,
        block: Arc<Mutex<Block>>,
        work: Work,
        timeout: Duration,
    ) -> Result<(Done, Option<LogIndex>), NodeError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut reservations = 0;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self
                .run_block_once(block.clone(), work.clone(), left)
                .await?
            {
                Err(BlockError::NeedValues(sequence)) if reservations < RESERVATIONS_MAX => {
                    // Four times as many each time: a statement that needs more values than one
                    // reservation gives gets them in a few rounds.
                    let count = (sqlkeeper_engine::RESERVED_VALUES << (2 * reservations))
                        .min(sqlkeeper_engine::RESERVED_VALUES_MAX);
                    reservations += 1;
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    self.reserve(&block, sequence, count, left).await?;
                }
                r => return r.map_err(spec_error),
            }
        }
    }

    /// Reserves `count` values of `sequence` for this node's blocks, through the log. A
    /// sequence that does not exist outside the block (it created it) is marked as the
    /// block's own instead.
    async fn reserve(
        &self,
        block: &Arc<Mutex<Block>>,
        sequence: String,
        count: i64,
        timeout: Duration,
    ) -> Result<(), NodeError> {
        let stmt = Statement {
            sql: format!("SELECT {}(?1, ?2)", sqlkeeper_engine::RESERVE_FUNCTION),
            params: vec![Value::Text(sequence.clone()), Value::Integer(count)],
        };
        let (outcome, _) = self.write(vec![stmt], timeout).await?;
        if let Some((_, e)) = outcome.error {
            if e.sqlstate == "42P01" {
                block
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .mark_local(sequence);
                return Ok(());
            }
            return Err(NodeError::Exec(e));
        }
        match outcome
            .results
            .first()
            .and_then(|r| r.rows.first())
            .and_then(|r| r.first())
        {
            Some(Value::Text(reserved)) => self
                .block_writer
                .add_reserved(&sequence, reserved)
                .map_err(|f| NodeError::Fatal(f.0)),
            other => Err(NodeError::Fatal(format!(
                "reserving values of {sequence}: unexpected answer {other:?}"
            ))),
        }
    }

    /// One try of [`Node::run_block`].
    async fn run_block_once(
        &self,
        block: Arc<Mutex<Block>>,
        work: Work,
        timeout: Duration,
    ) -> Result<Result<(Done, Option<LogIndex>), BlockError>, NodeError> {
        let ticket = Ticket::default();
        let mut guard = CancelOnDrop {
            block_writer: self.block_writer.clone(),
            ticket: ticket.clone(),
            armed: true,
        };
        let block_writer = self.block_writer.clone();
        let task = tokio::task::spawn_blocking(move || {
            let mut block = block.lock().unwrap_or_else(|p| p.into_inner());
            block_writer.run(&mut block, work, &ticket)
        });
        let r = match tokio::time::timeout(timeout, task).await {
            Ok(r) => r,
            // `guard` is still armed: dropping it cancels the statement.
            Err(_) => return Err(statement_timeout()),
        };
        guard.armed = false;
        r.map_err(|e| NodeError::Fatal(format!("block task: {e}")))
    }

    /// Forgets what the writer connection holds for an ended block.
    pub async fn forget_block(&self, block: Arc<Mutex<Block>>) {
        let block_writer = self.block_writer.clone();
        let _ = tokio::task::spawn_blocking(move || {
            block_writer.forget(&block.lock().unwrap_or_else(|p| p.into_inner()))
        })
        .await;
    }

    /// Runs `f` in one read transaction on a local read-only connection. If the returned
    /// future is dropped (the client cancelled), or `timeout` passes first (57014), the running
    /// SQLite statement is interrupted.
    pub async fn read<T, F>(&self, timeout: Duration, f: F) -> Result<T, NodeError>
    where
        T: Send + 'static,
        F: FnOnce(&ReadView<'_>) -> Result<T, EngineError> + Send + 'static,
    {
        self.read_at(sqlkeeper_engine::local_stamp(), timeout, f)
            .await
    }

    /// [`Node::read`] with the time and randomness of `stamp` (a transaction block's).
    pub async fn read_at<T, F>(&self, stamp: Stamp, timeout: Duration, f: F) -> Result<T, NodeError>
    where
        T: Send + 'static,
        F: FnOnce(&ReadView<'_>) -> Result<T, EngineError> + Send + 'static,
    {
        let reads = self.reads.clone();
        interruptible(timeout, move |on_start, on_end| {
            reads.read_at(stamp, on_start, move |v| {
                let r = f(v);
                on_end();
                r
            })
        })
        .await
    }

    /// Runs the probes of a write (`sqlkeeper_sql::Translated::probe`) on a local read
    /// connection with the entry's step budget: 54000 if the write's reading alone would go
    /// over it, so a hopeless write is refused before it reaches the log.
    pub async fn probe(&self, probes: Vec<Statement>) -> Result<(), NodeError> {
        if probes.is_empty() {
            return Ok(());
        }
        let steps = EntryHeader::current().vm_steps_max;
        self.read(INTERNAL_READ_TIMEOUT, move |v| {
            v.probe(&probes, steps).map_err(EngineError::from)
        })
        .await
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

/// JSON length of a string: quotes, plus one extra byte per escaped `"` or `\`, five per
/// control character (`\u00XX`); other characters are written as UTF-8.
fn json_str_len(s: &str) -> usize {
    2 + s.len()
        + s.bytes()
            .map(|b| match b {
                b'"' | b'\\' => 1,
                0..=0x1f => 5,
                _ => 0,
            })
            .sum::<usize>()
}

/// An upper bound of the JSON size of `statements` in a log entry, computed without encoding
/// them (this runs for every write).
fn encoded_size_bound(statements: &[&Statement]) -> usize {
    statements
        .iter()
        .map(|s| {
            64 + json_str_len(&s.sql)
                + s.params
                    .iter()
                    .map(|p| match p {
                        Value::Null => 8,
                        Value::Integer(_) | Value::Real(_) => 40,
                        Value::Text(t) => 16 + json_str_len(t),
                        // a byte is a number of at most 3 digits and a comma
                        Value::Blob(b) => 16 + 4 * b.len(),
                    })
                    .sum::<usize>()
        })
        .sum()
}

fn spec_error(e: BlockError) -> NodeError {
    match e {
        BlockError::Conflict(why) => NodeError::Exec(ExecError::new(
            "40001",
            format!("could not serialize access: {why}"),
        )),
        BlockError::Cancelled => NodeError::Exec(ExecError::new(
            "57014",
            "canceling statement due to user request",
        )),
        // The statement ended the transaction (its budget ran out, ...): the block can only
        // be rolled back, and the client gets the statement's error.
        BlockError::Aborted(e) => NodeError::Exec(e),
        BlockError::NeedValues(sequence) => NodeError::Exec(ExecError::new(
            "40001",
            format!(
                "could not serialize access: the values of sequence \"{sequence}\" reserved for this node ran out {RESERVATIONS_MAX} times while the statement ran (other transactions on this node took them, or it needs more than {} values)",
                sqlkeeper_engine::RESERVED_VALUES_MAX
            ),
        )),
        BlockError::Fatal(f) => NodeError::Fatal(f.0),
    }
}

/// How many times one block statement reserves sequence values before it gives up (40001):
/// more than once only when other blocks on the node took the values first.
const RESERVATIONS_MAX: u32 = 8;

/// The callbacks `interruptible` hands to a read: one receives the connection's interrupt
/// handle when the read starts, the other forgets it when the read's work is done (before the
/// connection can go back to the pool and serve another session).
type OnStart = Box<dyn FnOnce(rusqlite::InterruptHandle) + Send>;
type OnEnd = Box<dyn FnOnce() + Send>;

/// Runs a read in a blocking task; if the returned future is dropped, or `timeout` passes
/// first, the running statement is interrupted.
async fn interruptible<T, R>(timeout: Duration, run: R) -> Result<T, NodeError>
where
    T: Send + 'static,
    R: FnOnce(OnStart, OnEnd) -> Result<T, EngineError> + Send + 'static,
{
    let handle: Arc<Mutex<Option<rusqlite::InterruptHandle>>> = Arc::new(Mutex::new(None));
    let mut guard = InterruptOnDrop {
        handle: handle.clone(),
        armed: true,
    };
    let ended = handle.clone();
    let on_start: OnStart = Box::new(move |h| {
        *handle.lock().unwrap_or_else(|p| p.into_inner()) = Some(h);
    });
    let on_end: OnEnd = Box::new(move || {
        ended.lock().unwrap_or_else(|p| p.into_inner()).take();
    });
    let task = tokio::task::spawn_blocking(move || run(on_start, on_end));
    let r = match tokio::time::timeout(timeout, task).await {
        Ok(r) => r,
        // `guard` is still armed: dropping it interrupts the statement, and the task ends
        // soon after, returning its connection to the pool.
        Err(_) => return Err(statement_timeout()),
    };
    guard.armed = false;
    match r {
        Ok(r) => r.map_err(NodeError::from),
        Err(e) => Err(NodeError::Fatal(format!("read task: {e}"))),
    }
}

/// Cancels the block statement of a future that was dropped.
struct CancelOnDrop {
    block_writer: Arc<BlockWriter>,
    ticket: Ticket,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.block_writer.cancel(&self.ticket);
        }
    }
}

/// Interrupts the SQLite statement of a read whose future was dropped.
struct InterruptOnDrop {
    handle: Arc<Mutex<Option<rusqlite::InterruptHandle>>>,
    /// Cleared once the read finished, so a completed read is not interrupted.
    armed: bool,
}

impl Drop for InterruptOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(h) = self
            .handle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            h.interrupt();
        }
    }
}

/// Asks the member at `addr` to add this node to its cluster (learner, then voter), retrying
/// until it succeeds: the member may not be up yet.
async fn join_cluster(node: Arc<Node>, addr: String) {
    let op = AdminOp::AddNode {
        node_id: node.id,
        info: node.info.clone(),
    };
    loop {
        // The member at `addr` forwards the request to its leader. Its id is not known yet:
        // the hello names id 0, which every node accepts only for `Info`-like joins.
        let r = async {
            let mut conn = Conn::connect_any(&addr, node.id).await?;
            conn.call(&Request::Admin(op.clone())).await
        }
        .await;
        match r {
            Ok(Response::Admin(Ok(msg))) => {
                tracing::info!(node_id = node.id, via = %addr, "{msg}");
                return;
            }
            Ok(Response::Admin(Err(e))) => {
                tracing::warn!(via = %addr, error = %e, "join refused; retrying")
            }
            Ok(other) => {
                tracing::warn!(via = %addr, response = ?other, "unexpected join response; retrying")
            }
            Err(e) => {
                tracing::debug!(via = %addr, error = %e, "cannot reach the cluster yet; retrying")
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// On the leader: hands leadership to `preferred` whenever it is a voter that has caught up.
async fn keep_preferred_leader(node: Arc<Node>, preferred: NodeId) {
    loop {
        tokio::time::sleep(PREFERRED_LEADER_CHECK).await;
        let m = node.raft.metrics().borrow_watched().clone();
        if m.running_state.is_err() || m.state == ServerState::Shutdown {
            return;
        }
        if m.state != ServerState::Leader || preferred == node.id {
            continue;
        }
        let voter = m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == preferred);
        let matched = m
            .replication
            .as_ref()
            .and_then(|r| r.get(&preferred).cloned().flatten())
            .map(|l| l.index);
        let caught_up = matches!((matched, m.last_log_index), (Some(a), Some(b)) if a + PREFERRED_LEADER_LAG_MAX >= b);
        // Caught up but silent is a crashed node: hand leadership only to one that answers.
        let answering = m
            .heartbeat
            .as_ref()
            .and_then(|h| h.get(&preferred).cloned().flatten())
            .is_some_and(|t| t.elapsed() < HEARTBEAT_INTERVAL * 4);
        let caught_up = caught_up && answering;
        if voter && caught_up {
            tracing::info!(
                node_id = node.id,
                to = preferred,
                "moving leadership back to the preferred leader"
            );
            let _ = node.raft.trigger().transfer_leader(preferred).await;
            // Give the transfer an election's time before checking again.
            tokio::time::sleep(ELECTION_TIMEOUT_MAX * 2).await;
        }
    }
}

/// Logs leadership changes and reports a fatal Raft error.
async fn watch_raft(
    raft: Raft<TypeConfig, StateMachineStore>,
    fatal: watch::Sender<Option<String>>,
) {
    let mut rx = raft.metrics();
    let mut last: Option<(Option<NodeId>, ServerState, u64)> = None;
    loop {
        let m = rx.borrow_watched().clone();
        if let Err(e) = &m.running_state {
            if matches!(e, openraft::errors::Fatal::Stopped) {
                // A clean shutdown (Node::shutdown), not a failure.
                tracing::debug!(node_id = m.id, "raft stopped");
            } else {
                tracing::error!(node_id = m.id, error = %e, "raft stopped with a fatal error");
            }
            let _ = fatal.send(Some(e.to_string()));
            return;
        }
        let now = (m.current_leader, m.state, m.current_term);
        if last.as_ref() != Some(&now) {
            if last.as_ref().map(|l| l.0) != Some(now.0)
                || last.as_ref().map(|l| l.1) != Some(now.1)
            {
                tracing::info!(node_id = m.id, term = m.current_term, leader = ?m.current_leader, role = role_of(m.state), "raft role changed");
            }
            last = Some(now);
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// What a statement that ran out of `statement_timeout` answers (PostgreSQL's words).
fn statement_timeout() -> NodeError {
    NodeError::Exec(ExecError::new(
        "57014",
        "canceling statement due to statement timeout",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_bound_is_never_below_the_real_encoding() {
        let stmts = vec![Statement {
            sql: "INSERT INTO t VALUES (?1, ?2, ?3) -- \"quoted\" \\ \n\t é".into(),
            params: vec![
                Value::Text("a\u{1}b\"c\\".into()),
                Value::Blob(vec![255, 0, 17]),
                Value::Integer(i64::MIN),
            ],
        }];
        let real = serde_json::to_vec(&stmts).unwrap().len();
        assert!(
            encoded_size_bound(&stmts.iter().collect::<Vec<_>>()) >= real,
            "{} < {real}",
            encoded_size_bound(&stmts.iter().collect::<Vec<_>>())
        );
        assert_eq!(
            json_str_len("a\"\\\u{1}é"),
            serde_json::to_string("a\"\\\u{1}é").unwrap().len()
        );
    }
}
