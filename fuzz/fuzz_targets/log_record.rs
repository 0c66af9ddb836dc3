//! A record of the Raft log as read back from disk (an entry, a vote, a log id).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sqlkeeper_raft::fuzzing::log_record(data);
});
