//! Who is connected to whom: the topology and the state of every connection.
//!
//! Each node dials `peers` random others at start (as the real node dials
//! peers that discovery finds); a connection is symmetric, so both ends see
//! it. A link is *up* when it carries messages. It goes down when a partition
//! separates its ends or one end crashes, and comes back (a new connection,
//! with a new `epoch`) after a heal or restart. A message carries the epoch it
//! was sent on and is dropped on arrival if the link has changed since.

use rand::rngs::ChaCha8Rng;
use rand::seq::index;

use crate::queue::Micros;

/// One connection between nodes `a < b`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The lower-numbered end.
    pub a: usize,
    /// The higher-numbered end.
    pub b: usize,
    /// Whether it currently carries messages.
    pub up: bool,
    /// Bumped whenever the link goes down or comes up.
    pub epoch: u32,
    /// Whether a reconnection is under way.
    pub connecting: bool,
    /// Latest arrival scheduled per direction (`a→b`, `b→a`), for in-order delivery.
    last_arrival: [Micros; 2],
}

impl Link {
    fn new(a: usize, b: usize) -> Self {
        Self {
            a,
            b,
            up: false,
            epoch: 0,
            connecting: false,
            last_arrival: [0; 2],
        }
    }

    /// The end that is not `node`.
    pub fn other(&self, node: usize) -> usize {
        if node == self.a { self.b } else { self.a }
    }

    /// The latest arrival scheduled from `from` to the other end.
    pub fn floor(&self, from: usize) -> Micros {
        self.last_arrival[usize::from(from != self.a)]
    }

    /// Records an arrival scheduled from `from`.
    pub fn set_floor(&mut self, from: usize, at: Micros) {
        let slot = &mut self.last_arrival[usize::from(from != self.a)];
        *slot = (*slot).max(at);
    }
}

/// Every link of a run, with per-node adjacency.
#[derive(Debug, Clone)]
pub struct Table {
    links: Vec<Link>,
    /// Per node: `(peer, link index)`, sorted by peer.
    adjacency: Vec<Vec<(usize, usize)>>,
}

impl Table {
    /// A random topology: every node dials `k` distinct random others; extra
    /// links then join any disconnected pieces, so the graph is connected.
    pub fn random(n: usize, k: usize, rng: &mut ChaCha8Rng) -> Self {
        let mut edges = std::collections::BTreeSet::new();
        for i in 0..n {
            let picks = index::sample(rng, n, (k + 1).min(n));
            for j in picks.iter().filter(|j| *j != i).take(k) {
                edges.insert((i.min(j), i.max(j)));
            }
        }
        let mut table = Self::from_edges(n, edges.iter().copied());
        let components = table.components(|_| true, false);
        for pair in components.windows(2) {
            table.add(pair[0][0], pair[1][0]);
        }
        table
    }

    /// A topology with exactly these links.
    pub fn from_edges(n: usize, edges: impl IntoIterator<Item = (usize, usize)>) -> Self {
        let mut table = Self {
            links: Vec::new(),
            adjacency: vec![Vec::new(); n],
        };
        for (a, b) in edges {
            table.add(a, b);
        }
        table
    }

    fn add(&mut self, a: usize, b: usize) {
        let (a, b) = (a.min(b), a.max(b));
        if a == b || self.find(a, b).is_some() {
            return;
        }
        let index = self.links.len();
        self.links.push(Link::new(a, b));
        for (node, peer) in [(a, b), (b, a)] {
            let list = &mut self.adjacency[node];
            let at = list.partition_point(|(p, _)| *p < peer);
            list.insert(at, (peer, index));
        }
    }

    /// Number of links.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// Whether there are no links.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// The link between `a` and `b`, if they are neighbours.
    pub fn find(&self, a: usize, b: usize) -> Option<usize> {
        let list = self.adjacency.get(a)?;
        list.binary_search_by_key(&b, |(p, _)| *p)
            .ok()
            .map(|i| list[i].1)
    }

    /// Link `index`.
    pub fn get(&self, index: usize) -> &Link {
        &self.links[index]
    }

    /// Link `index`, mutably.
    pub fn get_mut(&mut self, index: usize) -> &mut Link {
        &mut self.links[index]
    }

    /// `(peer, link)` for every neighbour of `node`, sorted by peer.
    pub fn neighbours(&self, node: usize) -> &[(usize, usize)] {
        &self.adjacency[node]
    }

    /// Fills `out` with the peers `node` has an up link to, sorted.
    pub fn up_peers(&self, node: usize, out: &mut Vec<usize>) {
        out.clear();
        out.extend(
            self.adjacency[node]
                .iter()
                .filter(|(_, l)| self.links[*l].up)
                .map(|(p, _)| *p),
        );
    }

    /// Connected components among nodes for which `member` holds, over up
    /// links only (`only_up`) or every link; each sorted, in order of their
    /// smallest node.
    pub fn components(&self, member: impl Fn(usize) -> bool, only_up: bool) -> Vec<Vec<usize>> {
        let n = self.adjacency.len();
        let mut seen = vec![false; n];
        let mut out = Vec::new();
        for start in 0..n {
            if seen[start] || !member(start) {
                continue;
            }
            seen[start] = true;
            let mut component = vec![start];
            let mut next = 0;
            while next < component.len() {
                let node = component[next];
                next += 1;
                for (peer, link) in &self.adjacency[node] {
                    if !seen[*peer] && member(*peer) && (!only_up || self.links[*link].up) {
                        seen[*peer] = true;
                        component.push(*peer);
                    }
                }
            }
            component.sort_unstable();
            out.push(component);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Streams;

    #[test]
    fn random_topologies_are_connected_with_the_asked_degree() {
        let mut rng = Streams::new(3).stream("topology");
        for (n, k) in [(2, 4), (10, 2), (100, 4), (300, 1)] {
            let t = Table::random(n, k, &mut rng);
            assert_eq!(t.components(|_| true, false).len(), 1, "n={n} k={k}");
            for node in 0..n {
                assert!(
                    t.neighbours(node).len() >= k.min(n - 1),
                    "n={n} node {node}"
                );
                for (peer, link) in t.neighbours(node) {
                    assert_eq!(t.find(*peer, node), Some(*link));
                    assert_eq!(t.get(*link).other(node), *peer);
                }
            }
        }
    }

    #[test]
    fn components_follow_up_links() {
        let mut t = Table::from_edges(4, [(0, 1), (1, 2), (2, 3)]);
        assert_eq!(t.components(|_| true, true).len(), 4);
        let l = t.find(0, 1).unwrap();
        t.get_mut(l).up = true;
        let l = t.find(2, 3).unwrap();
        t.get_mut(l).up = true;
        assert_eq!(t.components(|_| true, true), vec![vec![0, 1], vec![2, 3]]);
        assert_eq!(t.components(|n| n != 1, false), vec![vec![0], vec![2, 3]]);
        let mut up = Vec::new();
        t.up_peers(2, &mut up);
        assert_eq!(up, vec![3]);
    }

    #[test]
    fn arrival_floors_are_per_direction() {
        let mut t = Table::from_edges(2, [(1, 0)]);
        let link = t.get_mut(0);
        link.set_floor(0, 10);
        link.set_floor(1, 5);
        link.set_floor(0, 7);
        assert_eq!((link.floor(0), link.floor(1)), (10, 5));
    }
}
