//! The Postgres wire protocol front end.
//!
//! This crate only speaks the protocol: it turns messages into calls on a [`Node`] (write
//! through the log, read locally) and results back into messages. Parsing and translating SQL
//! is `sqlkeeper_sql`'s job; replicating it is the node's.
#![deny(missing_docs)]

mod backend;
mod encode;
mod errors;
mod session;
mod startup;
mod txn;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::{ConnectionManager, PgWireServerHandlers};
use sqlkeeper_raft::Node;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::Instrument;

pub use session::SERVER_VERSION;

/// Client connections served at once. Each holds a session and, while a statement runs, a
/// SQLite read connection or a place in the write queue; 256 is far above what a metadata
/// store's clients need and bounds memory under a connection storm. Further connections wait
/// in the listen backlog.
pub const CONNECTIONS_MAX: usize = 256;

struct Handlers {
    backend: Arc<backend::Backend>,
    startup: Arc<startup::Startup>,
    cancel: Arc<DefaultCancelHandler>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.backend.clone()
    }
    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.backend.clone()
    }
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }
    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }
}

/// Serves Postgres clients from `listener` until `shutdown` resolves.
pub async fn run(listener: TcpListener, node: Arc<Node>, shutdown: impl Future<Output = ()>) {
    let manager = Arc::new(ConnectionManager::new());
    let startup = Arc::new(startup::Startup::new(manager.clone()));
    let cancel = Arc::new(DefaultCancelHandler::new(manager));
    let limit = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let next_conn_id = AtomicU64::new(1);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => return,
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (socket, peer) = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Accept errors (EMFILE, ECONNABORTED) are transient: back off and go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let conn_id = next_conn_id.fetch_add(1, Ordering::Relaxed);
        let handlers = Arc::new(Handlers {
            backend: Arc::new(backend::Backend::new(node.clone())),
            startup: startup.clone(),
            cancel: cancel.clone(),
        });
        let span = tracing::debug_span!("conn", conn_id, %peer);
        tokio::spawn(
            async move {
                tracing::debug!("client connected");
                if let Err(e) = pgwire::tokio::process_socket(socket, None, handlers).await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                tracing::debug!("client disconnected");
                drop(permit);
            }
            .instrument(span),
        );
    }
}
