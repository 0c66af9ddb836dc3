//! The frame guard: where one client message ends, whether it may be that large, and whether
//! its body is well formed, all decided before pgwire sees a byte of it.
//!
//! pgwire 0.42 cannot be handed client bytes directly. Its decoder has no configurable size
//! limit (Query, Parse, Bind and CopyData may announce up to 1 GiB, buffered whole before any
//! check of ours), and it decodes a body from the whole read buffer instead of from the bytes
//! the length word announced, so a short or malformed body panics (`Buf::get_u8` past the end,
//! `split_to` beyond the buffer) or is completed with the bytes of the next message. The guard
//! therefore does the framing itself, as PostgreSQL's `pq_getmessage` does:
//!
//! 1. [`header`] reads the type byte and the length word, and rejects an unknown type or a
//!    length outside the limit for that type before a byte of the body is buffered.
//! 2. [`check_body`] walks the complete body the way pgwire's decoder will (every count, string
//!    terminator and length inside the announced length, nothing left over), with the checks
//!    PostgreSQL makes in `exec_bind_message` and friends on top.
//! 3. [`decode`] hands pgwire exactly that frame, so its decoder consumes exactly it.
//!
//! Framing errors are FATAL, as in PostgreSQL: after them the stream cannot be trusted. A body
//! error leaves the stream in step (the frame was read whole), so it is an ERROR and the
//! session goes on, again as in PostgreSQL (`pq_getmsgend`, `pq_getmsgstring`, ...).
//!
//! Nothing here does I/O; `conn.rs` drives it and the `fuzzing` module feeds it random bytes.

use bytes::BytesMut;
use pgwire::messages::{DecodeContext, PgWireFrontendMessage, ProtocolVersion};

use crate::errors::ClientError;

/// Largest startup-phase packet (StartupMessage, CancelRequest, SSLRequest, GSSENCRequest),
/// counting the length word. PostgreSQL's `MAX_STARTUP_PACKET_LENGTH`: the client is not
/// authenticated yet, so it gets no more room than the largest real start-up packet needs.
pub const STARTUP_PACKET_BYTES_MAX: usize = 10_000;

/// Largest Query, Parse or Bind message, counting the length word. The SQL layer refuses
/// query strings over `sqlkeeper_sql::QUERY_BYTES_MAX` (16 MiB); 1 MiB on top holds the
/// terminator, statement and portal names, a full list of 65535 parameter types (256 KiB) and
/// parameter values larger than any write can carry (`COMMAND_BYTES_MAX` is 512 KiB).
/// PostgreSQL allows 1 GiB; we refuse a larger message before buffering any of its body.
pub const LARGE_MESSAGE_BYTES_MAX: usize = sqlkeeper_sql::QUERY_BYTES_MAX + 1024 * 1024;

/// Largest message of every other type, counting the length word: PostgreSQL's
/// `PQ_SMALL_MESSAGE_LIMIT`. These carry a name or two and a few integers. CopyData is among
/// them outside COPY mode, where it is only ever ignored.
pub const SMALL_MESSAGE_BYTES_MAX: usize = 10_000;

/// Largest CopyData message in COPY mode, counting the length word: as large as a Query. Clients
/// send COPY data in chunks of 8 KiB (psql) to 512 KiB (asyncpg), or as the application hands it
/// over (tokio-postgres, psycopg); a message over the COPY's own bound
/// (`sqlkeeper_session::COPY_IN_BYTES_MAX`) is read whole and the COPY fails with 54000, with
/// the connection kept, as PostgreSQL keeps it.
pub const COPY_DATA_BYTES_MAX: usize = LARGE_MESSAGE_BYTES_MAX;

/// Longest SCRAM/cancel secret key PostgreSQL 18 accepts in a CancelRequest (protocol 3.2).
const CANCEL_KEY_BYTES_MAX: usize = 256;

const CANCEL_REQUEST_CODE: u32 = 80_877_102;
const SSL_REQUEST_CODE: u32 = 80_877_103;
const GSSENC_REQUEST_CODE: u32 = 80_877_104;

/// What the connection reads next. Derived from pgwire's connection state by `conn.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Before the StartupMessage: untyped packets. An SSLRequest or GSSENCRequest is answered
    /// `N` once; a second one is read as a start-up packet of an unknown protocol, as in
    /// PostgreSQL.
    Startup {
        /// An SSLRequest was refused already.
        ssl_refused: bool,
        /// A GSSENCRequest was refused already.
        gss_refused: bool,
    },
    /// Authentication in progress: only password-family (`p`) messages.
    Password,
    /// Normal operation: typed messages.
    Query,
    /// COPY FROM STDIN in progress: typed messages, CopyData up to [`COPY_DATA_BYTES_MAX`].
    CopyIn,
    /// After an error in an extended-query message: frames are read and dropped until Sync,
    /// and their bodies are not looked at (PostgreSQL's `ignore_till_sync`).
    SkipToSync,
}

impl Expect {
    /// The phase a new connection starts in.
    pub const START: Expect = Expect::Startup {
        ssl_refused: false,
        gss_refused: false,
    };
}

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// SSLRequest (untyped, 8 bytes).
    SslRequest,
    /// GSSENCRequest (untyped, 8 bytes).
    GssEncRequest,
    /// CancelRequest (untyped).
    CancelRequest,
    /// StartupMessage (untyped).
    Startup,
    /// `p`: PasswordMessage, SASLInitialResponse or SASLResponse.
    Password,
    /// `Q`.
    Query,
    /// `P`.
    Parse,
    /// `B`.
    Bind,
    /// `E`.
    Execute,
    /// `D`.
    Describe,
    /// `C`.
    Close,
    /// `S`.
    Sync,
    /// `H`.
    Flush,
    /// `X`.
    Terminate,
    /// `d`.
    CopyData,
    /// `c`.
    CopyDone,
    /// `f`.
    CopyFail,
    /// `F`: a fastpath function call, which pgwire cannot decode; answered with an error.
    FunctionCall,
}

impl Kind {
    /// The kind of a typed message in the query phase, `None` for an unknown type byte.
    fn typed(b: u8) -> Option<Kind> {
        Some(match b {
            b'Q' => Kind::Query,
            b'P' => Kind::Parse,
            b'B' => Kind::Bind,
            b'E' => Kind::Execute,
            b'D' => Kind::Describe,
            b'C' => Kind::Close,
            b'S' => Kind::Sync,
            b'H' => Kind::Flush,
            b'X' => Kind::Terminate,
            b'd' => Kind::CopyData,
            b'c' => Kind::CopyDone,
            b'f' => Kind::CopyFail,
            b'F' => Kind::FunctionCall,
            _ => return None,
        })
    }

    /// Largest announced length (body plus the length word) for a typed message.
    fn length_max(self) -> usize {
        match self {
            Kind::Query | Kind::Parse | Kind::Bind => LARGE_MESSAGE_BYTES_MAX,
            _ => SMALL_MESSAGE_BYTES_MAX,
        }
    }

    /// Whether the message belongs to the extended-query protocol, so that an error in it
    /// makes the session skip to the next Sync (PostgreSQL's `doing_extended_query_message`).
    pub fn is_extended_query(self) -> bool {
        matches!(
            self,
            Kind::Parse | Kind::Bind | Kind::Execute | Kind::Describe | Kind::Close | Kind::Flush
        )
    }

    /// Whether the frame starts with a type byte.
    fn is_typed(self) -> bool {
        !matches!(
            self,
            Kind::SslRequest | Kind::GssEncRequest | Kind::CancelRequest | Kind::Startup
        )
    }

    /// The message's name as pgwire decodes it (and PostgreSQL's protocol documentation
    /// names it).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::SslRequest => "SSLRequest",
            Kind::GssEncRequest => "GSSENCRequest",
            Kind::CancelRequest => "CancelRequest",
            Kind::Startup => "StartupMessage",
            Kind::Password => "password",
            Kind::Query => "Query",
            Kind::Parse => "Parse",
            Kind::Bind => "Bind",
            Kind::Execute => "Execute",
            Kind::Describe => "Describe",
            Kind::Close => "Close",
            Kind::Sync => "Sync",
            Kind::Flush => "Flush",
            Kind::Terminate => "Terminate",
            Kind::CopyData => "CopyData",
            Kind::CopyDone => "CopyDone",
            Kind::CopyFail => "CopyFail",
            Kind::FunctionCall => "FunctionCall",
        }
    }
}

/// The start of a frame: what it is and how many bytes it takes in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What the frame is.
    pub kind: Kind,
    /// Bytes of the whole frame: type byte (if any), length word and body.
    pub len: usize,
}

fn be_u32(b: &[u8]) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[..4]);
    u32::from_be_bytes(w)
}

fn protocol_violation(message: impl Into<String>) -> ClientError {
    ClientError::fatal("08P01", message)
}

/// Reads the header at the start of `buf`. `Ok(None)`: not enough bytes yet (at most 8 are
/// needed). An error is FATAL: the stream cannot be read further.
pub fn header(expect: Expect, buf: &[u8]) -> Result<Option<Header>, ClientError> {
    match expect {
        Expect::Startup {
            ssl_refused,
            gss_refused,
        } => startup_header(ssl_refused, gss_refused, buf),
        Expect::Password => {
            let Some(&b) = buf.first() else {
                return Ok(None);
            };
            if b != b'p' {
                return Err(protocol_violation(format!(
                    "expected password response, got message type {b}"
                )));
            }
            typed_header(Kind::Password, SMALL_MESSAGE_BYTES_MAX, buf)
        }
        Expect::Query | Expect::SkipToSync | Expect::CopyIn => {
            let Some(&b) = buf.first() else {
                return Ok(None);
            };
            // As PostgreSQL's SocketBackend: the type byte is judged before the length word.
            let Some(kind) = Kind::typed(b) else {
                return Err(protocol_violation(format!(
                    "invalid frontend message type {b}"
                )));
            };
            let max = match (expect, kind) {
                (Expect::CopyIn, Kind::CopyData) => COPY_DATA_BYTES_MAX,
                _ => kind.length_max(),
            };
            typed_header(kind, max, buf)
        }
    }
}

fn typed_header(kind: Kind, length_max: usize, buf: &[u8]) -> Result<Option<Header>, ClientError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let announced = be_u32(&buf[1..5]) as usize;
    if announced < 4 {
        return Err(protocol_violation("invalid message length"));
    }
    if announced > length_max {
        return Err(ClientError::fatal(
            "54000",
            format!(
                "{} message is longer than {length_max} bytes ({announced} announced)",
                kind.name()
            ),
        ));
    }
    Ok(Some(Header {
        kind,
        len: 1 + announced,
    }))
}

fn startup_header(
    ssl_refused: bool,
    gss_refused: bool,
    buf: &[u8],
) -> Result<Option<Header>, ClientError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    // Compare with postgres' backend/tcop/backend_startup.c ProcessStartupPacket.
    let len = be_u32(&buf[..4]) as usize;
    if !(8..=STARTUP_PACKET_BYTES_MAX).contains(&len) {
        return Err(protocol_violation("invalid length of startup packet"));
    }
    if buf.len() < 8 {
        return Ok(None);
    }
    let kind = match be_u32(&buf[4..8]) {
        CANCEL_REQUEST_CODE => {
            if !(12 + 4..=12 + CANCEL_KEY_BYTES_MAX).contains(&len) {
                return Err(protocol_violation(
                    "invalid length of cancel request packet",
                ));
            }
            Kind::CancelRequest
        }
        SSL_REQUEST_CODE if !ssl_refused => Kind::SslRequest,
        GSSENC_REQUEST_CODE if !gss_refused => Kind::GssEncRequest,
        _ => Kind::Startup,
    };
    if matches!(kind, Kind::SslRequest | Kind::GssEncRequest) && len != 8 {
        return Err(protocol_violation("invalid length of startup packet"));
    }
    Ok(Some(Header { kind, len }))
}

/// A read cursor over a message body that fails the way PostgreSQL's `pq_getmsg*` do.
struct Body<'a> {
    rest: &'a [u8],
}

fn short() -> ClientError {
    ClientError::new("08P01", "insufficient data left in message")
}

impl<'a> Body<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], ClientError> {
        if n > self.rest.len() {
            return Err(short());
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, ClientError> {
        Ok(self.bytes(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, ClientError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn i16(&mut self) -> Result<i16, ClientError> {
        let b = self.bytes(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, ClientError> {
        let b = self.bytes(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A NUL-terminated string, without its terminator.
    fn cstr(&mut self) -> Result<&'a [u8], ClientError> {
        let Some(end) = self.rest.iter().position(|&b| b == 0) else {
            return Err(ClientError::new("08P01", "invalid string in message"));
        };
        let s = &self.rest[..end];
        self.rest = &self.rest[end + 1..];
        Ok(s)
    }

    /// A NUL-terminated string that must be UTF-8 (the only encoding this server speaks):
    /// pgwire would otherwise replace invalid bytes and run a statement the client never sent.
    fn text(&mut self) -> Result<&'a str, ClientError> {
        utf8(self.cstr()?)
    }

    fn end(self) -> Result<(), ClientError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(ClientError::new("08P01", "invalid message format"))
        }
    }
}

/// Checks that `b` is UTF-8, with PostgreSQL's error for a bad byte sequence: it shows as
/// many bytes as the first one announces (postgres' report_invalid_encoding).
pub(crate) fn utf8(b: &[u8]) -> Result<&str, ClientError> {
    std::str::from_utf8(b).map_err(|e| {
        let bad = b.get(e.valid_up_to()..).unwrap_or_default();
        let announced = match bad.first() {
            Some(0xc0..=0xdf) => 2,
            Some(0xe0..=0xef) => 3,
            Some(0xf0..=0xf7) => 4,
            _ => 1,
        };
        let bytes: Vec<String> = bad
            .iter()
            .take(announced)
            .map(|x| format!("0x{x:02x}"))
            .collect();
        ClientError::new(
            "22021",
            format!(
                "invalid byte sequence for encoding \"UTF8\": {}",
                bytes.join(" ")
            ),
        )
    })
}

fn format_code(code: i16) -> Result<(), ClientError> {
    if code == 0 || code == 1 {
        Ok(())
    } else {
        Err(ClientError::new(
            "22023",
            format!("unsupported format code: {code}"),
        ))
    }
}

/// Checks the body of a complete frame (`frame` is the whole frame, as [`header`] measured
/// it) so that pgwire's decoder reads exactly its bytes and nothing it cannot read.
///
/// Start-up packet errors are FATAL; body errors of typed messages are ERRORs. In
/// [`Expect::SkipToSync`] only Sync is looked at, as PostgreSQL parses nothing else then.
pub fn check_body(kind: Kind, frame: &[u8]) -> Result<(), ClientError> {
    let body_at = if kind.is_typed() { 5 } else { 8 };
    let Some(body) = frame.get(body_at..) else {
        debug_assert!(false, "check_body got a frame shorter than its header");
        return Err(protocol_violation("invalid message length"));
    };
    let mut b = Body { rest: body };
    match kind {
        Kind::SslRequest | Kind::GssEncRequest => b.end(),
        Kind::CancelRequest => {
            // Process id and a 4..=256 byte key: the header bounded the length already.
            b.i32()?;
            Ok(())
        }
        Kind::Startup => check_startup(frame),
        // A password, SASLInitialResponse or SASLResponse: pgwire keeps the raw body and the
        // authentication handler interprets it. With trust authentication no handler does.
        Kind::Password | Kind::CopyData | Kind::Terminate | Kind::FunctionCall => Ok(()),
        Kind::Query => {
            b.text()?;
            b.end()
        }
        Kind::Parse => {
            b.text()?;
            b.text()?;
            let types = b.u16()?;
            b.bytes(4 * usize::from(types))?;
            b.end()
        }
        Kind::Bind => check_bind(b),
        Kind::Execute => {
            b.text()?;
            // A negative or zero row count means "all rows", as in PostgreSQL;
            // `Backend::on_execute` reads it that way.
            b.i32()?;
            b.end()
        }
        Kind::Describe | Kind::Close => {
            let target = b.byte()?;
            if target != b'S' && target != b'P' {
                let what = if kind == Kind::Describe {
                    "DESCRIBE"
                } else {
                    "CLOSE"
                };
                return Err(ClientError::new(
                    "08P01",
                    format!("invalid {what} message subtype {target}"),
                ));
            }
            b.text()?;
            b.end()
        }
        Kind::Sync | Kind::Flush | Kind::CopyDone => b.end(),
        Kind::CopyFail => {
            b.cstr()?;
            b.end()
        }
    }
}

/// Compare with postgres' backend/tcop/postgres.c exec_bind_message.
fn check_bind(mut b: Body<'_>) -> Result<(), ClientError> {
    b.text()?;
    b.text()?;
    let formats = usize::from(b.u16()?);
    let mut codes = Vec::with_capacity(formats.min(b.rest.len() / 2));
    for _ in 0..formats {
        codes.push(b.i16()?);
    }
    let params = usize::from(b.u16()?);
    if formats > 1 && formats != params {
        return Err(ClientError::new(
            "08P01",
            format!("bind message has {formats} parameter formats but {params} parameters"),
        ));
    }
    for _ in 0..params {
        let len = b.i32()?;
        match len {
            -1 => {}
            n if n < 0 => return Err(short()),
            n => {
                b.bytes(n as usize)?;
            }
        }
    }
    let results = usize::from(b.u16()?);
    for _ in 0..results {
        format_code(b.i16()?)?;
    }
    b.end()?;
    for code in codes {
        format_code(code)?;
    }
    Ok(())
}

fn check_startup(frame: &[u8]) -> Result<(), ClientError> {
    let major = u16::from_be_bytes([frame[4], frame[5]]);
    let minor = u16::from_be_bytes([frame[6], frame[7]]);
    if major != 3 {
        return Err(ClientError::fatal(
            "0A000",
            format!("unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.2"),
        ));
    }
    // Name/value pairs, then a final NUL as the last byte. pgwire stops at the first empty
    // name, so an empty name can only be the terminator.
    let layout =
        || protocol_violation("invalid startup packet layout: expected terminator as last byte");
    let mut b = Body { rest: &frame[8..] };
    loop {
        let name = b.cstr().map_err(|_| layout())?;
        if name.is_empty() {
            break;
        }
        b.cstr().map_err(|_| layout())?;
    }
    b.end().map_err(|_| layout())
}

/// Decodes a checked frame with pgwire. The frame must be exactly what [`header`] measured
/// and [`check_body`] accepted; pgwire then consumes all of it. `protocol` is the session's
/// protocol version (it decides how a CancelRequest's key is read).
pub fn decode(
    kind: Kind,
    mut frame: BytesMut,
    protocol: ProtocolVersion,
) -> Result<PgWireFrontendMessage, ClientError> {
    if matches!(kind, Kind::Terminate | Kind::FunctionCall) {
        // The connection acts on these itself: pgwire cannot decode `F`, and a Terminate's
        // body (which PostgreSQL does not check either) may be anything.
        debug_assert!(false, "{kind:?} frames are not decoded");
        return Err(protocol_violation(format!(
            "invalid frontend message type {}",
            frame.first().copied().unwrap_or(0)
        )));
    }
    // A CancelRequest comes on a connection of its own, before any protocol was agreed: read
    // its key as protocol 3.2 does (any length the header allowed), as pgwire would.
    let protocol = if kind == Kind::CancelRequest {
        ProtocolVersion::PROTOCOL3_2
    } else {
        protocol
    };
    let mut ctx = DecodeContext::new(protocol);
    match kind {
        Kind::SslRequest | Kind::GssEncRequest => {}
        Kind::CancelRequest | Kind::Startup => ctx.awaiting_frontend_ssl = false,
        _ => {
            ctx.awaiting_frontend_ssl = false;
            ctx.awaiting_frontend_startup = false;
        }
    }
    let decoded = PgWireFrontendMessage::decode(&mut frame, &ctx);
    match decoded {
        Ok(Some(message)) if frame.is_empty() => Ok(message),
        // Unreachable for a checked frame: fail the connection rather than guess.
        Ok(Some(_)) => {
            debug_assert!(false, "pgwire left bytes of a checked {kind:?} frame");
            Err(protocol_violation("invalid message format"))
        }
        Ok(None) => {
            debug_assert!(false, "pgwire found a checked {kind:?} frame incomplete");
            Err(protocol_violation("invalid message format"))
        }
        Err(e) => Err(protocol_violation(format!(
            "invalid {} message: {e}",
            kind.name()
        ))),
    }
}
