//! Entry points for fuzz targets (`fuzz/`) and the brief fuzz tests: every decoder of bytes
//! that come from a peer or from disk, fed arbitrary input. Each must return an error for
//! bad input and never panic. Not part of the node's API.

use bytes::BytesMut;
use tokio_util::codec::Decoder;

use crate::rpc::{decode_frame, Request, Response};
use crate::types::TypeConfig;

/// Bytes as a peer sends them on a cluster connection: length-delimited frames, each decoded
/// as a request and as a response (the two directions).
pub fn peer_bytes(data: &[u8]) {
    let mut codec = crate::rpc::codec();
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        let _ = decode_frame::<Request>(&frame);
        let _ = decode_frame::<Response>(&frame);
    }
}

/// One frame body (after the length), decoded both ways.
pub fn peer_frame(frame: &[u8]) {
    let _ = decode_frame::<Request>(frame);
    let _ = decode_frame::<Response>(frame);
}

/// A record of the Raft log as read from disk: an entry, a vote, a log id.
pub fn log_record(record: &[u8]) {
    let _ = crate::log_store::decode::<openraft::alias::EntryOf<TypeConfig>>(record);
    let _ = crate::log_store::decode::<openraft::alias::VoteOf<TypeConfig>>(record);
    let _ = crate::log_store::decode::<Option<openraft::alias::LogIdOf<TypeConfig>>>(record);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator: the brief runs must be the same every time.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Valid frames to start mutating from: what nodes really send.
    fn seeds() -> Vec<Vec<u8>> {
        let requests = [
            r#"{"Hello":{"from":1,"to":2,"nonce":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32]}}"#,
            r#"{"Proof":{"proof":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32]}}"#,
            r#""StreamAppend""#,
            r#""ReadIndex""#,
            r#""Info""#,
            r#"{"Admin":{"RemoveNode":{"node_id":3}}}"#,
            r#"{"Vote":{"vote":{"leader_id":{"term":2,"node_id":1},"committed":false},"last_log_id":{"leader_id":{"term":1,"node_id":1},"index":7}}}"#,
            r#"{"AppendEntries":{"vote":{"leader_id":{"term":1,"node_id":1},"committed":true},"prev_log_id":null,"leader_commit":null,"entries":[{"log_id":{"leader_id":{"term":1,"node_id":1},"index":0},"payload":{"Normal":{"Execute":{"request_id":null,"stamp":{"unix_micros":1,"seed":2},"statements":[{"sql":"SELECT 1","params":[{"Integer":1},"Null",{"Blob":[1,2]}]}]}}}}]}}"#,
            r#"{"ForwardWrite":{"request_id":{"origin":1,"serial":2},"proposal":{"Statements":{"statements":[],"role":"alice"}}}}"#,
        ];
        requests
            .iter()
            .map(|j| {
                let mut v = vec![crate::rpc::WIRE_VERSION];
                v.extend_from_slice(j.as_bytes());
                v
            })
            .collect()
    }

    fn mutate(rng: &mut Rng, mut v: Vec<u8>) -> Vec<u8> {
        for _ in 0..1 + rng.below(8) {
            match rng.below(5) {
                0 if !v.is_empty() => {
                    let i = rng.below(v.len());
                    v[i] = rng.next() as u8;
                }
                1 if !v.is_empty() => {
                    let i = rng.below(v.len());
                    v.truncate(i);
                }
                2 => {
                    let i = rng.below(v.len() + 1);
                    v.insert(i, b"{}[]\",:0123456789-e"[rng.below(19)]);
                }
                3 if v.len() > 1 => {
                    let (a, b) = (rng.below(v.len()), rng.below(v.len()));
                    let (a, b) = (a.min(b), a.max(b));
                    let copy = v[a..b].to_vec();
                    v.splice(a..a, copy);
                }
                _ => v.push(rng.next() as u8),
            }
        }
        v
    }

    /// A few seconds of the fuzz targets on mutated real frames and random bytes; the long runs
    /// are `scripts/fuzz.sh`. Findings live in `fuzz/regressions/` and run here too.
    #[test]
    fn peer_and_log_decoders_survive_arbitrary_bytes() {
        let mut rng = Rng(0x5eed_cafe_f00d_d00d);
        let seeds = seeds();
        // Mutations of frames a node would refuse whole would test little past the version byte.
        for seed in &seeds {
            let decoded = decode_frame::<Request>(seed);
            assert!(
                decoded.is_ok(),
                "{}: {decoded:?}",
                String::from_utf8_lossy(seed)
            );
        }
        for i in 0..20_000 {
            let input = if i % 4 == 0 {
                (0..rng.below(64)).map(|_| rng.next() as u8).collect()
            } else {
                let seed = seeds[rng.below(seeds.len())].clone();
                mutate(&mut rng, seed)
            };
            peer_frame(&input);
            log_record(&input);
            let mut framed = (input.len() as u32).to_be_bytes().to_vec();
            framed.extend_from_slice(&input);
            peer_bytes(&framed);
            peer_bytes(&input);
        }
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/regressions");
        for target in ["raft_frame", "log_record"] {
            let Ok(entries) = std::fs::read_dir(format!("{dir}/{target}")) else {
                continue;
            };
            for e in entries {
                let data = std::fs::read(e.unwrap().path()).unwrap();
                peer_bytes(&data);
                peer_frame(&data);
                log_record(&data);
            }
        }
    }
}
