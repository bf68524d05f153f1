//! Moving bytes: point-to-point messages, gossip frames and heartbeats.

use mc_core::Input;
use mc_protocols::{MAX_GOSSIP_MESSAGE_BYTES, MAX_MESSAGE_BYTES, Message, NodeId};

use super::{Event, Simulation};
use crate::gossip::{Frame, Outcome, Published};
use crate::metrics::Via;
use crate::network::Kind;
use crate::queue::{millis, secs};
use crate::trace::What;

impl Simulation {
    /// The core's `Send`: a reliable, in-order message on the link to `to`.
    /// Returns false if there is no open connection (the core gets `SendFailed`).
    pub(super) fn send(&mut self, from: usize, to: &NodeId, bytes: Vec<u8>) -> bool {
        if !self.check_size(
            from,
            bytes.len(),
            MAX_MESSAGE_BYTES,
            "a point-to-point message",
        ) {
            return true;
        }
        let Some(&peer) = self.index.get(to) else {
            return false;
        };
        let Some(link) = self
            .links
            .find(from, peer)
            .filter(|l| self.links.get(*l).up)
        else {
            return false;
        };
        if self.hosts[from].drop_sync
            && matches!(
                mc_protocols::decode(&bytes, MAX_MESSAGE_BYTES),
                Ok(Message::Sync(_))
            )
        {
            // The broken node of the test hook: the sync message vanishes and
            // nobody is told, exactly as if the node never sent it.
            self.net.traffic.dropped_by_hook += 1;
            return true;
        }
        let kind = Kind::of_envelope(&bytes);
        let floor = self.links.get(link).floor(from);
        let arrivals = self
            .net
            .direct(self.now, (from, peer), kind, bytes.len(), floor);
        let epoch = self.links.get(link).epoch;
        if let Some(at) = arrivals.first {
            self.links.get_mut(link).set_floor(from, at);
            if let Some(copy) = arrivals.copy {
                let bytes = bytes.clone();
                self.queue.push(
                    copy,
                    Event::Deliver {
                        from,
                        to: peer,
                        link,
                        epoch,
                        bytes,
                    },
                );
            }
            self.queue.push(
                at,
                Event::Deliver {
                    from,
                    to: peer,
                    link,
                    epoch,
                    bytes,
                },
            );
        }
        true
    }

    /// Whether a message sent on `link` at `epoch` can still be delivered to `to`.
    fn link_carries(&self, to: usize, (link, epoch): (usize, u32)) -> bool {
        let l = self.links.get(link);
        l.up && l.epoch == epoch && self.hosts[to].core.is_some()
    }

    pub(super) fn deliver(&mut self, from: usize, to: usize, link: (usize, u32), bytes: Vec<u8>) {
        if !self.link_carries(to, link) {
            self.net.traffic.dropped_link_down += 1;
            self.trace.record(
                self.now,
                to,
                What::Dropped {
                    from,
                    why: "connection closed",
                },
            );
            if self.is_serving(from) {
                let peer = self.hosts[to].id.clone();
                self.input(from, Input::SendFailed(peer), Via::Sync);
            }
            return;
        }
        let kind = Kind::of_envelope(&bytes);
        self.trace.record(
            self.now,
            to,
            What::Direct {
                from,
                kind,
                bytes: bytes.len(),
            },
        );
        let from_id = self.hosts[from].id.clone();
        self.input(
            to,
            Input::Received {
                from: from_id,
                bytes,
            },
            Via::Sync,
        );
    }

    /// The core's `Broadcast`: publishes on the gossip layer. Returns false
    /// when no peer is connected (gossipsub's "insufficient peers").
    pub(super) fn broadcast(&mut self, from: usize, bytes: Vec<u8>) -> bool {
        if !self.check_size(
            from,
            bytes.len(),
            MAX_GOSSIP_MESSAGE_BYTES,
            "a gossip message",
        ) {
            return true;
        }
        let mut up = std::mem::take(&mut self.scratch);
        self.links.up_peers(from, &mut up);
        if up.is_empty() {
            self.scratch = up;
            return false;
        }
        self.net.traffic.max_gossip_bytes = self.net.traffic.max_gossip_bytes.max(bytes.len());
        let id = self.messages.add(Published {
            author: from,
            at: self.now,
            bytes,
        });
        let mut out = Vec::new();
        self.hosts[from]
            .router
            .publish(id, &up, &self.scenario.gossip, &mut out);
        self.scratch = up;
        self.send_frames(from, out);
        true
    }

    /// Puts gossip frames from `from` on the network.
    fn send_frames(&mut self, from: usize, frames: Vec<(usize, Frame)>) {
        for (to, frame) in frames {
            let Some(link) = self.links.find(from, to).filter(|l| self.links.get(*l).up) else {
                continue;
            };
            let (payload, by_author) = match &frame {
                Frame::Message(id) => {
                    let m = self.messages.get(*id);
                    (m.bytes.len(), m.author == from)
                }
                _ => (0, false),
            };
            let arrivals = self.net.datagram(
                self.now,
                (from, to),
                frame.kind(by_author),
                frame.wire_bytes(payload),
            );
            let epoch = self.links.get(link).epoch;
            if let Some(copy) = arrivals.copy {
                let frame = frame.clone();
                self.queue.push(
                    copy,
                    Event::Frame {
                        from,
                        to,
                        link,
                        epoch,
                        frame,
                    },
                );
            }
            if let Some(at) = arrivals.first {
                self.queue.push(
                    at,
                    Event::Frame {
                        from,
                        to,
                        link,
                        epoch,
                        frame,
                    },
                );
            }
        }
    }

    pub(super) fn deliver_frame(
        &mut self,
        from: usize,
        to: usize,
        link: (usize, u32),
        frame: Frame,
    ) {
        if !self.link_carries(to, link) {
            self.net.traffic.dropped_link_down += 1;
            return;
        }
        let id = match &frame {
            Frame::Message(id) => Some(*id),
            _ => None,
        };
        let by_author = id.is_some_and(|id| self.messages.get(id).author == from);
        self.trace.record(
            self.now,
            to,
            What::Frame {
                from,
                kind: frame.kind(by_author),
                id,
            },
        );
        let mut out = Vec::new();
        let messages = &self.messages;
        let outcome = self.hosts[to].router.on_frame(
            from,
            frame,
            |id| messages.get(id).author,
            &self.scenario.gossip,
            &mut out,
        );
        self.send_frames(to, out);
        match outcome {
            Outcome::Deliver(id) => {
                self.stats.gossip_delivered += 1;
                let message = self.messages.get(id);
                let input = Input::Received {
                    from: self.hosts[message.author].id.clone(),
                    bytes: message.bytes.clone(),
                };
                self.input(to, input, Via::Gossip);
            }
            Outcome::Duplicate => self.stats.gossip_duplicates += 1,
            Outcome::Control => {}
        }
    }

    pub(super) fn heartbeat(&mut self, n: usize, incarnation: u32) {
        if self.hosts[n].incarnation != incarnation || self.hosts[n].core.is_none() {
            return;
        }
        let config = &self.scenario.gossip;
        let next = self.now + millis(config.heartbeat_ms);
        self.queue.push(
            next,
            Event::Heartbeat {
                node: n,
                incarnation,
            },
        );
        let mut up = std::mem::take(&mut self.scratch);
        self.links.up_peers(n, &mut up);
        let mut out = Vec::new();
        let host = &mut self.hosts[n];
        host.router
            .heartbeat(&up, &mut self.gossip_rng, config, &mut out);
        let first_kept = self
            .messages
            .first_since(self.now.saturating_sub(secs(config.seen_ttl_s)));
        host.router.forget_before(first_kept);
        self.scratch = up;
        self.send_frames(n, out);
    }
}
