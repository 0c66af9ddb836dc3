//! Every frontend message after start-up (Query, Parse, Bind, Execute, Describe, Close, Sync,
//! Flush, CopyData, CopyDone, CopyFail, Terminate, and unknown types), as a stream.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sqlkeeper_pgwire::fuzzing::{read_stream, StreamPhase};

fuzz_target!(|data: &[u8]| {
    read_stream(StreamPhase::Query, data);
});
