use super::*;
use proptest::prelude::*;

fn bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn reassemble(chunks: Vec<Chunk>) -> Vec<u8> {
    let mut r = Reassembler::new(Limits::default());
    let mut out = None;
    for c in chunks {
        if let Some(done) = r.insert("peer", c).unwrap() {
            assert!(out.replace(done).is_none(), "completed twice");
        }
    }
    assert_eq!(r.pending_updates(), 0);
    assert_eq!(r.reserved_bytes(), 0);
    out.expect("complete")
}

#[test]
fn chunks_fit_the_limit_and_reassemble_in_any_order() {
    let input = bytes(10_000);
    let chunks = split(&input, 1000).unwrap();
    assert_eq!(chunks.len(), 10_000usize.div_ceil(1000 - CHUNK_OVERHEAD));
    for c in &chunks {
        assert!(c.encode().len() <= 1000, "{} bytes", c.encode().len());
        assert_eq!(Chunk::decode(&c.encode(), 1000).unwrap(), *c);
    }
    let mut reversed = chunks.clone();
    reversed.reverse();
    assert_eq!(reassemble(chunks), input);
    assert_eq!(reassemble(reversed), input);
    assert_eq!(reassemble(split(&[], 100).unwrap()), Vec::<u8>::new());
    assert_eq!(reassemble(split(&input, 1 << 20).unwrap()), input);
}

#[test]
fn the_worst_case_overhead_fits_the_bound() {
    let c = Chunk {
        update_id: Digest([0xff; 32]),
        index: u32::MAX,
        total: u32::MAX,
        total_len: u64::MAX,
        data: vec![],
    };
    // Data length varints grow by one byte per 7 bits; allow a 2^35-byte chunk.
    assert!(c.encode().len() + 4 <= CHUNK_OVERHEAD);
    assert!(matches!(
        split(&[1], CHUNK_OVERHEAD),
        Err(ChunkError::ChunkTooSmall { .. })
    ));
}

#[test]
fn repeated_chunks_are_ignored_and_contradictions_rejected() {
    let input = bytes(3000);
    let chunks = split(&input, 1064).unwrap();
    assert_eq!(chunks.len(), 3);
    let mut r = Reassembler::new(Limits::default());
    assert_eq!(r.insert(1, chunks[0].clone()).unwrap(), None);
    assert_eq!(r.insert(1, chunks[0].clone()).unwrap(), None);
    let mut other = chunks[0].clone();
    other.data[0] ^= 1;
    assert!(matches!(
        r.insert(1, other),
        Err(ChunkError::Inconsistent(_))
    ));
    let mut other = chunks[1].clone();
    other.total = 4;
    assert!(matches!(
        r.insert(1, other),
        Err(ChunkError::Inconsistent(_))
    ));
    let mut other = chunks[1].clone();
    other.index = 3;
    assert!(matches!(
        r.insert(1, other),
        Err(ChunkError::Inconsistent(_))
    ));
    // Another sender's bad chunk does not touch sender 1's copy.
    let mut other = chunks[1].clone();
    other.data[5] ^= 1;
    assert_eq!(r.insert(2, other).unwrap(), None);
    assert_eq!(r.insert(1, chunks[1].clone()).unwrap(), None);
    assert_eq!(r.insert(1, chunks[2].clone()).unwrap(), Some(input));
    assert!(matches!(r.insert(2, chunks[0].clone()), Ok(None)));
    assert!(matches!(
        r.insert(2, chunks[2].clone()),
        Err(ChunkError::HashMismatch)
    ));
    assert_eq!(r.pending_updates(), 0);
}

#[test]
fn forged_totals_are_rejected() {
    let input = bytes(3000);
    let mut chunks = split(&input, 1064).unwrap();
    let mut r = Reassembler::new(Limits::default());
    let mut c = chunks[0].clone();
    c.total = 0;
    assert!(matches!(r.insert(1, c), Err(ChunkError::Inconsistent(_))));
    let mut c = chunks[0].clone();
    c.total_len = 2;
    assert!(matches!(r.insert(1, c), Err(ChunkError::Inconsistent(_))));
    let mut c = chunks[0].clone();
    c.data.clear();
    assert!(matches!(r.insert(1, c), Err(ChunkError::Inconsistent(_))));
    // Claiming 3 chunks but sending too little data in them.
    chunks[2].data.truncate(10);
    for c in &chunks[..2] {
        assert_eq!(r.insert(1, c.clone()).unwrap(), None);
    }
    assert!(matches!(
        r.insert(1, chunks[2].clone()),
        Err(ChunkError::Inconsistent(_))
    ));
    assert_eq!(r.pending_updates(), 0);
    assert_eq!(r.reserved_bytes(), 0);
}

#[test]
fn memory_is_bounded_per_sender() {
    let limits = Limits {
        max_update_bytes: 10_000,
        max_pending_per_sender: 2,
        max_bytes_per_sender: 12_001,
    };
    let mut r = Reassembler::new(limits);
    let big = split(&bytes(10_001), 1064).unwrap();
    assert!(matches!(
        r.insert(1, big[0].clone()),
        Err(ChunkError::TooLarge { .. })
    ));
    let a = split(&bytes(6000), 1064).unwrap();
    let b = split(&bytes(6001), 1064).unwrap();
    let c = split(&bytes(100).repeat(3), 164).unwrap();
    assert_eq!(r.insert(1, a[0].clone()).unwrap(), None);
    assert_eq!(r.insert(1, b[0].clone()).unwrap(), None);
    assert!(matches!(
        r.insert(1, c[0].clone()),
        Err(ChunkError::OverBudget { .. })
    ));
    // Other senders have their own budget.
    assert_eq!(r.insert(2, c[0].clone()).unwrap(), None);
    assert_eq!(r.reserved_bytes(), 6000 + 6001 + 300);
    r.forget(&1);
    assert_eq!(r.reserved_bytes(), 300);
    assert_eq!(r.insert(1, c[0].clone()).unwrap(), None);
    r.clear();
    assert_eq!((r.pending_updates(), r.reserved_bytes()), (0, 0));
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = Chunk::decode(&bytes, 256);
    }

    #[test]
    fn arbitrary_chunks_never_panic_the_reassembler(
        chunks in prop::collection::vec(
            (0u8..3, 0u32..5, 0u32..5, 0u64..40, prop::collection::vec(any::<u8>(), 0..20)),
            0..40,
        )
    ) {
        let mut r = Reassembler::new(Limits { max_update_bytes: 30, max_pending_per_sender: 2, max_bytes_per_sender: 50 });
        for (from, index, total, total_len, data) in chunks {
            let update_id = Digest([from % 2; 32]);
            let _ = r.insert(from, Chunk { update_id, index, total, total_len, data });
            prop_assert!(r.reserved_bytes() <= 3 * 50);
        }
    }

    #[test]
    fn any_split_reassembles(len in 0usize..5000, max in 65usize..2000) {
        let input = bytes(len);
        let chunks = split(&input, max).unwrap();
        prop_assert!(chunks.iter().all(|c| c.encode().len() <= max));
        prop_assert_eq!(reassemble(chunks), input);
    }
}
