//! No client byte may stop, stall or crash a node: malformed and hostile protocol messages
//! sent over a raw socket get PostgreSQL's error (or a closed connection), and the node goes
//! on serving normal clients afterwards.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlkeeper_pgwire::{ServerConfig, LARGE_MESSAGE_BYTES_MAX};
use sqlkeeper_raft::Node;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::support::{eventually, TestNode, WAIT};

/// A protocol message: type byte, length word, body.
pub(crate) fn msg(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![ty];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// A message header announcing `len` (which counts the length word), with no body.
pub(crate) fn header(ty: u8, len: u32) -> Vec<u8> {
    let mut m = vec![ty];
    m.extend_from_slice(&len.to_be_bytes());
    m
}

pub(crate) fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

pub(crate) fn startup_packet() -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for s in ["user", "postgres", "database", "postgres", ""] {
        body.extend(cstr(s));
    }
    let mut p = (body.len() as u32 + 4).to_be_bytes().to_vec();
    p.extend(body);
    p
}

pub(crate) fn parse(name: &str, sql: &str, types: &[u32]) -> Vec<u8> {
    let mut b = cstr(name);
    b.extend(cstr(sql));
    b.extend((types.len() as u16).to_be_bytes());
    for t in types {
        b.extend(t.to_be_bytes());
    }
    msg(b'P', &b)
}

/// A Bind of the unnamed portal: parameter formats, parameters (`None` = NULL), result formats.
pub(crate) fn bind(
    statement: &str,
    formats: &[i16],
    params: &[Option<&[u8]>],
    results: &[i16],
) -> Vec<u8> {
    let mut b = cstr("");
    b.extend(cstr(statement));
    b.extend((formats.len() as u16).to_be_bytes());
    for f in formats {
        b.extend(f.to_be_bytes());
    }
    b.extend((params.len() as u16).to_be_bytes());
    for p in params {
        match p {
            Some(v) => {
                b.extend((v.len() as i32).to_be_bytes());
                b.extend(*v);
            }
            None => b.extend((-1i32).to_be_bytes()),
        }
    }
    b.extend((results.len() as u16).to_be_bytes());
    for r in results {
        b.extend(r.to_be_bytes());
    }
    msg(b'B', &b)
}

pub(crate) fn execute(max_rows: i32) -> Vec<u8> {
    let mut b = cstr("");
    b.extend(max_rows.to_be_bytes());
    msg(b'E', &b)
}

pub(crate) fn sync() -> Vec<u8> {
    msg(b'S', &[])
}

pub(crate) fn query(sql: &str) -> Vec<u8> {
    msg(b'Q', &cstr(sql))
}

/// An ErrorResponse's fields.
#[derive(Debug)]
pub(crate) struct PgError {
    pub(crate) severity: String,
    pub(crate) code: String,
    pub(crate) message: String,
}

/// A client that speaks the protocol byte by byte.
pub(crate) struct Raw {
    stream: TcpStream,
}

impl Raw {
    pub(crate) async fn connect(addr: SocketAddr) -> Raw {
        Raw {
            stream: TcpStream::connect(addr).await.unwrap(),
        }
    }

    /// Connects and completes the start-up (trust authentication).
    pub(crate) async fn session(addr: SocketAddr) -> Raw {
        let mut raw = Raw::connect(addr).await;
        raw.send(&startup_packet()).await;
        raw.until_ready().await;
        raw
    }

    pub(crate) async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// One byte (the answer to an SSLRequest).
    pub(crate) async fn byte(&mut self) -> u8 {
        let mut b = [0u8; 1];
        tokio::time::timeout(WAIT, self.stream.read_exact(&mut b))
            .await
            .expect("no answer")
            .unwrap();
        b[0]
    }

    /// The next message, or `None` once the server closed the connection.
    pub(crate) async fn next(&mut self) -> Option<(u8, Vec<u8>)> {
        tokio::time::timeout(WAIT, async {
            let mut head = [0u8; 5];
            if self.stream.read_exact(&mut head).await.is_err() {
                return None;
            }
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            let mut body = vec![0u8; len - 4];
            self.stream.read_exact(&mut body).await.ok()?;
            Some((head[0], body))
        })
        .await
        .expect("the server neither answered nor closed the connection")
    }

    /// Messages up to and including ReadyForQuery; panics on an error or a closed connection.
    pub(crate) async fn until_ready(&mut self) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        loop {
            let m = self
                .next()
                .await
                .expect("connection closed before ReadyForQuery");
            if m.0 == b'E' {
                panic!("unexpected error: {:?}", error_of(&m.1));
            }
            let done = m.0 == b'Z';
            out.push(m);
            if done {
                return out;
            }
        }
    }

    /// The next ErrorResponse, skipping other messages; panics if the connection closes first.
    pub(crate) async fn error(&mut self) -> PgError {
        loop {
            match self.next().await {
                Some((b'E', body)) => return error_of(&body),
                Some(_) => {}
                None => panic!("connection closed without an ErrorResponse"),
            }
        }
    }

    /// Asserts that the server closes the connection (after any messages still in flight).
    pub(crate) async fn closed(&mut self) {
        while let Some(m) = self.next().await {
            assert_ne!(m.0, b'Z', "the session went on: {m:?}");
        }
    }

    /// Asserts that the session still runs queries.
    pub(crate) async fn still_serves(&mut self) {
        self.send(&query("SELECT 1")).await;
        let got = self.until_ready().await;
        assert!(
            got.iter().any(|(t, b)| *t == b'D' && b.ends_with(b"1")),
            "{got:?}"
        );
    }
}

pub(crate) fn error_of(body: &[u8]) -> PgError {
    let mut e = PgError {
        severity: String::new(),
        code: String::new(),
        message: String::new(),
    };
    for field in body.split(|b| *b == 0).filter(|f| !f.is_empty()) {
        let value = String::from_utf8_lossy(&field[1..]).into_owned();
        match field[0] {
            b'S' => e.severity = value,
            b'C' => e.code = value,
            b'M' => e.message = value,
            _ => {}
        }
    }
    e
}

/// A normal client can still read and write.
async fn node_still_serves(addr: SocketAddr) {
    let c = crate::support::connect(addr).await;
    let one: i32 = c.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    c.batch_execute("CREATE TABLE IF NOT EXISTS after_bytes (k TEXT PRIMARY KEY)")
        .await
        .unwrap();
    let k = format!("k{}", rand_suffix());
    c.execute("INSERT INTO after_bytes VALUES ($1)", &[&k])
        .await
        .unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM after_bytes WHERE k = $1", &[&k])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Regression: pgwire's Execute read `max_rows` as `usize` and preallocated that many rows, so
/// -1 panicked (capacity overflow) and i32::MAX asked for ~80 GiB. Zero or less means "all
/// rows" in PostgreSQL; a count larger than the result is the whole result; a smaller one
/// suspends the portal.
#[tokio::test]
async fn execute_row_counts_of_any_value_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let sql = "SELECT * FROM (VALUES (1), (2), (3)) AS t(n)";

    for max_rows in [-1, i32::MIN, 0, i32::MAX] {
        let mut raw = Raw::session(node.pg_addr).await;
        raw.send(
            &[
                parse("", sql, &[]),
                bind("", &[], &[], &[]),
                execute(max_rows),
                sync(),
            ]
            .concat(),
        )
        .await;
        let got = raw.until_ready().await;
        let rows = got.iter().filter(|(t, _)| *t == b'D').count();
        assert_eq!(rows, 3, "max_rows {max_rows}: {got:?}");
        assert!(
            got.iter().any(|(t, _)| *t == b'C'),
            "max_rows {max_rows}: {got:?}"
        );
        raw.still_serves().await;
    }

    tracing::info!("--- a smaller count suspends the portal, the next Execute goes on");
    {
        let mut raw = Raw::session(node.pg_addr).await;
        raw.send(
            &[
                parse("", sql, &[]),
                bind("", &[], &[], &[]),
                execute(2),
                execute(2),
                sync(),
            ]
            .concat(),
        )
        .await;
        let got = raw.until_ready().await;
        let types: Vec<u8> = got.iter().map(|(t, _)| *t).collect();
        assert_eq!(types, b"12DDsDCZ".to_vec(), "{got:?}");
    }
    node_still_serves(node.pg_addr).await;
    node.stop().await;
}

/// Regression: with two or more result format codes, pgwire indexed them by column without a
/// bounds check (a panic for a query with more columns than codes), and bound whatever number
/// of parameters arrived. PostgreSQL refuses both at Bind with 08P01.
#[tokio::test]
async fn bind_counts_that_do_not_match_the_statement_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;

    tracing::info!("--- two result formats for three columns");
    {
        let mut raw = Raw::session(node.pg_addr).await;
        raw.send(
            &[
                parse("", "SELECT 1, 2, 3", &[]),
                bind("", &[], &[], &[1, 1]),
                execute(0),
                sync(),
            ]
            .concat(),
        )
        .await;
        let e = raw.error().await;
        assert_eq!(
            (e.severity.as_str(), e.code.as_str()),
            ("ERROR", "08P01"),
            "{e:?}"
        );
        assert_eq!(
            e.message,
            "bind message has 2 result formats but query has 3 columns"
        );
        raw.until_ready().await;
        raw.still_serves().await;
    }

    tracing::info!("--- too few and too many parameters");
    for params in [&[][..], &[Some(&b"1"[..]), Some(&b"2"[..])][..]] {
        let mut raw = Raw::session(node.pg_addr).await;
        raw.send(
            &[
                parse("", "SELECT $1::int", &[]),
                bind("", &[], params, &[]),
                execute(0),
                sync(),
            ]
            .concat(),
        )
        .await;
        let e = raw.error().await;
        assert_eq!(
            (e.severity.as_str(), e.code.as_str()),
            ("ERROR", "08P01"),
            "{e:?}"
        );
        assert_eq!(
            e.message,
            format!(
                "bind message supplies {} parameters, but prepared statement \"\" requires 1",
                params.len()
            )
        );
        raw.until_ready().await;
        raw.still_serves().await;
    }

    tracing::info!("--- a parameter declared at Parse but not used still counts, as in PostgreSQL");
    {
        let mut raw = Raw::session(node.pg_addr).await;
        let int4 = 23u32;
        raw.send(
            &[
                parse("", "SELECT $1::int", &[int4, int4]),
                msg(b'D', b"S\0"),
                bind("", &[], &[Some(b"7"), Some(b"8")], &[]),
                execute(0),
                sync(),
            ]
            .concat(),
        )
        .await;
        let got = raw.until_ready().await;
        let (_, described) = got
            .iter()
            .find(|(t, _)| *t == b't')
            .expect("ParameterDescription");
        assert_eq!(described[..2], 2u16.to_be_bytes());
        assert!(
            got.iter().any(|(t, b)| *t == b'D' && b.ends_with(b"7")),
            "{got:?}"
        );
    }

    tracing::info!("--- a text bytea parameter with a multi-byte character");
    {
        let mut raw = Raw::session(node.pg_addr).await;
        let bytea = 17u32;
        raw.send(
            &[
                parse("", "SELECT $1", &[bytea]),
                bind("", &[], &[Some("\\xaé0".as_bytes())], &[]),
                execute(0),
                sync(),
            ]
            .concat(),
        )
        .await;
        let e = raw.error().await;
        assert_eq!(
            (e.severity.as_str(), e.code.as_str()),
            ("ERROR", "22P02"),
            "{e:?}"
        );
        raw.until_ready().await;
        raw.still_serves().await;
    }
    node_still_serves(node.pg_addr).await;
    node.stop().await;
}

fn untyped(body: &[u8]) -> Vec<u8> {
    let mut m = (body.len() as u32 + 4).to_be_bytes().to_vec();
    m.extend_from_slice(body);
    m
}

/// What a malformed message must get.
struct Case {
    what: &'static str,
    bytes: Vec<u8>,
    code: &'static str,
    message: String,
    /// FATAL: the connection closes. Otherwise ERROR, and the session goes on.
    fatal: bool,
    /// An extended-query message: the session skips to the next Sync.
    extended: bool,
}

fn fatal(what: &'static str, bytes: Vec<u8>, code: &'static str, message: &str) -> Case {
    Case {
        what,
        bytes,
        code,
        message: message.into(),
        fatal: true,
        extended: false,
    }
}

fn error(
    what: &'static str,
    bytes: Vec<u8>,
    code: &'static str,
    message: &str,
    extended: bool,
) -> Case {
    Case {
        what,
        bytes,
        code,
        message: message.into(),
        fatal: false,
        extended,
    }
}

/// Every malformed message pgwire 0.42 panicked on, desynchronized over, or buffered without
/// a limit gets the error PostgreSQL sends for it; after an ERROR the same session still runs
/// queries, after a FATAL the connection is closed; and the node serves normal clients.
#[tokio::test]
async fn malformed_messages_get_postgres_errors_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let short = "insufficient data left in message";
    let large = LARGE_MESSAGE_BYTES_MAX as u32;
    let cases = vec![
        fatal(
            "unknown type",
            msg(b'x', b""),
            "08P01",
            "invalid frontend message type 120",
        ),
        fatal(
            "p after start-up",
            vec![b'p', 0, 0, 0, 2],
            "08P01",
            "invalid frontend message type 112",
        ),
        fatal(
            "CopyData of length 3",
            vec![b'd', 0, 0, 0, 3],
            "08P01",
            "invalid message length",
        ),
        fatal(
            "Query of length 0",
            vec![b'Q', 0, 0, 0, 0],
            "08P01",
            "invalid message length",
        ),
        fatal(
            "a Query announcing 2 GiB",
            header(b'Q', 0x7fff_fff0),
            "54000",
            &format!("Query message is longer than {large} bytes (2147483632 announced)"),
        ),
        fatal(
            "a Bind one byte over the limit",
            header(b'B', large + 1),
            "54000",
            &format!(
                "Bind message is longer than {large} bytes ({} announced)",
                large + 1
            ),
        ),
        fatal(
            "an Execute over the small-message limit",
            header(b'E', 20_000),
            "54000",
            "Execute message is longer than 10000 bytes (20000 announced)",
        ),
        error("Close without a body", msg(b'C', b""), "08P01", short, true),
        error(
            "Describe without a body",
            msg(b'D', b""),
            "08P01",
            short,
            true,
        ),
        error(
            "Describe of X",
            msg(b'D', b"Xs\0"),
            "08P01",
            "invalid DESCRIBE message subtype 88",
            true,
        ),
        error(
            "Close of X",
            msg(b'C', b"Xs\0"),
            "08P01",
            "invalid CLOSE message subtype 88",
            true,
        ),
        error(
            "Parse short of its types",
            msg(b'P', b"\0SELECT 1\0\0\x05"),
            "08P01",
            short,
            true,
        ),
        error(
            "Bind short of its parameters",
            msg(b'B', b"\0\0\0\0\0\x02"),
            "08P01",
            short,
            true,
        ),
        error(
            "Bind with a parameter longer than the message",
            msg(b'B', b"\0\0\0\0\0\x01\0\0\x10\0ab"),
            "08P01",
            short,
            true,
        ),
        error(
            "Bind with 2 formats for 1 parameter",
            bind("", &[0, 1], &[Some(b"1")], &[]),
            "08P01",
            "bind message has 2 parameter formats but 1 parameters",
            true,
        ),
        error(
            "Bind with format code 7",
            bind("", &[7], &[Some(b"1")], &[]),
            "22023",
            "unsupported format code: 7",
            true,
        ),
        error(
            "Execute without a row count",
            msg(b'E', b"\0"),
            "08P01",
            short,
            true,
        ),
        error(
            "Query without a terminator",
            msg(b'Q', b"SELECT 1"),
            "08P01",
            "invalid string in message",
            false,
        ),
        error(
            "Query with bytes that are not UTF-8",
            msg(b'Q', b"SELECT '\xc3\x28'\0"),
            "22021",
            "invalid byte sequence for encoding \"UTF8\": 0xc3 0x28",
            false,
        ),
        // pgwire read the body byte as the next message: a Terminate.
        error(
            "Sync with a trailing X",
            msg(b'S', b"X"),
            "08P01",
            "invalid message format",
            false,
        ),
        error(
            "a fastpath function call",
            msg(b'F', b"\0\0\0\x01\0\0\0\0\0\0"),
            "0A000",
            "fastpath function calls are not supported",
            false,
        ),
    ];
    for case in cases {
        tracing::info!(what = case.what, "--- malformed message");
        let mut raw = Raw::session(node.pg_addr).await;
        raw.send(&case.bytes).await;
        let e = raw.error().await;
        let severity = if case.fatal { "FATAL" } else { "ERROR" };
        assert_eq!(
            (e.severity.as_str(), e.code.as_str(), e.message.as_str()),
            (severity, case.code, case.message.as_str()),
            "{}",
            case.what
        );
        if case.fatal {
            raw.closed().await;
            continue;
        }
        if case.extended {
            // Everything up to Sync is skipped, as in PostgreSQL.
            raw.send(&[query("SELECT 2"), execute(0), sync()].concat())
                .await;
        }
        raw.until_ready().await;
        raw.still_serves().await;
    }

    tracing::info!("--- a malformed Query inside a block fails the block, as any error does");
    {
        let mut raw = Raw::session(node.pg_addr).await;
        raw.send(&query("BEGIN")).await;
        raw.until_ready().await;
        raw.send(&msg(b'Q', b"SELECT 1")).await;
        assert_eq!(raw.error().await.code, "08P01");
        let ready = raw.until_ready().await;
        assert_eq!(ready.last().map(|(_, b)| b.as_slice()), Some(&b"E"[..]));
        raw.send(&query("SELECT 1")).await;
        assert_eq!(raw.error().await.code, "25P02");
        raw.until_ready().await;
        raw.send(&query("ROLLBACK")).await;
        raw.until_ready().await;
        raw.still_serves().await;
    }
    node_still_serves(node.pg_addr).await;
    node.stop().await;
}

/// Start-up packets that break the rules are refused before any session exists.
#[tokio::test]
async fn startup_packets_that_break_the_rules_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let invalid_length = "invalid length of startup packet";
    let cases = vec![
        fatal("length 2", vec![0, 0, 0, 2], "08P01", invalid_length),
        fatal(
            "length 2 GiB",
            vec![0x7f, 0xff, 0xff, 0xff],
            "08P01",
            invalid_length,
        ),
        fatal(
            "a Query before start-up",
            query("SELECT 1"),
            "08P01",
            invalid_length,
        ),
        fatal(
            "protocol 2.0",
            untyped(b"\0\x02\0\0user\0postgres\0\0"),
            "0A000",
            "unsupported frontend protocol 2.0: server supports 3.0 to 3.2",
        ),
        fatal(
            "no terminator",
            untyped(b"\0\x03\0\0user\0postgres\0"),
            "08P01",
            "invalid startup packet layout: expected terminator as last byte",
        ),
    ];
    for case in cases {
        tracing::info!(what = case.what, "--- start-up packet");
        let mut raw = Raw::connect(node.pg_addr).await;
        raw.send(&case.bytes).await;
        let e = raw.error().await;
        assert_eq!(
            (e.severity.as_str(), e.code.as_str(), e.message.as_str()),
            ("FATAL", case.code, case.message.as_str()),
            "{}",
            case.what
        );
        raw.closed().await;
    }

    tracing::info!("--- SSLRequest is refused with N, then the start-up goes on");
    let ssl_request = untyped(&80_877_103u32.to_be_bytes());
    {
        let mut raw = Raw::connect(node.pg_addr).await;
        raw.send(&ssl_request).await;
        assert_eq!(raw.byte().await, b'N');
        raw.send(&startup_packet()).await;
        raw.until_ready().await;
        raw.still_serves().await;
    }

    tracing::info!("--- a second SSLRequest is a start-up packet of an unknown protocol");
    {
        let mut raw = Raw::connect(node.pg_addr).await;
        raw.send(&ssl_request).await;
        assert_eq!(raw.byte().await, b'N');
        raw.send(&ssl_request).await;
        let e = raw.error().await;
        assert_eq!(e.code, "0A000", "{e:?}");
        raw.closed().await;
    }
    node_still_serves(node.pg_addr).await;
    node.stop().await;
}

/// A node served with `config` instead of the defaults (`TestNode` uses the defaults).
struct Served {
    node: Arc<Node>,
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Served {
    async fn start(config: ServerConfig) -> Served {
        crate::support::init_tracing();
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let raft_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let serving = sqlkeeper::start(
            sqlkeeper::ServeConfig {
                node_id: 1,
                data_dir: dir.path().to_path_buf(),
                ..Default::default()
            },
            &listener,
            raft_listener,
        )
        .await
        .unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(sqlkeeper_pgwire::run_with(
            listener,
            sqlkeeper_session::Sessions::new(serving.node.clone()),
            config,
            Default::default(),
            async move {
                let _ = stopped.await;
            },
        ));
        Served {
            node: serving.node,
            addr: serving.pg_addr,
            stop,
            task,
            _dir: dir,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
        self.node.shutdown().await;
    }
}

/// A client that connects and sends nothing, or half a start-up packet, holds a connection
/// slot only until the start-up timeout.
#[tokio::test]
async fn a_client_that_does_not_start_up_is_closed_after_the_startup_timeout() {
    let timeout = Duration::from_millis(500);
    let served = Served::start(ServerConfig {
        startup_timeout: timeout,
        ..ServerConfig::default()
    })
    .await;
    for sent in [&[][..], &[0, 0, 0]] {
        let started = Instant::now();
        let mut raw = Raw::connect(served.addr).await;
        raw.send(sent).await;
        // As PostgreSQL: closed without a message.
        assert!(raw.next().await.is_none());
        assert!(
            started.elapsed() >= timeout,
            "closed after {:?}",
            started.elapsed()
        );
    }
    node_still_serves(served.addr).await;
    served.stop().await;
}

/// A session that sends nothing outside a transaction block is closed with 57P05 after the
/// idle-session timeout; inside a block the block's own timeout decides.
#[tokio::test]
async fn an_idle_session_is_closed_outside_a_transaction_block() {
    let idle = Duration::from_millis(500);
    let served = Served::start(ServerConfig {
        idle_session_timeout: idle,
        ..ServerConfig::default()
    })
    .await;

    tracing::info!("--- idle outside a block: FATAL 57P05");
    {
        // Measured from before the start-up: the server's clock starts after its last answer.
        let started = Instant::now();
        let mut raw = Raw::session(served.addr).await;
        let e = raw.error().await;
        assert!(
            started.elapsed() >= idle,
            "closed after {:?}",
            started.elapsed()
        );
        assert_eq!(
            (e.severity.as_str(), e.code.as_str(), e.message.as_str()),
            (
                "FATAL",
                "57P05",
                "terminating connection due to idle-session timeout"
            )
        );
        raw.closed().await;
    }

    tracing::info!("--- idle inside a block: the session stays, until the block ends");
    {
        let mut raw = Raw::session(served.addr).await;
        raw.send(&query("BEGIN")).await;
        raw.until_ready().await;
        tokio::time::sleep(idle * 3).await;
        raw.still_serves().await;
        raw.send(&query("COMMIT")).await;
        raw.until_ready().await;
        assert_eq!(raw.error().await.code, "57P05");
        raw.closed().await;
    }
    served.stop().await;
}

/// A client that stops in the middle of a message is given up on.
#[tokio::test]
async fn a_message_left_half_sent_is_given_up() {
    let gap = Duration::from_millis(500);
    let served = Served::start(ServerConfig {
        partial_message_timeout: gap,
        ..ServerConfig::default()
    })
    .await;
    for partial in [
        vec![b'Q', 0, 0],
        [header(b'Q', 100), b"SELECT".to_vec()].concat(),
    ] {
        let mut raw = Raw::session(served.addr).await;
        raw.send(&partial).await;
        let e = raw.error().await;
        assert_eq!(
            (e.severity.as_str(), e.code.as_str()),
            ("FATAL", "08P01"),
            "{e:?}"
        );
        assert!(
            e.message.starts_with("incomplete message from client"),
            "{e:?}"
        );
        raw.closed().await;
    }
    node_still_serves(served.addr).await;
    served.stop().await;
}

/// Over the connection limit a client is told so at once (53300) instead of waiting in the
/// listen backlog; a CancelRequest is still served; a freed slot is reused.
#[tokio::test]
async fn connections_over_the_limit_are_refused_with_53300() {
    let served = Served::start(ServerConfig {
        connections_max: 2,
        ..ServerConfig::default()
    })
    .await;
    let first = Raw::session(served.addr).await;
    let mut second = Raw::session(served.addr).await;

    tracing::info!("--- a third client gets FATAL 53300");
    {
        let mut raw = Raw::connect(served.addr).await;
        raw.send(&startup_packet()).await;
        let e = raw.error().await;
        assert_eq!(
            (e.severity.as_str(), e.code.as_str(), e.message.as_str()),
            ("FATAL", "53300", "sorry, too many clients already")
        );
        raw.closed().await;
        let conn_str = format!("host=127.0.0.1 port={} user=postgres", served.addr.port());
        let refused = tokio_postgres::connect(&conn_str, tokio_postgres::NoTls)
            .await
            .err()
            .expect("a third tokio-postgres client was let in");
        assert_eq!(
            refused.code(),
            Some(&tokio_postgres::error::SqlState::TOO_MANY_CONNECTIONS)
        );
    }

    tracing::info!("--- a CancelRequest on a full node is read, not refused");
    {
        let mut raw = Raw::connect(served.addr).await;
        raw.send(&untyped(b"\x04\xd2\x16\x2e\0\0\0\x07\x01\x02\x03\x04"))
            .await;
        assert!(raw.next().await.is_none(), "a CancelRequest got an answer");
    }

    tracing::info!("--- a freed slot is taken by the next client");
    drop(first);
    second.still_serves().await;
    let mut raw = eventually("the slot is freed", WAIT, || async {
        let mut raw = Raw::connect(served.addr).await;
        raw.send(&startup_packet()).await;
        match raw.next().await {
            Some((b'E', body)) => {
                assert_eq!(error_of(&body).code, "53300");
                Err("53300")
            }
            Some(_) => Ok(raw),
            None => panic!("closed without an answer"),
        }
    })
    .await;
    raw.until_ready().await;
    raw.still_serves().await;
    drop(second);
    served.stop().await;
}
