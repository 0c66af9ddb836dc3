//! One client connection, from accept to close.
//!
//! This replaces pgwire's `process_socket`, built from the same public pieces
//! (`PgWireMessageServerCodec`, `process_message`, `process_error`), so that reading is ours:
//!
//! ```text
//! socket ─▶ inbox (BytesMut) ─▶ frame::header   type byte, length word, limit per type
//!                               (buffer the frame: nothing more than its announced length)
//!                             ─▶ frame::check_body  counts, terminators, lengths, codes
//!                             ─▶ frame::decode      pgwire decodes exactly that frame
//!                             ─▶ process_message    pgwire dispatches to our handlers
//! ```
//!
//! Around that loop: a deadline for the start-up, an idle timeout between messages outside a
//! transaction block, a bound on a gap inside a message and on a send that makes no progress,
//! and the refusal of a connection over the limit. Compare with postgres'
//! backend/tcop/postgres.c PostgresMain and SocketBackend.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use futures::SinkExt;
use pgwire::api::{ClientInfo, DefaultClient, PgWireConnectionState, PgWireServerHandlers};
use pgwire::messages::response::{GssEncResponse, SslResponse};
use pgwire::messages::PgWireBackendMessage;
use pgwire::tokio::server::{process_error, process_message, PgWireMessageServerCodec};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_util::codec::{Framed, FramedParts};

use crate::backend::Prepared;
use crate::errors::{ClientError, IntoPgWire};
use crate::frame::{self, Expect, Kind};
use crate::tls::{Tls, Transport};
use crate::{Handlers, ServerConfig};
use sqlkeeper_session::Between;

/// Time a new connection has to complete its start-up (every SSLRequest and the
/// StartupMessage). PostgreSQL's `authentication_timeout` is 60 s because it also covers a
/// password prompt; with trust authentication a real client is done in milliseconds, and a
/// connection that sends nothing holds one of the `connections_max` slots until this passes.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Time a session may send nothing while outside a transaction block before it is closed
/// (FATAL 57P05, as PostgreSQL's `idle_session_timeout`, which is off by default). One hour
/// is longer than connection pools keep an idle connection (HikariCP's `idleTimeout` and
/// pgbouncer's `server_idle_timeout` are 10 min, HikariCP's `maxLifetime` 30 min), so a pool
/// retires its connections first; and short enough that connections a client leaked give
/// their slot back within the hour. Inside a block `idle_in_transaction_session_timeout`
/// decides instead, because the block may hold a read view.
pub const IDLE_SESSION_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// Longest gap in the middle of a message (the type byte came, the rest did not). A client
/// that started a message and then sends nothing for a minute is broken; until this passes
/// it holds the bytes it sent and its connection slot, and maybe a block's read view. PostgreSQL waits
/// forever; TCP keepalive would only notice a dead peer, not a stalled one.
pub const PARTIAL_MESSAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest time a send to the client may make no progress (the client does not read).
/// PostgreSQL has no such bound (`tcp_user_timeout` is off by default); we add one because a
/// session blocked on a send holds a connection slot and maybe a block's read view, which
/// keeps the write-ahead log from being recycled. 60 s is the default `idle_in_transaction_session_timeout`: a client
/// that does not read for as long as a block may sit idle is treated like an idle one.
pub const SEND_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Idle time before the first TCP keepalive probe. The OS default is 2 hours; a client
/// whose machine vanished (power loss, a partition) would hold its slot, and maybe a block's
/// read view, that long. With the interval and count below a dead peer is found in 2 min.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// Time between unanswered keepalive probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered probes before the connection is dropped: 60 s + 6 × 10 s = 2 min in all.
pub const KEEPALIVE_RETRIES: u32 = 6;

/// Most bytes read from the socket at once, and the most buffer grown ahead of the bytes
/// that arrived: a client that announces a 17 MiB Query and then trickles costs only what it
/// actually sent.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// After a FATAL error: how long, and how many bytes, to keep reading (and dropping) what the
/// client still sends before closing. Closing a socket with unread bytes sends a reset, which
/// can destroy the error message before the client reads it.
const CLOSE_LINGER: Duration = Duration::from_secs(1);
const CLOSE_LINGER_BYTES_MAX: usize = 1024 * 1024;

/// A connection as pgwire's handlers see it.
type Conn = Framed<ClientStream<Transport>, PgWireMessageServerCodec<Prepared>>;

/// Whether the connection got a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Served normally.
    Admitted,
    /// Over `connections_max`: its start-up is read (so that an SSLRequest is answered and a
    /// CancelRequest still works when the node is full), then it gets 53300 and is closed.
    Refused,
}

/// Sets TCP_NODELAY and keepalive on an accepted socket. Failures only cost latency or the
/// early detection of a dead peer, so they are logged and the connection is served anyway.
pub(crate) fn configure_socket(stream: &TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "could not set TCP keepalive");
    }
}

/// What reading the next frame came to.
enum Read {
    Frame(Kind, BytesMut),
    /// The client closed the connection (or it broke).
    Closed,
    /// No byte within the wait; `partial` if a message had begun.
    TimedOut {
        partial: bool,
    },
    /// The header broke a rule: FATAL.
    Violation(ClientError),
}

/// Serves one client until it leaves, breaks a framing rule, times out or is refused.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    handlers: Arc<Handlers>,
    config: ServerConfig,
    admission: Admission,
) {
    let startup_deadline = Instant::now().checked_add(config.startup_timeout);
    let server_addr = stream.local_addr().ok();
    let mut introduced = false;
    let mut conn: Conn = Framed::new(
        ClientStream::new(Transport::Plain(stream), SEND_STALL_TIMEOUT),
        PgWireMessageServerCodec::new(DefaultClient::new(peer, false)),
    );
    conn.set_state(PgWireConnectionState::AwaitingStartup);
    let mut inbox = BytesMut::new();
    let (mut ssl_refused, mut gss_refused) = (false, false);
    let copy = handlers.copy_handler();
    loop {
        let expect = match conn.state() {
            PgWireConnectionState::AwaitingSslRequest | PgWireConnectionState::AwaitingStartup => {
                Expect::Startup {
                    ssl_refused,
                    gss_refused,
                }
            }
            PgWireConnectionState::AuthenticationInProgress => Expect::Password,
            PgWireConnectionState::AwaitingSync => Expect::SkipToSync,
            PgWireConnectionState::CopyInProgress(_) => Expect::CopyIn,
            _ => Expect::Query,
        };
        let starting = matches!(expect, Expect::Startup { .. } | Expect::Password);
        let wait = if starting {
            Wait::Until(startup_deadline)
        } else {
            Wait::Idle {
                idle: Some(config.idle_session_timeout).filter(|d| !d.is_zero()),
                partial: config.partial_message_timeout,
            }
        };
        let read = match read_frame(&mut conn, &mut inbox, expect, wait).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "read from client failed");
                return;
            }
        };
        let (kind, frame) = match read {
            Read::Frame(kind, frame) => (kind, frame),
            Read::Closed => return,
            Read::TimedOut { .. } if starting => {
                // As PostgreSQL after authentication_timeout: no message, the client may not
                // even speak the protocol.
                tracing::debug!("start-up not completed in time; closing");
                return;
            }
            Read::TimedOut { partial: true } => {
                let secs = config.partial_message_timeout.as_secs_f64();
                let e = ClientError::fatal(
                    "08P01",
                    format!("incomplete message from client: nothing received for {secs}s"),
                );
                return refuse(&mut conn, e).await;
            }
            Read::TimedOut { partial: false } => match handlers.backend.between() {
                // `idle_in_transaction_session_timeout` governs a block.
                Between::InBlock => continue,
                Between::Idle => {
                    let e = ClientError::fatal(
                        "57P05",
                        "terminating connection due to idle-session timeout",
                    );
                    return refuse(&mut conn, e).await;
                }
                Between::BlockTimedOut => {
                    return refuse(&mut conn, sqlkeeper_session::idle_timeout_error()).await;
                }
            },
            Read::Violation(e) => return refuse(&mut conn, e).await,
        };
        if expect == Expect::SkipToSync && !matches!(kind, Kind::Sync | Kind::Terminate) {
            continue;
        }
        match kind {
            Kind::Terminate => return,
            Kind::FunctionCall => {
                let e = ClientError::new("0A000", "fastpath function calls are not supported");
                handlers.backend.fail_block().await;
                if process_error(&mut conn, e.into_pgwire(), false)
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
            _ => {}
        }
        if let Err(e) = frame::check_body(kind, &frame) {
            if e.fatal {
                return refuse(&mut conn, e).await;
            }
            tracing::debug!(sqlstate = %e.sqlstate, message = %e.message, "malformed message");
            if !kind.is_extended_query() {
                handlers.backend.fail_block().await;
            }
            if process_error(&mut conn, e.into_pgwire(), kind.is_extended_query())
                .await
                .is_err()
            {
                return;
            }
            continue;
        }
        match (kind, admission) {
            (Kind::SslRequest, _) => {
                ssl_refused = true;
                let Some(tls) = handlers.tls.clone() else {
                    let refusal = PgWireBackendMessage::SslResponse(SslResponse::Refuse);
                    if conn.send(refusal).await.is_err() {
                        return;
                    }
                    continue;
                };
                // Bytes after the SSLRequest were sent in clear before the handshake: a
                // client that does that is broken or an attack (CVE-2021-23214).
                if !inbox.is_empty() {
                    let e =
                        ClientError::fatal("08P01", "received unencrypted data after SSL request");
                    return refuse(&mut conn, e).await;
                }
                let accept = PgWireBackendMessage::SslResponse(SslResponse::Accept);
                if conn.send(accept).await.is_err() {
                    return;
                }
                conn = match upgrade(conn, &tls, startup_deadline).await {
                    Some(c) => c,
                    None => return,
                };
                continue;
            }
            (Kind::GssEncRequest, _) => {
                gss_refused = true;
                let refusal = PgWireBackendMessage::GssEncResponse(GssEncResponse::Refuse);
                if conn.send(refusal).await.is_err() {
                    return;
                }
                continue;
            }
            (Kind::Startup, Admission::Refused) => {
                tracing::info!("connection refused: too many clients");
                let e = ClientError::fatal("53300", "sorry, too many clients already");
                return refuse(&mut conn, e).await;
            }
            _ => {}
        }
        let message = match frame::decode(kind, frame, conn.protocol_version()) {
            Ok(m) => m,
            Err(e) => return refuse(&mut conn, e).await,
        };
        // A COPY started by Execute belongs to the extended protocol: after an error in it
        // (CopyFail, bad data) the client's Sync gets ReadyForQuery, not the error itself.
        let is_extended_query = message.is_extended_query()
            || matches!(conn.state(), PgWireConnectionState::CopyInProgress(true));
        let result = process_message(
            message,
            &mut conn,
            handlers.startup.clone(),
            handlers.backend.clone(),
            handlers.backend.clone(),
            copy.clone(),
            handlers.cancel.clone(),
        )
        .await;
        // pgwire closed a CancelRequest's connection; there is nothing more to read.
        if kind == Kind::CancelRequest {
            return;
        }
        if !introduced && matches!(conn.state(), PgWireConnectionState::ReadyForQuery) {
            // Start-up is done: the session learns who connected, to what.
            introduced = true;
            let meta = conn.metadata();
            let user = meta
                .get(pgwire::api::METADATA_USER)
                .cloned()
                .unwrap_or_else(|| "postgres".into());
            let database = meta
                .get(pgwire::api::METADATA_DATABASE)
                .cloned()
                .unwrap_or_else(|| user.clone());
            handlers.backend.introduce(sqlkeeper_session::Connection {
                user,
                database,
                pid: conn.pid_and_secret_key().0,
                server_addr,
                password_checked: handlers.startup.checks_passwords(),
            });
        }
        if let Err(e) = result {
            // A FATAL error (a failed login) is the connection's last message, as in
            // PostgreSQL: pgwire's process_error would follow it with ReadyForQuery, which a
            // client that already read the error does not expect.
            if e.is_fatal() {
                let info: pgwire::error::ErrorInfo = e.into();
                let _ = conn
                    .send(PgWireBackendMessage::ErrorResponse(info.into()))
                    .await;
                return;
            }
            if process_error(&mut conn, e, is_extended_query)
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// How long `read_frame` waits for bytes.
#[derive(Debug, Clone, Copy)]
enum Wait {
    /// Until a fixed deadline (the start-up); `None` if it does not fit in an `Instant`.
    Until(Option<Instant>),
    /// Between messages up to `idle` (`None`: forever), inside a message up to `partial`.
    Idle {
        idle: Option<Duration>,
        partial: Duration,
    },
}

/// Reads until `inbox` holds one whole frame that the header allows, and splits it off.
async fn read_frame(
    conn: &mut Conn,
    inbox: &mut BytesMut,
    expect: Expect,
    wait: Wait,
) -> io::Result<Read> {
    loop {
        let header = match frame::header(expect, inbox) {
            Ok(h) => h,
            Err(e) => return Ok(Read::Violation(e)),
        };
        if let Some(h) = header {
            if inbox.len() >= h.len {
                return Ok(Read::Frame(h.kind, inbox.split_to(h.len)));
            }
        }
        // Grow the buffer by what is missing (bounded by the header's limit), a chunk at a time.
        let missing = header.map_or(1, |h| h.len - inbox.len());
        inbox.reserve(missing.min(READ_CHUNK_BYTES));
        let partial = !inbox.is_empty();
        let deadline = match wait {
            Wait::Until(deadline) => deadline,
            Wait::Idle { idle, partial: gap } => {
                let limit = if partial { Some(gap) } else { idle };
                limit.and_then(|d| Instant::now().checked_add(d))
            }
        };
        let read = conn.get_mut().read_buf(inbox);
        let n = match deadline {
            Some(d) => match tokio::time::timeout_at(d, read).await {
                Ok(r) => r?,
                Err(_) => return Ok(Read::TimedOut { partial }),
            },
            None => read.await?,
        };
        if n == 0 {
            if partial {
                tracing::debug!("client closed the connection in the middle of a message");
            }
            return Ok(Read::Closed);
        }
    }
}

/// Sends a FATAL error and closes the connection, reading what the client still sends for a
/// moment so that the error is not lost to a reset.
async fn refuse(conn: &mut Conn, e: ClientError) {
    debug_assert!(
        e.fatal,
        "refuse() ends the connection: the error must be FATAL"
    );
    tracing::debug!(sqlstate = %e.sqlstate, message = %e.message, "closing the connection");
    let error = PgWireBackendMessage::ErrorResponse(e.into_info().into());
    if conn.send(error).await.is_err() {
        return;
    }
    let io = conn.get_mut();
    if io.shutdown().await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        let mut scratch = [0u8; 4096];
        let mut dropped = 0;
        while dropped < CLOSE_LINGER_BYTES_MAX {
            match io.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => dropped += n,
            }
        }
    })
    .await;
}

/// The connection over TLS: the handshake (within the start-up's deadline), then the same
/// codec state over the encrypted stream, which pgwire now reports as secure. `None` if the
/// handshake failed or timed out (the client is gone or speaks no TLS).
async fn upgrade(conn: Conn, tls: &Tls, deadline: Option<Instant>) -> Option<Conn> {
    let parts = conn.into_parts();
    let Transport::Plain(tcp) = parts.io.into_inner() else {
        return None;
    };
    let handshake = tls.acceptor.accept(tcp);
    let stream = match deadline {
        Some(d) => tokio::time::timeout_at(d, handshake).await.ok(),
        None => Some(handshake.await),
    };
    let stream = match stream {
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            tracing::info!(error = %e, "TLS handshake failed");
            return None;
        }
        None => {
            tracing::debug!("TLS handshake not completed in time");
            return None;
        }
    };
    let mut codec = parts.codec;
    codec.client_info.is_secure = true;
    let mut upgraded = FramedParts::new(
        ClientStream::new(Transport::Tls(Box::new(stream)), SEND_STALL_TIMEOUT),
        codec,
    );
    upgraded.read_buf = parts.read_buf;
    upgraded.write_buf = parts.write_buf;
    Some(Framed::from_parts(upgraded))
}

/// A client's byte stream whose writes fail once they have made no progress for
/// `send_stall` (see [`SEND_STALL_TIMEOUT`]). Generic so that tests can use an in-memory pipe.
pub(crate) struct ClientStream<S> {
    inner: S,
    send_stall: Duration,
    /// Armed when a write or flush could not proceed; disarmed by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> ClientStream<S> {
    pub(crate) fn new(inner: S, send_stall: Duration) -> ClientStream<S> {
        ClientStream {
            inner,
            send_stall,
            stalled: None,
        }
    }

    /// The stream itself.
    pub(crate) fn into_inner(self) -> S {
        self.inner
    }

    /// Called when the inner stream cannot take bytes: pending until the stall timer fires.
    fn stall<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let send_stall = self.send_stall;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(send_stall)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.stalled = None;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the client read nothing for {send_stall:?}"),
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn progressed<T>(
        &mut self,
        r: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.stall(cx),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ClientStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ClientStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progressed(r, cx)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.progressed(r, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.progressed(r, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that never reads: the send fails after `send_stall`, and a send that makes
    /// progress is not cut short.
    #[tokio::test(start_paused = true)]
    async fn a_send_that_makes_no_progress_fails_after_the_stall_timeout() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut stream = ClientStream::new(ours, Duration::from_secs(60));

        stream.write_all(&[0u8; 64]).await.unwrap();
        let started = Instant::now();
        let e = stream.write_all(&[0u8; 64]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(60));

        let mut drained = [0u8; 64];
        theirs.read_exact(&mut drained).await.unwrap();
        let reader = tokio::spawn(async move {
            let mut sink = vec![0u8; 64];
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_secs(50)).await;
                theirs.read_exact(&mut sink).await.unwrap();
            }
        });
        // Each 64 bytes wait 50 s for the reader: slow, but never 60 s without progress.
        stream.write_all(&[0u8; 64 * 4]).await.unwrap();
        reader.await.unwrap();
    }
}
