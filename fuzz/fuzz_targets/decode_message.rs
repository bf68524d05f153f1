//! Feeds arbitrary bytes to the envelope decoder: it must return an error or
//! a message that re-encodes to the same bytes, and never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mc_protocols::{MAX_MESSAGE_BYTES, decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = decode(data, MAX_MESSAGE_BYTES) {
        let again = encode(&message, MAX_MESSAGE_BYTES).expect("a decoded message re-encodes");
        assert_eq!(decode(&again, MAX_MESSAGE_BYTES).expect("re-decodes"), message);
    }
});
