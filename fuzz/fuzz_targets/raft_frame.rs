//! Bytes a peer sends on a cluster connection: length-delimited frames, each decoded as a
//! request and as a response; and one frame body alone.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sqlkeeper_raft::fuzzing::peer_bytes(data);
    sqlkeeper_raft::fuzzing::peer_frame(data);
});
