//! Feeds arbitrary bytes to the signed-update decoder (bytes a peer sends in
//! a campaign): it must return an error or an update that re-encodes to the
//! same update, and never panic; verifying a decoded update must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mc_learn_core::SignedUpdate;

fuzz_target!(|data: &[u8]| {
    if let Ok(update) = SignedUpdate::decode(data, 1 << 20) {
        let again = SignedUpdate::decode(&update.encode(), 1 << 20).expect("re-decodes");
        assert_eq!(again.header, update.header);
        assert_eq!(again.signature, update.signature);
        let bits = |u: &SignedUpdate| u.weights.iter().map(|w| w.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&again), bits(&update));
        let _ = update.verify();
    }
});
