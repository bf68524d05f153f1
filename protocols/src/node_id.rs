//! How the core names a peer.

use serde::{Deserialize, Serialize};

/// A node's identity as the core sees it: the text form of its libp2p
/// `PeerId` in the real node, a made-up name in the simulator.
///
/// The core only compares, orders and prints node ids, so it stays
/// independent of libp2p.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(String);

impl NodeId {
    /// Wraps the text form of a peer identity.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The text form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for NodeId {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}
