//! A sqlkeeper node: its data directory, its Raft instance, and the calls the protocol layer
//! makes (write through the log, read locally).

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, ForwardToLeader, RaftError};
use openraft::{Config, Raft, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use sqlkeeper_engine::{
    Command, EngineError, ExecError, LogIndex, Outcome, ReadPool, ReadView, RequestId, Stamp,
    Statement,
};
use tokio::sync::watch;

use crate::log_store::LogStore;
use crate::network::NetworkFactory;
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
}

/// Errors the protocol layer maps to SQLSTATEs (see `pgwire-server`'s `sqlstate` function).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// This node is not the leader and cannot accept the write.
    #[error("this node is not the leader{}", match .leader_id { Some(l) => format!("; the leader is node {l}"), None => String::new() })]
    NotLeader {
        /// The current leader, if known.
        leader_id: Option<NodeId>,
        /// Its Postgres address, if known.
        leader_pg_addr: Option<String>,
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
    /// Request ids: this node's id plus a counter that starts at the boot time in µs, so ids
    /// do not repeat across restarts.
    next_serial: AtomicU64,
    random: RandomState,
    /// Set to a message when the node has failed and must stop; the binary waits on it.
    fatal: watch::Receiver<Option<String>>,
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
    /// Opens the data directory, starts Raft, and bootstraps a single-node cluster if the
    /// directory is new.
    pub async fn start(config: NodeConfig) -> Result<Arc<Node>, StartError> {
        prepare_data_dir(&config.data_dir, config.node_id)?;
        let other =
            |what: &'static str| move |e: io::Error| StartError::Other(format!("{what}: {e}"));
        let log = LogStore::open(&config.data_dir.join("raft")).map_err(other("open raft log"))?;
        let sm = StateMachineStore::open(
            &config.data_dir.join("state"),
            &config.data_dir.join("snapshots"),
            config.node_id,
        )
        .map_err(other("open state machine"))?;
        let reads = sm.read_pool();
        let raft_config = Config {
            cluster_name: "sqlkeeper".into(),
            heartbeat_interval: HEARTBEAT_INTERVAL.as_millis() as u64,
            election_timeout_min: ELECTION_TIMEOUT_MIN.as_millis() as u64,
            election_timeout_max: ELECTION_TIMEOUT_MAX.as_millis() as u64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY_ENTRIES),
            max_in_snapshot_log_to_keep: LOG_KEPT_BEHIND_SNAPSHOT,
            purge_batch_size: 256,
            install_snapshot_timeout: 60_000,
            enable_pre_vote: Some(true),
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::Other(format!("raft config: {e}")))?;
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            NetworkFactory,
            log,
            sm,
        )
        .await
        .map_err(|e| StartError::Other(format!("start raft: {e}")))?;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Other(format!("read raft state: {e}")))?;
        if !initialized {
            let me = NodeInfo {
                raft_addr: config.raft_addr.clone(),
                pg_addr: config.pg_addr.clone(),
            };
            raft.initialize(BTreeMap::from([(config.node_id, me)]))
                .await
                .map_err(|e| StartError::Other(format!("bootstrap single-node cluster: {e}")))?;
            tracing::info!(
                node_id = config.node_id,
                "bootstrapped a new single-node cluster"
            );
        }
        let (fatal_tx, fatal_rx) = watch::channel(None);
        tokio::spawn(watch_raft(raft.clone(), fatal_tx));
        Ok(Arc::new(Node {
            id: config.node_id,
            raft,
            reads,
            next_serial: AtomicU64::new(now_micros() as u64),
            random: RandomState::new(),
            fatal: fatal_rx,
        }))
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
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

    /// Replicates `statements` as one log entry and returns what applying it produced, with
    /// the entry's log index. The statements run all-or-nothing.
    pub async fn write(
        &self,
        statements: Vec<Statement>,
    ) -> Result<(Outcome, LogIndex), NodeError> {
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let command = Command::Execute {
            request_id: Some(RequestId {
                origin: self.id,
                serial,
            }),
            stamp: self.stamp(serial),
            statements,
        };
        match self.raft.client_write(command).await {
            Ok(resp) => Ok((resp.data, LogIndex(resp.log_id.index))),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(ForwardToLeader {
                leader_id,
                leader_node,
                ..
            }))) => Err(NodeError::NotLeader {
                leader_id,
                leader_pg_addr: leader_node.map(|n| n.pg_addr),
            }),
            Err(RaftError::APIError(e)) => Err(NodeError::Unavailable(e.to_string())),
            Err(RaftError::Fatal(f)) => Err(NodeError::Fatal(f.to_string())),
        }
    }

    /// Runs `f` in one read transaction on a local read-only connection. If the returned
    /// future is dropped (the client cancelled), the running SQLite statement is interrupted.
    pub async fn read<T, F>(&self, f: F) -> Result<T, NodeError>
    where
        T: Send + 'static,
        F: FnOnce(&ReadView<'_>) -> Result<T, EngineError> + Send + 'static,
    {
        let reads = self.reads.clone();
        let handle: Arc<Mutex<Option<rusqlite::InterruptHandle>>> = Arc::new(Mutex::new(None));
        let mut guard = InterruptOnDrop {
            handle: handle.clone(),
            armed: true,
        };
        let task = tokio::task::spawn_blocking(move || {
            reads.read(
                |h| {
                    *handle.lock().unwrap_or_else(|p| p.into_inner()) = Some(h);
                },
                f,
            )
        });
        let r = task.await;
        guard.armed = false;
        match r {
            Ok(r) => r.map_err(NodeError::from),
            Err(e) => Err(NodeError::Fatal(format!("read task: {e}"))),
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
        }
    }

    /// Hash of the applied state (see `engine::state_hash`).
    pub async fn state_hash(&self) -> Result<[u8; 32], NodeError> {
        self.read(|v| v.state_hash().map_err(EngineError::from))
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
            tracing::error!(node_id = m.id, error = %e, "raft stopped with a fatal error");
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
