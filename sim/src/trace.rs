//! The recent-event trace printed when an invariant breaks.
//!
//! Every dispatched event is recorded as a small value in a ring buffer of
//! [`CAPACITY`] entries; text is only produced when a violation needs it, so
//! tracing costs a copy per event, not a `format!`.

use std::collections::VecDeque;
use std::fmt;

use mc_core::Timer;

use crate::gossip::MsgId;
use crate::network::Kind;
use crate::queue::Micros;

/// How many recent events a violation report shows.
pub const CAPACITY: usize = 64;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    /// A point-to-point message reached the node's core.
    Direct {
        /// Sender.
        from: usize,
        /// What it was.
        kind: Kind,
        /// Payload size.
        bytes: usize,
    },
    /// A gossip frame reached the node.
    Frame {
        /// Neighbour it came from.
        from: usize,
        /// What it was.
        kind: Kind,
        /// Message id for full messages.
        id: Option<MsgId>,
    },
    /// A message or frame was dropped.
    Dropped {
        /// Sender.
        from: usize,
        /// Why.
        why: &'static str,
    },
    /// A core timer fired.
    Timer(Timer),
    /// A store flush completed.
    Flushed,
    /// A client request arrived.
    Write {
        /// Write number.
        write: u32,
    },
    /// A client got its acknowledgement.
    Ack {
        /// Write number.
        write: u32,
    },
    /// A connection opened.
    Up {
        /// The peer.
        peer: usize,
    },
    /// A connection closed.
    Down {
        /// The peer.
        peer: usize,
    },
    /// A fault from the timeline started or ended.
    Fault {
        /// Its kind.
        name: &'static str,
        /// Whether it is the end (restart, resume, window closed).
        end: bool,
    },
    /// The node crashed.
    Crash,
    /// The node restarted.
    Restart,
    /// Local training finished and went to the core.
    Trained {
        /// The round.
        round: u32,
    },
    /// The node closed a campaign round.
    RoundClosed {
        /// The round.
        round: u32,
        /// Updates it accepted.
        accepted: u32,
    },
    /// A checker ran.
    Check {
        /// Which.
        name: &'static str,
    },
}

/// One traced event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// When.
    pub at: Micros,
    /// Where (`usize::MAX`: not about one node).
    pub node: usize,
    /// What.
    pub what: What,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t={:>10.3} ms ", self.at as f64 / 1e3)?;
        if self.node == usize::MAX {
            write!(f, "{:>6} ", "-")?;
        } else {
            write!(f, "n{:04}  ", self.node)?;
        }
        match self.what {
            What::Direct { from, kind, bytes } => {
                write!(f, "recv {} from n{from:04} ({bytes} B)", kind.name())
            }
            What::Frame {
                from,
                kind,
                id: Some(id),
            } => write!(f, "gossip {} #{id} from n{from:04}", kind.name()),
            What::Frame {
                from,
                kind,
                id: None,
            } => write!(f, "gossip {} from n{from:04}", kind.name()),
            What::Dropped { from, why } => write!(f, "dropped a message from n{from:04}: {why}"),
            What::Timer(Timer::AntiEntropy) => f.write_str("anti-entropy timer"),
            What::Timer(Timer::Learning) => f.write_str("learning timer"),
            What::Flushed => f.write_str("store flush done"),
            What::Write { write } => write!(f, "client PUT w/{write:08}"),
            What::Ack { write } => write!(f, "client ack w/{write:08}"),
            What::Up { peer } => write!(f, "connected to n{peer:04}"),
            What::Down { peer } => write!(f, "disconnected from n{peer:04}"),
            What::Fault { name, end: false } => write!(f, "fault {name}"),
            What::Fault { name, end: true } => write!(f, "fault {name} ends"),
            What::Crash => f.write_str("crash"),
            What::Restart => f.write_str("restart"),
            What::Trained { round } => write!(f, "local training of round {round} done"),
            What::RoundClosed { round, accepted } => {
                write!(f, "closed round {round} with {accepted} updates")
            }
            What::Check { name } => write!(f, "check {name}"),
        }
    }
}

/// The ring buffer.
#[derive(Debug, Default)]
pub struct Ring {
    entries: VecDeque<Entry>,
}

impl Ring {
    /// An empty trace.
    pub fn new() -> Self {
        Self {
            entries: VecDeque::with_capacity(CAPACITY),
        }
    }

    /// Records an event, forgetting the oldest when full.
    pub fn record(&mut self, at: Micros, node: usize, what: What) {
        if self.entries.len() == CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back(Entry { at, node, what });
    }

    /// The recorded events, oldest first, as text.
    pub fn lines(&self) -> Vec<String> {
        self.entries.iter().map(ToString::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_latest_entries() {
        let mut r = Ring::new();
        for i in 0..(CAPACITY as u32 + 10) {
            r.record(u64::from(i) * 1000, 3, What::Write { write: i });
        }
        let lines = r.lines();
        assert_eq!(lines.len(), CAPACITY);
        assert!(lines[0].contains("w/00000010"), "{}", lines[0]);
        assert!(lines.last().unwrap().contains("n0003"));
        r.record(
            0,
            usize::MAX,
            What::Fault {
                name: "heal",
                end: false,
            },
        );
        assert!(r.lines().last().unwrap().ends_with("fault heal"));
    }
}
