//! The node's durable state in sled: its identity key and what the core persists.
//!
//! Two trees: `identity` holds the libp2p keypair (protobuf encoding), so a
//! restarted node keeps its peer id; `core` holds the keys the core writes
//! through [`StoreOp`] batches. Every batch is applied atomically; the runtime
//! calls [`Store::flush`] before it acknowledges a write, so an acknowledged
//! write survives `kill -9`.

use std::path::Path;

use libp2p::identity;

use mc_core::{Restored, StoreOp};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled reported an I/O or corruption error.
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// The stored identity key could not be decoded.
    #[error("the stored node key is corrupt: {0}")]
    CorruptIdentity(#[from] identity::DecodingError),
    /// A stored core key is not UTF-8.
    #[error("a stored key is not UTF-8")]
    BadKey,
}

const IDENTITY_KEY: &[u8] = b"keypair";

/// A node's sled database.
#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
    identity: sled::Tree,
    core: sled::Tree,
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new().path(dir.join("sled")).open()?;
        let identity = db.open_tree("identity")?;
        let core = db.open_tree("core")?;
        Ok(Self { db, identity, core })
    }

    /// The database, for parts of the node that keep their own trees.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// The node's keypair: the stored one, or a new ed25519 key that is stored
    /// and flushed before it is returned.
    pub fn load_or_create_identity(&self) -> Result<identity::Keypair, StoreError> {
        if let Some(bytes) = self.identity.get(IDENTITY_KEY)? {
            return Ok(identity::Keypair::from_protobuf_encoding(&bytes)?);
        }
        let key = identity::Keypair::generate_ed25519();
        let bytes = key
            .to_protobuf_encoding()
            .expect("ed25519 keys always encode");
        self.identity.insert(IDENTITY_KEY, bytes)?;
        self.db.flush()?;
        Ok(key)
    }

    /// Everything the core stored, for [`mc_core::Node::new`].
    pub fn restore(&self) -> Result<Restored, StoreError> {
        let mut pairs = Vec::new();
        for item in self.core.iter() {
            let (key, value) = item?;
            let key = String::from_utf8(key.to_vec()).map_err(|_| StoreError::BadKey)?;
            pairs.push((key, value.to_vec()));
        }
        Ok(Restored::from_pairs(pairs))
    }

    /// Applies one batch atomically (not yet durably: see [`Store::flush`]).
    pub fn apply(&self, ops: Vec<StoreOp>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for op in ops {
            match op {
                StoreOp::Put { key, value } => batch.insert(key.as_bytes(), value),
                StoreOp::DeletePrefix(prefix) => {
                    for key in self.core.scan_prefix(prefix.as_bytes()).keys() {
                        batch.remove(key?);
                    }
                }
            }
        }
        self.core.apply_batch(batch)?;
        Ok(())
    }

    /// Makes every applied batch durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_batches_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let peer = {
            let store = Store::open(dir.path()).unwrap();
            let key = store.load_or_create_identity().unwrap();
            store
                .apply(vec![
                    StoreOp::Put {
                        key: "knowledge/chunk/1".into(),
                        value: vec![1],
                    },
                    StoreOp::Put {
                        key: "knowledge/chunk/2".into(),
                        value: vec![2],
                    },
                ])
                .unwrap();
            store
                .apply(vec![
                    StoreOp::Put {
                        key: "knowledge/snapshot".into(),
                        value: vec![9],
                    },
                    StoreOp::DeletePrefix("knowledge/chunk/".into()),
                ])
                .unwrap();
            futures::executor::block_on(store.flush()).unwrap();
            key.public().to_peer_id()
        };
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store
                .load_or_create_identity()
                .unwrap()
                .public()
                .to_peer_id(),
            peer
        );
        let restored = store.restore().unwrap();
        assert_eq!(restored.legacy.snapshot, Some(vec![9]));
        assert!(restored.legacy.chunks.is_empty());
    }
}
