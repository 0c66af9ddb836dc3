//! sqlkeeper: a replicated metadata store that speaks PostgreSQL.
//!
//! This crate is the binary's library half: it wires a [`sqlkeeper_raft::Node`] to the
//! Postgres front end. `main.rs` parses flags and calls [`serve`]; tests call it directly with
//! port-0 listeners.
//!
//! ```text
//! sql        (pure: sqlparser; no I/O, no tokio)
//! snapshots  (sync: std::fs + rusqlite; snapshot files)
//! engine     (sync: rusqlite; the deterministic state machine)
//! raft       (async: openraft + tokio; log store, state machine adapter, node)
//! session    (async: sessions, settings, read consistency, transaction blocks)
//! pgwire-server (async: pgwire + tokio; protocol only, on sessions)
//! sqlkeeper  (this crate: CLI and wiring)
//! ```
#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sqlkeeper_raft::{Node, NodeConfig};
use tokio::net::TcpListener;

pub use sqlkeeper_raft::StartError;

/// Everything needed to start a node.
#[derive(Debug, Clone, Default)]
pub struct ServeConfig {
    /// This node's id.
    pub node_id: u64,
    /// Data directory.
    pub data_dir: PathBuf,
    /// `--initial-cluster`: every member's id and Raft address.
    pub initial_cluster: Option<BTreeMap<u64, String>>,
    /// `--join`: a member's Raft address.
    pub join: Option<String>,
    /// `--no-bootstrap`: wait to be added instead of starting a single-node cluster.
    pub no_bootstrap: bool,
    /// `--preferred-leader`.
    pub preferred_leader: Option<u64>,
    /// Test hook: delay before each applied batch.
    pub apply_delay: Duration,
    /// Test hook: snapshot every N entries instead of the default.
    pub snapshot_every: Option<u64>,
    /// `--peer-secret-file`: how peers prove they belong to the cluster.
    pub peer_auth: sqlkeeper_raft::PeerAuth,
}

/// A started node with its listeners bound.
pub struct Serving {
    /// The node.
    pub node: Arc<Node>,
    /// Where Postgres clients connect.
    pub pg_addr: SocketAddr,
    /// Where peers connect.
    pub raft_addr: SocketAddr,
}

/// Starts the node. The caller binds both listeners (port 0 in tests); the Raft listener is
/// served from here on, the Postgres one by [`run_until`].
pub async fn start(
    config: ServeConfig,
    pg_listener: &TcpListener,
    raft_listener: TcpListener,
) -> Result<Serving, StartError> {
    let addr = |l: &TcpListener| {
        l.local_addr()
            .map_err(|e| StartError::Other(format!("read listener address: {e}")))
    };
    let pg_addr = addr(pg_listener)?;
    let raft_addr = addr(&raft_listener)?;
    let node = Node::start(
        NodeConfig {
            node_id: config.node_id,
            data_dir: config.data_dir.clone(),
            raft_addr: raft_addr.to_string(),
            pg_addr: pg_addr.to_string(),
            initial_cluster: config.initial_cluster.clone(),
            join: config.join.clone(),
            no_bootstrap: config.no_bootstrap,
            preferred_leader: config.preferred_leader,
            apply_delay: config.apply_delay,
            snapshot_every: config.snapshot_every,
            peer_auth: config.peer_auth.clone(),
        },
        raft_listener,
    )
    .await?;
    Ok(Serving {
        node,
        pg_addr,
        raft_addr,
    })
}

/// Serves Postgres clients until `shutdown` resolves or the node fails. Returns the failure
/// message if the node failed.
pub async fn run_until(
    node: Arc<Node>,
    listener: TcpListener,
    security: sqlkeeper_pgwire::Security,
    shutdown: impl Future<Output = ()>,
) -> Option<String> {
    let sessions = sqlkeeper_session::Sessions::new(node.clone());
    let failed = tokio::select! {
        _ = sqlkeeper_pgwire::run(listener, sessions, security, shutdown) => None,
        msg = node.failed() => Some(msg),
    };
    node.shutdown().await;
    failed
}
