//! The real driver: runs the sans-IO [`mc_core::Node`] on tokio with libp2p,
//! sled and axum.
//!
//! One task owns the core and the swarm and loops over four event sources —
//! swarm events, API calls, the earliest core timer and the shutdown signal —
//! feeding each to the core and then applying the core's outputs in order.
//! After each event the loop also feeds the core every API call and swarm
//! event that is ready at that moment (up to [`MAX_BATCH_INPUTS`]), so that a
//! burst is one core batch (see `mc_core`'s "Group commit"): one Automerge
//! change, one store batch, one flush, one gossip message. Outputs of one step
//! are applied as a group: store batches are applied as they come, then the
//! store is flushed once, and only then are the step's API replies sent. Network sends need no such wait: a peer that receives a
//! change we then lose in a crash just syncs it back to us.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use futures::{FutureExt, StreamExt};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, gossipsub, identify, kad, multiaddr, request_response};
use mc_protocols::NodeId;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::config::NodeConfig;
use crate::http::{self, ApiCall};
use crate::models::ModelRegistry;
use crate::store::Store;
use crate::transport::{self, BehaviourEvent};
use crate::worker::{Worker, WorkerConfig};
use mc_core::{ApiError, ApiResponse, Input, Output, RequestId, Timer};

/// How many peers a node dials on its own when discovery finds them.
const TARGET_PEERS: usize = 24;

/// The most ready inputs fed to the core before its outputs are applied
/// (one flush): bounds the latency one burst adds to its first request.
pub const MAX_BATCH_INPUTS: usize = 512;

/// What `node.json` in the data directory says once the node is up, so that
/// launchers (mc-testnet, tests) can find the ports it bound.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReadyFile {
    /// The node's peer id.
    pub peer_id: String,
    /// Its region.
    pub region: String,
    /// The HTTP API's bound address.
    pub http_addr: String,
    /// Dialable addresses with their `/p2p/` suffix.
    pub listen_addrs: Vec<String>,
    /// The process id.
    pub pid: u32,
}

impl ReadyFile {
    /// The file's path inside a data directory.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("node.json")
    }

    fn write(&self, data_dir: &Path) -> anyhow::Result<()> {
        let tmp = data_dir.join("node.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, Self::path(data_dir))?;
        Ok(())
    }
}

fn now_ms() -> mc_core::Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as mc_core::Millis)
}

/// Runs a node until `shutdown` resolves, then stops it cleanly.
pub async fn run(config: NodeConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let store = Store::open(&config.data_dir)
        .with_context(|| format!("cannot open the store in {}", config.data_dir.display()))?;
    let key = store.load_or_create_identity()?;
    let peer_id = key.public().to_peer_id();
    let span = tracing::info_span!("node", region = %config.region, peer = %peer_id);
    Driver::start(config, store, key)
        .instrument(span.clone())
        .await?
        .run(shutdown)
        .instrument(span)
        .await
}

struct Driver {
    config: NodeConfig,
    store: Store,
    node: mc_core::Node,
    swarm: libp2p::Swarm<transport::Behaviour>,
    peer_id: PeerId,
    http_addr: SocketAddr,
    http_server: tokio::task::JoinHandle<std::io::Result<()>>,
    http_stop: tokio::sync::oneshot::Sender<()>,
    calls: mpsc::Receiver<ApiCall>,
    pending: HashMap<RequestId, tokio::sync::oneshot::Sender<Result<ApiResponse, ApiError>>>,
    next_request: RequestId,
    timers: BTreeMap<Timer, mc_core::Millis>,
    listen_addrs: Vec<Multiaddr>,
    learner: Learner,
    trained: mpsc::UnboundedReceiver<mc_core::TrainResult>,
}

/// Runs campaign jobs on blocking threads and hands results back to the loop.
struct Learner {
    service: std::sync::Arc<ModelRegistry>,
    results: mpsc::UnboundedSender<mc_core::TrainResult>,
}

impl Learner {
    fn start(&self, job: mc_core::TrainJob) {
        let service = self.service.clone();
        let results = self.results.clone();
        tokio::task::spawn_blocking(move || {
            let outcome = service.run_job(&job);
            if let Err(error) = &outcome {
                tracing::warn!(campaign = %job.campaign, round = job.round, %error, "local work failed");
            }
            let _ = results.send(job.result(outcome));
        });
    }

    fn finished(&self, model: mc_core::FinishedModel) {
        let service = self.service.clone();
        tokio::task::spawn_blocking(move || match service.store_federated(&model, now_ms()) {
            Ok(version) => {
                tracing::info!(campaign = %model.campaign, model = %model.model.name, version, "campaign finished; stored the federated model")
            }
            Err(error) => {
                tracing::error!(campaign = %model.campaign, %error, "cannot store the federated model")
            }
        });
    }
}

/// The ed25519 secret of a libp2p identity: the node signs weight updates
/// with the same key its peer id names.
fn signing_secret(key: &libp2p::identity::Keypair) -> anyhow::Result<[u8; 32]> {
    let ed = key
        .clone()
        .try_into_ed25519()
        .context("the node identity is not an ed25519 key")?;
    let bytes = ed.to_bytes();
    let mut secret = [0u8; 32];
    secret.copy_from_slice(&bytes[..32]);
    Ok(secret)
}

impl Driver {
    async fn start(
        config: NodeConfig,
        store: Store,
        key: libp2p::identity::Keypair,
    ) -> anyhow::Result<Self> {
        let peer_id = key.public().to_peer_id();
        let mut core_config = mc_core::Config::new(config.region.clone());
        core_config.gossip = config.gossip;
        core_config.sync_interval_ms = config.sync_interval_ms;
        let restored = store.restore()?;
        let seed = rand::random::<u64>();
        let mut node = mc_core::Node::new(
            core_config,
            NodeId::new(peer_id.to_string()),
            restored,
            seed,
            now_ms(),
        )
        .context("cannot start the node core")?;
        node.set_signing_key(signing_secret(&key)?);
        let mut worker = WorkerConfig::new(config.learn_worker.clone());
        worker.idle = std::time::Duration::from_millis(config.learn_worker_idle_ms);
        worker.job_timeout = std::time::Duration::from_millis(config.learn_worker_job_timeout_ms);
        let service = std::sync::Arc::new(ModelRegistry::open(store.db(), Worker::new(worker))?);
        let (results, trained) = mpsc::unbounded_channel();

        let mut swarm = transport::swarm(key, &node.config().version)?;
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .with_context(|| format!("cannot listen on {addr}"))?;
        }
        for addr in &config.bootstrap {
            if let Some(multiaddr::Protocol::P2p(peer)) = addr.iter().last() {
                swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
            }
            if let Err(error) = swarm.dial(addr.clone()) {
                tracing::warn!(%addr, %error, "cannot dial bootstrap peer");
            }
        }

        let listener = tokio::net::TcpListener::bind(config.http)
            .await
            .with_context(|| format!("cannot bind the HTTP API to {}", config.http))?;
        let http_addr = listener.local_addr()?;
        let tokens = std::sync::Arc::new(crate::auth::Tokens::open(store.db(), config.open_reads)?);
        let env_token = std::env::var(crate::auth::ADMIN_TOKEN_ENV)
            .ok()
            .filter(|t| !t.is_empty());
        let created = tokens
            .bootstrap(&config.data_dir, env_token.as_deref(), now_ms())
            .context("cannot set up the admin token")?;
        if let Some(token) = created {
            println!(
                "mc-node admin token (shown once; also in {}): {token}",
                config
                    .data_dir
                    .join(crate::auth::ADMIN_TOKEN_FILE)
                    .display()
            );
        }
        let (tx, calls) = mpsc::channel(1024);
        let app = http::router(http::AppState {
            calls: tx,
            http_addr,
            learn: service.clone(),
            tokens,
        });
        let (http_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let http_server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });

        Ok(Self {
            config,
            store,
            node,
            swarm,
            peer_id,
            http_addr,
            http_server,
            http_stop,
            calls,
            pending: HashMap::new(),
            next_request: 0,
            timers: BTreeMap::new(),
            listen_addrs: Vec::new(),
            learner: Learner { service, results },
            trained,
        })
    }

    async fn run(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        self.apply_outputs().await?;
        tracing::info!(http = %self.http_addr, "HTTP API listening");
        loop {
            let next_timer = self.timers.iter().map(|(t, at)| (*at, *t)).min();
            let sleep = match next_timer {
                Some((at, _)) => Duration::from_millis(at.saturating_sub(now_ms())),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event)?,
                Some(call) = self.calls.recv() => self.on_call(call),
                _ = tokio::time::sleep(sleep), if next_timer.is_some() => {
                    if let Some((_, timer)) = next_timer {
                        self.timers.remove(&timer);
                        self.node.handle(now_ms(), Input::TimerExpired(timer));
                    }
                }
                Some(result) = self.trained.recv() => {
                    self.node.handle(now_ms(), Input::Trained(result));
                }
                () = &mut shutdown => break,
            }
            self.feed_ready()?;
            self.apply_outputs().await?;
        }
        tracing::info!("shutting down");
        let _ = self.http_stop.send(());
        let _ = self.http_server.await;
        self.store.flush().await?;
        Ok(())
    }

    fn on_call(&mut self, call: ApiCall) {
        let id = self.next_request;
        self.next_request += 1;
        self.pending.insert(id, call.reply);
        self.node.handle(
            now_ms(),
            Input::Api {
                id,
                request: call.request,
            },
        );
    }

    /// Feeds the core the API calls and swarm events that are ready now,
    /// without waiting, so that they share one batch and one flush.
    fn feed_ready(&mut self) -> anyhow::Result<()> {
        for _ in 0..MAX_BATCH_INPUTS {
            let mut fed = false;
            if let Ok(call) = self.calls.try_recv() {
                self.on_call(call);
                fed = true;
            }
            if let Some(event) = self.swarm.select_next_some().now_or_never() {
                self.on_swarm_event(event)?;
                fed = true;
            }
            if !fed {
                break;
            }
        }
        Ok(())
    }

    /// Applies every queued core output: sends and broadcasts at once, store
    /// batches at once, then one flush, then the replies.
    async fn apply_outputs(&mut self) -> anyhow::Result<()> {
        let mut replies = Vec::new();
        let mut dirty = false;
        while let Some(output) = self.node.poll_output() {
            match output {
                Output::Send { to, bytes } => match to.as_str().parse::<PeerId>() {
                    Ok(peer) => {
                        self.swarm.behaviour_mut().direct.send_request(&peer, bytes);
                    }
                    Err(error) => tracing::error!(peer = %to, %error, "core named an invalid peer"),
                },
                Output::Broadcast { topic, bytes } => {
                    let result = self
                        .swarm
                        .behaviour_mut()
                        .gossipsub
                        .publish(transport::topic(topic), bytes);
                    if let Err(error) = result {
                        tracing::debug!(%error, "broadcast failed; the core will sync instead");
                        self.node.handle(now_ms(), Input::BroadcastFailed(topic));
                    }
                }
                Output::Persist(ops) => {
                    self.store
                        .apply(ops)
                        .context("cannot apply a store batch")?;
                    dirty = true;
                }
                Output::Reply { id, response } => replies.push((id, response)),
                Output::ScheduleTimer { timer, at } => {
                    self.timers.insert(timer, at);
                }
                Output::Train(job) => self.learner.start(job),
                Output::ModelReady(model) => self.learner.finished(model),
                // Logged by the core; the HTTP view shows the record.
                Output::RoundClosed { .. } => {}
            }
        }
        if dirty {
            self.store.flush().await.context("cannot flush the store")?;
        }
        for (id, response) in replies {
            if let Some(reply) = self.pending.remove(&id) {
                let _ = reply.send(response);
            }
        }
        Ok(())
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) -> anyhow::Result<()> {
        let now = now_ms();
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                let full = address.with(multiaddr::Protocol::P2p(self.peer_id));
                tracing::info!(addr = %full, "listening");
                self.listen_addrs.push(full);
                self.announce_addrs(now)?;
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                let full = address.with(multiaddr::Protocol::P2p(self.peer_id));
                self.listen_addrs.retain(|a| *a != full);
                self.announce_addrs(now)?;
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                ..
            } if num_established.get() == 1 => {
                tracing::debug!(peer = %peer_id, "peer connected");
                self.node
                    .handle(now, Input::PeerConnected(node_id(&peer_id)));
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                tracing::debug!(peer = %peer_id, "peer disconnected");
                self.node
                    .handle(now, Input::PeerDisconnected(node_id(&peer_id)));
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(now, event),
            _ => {}
        }
        Ok(())
    }

    fn on_behaviour_event(&mut self, now: mc_core::Millis, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                message,
                propagation_source,
                ..
            }) => {
                let from = message.source.unwrap_or(propagation_source);
                self.node.handle(
                    now,
                    Input::Received {
                        from: node_id(&from),
                        bytes: message.data,
                    },
                );
            }
            BehaviourEvent::Direct(request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            }) => {
                // Acknowledge receipt; the core answers with requests of its own.
                let _ = self.swarm.behaviour_mut().direct.send_response(channel, ());
                self.node.handle(
                    now,
                    Input::Received {
                        from: node_id(&peer),
                        bytes: request,
                    },
                );
            }
            BehaviourEvent::Direct(request_response::Event::OutboundFailure {
                peer,
                error,
                ..
            }) => {
                tracing::debug!(%peer, %error, "direct message failed");
                self.node.handle(now, Input::SendFailed(node_id(&peer)));
            }
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                for addr in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            BehaviourEvent::Kad(kad::Event::RoutingUpdated {
                peer, addresses, ..
            }) => {
                let connected = self.swarm.connected_peers().count();
                if connected < TARGET_PEERS
                    && !self.swarm.is_connected(&peer)
                    && let Some(addr) = addresses.iter().next()
                {
                    let _ = self
                        .swarm
                        .dial(addr.clone().with_p2p(peer).unwrap_or_else(|a| a));
                }
            }
            _ => {}
        }
    }

    fn announce_addrs(&mut self, now: mc_core::Millis) -> anyhow::Result<()> {
        let addrs: Vec<String> = self.listen_addrs.iter().map(ToString::to_string).collect();
        self.node.handle(now, Input::Listening(addrs.clone()));
        let ready = ReadyFile {
            peer_id: self.peer_id.to_string(),
            region: self.config.region.clone(),
            http_addr: self.http_addr.to_string(),
            listen_addrs: addrs,
            pid: std::process::id(),
        };
        ready
            .write(&self.config.data_dir)
            .context("cannot write node.json")?;
        println!(
            "mc-node ready: region={} peer_id={} status=http://{}/status p2p={}",
            ready.region,
            ready.peer_id,
            ready.http_addr,
            ready.listen_addrs.join(",")
        );
        Ok(())
    }
}

fn node_id(peer: &PeerId) -> NodeId {
    NodeId::new(peer.to_string())
}
