//! Feeds arbitrary bytes to the chunk decoder and the reassembler: errors,
//! never panics, and never more memory than the limits allow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mc_learn_core::chunk::{Chunk, Limits, Reassembler};

fuzz_target!(|data: &[u8]| {
    let mut reassembler = Reassembler::new(Limits {
        max_update_bytes: 1 << 16,
        max_pending_per_sender: 2,
        max_bytes_per_sender: 1 << 17,
    });
    for (i, piece) in data.split(|b| *b == 0xff).enumerate() {
        if let Ok(chunk) = Chunk::decode(piece, 1 << 16) {
            let _ = reassembler.insert(i % 3, chunk);
        }
    }
    assert!(reassembler.reserved_bytes() <= 3 << 17);
});
