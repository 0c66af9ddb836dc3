//! Bound parameter values of every type the node decodes, in text and binary format. The first
//! byte picks the type and the format; the rest is the value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sqlkeeper_pgwire::fuzzing::{decode_param, PARAM_TYPES};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, value)) = data.split_first() else {
        return;
    };
    let ty = &PARAM_TYPES[(pick as usize >> 1) % PARAM_TYPES.len()];
    let _ = decode_param(ty, pick & 1 == 1, Some(value));
});
