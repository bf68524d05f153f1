//! `mc-node`: one region of Mission Control Mesh.
//!
//! Every region runs one node; all nodes are equal. Together they keep a
//! shared knowledge base — an Automerge document — that any node can write and
//! every node serves: local changes are persisted to sled, pushed to the other
//! nodes by gossipsub, and repaired by periodic Automerge sync with each peer
//! (anti-entropy), so every live node converges even when gossip loses messages.
//!
//! # Layout
//!
//! - The sans-IO state machine lives in its own crate, [`mc_core`]: every
//!   decision, no I/O, no clock, no global RNG. The simulator runs the same code.
//! - [`runtime`]: the real driver — one tokio task that feeds the core from
//!   libp2p, the HTTP API and timers, and applies its outputs.
//! - [`transport`]: the libp2p behaviour (TCP, noise, yamux, identify,
//!   Kademlia, ping, gossipsub, request-response) and its tuning.
//! - [`store`]: sled persistence of the node key and the core's batches.
//! - [`http`]: the axum API and its JSON error format; [`http_learn`] and
//!   [`http_documents`] add the learning and document-export routes.
//! - [`models`]: the model registry (schemas, imported rows, versions) and
//!   [`worker`], the `mc-learn-worker` process it trains on, started on
//!   demand so that the node itself never loads libtorch.
//! - [`auth`]: API tokens and roles; [`http_auth`] checks every call.
//! - [`config`]: the TOML file and the flags that override it.
//! - [`cli`]: the `mc-node` command line and logging set-up.

pub mod auth;
pub mod cli;
pub mod cli_learn;
pub mod config;
pub mod http;
pub mod http_auth;
pub mod http_documents;
pub mod http_learn;
pub mod models;
pub mod runtime;
pub mod store;
pub mod transport;
pub mod worker;
