//! openraft glue: type config, durable log store, state-machine adapter, network, node.
//!
//! The write path, from a client's statement to its reply:
//!
//! ```text
//! session  Session::run ─ sql::translate ─▶ Vec<engine::Statement>
//!       │
//!       ▼
//! raft::Node::write ── on a follower: forwarded to the leader (node/forward.rs)
//!       │ on the leader, Node::propose_now builds engine::Command::Execute
//!       │ { header, request_id, stamp, statements }; openraft::Raft::client_write
//!       ▼
//! raft::LogStore::append ── one SQLite transaction + fsync per call (group commit)
//!       │ committed (quorum; a single voter is its own quorum)
//!       ▼
//! raft::StateMachineStore::apply ── channel ─▶ "sqlkeeper-apply" thread
//!       │                                        engine::StateMachine::apply_batch
//!       │                                        (statements + applied index: one SQLite txn)
//!       ▼
//! engine::Outcome ── ApplyResponder ─▶ client_write returns ─▶ reply to the client
//! ```
//!
//! Reads never enter the log: `Node::read` runs on an `engine::ReadPool` connection.
#![deny(missing_docs)]

mod apply_thread;
#[doc(hidden)]
pub mod fuzzing;
mod log_store;
mod network;
mod node;
pub mod peer_auth;
pub mod peer_tls;
mod rpc;
mod state_machine;
mod types;

pub use log_store::{LogStore, LOG_DB_FILE};
pub use network::NetworkFactory;
pub use node::{
    restore, MemberRow, Node, NodeConfig, NodeError, NodeStatus, Proposal, RestoreConfig, Restored,
    StartError, BACKUP_BYTES_MAX, COMMAND_BYTES_MAX, WRITE_RETRY_BACKOFF,
};
pub use peer_auth::PeerAuth;
pub use peer_tls::PeerTls;
pub use rpc::AdminOp;
pub use state_machine::{SnapshotFile, StateMachineStore};
pub use types::{NodeId, NodeInfo, TypeConfig};

/// Builders for openraft's storage conformance suite and other test helpers.
#[cfg(any(test, feature = "testing"))]
pub mod testing;
