//! Encoding and decoding of the versioned envelope.

use crate::message::Message;

/// The envelope version this build writes and reads.
pub const WIRE_VERSION: u8 = 2;

/// The largest encoded message accepted on a point-to-point stream.
///
/// Automerge sync messages carry whole histories to a new peer, so this is
/// generous; it still bounds what one bad peer can make a node allocate.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// The largest encoded message the node publishes by gossip.
///
/// gossipsub caps a whole RPC frame at 64 KiB by default; this leaves room
/// for the gossipsub framing, the author's signature and key. Anything larger
/// travels by sync instead.
pub const MAX_GOSSIP_MESSAGE_BYTES: usize = 60 * 1024;

/// Why bytes could not be decoded into a [`Message`] (or encoded).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input was empty: not even a version byte.
    #[error("empty message")]
    Empty,
    /// The input is larger than the limit for its channel.
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Size of the input.
        len: usize,
        /// The limit it broke.
        max: usize,
    },
    /// The envelope names a version this build does not speak.
    #[error("unsupported wire version {0} (this node speaks {WIRE_VERSION})")]
    UnsupportedVersion(u8),
    /// The body is not a valid encoding of a message.
    #[error("malformed message body: {0}")]
    Malformed(#[from] postcard::Error),
    /// A valid message was followed by extra bytes.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
}

/// Encodes `message` in an envelope, refusing results larger than `max` bytes.
pub fn encode(message: &Message, max: usize) -> Result<Vec<u8>, Error> {
    let mut out = vec![WIRE_VERSION];
    out = postcard::to_extend(message, out)?;
    if out.len() > max {
        return Err(Error::TooLarge {
            len: out.len(),
            max,
        });
    }
    Ok(out)
}

/// The size `message` has once encoded, without allocating it twice.
pub fn encoded_len(message: &Message) -> Result<usize, Error> {
    Ok(1 + postcard::experimental::serialized_size(message)?)
}

/// Decodes an envelope of at most `max` bytes.
pub fn decode(bytes: &[u8], max: usize) -> Result<Message, Error> {
    if bytes.len() > max {
        return Err(Error::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    let (&version, body) = bytes.split_first().ok_or(Error::Empty)?;
    if version != WIRE_VERSION {
        return Err(Error::UnsupportedVersion(version));
    }
    let (message, rest) = postcard::take_from_bytes::<Message>(body)?;
    if !rest.is_empty() {
        return Err(Error::TrailingBytes(rest.len()));
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Changes, DocDigest, DocId, Hello, LearnMessage, SyncMessage};
    use proptest::prelude::*;

    fn samples() -> Vec<Message> {
        vec![
            Message::Hello(Hello {
                region: "eu-west".into(),
                version: "0.1.0".into(),
            }),
            Message::Changes(vec![
                Changes {
                    doc: DocId::Knowledge { shard: 0 },
                    bytes: vec![1, 2, 3, 255],
                },
                Changes {
                    doc: DocId::Knowledge { shard: 31 },
                    bytes: vec![4],
                },
            ]),
            Message::Sync(SyncMessage {
                doc: DocId::Knowledge { shard: 3 },
                data: vec![],
            }),
            Message::Digest(vec![DocDigest {
                doc: DocId::Knowledge { shard: 5 },
                heads: u64::MAX,
            }]),
            Message::RootDigest(7),
            Message::Learn(LearnMessage::UpdateChunk {
                campaign: [7; 16],
                round: 3,
                chunk: vec![9; 40],
            }),
            Message::Learn(LearnMessage::StateRequest {
                campaign: [7; 16],
                round: 5,
            }),
            Message::Learn(LearnMessage::StateChunk {
                campaign: [7; 16],
                round: 5,
                chunk: vec![4; 40],
            }),
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for m in samples() {
            let bytes = encode(&m, MAX_MESSAGE_BYTES).unwrap();
            assert_eq!(bytes[0], WIRE_VERSION);
            assert_eq!(encoded_len(&m).unwrap(), bytes.len());
            assert_eq!(decode(&bytes, MAX_MESSAGE_BYTES).unwrap(), m);
        }
    }

    #[test]
    fn byte_payloads_are_compact() {
        let m = Message::Changes(vec![Changes {
            doc: DocId::Knowledge { shard: 1 },
            bytes: vec![7; 1000],
        }]);
        // version + variant + count + doc (variant, shard) + varint length (2 bytes) + payload
        assert_eq!(
            encode(&m, MAX_MESSAGE_BYTES).unwrap().len(),
            1 + 1 + 1 + 2 + 2 + 1000
        );
    }

    #[test]
    fn oversized_input_is_rejected_before_parsing() {
        let m = Message::Changes(vec![Changes {
            doc: DocId::Knowledge { shard: 0 },
            bytes: vec![0; 100],
        }]);
        let bytes = encode(&m, MAX_MESSAGE_BYTES).unwrap();
        assert!(matches!(
            decode(&bytes, 50),
            Err(Error::TooLarge { max: 50, .. })
        ));
        assert!(matches!(encode(&m, 50), Err(Error::TooLarge { .. })));
    }

    #[test]
    fn bad_envelopes_give_typed_errors() {
        assert!(matches!(decode(&[], 10), Err(Error::Empty)));
        assert!(matches!(
            decode(&[9, 0], 10),
            Err(Error::UnsupportedVersion(9))
        ));
        assert!(matches!(
            decode(&[WIRE_VERSION, 200], 10),
            Err(Error::Malformed(_))
        ));
        let mut bytes = encode(&samples()[0], MAX_MESSAGE_BYTES).unwrap();
        bytes.push(0);
        assert!(matches!(
            decode(&bytes, MAX_MESSAGE_BYTES),
            Err(Error::TrailingBytes(1))
        ));
    }

    #[test]
    fn a_length_prefix_larger_than_the_input_is_an_error() {
        // Changes, one entry, Knowledge shard 0, then a varint claiming 2^28 bytes follow.
        let bytes = [WIRE_VERSION, 1, 1, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x01];
        assert!(matches!(
            decode(&bytes, MAX_MESSAGE_BYTES),
            Err(Error::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes, MAX_MESSAGE_BYTES);
        }

        #[test]
        fn decoding_mutated_messages_never_panics(
            index in 0usize..3,
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut bytes = encode(&samples()[index], MAX_MESSAGE_BYTES).unwrap();
            for (at, value) in flips {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            let _ = decode(&bytes, MAX_MESSAGE_BYTES);
        }

        #[test]
        fn arbitrary_messages_round_trip(region in ".{0,40}", payload in proptest::collection::vec(any::<u8>(), 0..2048)) {
            for m in [
                Message::Hello(Hello { region: region.clone(), version: region.clone() }),
                Message::Changes(vec![Changes { doc: DocId::Knowledge { shard: 7 }, bytes: payload.clone() }]),
                Message::Sync(SyncMessage { doc: DocId::Knowledge { shard: 7 }, data: payload.clone() }),
            ] {
                let bytes = encode(&m, MAX_MESSAGE_BYTES).unwrap();
                prop_assert_eq!(decode(&bytes, MAX_MESSAGE_BYTES).unwrap(), m);
            }
        }
    }
}
