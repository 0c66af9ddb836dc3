//! Entry points for fuzz targets: pure functions that take arbitrary bytes and must never
//! panic. Not part of the API; `cargo fuzz` targets and the randomized tests below call them.
//!
//! ```ignore
//! fuzz_target!(|data: &[u8]| {
//!     sqlkeeper_pgwire::fuzzing::read_stream(StreamPhase::Query, data);
//! });
//! ```

use bytes::BytesMut;
use pgwire::api::Type;
use pgwire::messages::{PgWireFrontendMessage, ProtocolVersion, SslNegotiationMetaMessage};

use crate::frame::{self, Expect, Kind};

/// Where in a connection a byte stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamPhase {
    /// A new connection: SSLRequest, GSSENCRequest, CancelRequest, StartupMessage. After a
    /// StartupMessage the stream goes on in the query phase (trust authentication).
    Startup,
    /// Authentication in progress: password-family messages.
    Password,
    /// After start-up: typed messages.
    Query,
}

/// What one frame of the stream came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted and decoded by pgwire into the message named.
    Decoded(&'static str),
    /// Refused with this SQLSTATE; after a FATAL one the stream ends.
    Refused {
        /// The error's SQLSTATE.
        sqlstate: String,
        /// Whether the connection would be closed.
        fatal: bool,
    },
    /// Read and dropped while skipping to the next Sync.
    Skipped,
    /// The stream ended inside a message.
    Incomplete,
    /// A Terminate or CancelRequest: the connection would end here.
    End,
}

/// Reads `bytes` as a connection would, frame by frame: the frame guard, then pgwire's
/// decoder. Returns what each frame came to.
///
/// # Panics
///
/// Only if an invariant is broken: a frame the guard accepted that pgwire does not decode to
/// exactly one message of the guard's kind, consuming exactly the frame's bytes. Any other
/// panic (inside pgwire's decoder, or the guard itself) is a bug the fuzzer should report.
pub fn read_stream(phase: StreamPhase, bytes: &[u8]) -> Vec<Outcome> {
    let mut expect = match phase {
        StreamPhase::Startup => Expect::START,
        StreamPhase::Password => Expect::Password,
        StreamPhase::Query => Expect::Query,
    };
    let mut inbox = BytesMut::from(bytes);
    let mut out = Vec::new();
    loop {
        let header = match frame::header(expect, &inbox) {
            Ok(Some(h)) if inbox.len() >= h.len => h,
            Ok(_) => {
                if !inbox.is_empty() {
                    out.push(Outcome::Incomplete);
                }
                return out;
            }
            Err(e) => {
                out.push(refused(&e));
                return out;
            }
        };
        let frame = inbox.split_to(header.len);
        let kind = header.kind;
        if expect == Expect::SkipToSync && !matches!(kind, Kind::Sync | Kind::Terminate) {
            out.push(Outcome::Skipped);
            continue;
        }
        match kind {
            Kind::Terminate => {
                out.push(Outcome::End);
                return out;
            }
            Kind::FunctionCall => {
                out.push(Outcome::Refused {
                    sqlstate: "0A000".into(),
                    fatal: false,
                });
                continue;
            }
            _ => {}
        }
        if let Err(e) = frame::check_body(kind, &frame) {
            out.push(refused(&e));
            if e.fatal {
                return out;
            }
            if kind.is_extended_query() {
                expect = Expect::SkipToSync;
            }
            continue;
        }
        let message = match frame::decode(kind, frame, ProtocolVersion::default()) {
            Ok(m) => m,
            Err(e) => panic!("a {kind:?} frame the guard accepted did not decode: {e:?}"),
        };
        let name = message_name(&message);
        assert_eq!(
            name,
            kind.name(),
            "a {kind:?} frame decoded to another message"
        );
        out.push(Outcome::Decoded(name));
        expect = match (expect, kind) {
            (
                Expect::Startup {
                    ssl_refused,
                    gss_refused,
                },
                Kind::SslRequest | Kind::GssEncRequest,
            ) => Expect::Startup {
                ssl_refused: ssl_refused || kind == Kind::SslRequest,
                gss_refused: gss_refused || kind == Kind::GssEncRequest,
            },
            (_, Kind::CancelRequest) => {
                out.push(Outcome::End);
                return out;
            }
            (_, Kind::Startup | Kind::Sync) => Expect::Query,
            (e, _) => e,
        };
    }
}

fn refused(e: &crate::errors::ClientError) -> Outcome {
    Outcome::Refused {
        sqlstate: e.sqlstate.to_string(),
        fatal: e.fatal,
    }
}

fn message_name(m: &PgWireFrontendMessage) -> &'static str {
    match m {
        PgWireFrontendMessage::SslNegotiation(SslNegotiationMetaMessage::PostgresSsl(_)) => {
            "SSLRequest"
        }
        PgWireFrontendMessage::SslNegotiation(SslNegotiationMetaMessage::PostgresGss(_)) => {
            "GSSENCRequest"
        }
        PgWireFrontendMessage::SslNegotiation(SslNegotiationMetaMessage::None) => "no negotiation",
        PgWireFrontendMessage::Startup(_) => "StartupMessage",
        PgWireFrontendMessage::CancelRequest(_) => "CancelRequest",
        PgWireFrontendMessage::PasswordMessageFamily(_) => "password",
        PgWireFrontendMessage::Query(_) => "Query",
        PgWireFrontendMessage::Parse(_) => "Parse",
        PgWireFrontendMessage::Close(_) => "Close",
        PgWireFrontendMessage::Bind(_) => "Bind",
        PgWireFrontendMessage::Describe(_) => "Describe",
        PgWireFrontendMessage::Execute(_) => "Execute",
        PgWireFrontendMessage::PortalSuspended(_) => "PortalSuspended",
        PgWireFrontendMessage::Flush(_) => "Flush",
        PgWireFrontendMessage::Sync(_) => "Sync",
        PgWireFrontendMessage::Terminate(_) => "Terminate",
        PgWireFrontendMessage::CopyData(_) => "CopyData",
        PgWireFrontendMessage::CopyFail(_) => "CopyFail",
        PgWireFrontendMessage::CopyDone(_) => "CopyDone",
    }
}

/// Parameter types `decode_param` is exercised with: the ones it decodes itself and a few it
/// passes on as text (or refuses in binary).
pub const PARAM_TYPES: &[Type] = &[
    Type::INT2,
    Type::INT4,
    Type::INT8,
    Type::OID,
    Type::FLOAT4,
    Type::FLOAT8,
    Type::BOOL,
    Type::BYTEA,
    Type::TEXT,
    Type::VARCHAR,
    Type::BPCHAR,
    Type::NAME,
    Type::NUMERIC,
    Type::TIMESTAMPTZ,
    Type::TIMESTAMP,
    Type::DATE,
    Type::UUID,
    Type::JSON,
    Type::JSONB,
    Type::UNKNOWN,
    Type::INT4_ARRAY,
];

/// Decodes one bound parameter (`None` is SQL NULL) of `ty` in text or binary format, as
/// Execute does. `Err` holds the SQLSTATE the client would get. Must never panic.
pub fn decode_param(ty: &Type, binary: bool, raw: Option<&[u8]>) -> Result<(), String> {
    crate::encode::decode_param(0, raw, ty, binary)
        .map(|_| ())
        .map_err(|e| e.sqlstate.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: a few lines, reproducible from a seed, good enough to mutate bytes.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    fn msg(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![ty];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn untyped(body: &[u8]) -> Vec<u8> {
        let mut m = (body.len() as u32 + 4).to_be_bytes().to_vec();
        m.extend_from_slice(body);
        m
    }

    fn startup_message() -> Vec<u8> {
        untyped(b"\x00\x03\x00\x00user\x00postgres\x00database\x00postgres\x00\x00")
    }

    /// A Bind of `params` and then one NULL parameter.
    fn bind(params: &[&[u8]], formats: &[i16], results: &[i16]) -> Vec<u8> {
        let mut b = b"portal\x00stmt\x00".to_vec();
        b.extend((formats.len() as u16).to_be_bytes());
        for f in formats {
            b.extend(f.to_be_bytes());
        }
        b.extend(((params.len() + 1) as u16).to_be_bytes());
        for p in params {
            b.extend((p.len() as i32).to_be_bytes());
            b.extend(*p);
        }
        b.extend((-1i32).to_be_bytes());
        b.extend((results.len() as u16).to_be_bytes());
        for r in results {
            b.extend(r.to_be_bytes());
        }
        msg(b'B', &b)
    }

    /// Well-formed messages of every kind, to mutate.
    fn query_corpus() -> Vec<Vec<u8>> {
        vec![
            msg(b'Q', b"SELECT 1\x00"),
            msg(
                b'P',
                b"s1\x00SELECT $1, $2\x00\x00\x02\x00\x00\x00\x17\x00\x00\x00\x19",
            ),
            bind(&[b"42"], &[], &[]),
            bind(&[b"\x00\x00\x00\x2a"], &[1, 1], &[1, 0, 1]),
            msg(b'E', b"portal\x00\x00\x00\x00\x00"),
            msg(b'E', b"\x00\xff\xff\xff\xff"),
            msg(b'D', b"Sstmt\x00"),
            msg(b'D', b"P\x00"),
            msg(b'C', b"Sstmt\x00"),
            msg(b'S', b""),
            msg(b'H', b""),
            msg(b'd', b"copy bytes"),
            msg(b'c', b""),
            msg(b'f', b"no thanks\x00"),
            msg(b'F', b"\x00\x00\x00\x01"),
            msg(b'X', b""),
        ]
    }

    fn startup_corpus() -> Vec<Vec<u8>> {
        vec![
            untyped(&80_877_103u32.to_be_bytes()),
            untyped(&80_877_104u32.to_be_bytes()),
            untyped(b"\x04\xd2\x16\x2e\x00\x00\x00\x07\x01\x02\x03\x04"),
            startup_message(),
        ]
    }

    /// Changes a stream the ways that have found bugs in decoders: bytes flipped or set to
    /// boundary values, length words set to 0..=5, ±1 or huge, cuts, repeats, insertions.
    fn mutate(rng: &mut Rng, mut b: Vec<u8>) -> Vec<u8> {
        for _ in 0..1 + rng.below(4) {
            if b.is_empty() {
                b.push(rng.next() as u8);
            }
            let at = rng.below(b.len());
            match rng.below(7) {
                0 => b[at] ^= 1 << rng.below(8),
                1 => b[at] = [0, 1, 0x7f, 0x80, 0xff, b'S', b'P', b'p'][rng.below(8)],
                2 if b.len() >= at + 4 => {
                    let old = u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
                    let new = [
                        0,
                        1,
                        2,
                        3,
                        4,
                        5,
                        old.wrapping_add(1),
                        old.wrapping_sub(1),
                        0x7fff_ffff,
                        0xffff_ffff,
                        0x8000_0000,
                    ][rng.below(11)];
                    b[at..at + 4].copy_from_slice(&new.to_be_bytes());
                }
                3 => b.truncate(at),
                4 => {
                    let end = (at + 1 + rng.below(16)).min(b.len());
                    let piece = b[at..end].to_vec();
                    b.splice(at..at, piece);
                }
                5 => {
                    let n = rng.below(8);
                    let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                    b.splice(at..at, junk);
                }
                _ => {
                    b.remove(at);
                }
            }
        }
        b
    }

    fn stream(rng: &mut Rng, corpus: &[Vec<u8>], prefix: &[u8]) -> Vec<u8> {
        let mut s = prefix.to_vec();
        for _ in 0..1 + rng.below(5) {
            s.extend_from_slice(&corpus[rng.below(corpus.len())]);
        }
        s
    }

    /// Thousands of random and mutated byte streams from a fixed seed through the frame guard
    /// and pgwire's decoder, in every phase: no panic, and every accepted frame decodes to
    /// exactly one message of its kind (asserted inside `read_stream`).
    #[test]
    fn random_and_mutated_streams_never_panic() {
        let seed = std::env::var("FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5eed_1234_abcd_0001u64);
        println!("seed {seed} (replay with FUZZ_SEED={seed})");
        let mut rng = Rng(seed);
        let query = query_corpus();
        let startup = startup_corpus();
        let mut decoded = 0usize;
        for round in 0..20_000 {
            let (phase, bytes) = match round % 4 {
                0 => {
                    let s = stream(&mut rng, &query, &[]);
                    (StreamPhase::Query, mutate(&mut rng, s))
                }
                1 => {
                    let pre = stream(&mut rng, &startup, &[]);
                    let s = stream(&mut rng, &query, &pre);
                    (StreamPhase::Startup, mutate(&mut rng, s))
                }
                2 => {
                    let p = msg(b'p', b"secret\x00");
                    let s = stream(&mut rng, &[p], &[]);
                    (StreamPhase::Password, mutate(&mut rng, s))
                }
                _ => {
                    let n = rng.below(64);
                    let bytes = (0..n).map(|_| rng.next() as u8).collect();
                    (
                        [StreamPhase::Startup, StreamPhase::Query][rng.below(2)],
                        bytes,
                    )
                }
            };
            let outcomes = read_stream(phase, &bytes);
            decoded += outcomes
                .iter()
                .filter(|o| matches!(o, Outcome::Decoded(_)))
                .count();
        }
        // The corpus must keep the decoder busy, or the test proves little.
        assert!(decoded > 10_000, "only {decoded} frames decoded");
    }

    /// `decode_param` on random and boundary values of every type, text and binary.
    #[test]
    fn decode_param_never_panics() {
        let mut rng = Rng(0x5eed_0000_0000_0002);
        let fixed: &[&[u8]] = &[
            b"",
            b"\\x",
            b"\\x0",
            b"\\xaa",
            "\\xaé0".as_bytes(),
            "\\xé".as_bytes(),
            b"\\x 0a 1B\n",
            b"\\",
            b"\\\\",
            b"\\777",
            b"\\12",
            b"\\001abc",
            b"32768",
            b"-32769",
            b"2147483648",
            b"-2147483649",
            b"9223372036854775808",
            b"4294967296",
            b"-1",
            b"NaN",
            b"-Infinity",
            b"1e400",
            b"t",
            b"maybe",
            b"\xff\xfe",
            b"\x00",
            b"\x01",
            b"\x00\x01",
            b"\x00\x00\x00\x01",
            b"\x7f\xf0\x00\x00\x00\x00\x00\x00",
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00",
            b"\x01{\"a\":1}",
            b"0123456789abcdef",
        ];
        for ty in PARAM_TYPES {
            for binary in [false, true] {
                let _ = decode_param(ty, binary, None);
                for raw in fixed {
                    let _ = decode_param(ty, binary, Some(raw));
                }
                for _ in 0..300 {
                    let n = rng.below(24);
                    let raw: Vec<u8> = (0..n)
                        .map(|_| {
                            // Mostly text-like bytes, with some high and control bytes.
                            let pool = b"0123456789abcdefxX\\ -+.eE\xc3\xa9\xff\x00";
                            pool[rng.below(pool.len())]
                        })
                        .collect();
                    let _ = decode_param(ty, binary, Some(&raw));
                }
            }
        }
    }

    // --- Regressions: each input below panicked or desynchronized pgwire 0.42.1's decoder,
    // which reads a body from the whole buffer instead of from the announced length. Each test
    // shows pgwire alone panicking on it (so the test still means something), then what a
    // connection does with it now.

    fn pgwire_alone_panics(phase: StreamPhase, bytes: &[u8]) -> bool {
        let bytes = bytes.to_vec();
        std::panic::catch_unwind(move || {
            let mut ctx = pgwire::messages::DecodeContext::new(ProtocolVersion::default());
            if phase != StreamPhase::Startup {
                ctx.awaiting_frontend_ssl = false;
                ctx.awaiting_frontend_startup = false;
            }
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = PgWireFrontendMessage::decode(&mut buf, &ctx) {}
        })
        .is_err()
    }

    fn refused(sqlstate: &str, fatal: bool) -> Outcome {
        Outcome::Refused {
            sqlstate: sqlstate.into(),
            fatal,
        }
    }

    /// Inputs the long fuzz runs (`scripts/fuzz.sh`) found, replayed on every test run.
    #[test]
    fn fuzz_regressions_still_pass() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/regressions");
        let files = |target: &str| -> Vec<Vec<u8>> {
            std::fs::read_dir(format!("{dir}/{target}"))
                .map(|d| {
                    d.filter_map(|e| std::fs::read(e.ok()?.path()).ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        for data in files("pg_startup") {
            read_stream(StreamPhase::Startup, &data);
            read_stream(StreamPhase::Password, &data);
        }
        for data in files("pg_messages") {
            read_stream(StreamPhase::Query, &data);
        }
        for data in files("pg_params") {
            if let Some((&pick, value)) = data.split_first() {
                let ty = &PARAM_TYPES[(pick as usize >> 1) % PARAM_TYPES.len()];
                let _ = decode_param(ty, pick & 1 == 1, Some(value));
            }
        }
    }

    #[test]
    fn password_message_with_a_length_below_4() {
        for len in 0u8..4 {
            let bytes = [b'p', 0, 0, 0, len, 0, 0, 0, 0];
            assert!(
                pgwire_alone_panics(StreamPhase::Password, &bytes),
                "len {len}"
            );
            assert_eq!(
                read_stream(StreamPhase::Password, &bytes),
                [refused("08P01", true)]
            );
            // After start-up, `p` is not a valid message type at all.
            assert_eq!(
                read_stream(StreamPhase::Query, &bytes),
                [refused("08P01", true)]
            );
        }
    }

    #[test]
    fn copy_data_with_a_length_below_4() {
        for len in 0u8..4 {
            let bytes = [b'd', 0, 0, 0, len, 0, 0, 0, 0];
            assert!(pgwire_alone_panics(StreamPhase::Query, &bytes), "len {len}");
            assert_eq!(
                read_stream(StreamPhase::Query, &bytes),
                [refused("08P01", true)]
            );
        }
    }

    #[test]
    fn close_and_describe_with_an_empty_body() {
        for ty in [b'C', b'D'] {
            let bytes = msg(ty, b"");
            assert!(pgwire_alone_panics(StreamPhase::Query, &bytes));
            let then_sync = [bytes, msg(b'S', b"")].concat();
            assert_eq!(
                read_stream(StreamPhase::Query, &then_sync),
                [refused("08P01", false), Outcome::Decoded("Sync")]
            );
        }
    }

    #[test]
    fn close_and_describe_with_an_unknown_target() {
        for ty in [b'C', b'D'] {
            assert_eq!(
                read_stream(StreamPhase::Query, &msg(ty, b"Xname\x00")),
                [refused("08P01", false)]
            );
        }
    }

    #[test]
    fn parse_bind_and_execute_shorter_than_their_counts() {
        let cases = [
            // Parse: 5 parameter types announced, none sent.
            msg(b'P', b"\x00SELECT 1\x00\x00\x05"),
            // Parse: no type count at all.
            msg(b'P', b"\x00SELECT 1\x00"),
            // Bind: 3 format codes announced, one sent.
            msg(b'B', b"\x00\x00\x00\x03\x00\x01"),
            // Bind: 2 parameters announced, none sent.
            msg(b'B', b"\x00\x00\x00\x00\x00\x02"),
            // Bind: a parameter longer than the message.
            msg(b'B', b"\x00\x00\x00\x00\x00\x01\x00\x00\x10\x00ab"),
            // Bind: no result format count.
            msg(b'B', b"\x00\x00\x00\x00\x00\x00"),
            // Execute: no row count.
            msg(b'E', b"\x00"),
        ];
        for bytes in cases {
            assert!(pgwire_alone_panics(StreamPhase::Query, &bytes), "{bytes:?}");
            let then_sync = [bytes, msg(b'S', b"")].concat();
            assert_eq!(
                read_stream(StreamPhase::Query, &then_sync),
                [refused("08P01", false), Outcome::Decoded("Sync")]
            );
        }
    }

    /// pgwire did not panic on trailing bytes: it read them as the next message. Here a Sync
    /// with a body whose byte is `X` would have ended the session as a Terminate.
    #[test]
    fn trailing_bytes_are_not_read_as_another_message() {
        let bytes = [msg(b'S', b"X\x00\x00\x00\x04"), msg(b'Q', b"SELECT 1\x00")].concat();
        assert_eq!(
            read_stream(StreamPhase::Query, &bytes),
            [refused("08P01", false), Outcome::Decoded("Query")]
        );
    }

    #[test]
    fn bind_format_counts_and_codes_as_postgres_checks_them() {
        // Two formats for one parameter (and the NULL the helper adds: two in all) is fine.
        let ok = bind(&[b"1"], &[0, 1], &[]);
        assert_eq!(
            read_stream(StreamPhase::Query, &ok),
            [Outcome::Decoded("Bind")]
        );
        let three_formats = bind(&[b"1"], &[0, 1, 0], &[]);
        assert_eq!(
            read_stream(StreamPhase::Query, &three_formats),
            [refused("08P01", false)]
        );
        let unknown_code = bind(&[b"1"], &[7], &[]);
        assert_eq!(
            read_stream(StreamPhase::Query, &unknown_code),
            [refused("22023", false)]
        );
        let unknown_result_code = bind(&[b"1"], &[], &[2]);
        assert_eq!(
            read_stream(StreamPhase::Query, &unknown_result_code),
            [refused("22023", false)]
        );
    }

    /// pgwire keeps a `p` message's body raw; turning it into a SASLInitialResponse reads a
    /// length word and that many bytes past the body. With trust authentication nothing here
    /// ever does; the frame is read as exactly its raw body.
    #[test]
    fn sasl_initial_response_with_a_short_body() {
        let body = b"SCRAM-SHA-256\x00\x00\x00\x01\x00";
        let raw = pgwire::messages::startup::PasswordMessageFamily::Raw(BytesMut::from(&body[..]));
        assert!(std::panic::catch_unwind(move || raw.into_sasl_initial_response()).is_err());
        assert_eq!(
            read_stream(StreamPhase::Password, &msg(b'p', body)),
            [Outcome::Decoded("password")]
        );
    }

    #[test]
    fn oversized_messages_are_refused_before_their_body() {
        let mut huge = vec![b'Q'];
        huge.extend(0x7fff_ffffu32.to_be_bytes());
        assert_eq!(
            read_stream(StreamPhase::Query, &huge),
            [refused("54000", true)]
        );
        let mut small = vec![b'E'];
        small.extend(10_001u32.to_be_bytes());
        assert_eq!(
            read_stream(StreamPhase::Query, &small),
            [refused("54000", true)]
        );
        let startup = 0x7fff_ffffu32.to_be_bytes();
        assert_eq!(
            read_stream(StreamPhase::Startup, &startup),
            [refused("08P01", true)]
        );
    }

    #[test]
    fn startup_phase_packets() {
        let ssl = untyped(&80_877_103u32.to_be_bytes());
        let gss = untyped(&80_877_104u32.to_be_bytes());
        assert_eq!(
            read_stream(
                StreamPhase::Startup,
                &[ssl.clone(), gss, startup_message(), msg(b'S', b"")].concat()
            ),
            [
                Outcome::Decoded("SSLRequest"),
                Outcome::Decoded("GSSENCRequest"),
                Outcome::Decoded("StartupMessage"),
                Outcome::Decoded("Sync"),
            ]
        );
        // A second SSLRequest is a start-up packet of protocol 1234.5679, as in PostgreSQL.
        assert_eq!(
            read_stream(StreamPhase::Startup, &[ssl.clone(), ssl].concat()),
            [Outcome::Decoded("SSLRequest"), refused("0A000", true)]
        );
        let no_terminator = untyped(b"\x00\x03\x00\x00user\x00postgres\x00");
        assert_eq!(
            read_stream(StreamPhase::Startup, &no_terminator),
            [refused("08P01", true)]
        );
        let protocol_2 = untyped(b"\x00\x02\x00\x00user\x00postgres\x00\x00");
        assert_eq!(
            read_stream(StreamPhase::Startup, &protocol_2),
            [refused("0A000", true)]
        );
        let cancel = untyped(b"\x04\xd2\x16\x2e\x00\x00\x00\x07\x01\x02\x03\x04");
        assert_eq!(
            read_stream(StreamPhase::Startup, &cancel),
            [Outcome::Decoded("CancelRequest"), Outcome::End]
        );
    }

    #[test]
    fn invalid_utf8_in_sql_is_refused_not_replaced() {
        assert_eq!(
            read_stream(StreamPhase::Query, &msg(b'Q', b"SELECT '\xc3\x28'\x00")),
            [refused("22021", false)]
        );
    }
}
