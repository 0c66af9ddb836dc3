//! The openraft type configuration.

use serde::{Deserialize, Serialize};

/// Identifies a node. Never reused (see `docs/architecture.md`).
pub type NodeId = u64;

/// What the cluster knows about a member, replicated inside the Raft membership.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Address other nodes use for Raft traffic.
    pub raft_addr: String,
    /// Address clients use for Postgres connections.
    pub pg_addr: String,
}

impl std::fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "raft={} pg={}", self.raft_addr, self.pg_addr)
    }
}

openraft::declare_raft_types!(
    /// sqlkeeper's Raft types: log entries carry `engine::Command`s, applying one returns an
    /// `engine::Outcome`.
    pub TypeConfig:
        D = sqlkeeper_engine::Command,
        R = sqlkeeper_engine::Outcome,
        NodeId = NodeId,
        Node = NodeInfo,
);
