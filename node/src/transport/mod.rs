//! The libp2p side of the real node: which protocols run and how they are tuned.
//!
//! - TCP + noise + yamux: authenticated, multiplexed connections.
//! - identify: peers tell each other their listen addresses, which feed
//!   Kademlia (Kademlia learns addresses only from identify or by hand).
//! - Kademlia: finds more nodes than the bootstrap list named.
//! - ping: liveness of idle connections.
//! - gossipsub: the fast, best-effort broadcast of local changes.
//! - request-response ([`codec`]): reliable per-peer delivery of the core's
//!   point-to-point messages (Automerge sync runs here, never over gossip).

pub mod codec;

use std::time::Duration;

use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    StreamProtocol, gossipsub, identify, identity, kad, noise, ping, request_response, tcp, yamux,
};

use mc_core::Topic;

/// How long an idle connection stays open. Region nodes talk all the time;
/// keeping connections avoids reconnect storms on quiet meshes.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(3600);

/// The composed behaviour of an `mc-node`.
#[derive(NetworkBehaviour)]
#[allow(missing_debug_implementations)] // libp2p behaviours do not implement Debug
pub struct Behaviour {
    /// Address exchange.
    pub identify: identify::Behaviour,
    /// Liveness.
    pub ping: ping::Behaviour,
    /// Peer discovery.
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    /// Broadcast.
    pub gossipsub: gossipsub::Behaviour,
    /// Point-to-point core messages.
    pub direct: request_response::Behaviour<codec::FrameCodec>,
}

/// gossipsub parameters that work from 2 to a few hundred nodes.
///
/// The defaults (mesh 6, low 5, high 12, outbound min 2) assume a large
/// network; with fewer peers a node simply stays below `mesh_n_low` and keeps
/// all it has. Flood publishing sends a node's own messages to every
/// subscribed peer at once, which is what keeps 1-hop latency low on
/// small meshes; forwarding still follows the mesh. The sizes satisfy
/// `outbound_min ≤ low ≤ n ≤ high` and `2·outbound_min ≤ n`, which `build()`
/// does not check in every case.
pub fn gossipsub_config() -> Result<gossipsub::Config, gossipsub::ConfigBuilderError> {
    gossipsub::ConfigBuilder::default()
        .mesh_outbound_min(2)
        .mesh_n_low(4)
        .mesh_n(6)
        .mesh_n_high(12)
        .gossip_lazy(6)
        .heartbeat_interval(Duration::from_millis(700))
        .flood_publish(true)
        .max_transmit_size(64 * 1024)
        .validation_mode(gossipsub::ValidationMode::Strict)
        .duplicate_cache_time(Duration::from_secs(120))
        .build()
}

/// Builds the behaviour for `key`.
pub fn behaviour(key: &identity::Keypair, version: &str) -> anyhow::Result<Behaviour> {
    let peer_id = key.public().to_peer_id();
    let identify = identify::Behaviour::new(
        identify::Config::new("/mc/id/1".to_string(), key.public())
            .with_agent_version(format!("mc-node/{version}")),
    );
    let mut kad_config = kad::Config::new(StreamProtocol::new("/mc/kad/1"));
    kad_config.set_periodic_bootstrap_interval(Some(Duration::from_secs(30)));
    let mut kad =
        kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
    // Loopback and private addresses never become "confirmed external", so
    // automatic mode selection would leave every node a client.
    kad.set_mode(Some(kad::Mode::Server));
    let mut gossipsub = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(key.clone()),
        gossipsub_config()?,
    )
    .map_err(|e| anyhow::anyhow!("gossipsub: {e}"))?;
    for topic in Topic::ALL {
        gossipsub.subscribe(&gossipsub::IdentTopic::new(topic.name()))?;
    }
    let direct = request_response::Behaviour::with_codec(
        codec::FrameCodec::new(mc_protocols::MAX_MESSAGE_BYTES),
        [(codec::PROTOCOL, request_response::ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(Duration::from_secs(30)),
    );
    Ok(Behaviour {
        identify,
        ping: ping::Behaviour::new(ping::Config::new()),
        kad,
        gossipsub,
        direct,
    })
}

/// Builds a TCP swarm for `key`.
pub fn swarm(key: identity::Keypair, version: &str) -> anyhow::Result<libp2p::Swarm<Behaviour>> {
    let behaviour = behaviour(&key, version)?;
    Ok(libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|_| behaviour)?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT))
        .build())
}

/// The gossipsub topic for a core topic.
pub fn topic(topic: Topic) -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(topic.name())
}
