//! The Postgres wire protocol front end.
//!
//! This crate only speaks the protocol: it turns messages into calls on the connection's
//! session (`sqlkeeper_session`: settings, read consistency, transaction blocks, where a
//! statement runs) and what the session produced back into messages. It knows no type of the
//! engine or of the node.
//!
//! pgwire decodes and dispatches messages, but the connection loop is ours (`conn.rs`): every
//! client byte passes the frame guard (`frame.rs`) before pgwire sees it, so that no message
//! can stop, stall or crash the node. The limits and timeouts are constants with their reasons
//! next to them, collected in [`ServerConfig`].
#![deny(missing_docs)]
// The protocol handlers await the session's futures, which nest deeply (a COPY that runs as a
// transaction of its own awaits a whole transaction block): the compiler's default depth of 128
// for computing their layout is not enough.
#![recursion_limit = "256"]

mod auth;
mod backend;
mod conn;
mod copy;
mod encode;
mod errors;
mod frame;
mod startup;
mod tls;

#[doc(hidden)]
pub mod fuzzing;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::{ConnectionManager, PgWireServerHandlers};
use sqlkeeper_session::Sessions;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::Instrument;

pub use auth::ClientAuth;
pub use conn::{
    IDLE_SESSION_TIMEOUT, KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_RETRIES,
    PARTIAL_MESSAGE_TIMEOUT, SEND_STALL_TIMEOUT, STARTUP_TIMEOUT,
};
pub use frame::{LARGE_MESSAGE_BYTES_MAX, SMALL_MESSAGE_BYTES_MAX, STARTUP_PACKET_BYTES_MAX};
pub use sqlkeeper_session::SERVER_VERSION;
pub use tls::Tls;

/// Client connections served at once. Each holds a session and, while a statement runs, a
/// SQLite read connection or a place in the write queue; 256 is far above what a metadata
/// store's clients need and bounds memory under a connection storm (with
/// `LARGE_MESSAGE_BYTES_MAX`, at most 256 × 17 MiB of buffered messages). A connection over
/// the limit is told so (FATAL 53300 `sorry, too many clients already`) and closed, rather
/// than left waiting in the listen backlog.
pub const CONNECTIONS_MAX: usize = 256;

/// Connections over `CONNECTIONS_MAX` being refused at once. A refused connection's start-up
/// is still read, so that it gets a proper error and a CancelRequest works on a full node;
/// each costs a task and at most one start-up packet for up to `STARTUP_TIMEOUT`. Beyond
/// this many, a connection storm's extra sockets are closed without a word.
pub const REFUSALS_MAX: usize = 64;

/// Limits and timeouts of the client front end. [`ServerConfig::default`] is what a node
/// runs with; tests shorten the timeouts or lower the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// Client connections served at once ([`CONNECTIONS_MAX`]).
    pub connections_max: usize,
    /// Time to complete the start-up ([`STARTUP_TIMEOUT`]).
    pub startup_timeout: Duration,
    /// Time a session outside a transaction block may send nothing
    /// ([`IDLE_SESSION_TIMEOUT`]); zero turns it off.
    pub idle_session_timeout: Duration,
    /// Longest gap inside a message ([`PARTIAL_MESSAGE_TIMEOUT`]).
    pub partial_message_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            connections_max: CONNECTIONS_MAX,
            startup_timeout: STARTUP_TIMEOUT,
            idle_session_timeout: IDLE_SESSION_TIMEOUT,
            partial_message_timeout: PARTIAL_MESSAGE_TIMEOUT,
        }
    }
}

/// One connection's handlers. `conn.rs` calls them directly; the trait impl below is what
/// pgwire's generic code asks for.
pub(crate) struct Handlers {
    pub(crate) backend: Arc<backend::Backend>,
    pub(crate) startup: Arc<startup::Startup>,
    pub(crate) cancel: Arc<DefaultCancelHandler>,
    /// TLS, if the node offers it.
    pub(crate) tls: Option<Tls>,
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
    fn copy_handler(&self) -> Arc<impl pgwire::api::copy::CopyHandler> {
        self.backend.clone()
    }
}

/// How clients connect: what they must prove (SCRAM-SHA-256; `None`: trust), and TLS.
#[derive(Debug, Clone, Default)]
pub struct Security {
    /// Passwords.
    pub auth: Option<Arc<ClientAuth>>,
    /// TLS (`None`: an SSLRequest is answered `N`).
    pub tls: Option<Tls>,
}

/// Serves Postgres clients from `listener` until `shutdown` resolves, with the default
/// [`ServerConfig`].
pub async fn run(
    listener: TcpListener,
    sessions: Sessions,
    security: Security,
    shutdown: impl Future<Output = ()>,
) {
    run_with(
        listener,
        sessions,
        ServerConfig::default(),
        security,
        shutdown,
    )
    .await
}

/// Serves Postgres clients from `listener` until `shutdown` resolves. Connections already
/// accepted are served to their end.
pub async fn run_with(
    listener: TcpListener,
    sessions: Sessions,
    config: ServerConfig,
    security: Security,
    shutdown: impl Future<Output = ()>,
) {
    let manager = Arc::new(ConnectionManager::new());
    let startup = Arc::new(startup::Startup::new(
        manager.clone(),
        security.auth,
        security.tls.as_ref(),
        sessions.clone(),
    ));
    let cancel = Arc::new(DefaultCancelHandler::new(manager));
    // Sessions, and refusals in progress: a permit is held for the connection's lifetime.
    let admitted = Arc::new(Semaphore::new(config.connections_max));
    let refusals = Arc::new(Semaphore::new(REFUSALS_MAX));
    let next_conn_id = AtomicU64::new(1);
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Accept errors (EMFILE, ECONNABORTED) are transient: back off and go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let conn_id = next_conn_id.fetch_add(1, Ordering::Relaxed);
        let (permit, admission) = match admitted.clone().try_acquire_owned() {
            Ok(p) => (p, conn::Admission::Admitted),
            Err(_) => match refusals.clone().try_acquire_owned() {
                Ok(p) => (p, conn::Admission::Refused),
                Err(_) => {
                    tracing::info!(conn_id, %peer, "too many clients and refusals: closed at once");
                    continue;
                }
            },
        };
        conn::configure_socket(&socket);
        let handlers = Arc::new(Handlers {
            backend: Arc::new(backend::Backend::new(sessions.open())),
            startup: startup.clone(),
            cancel: cancel.clone(),
            tls: security.tls.clone(),
        });
        let span = tracing::debug_span!("conn", conn_id, %peer);
        metrics::counter!("sqlkeeper_client_connections_total").increment(1);
        let open = metrics::gauge!("sqlkeeper_client_connections");
        open.increment(1.0);
        tokio::spawn(
            async move {
                tracing::debug!("client connected");
                let served = conn::serve(socket, peer, handlers, config, admission);
                // tokio would catch a panic too, but it must never go unnoticed: every path from
                // client bytes is meant to end in an error message, not a panic.
                if let Err(panic) = AssertUnwindSafe(served).catch_unwind().await {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    tracing::error!(panic = %what, "connection task panicked; connection closed");
                }
                tracing::debug!("client disconnected");
                open.decrement(1.0);
                drop(permit);
            }
            .instrument(span),
        );
    }
}
