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
//! pgwire-server (async: pgwire + tokio; protocol only)
//! sqlkeeper  (this crate: CLI and wiring)
//! ```
#![deny(missing_docs)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use sqlkeeper_raft::{Node, NodeConfig};
use tokio::net::TcpListener;

pub use sqlkeeper_raft::StartError;

/// Everything needed to start a node.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// This node's id.
    pub node_id: u64,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Raft address advertised to peers.
    pub raft_addr: String,
}

/// A started node with its Postgres listener bound.
pub struct Serving {
    /// The node.
    pub node: Arc<Node>,
    /// Where Postgres clients connect.
    pub pg_addr: SocketAddr,
}

/// Starts the node and binds nothing itself: the caller passes the Postgres listener (port 0
/// in tests). Returns once the node is started; the server runs in `run_until`.
pub async fn start(config: ServeConfig, pg_listener: &TcpListener) -> Result<Serving, StartError> {
    let pg_addr = pg_listener
        .local_addr()
        .map_err(|e| StartError::Other(format!("read listener address: {e}")))?;
    let node = Node::start(NodeConfig {
        node_id: config.node_id,
        data_dir: config.data_dir.clone(),
        raft_addr: config.raft_addr.clone(),
        pg_addr: pg_addr.to_string(),
    })
    .await?;
    Ok(Serving { node, pg_addr })
}

/// Serves Postgres clients until `shutdown` resolves or the node fails. Returns the failure
/// message if the node failed.
pub async fn run_until(
    node: Arc<Node>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Option<String> {
    let failed = tokio::select! {
        _ = sqlkeeper_pgwire::run(listener, node.clone(), shutdown) => None,
        msg = node.failed() => Some(msg),
    };
    node.shutdown().await;
    failed
}
