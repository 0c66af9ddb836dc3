//! A client's first bytes: SSLRequest/GSSENCRequest, CancelRequest, StartupMessage, then
//! whatever follows, through the frame guard and pgwire's decoder.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sqlkeeper_pgwire::fuzzing::{read_stream, StreamPhase};

fuzz_target!(|data: &[u8]| {
    read_stream(StreamPhase::Startup, data);
    read_stream(StreamPhase::Password, data);
});
