//! How a node is configured: its command-line settings and the Raft timing and sizing constants.

use super::*;

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

/// Entries per AppendEntries request: bounds a replication frame to about
/// `MAX_PAYLOAD_ENTRIES * COMMAND_BYTES_MAX`.
pub(super) const MAX_PAYLOAD_ENTRIES: u64 = 64;

/// Largest state `Node::backup` sends through a session: the copy is held in memory while it
/// is sent. A metadata store's state is megabytes; a larger one is better copied as a
/// snapshot file from the data directory.
pub const BACKUP_BYTES_MAX: u64 = 1024 * 1024 * 1024;

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
    /// How peers prove they belong to the cluster (`--peer-secret-file`).
    pub peer_auth: crate::peer_auth::PeerAuth,
    /// Test hook: delay before each applied batch (simulates a slow follower).
    pub apply_delay: Duration,
    /// Test hook: snapshot every N entries and keep no log behind the snapshot.
    pub snapshot_every: Option<u64>,
}
