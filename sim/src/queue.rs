//! The event queue: timed events in a min-heap, ties broken by insertion order.
//!
//! Two events due at the same virtual microsecond pop in the order they were
//! pushed (a sequence number breaks the tie), so a run never depends on how
//! the heap happens to arrange equal keys.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Virtual time in microseconds since the start of the run.
pub type Micros = u64;

/// Converts seconds (as scenario files give them) to [`Micros`].
pub fn secs(s: f64) -> Micros {
    (s * 1e6).round().max(0.0) as Micros
}

/// Converts milliseconds to [`Micros`].
pub fn millis(ms: f64) -> Micros {
    (ms * 1e3).round().max(0.0) as Micros
}

/// [`Micros`] as milliseconds, for reports.
pub fn as_ms(us: Micros) -> f64 {
    us as f64 / 1e3
}

#[derive(Debug)]
struct Entry<E> {
    at: Micros,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Entry<E> {
    // Reversed: `BinaryHeap` is a max-heap and we want the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A priority queue of events keyed by virtual time.
#[derive(Debug)]
pub struct Queue<E> {
    heap: BinaryHeap<Entry<E>>,
    next_seq: u64,
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> Queue<E> {
    /// An empty queue.
    pub fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
            next_seq: 0,
        }
    }

    /// Schedules `event` at `at`.
    pub fn push(&mut self, at: Micros, event: E) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Entry { at, seq, event });
    }

    /// Removes and returns the earliest event (the first pushed among equals).
    pub fn pop(&mut self) -> Option<(Micros, E)> {
        self.heap.pop().map(|e| (e.at, e.event))
    }

    /// When the earliest event is due.
    pub fn peek_time(&self) -> Option<Micros> {
        self.heap.peek().map(|e| e.at)
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no event is waiting.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Events pushed since the queue was made.
    pub fn pushed(&self) -> u64 {
        self.next_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn earliest_event_pops_first() {
        let mut q = Queue::new();
        q.push(30, "c");
        q.push(10, "a");
        q.push(20, "b");
        assert_eq!(q.peek_time(), Some(10));
        assert_eq!(q.pop(), Some((10, "a")));
        assert_eq!(q.pop(), Some((20, "b")));
        assert_eq!(q.pop(), Some((30, "c")));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn equal_times_pop_in_push_order() {
        let mut q = Queue::new();
        for i in 0..100 {
            q.push(5, i);
        }
        q.push(4, -1);
        assert_eq!(q.pop(), Some((4, -1)));
        for i in 0..100 {
            assert_eq!(q.pop(), Some((5, i)));
        }
        assert_eq!(q.pushed(), 101);
        assert!(q.is_empty());
    }

    #[test]
    fn conversions_round_to_the_microsecond() {
        assert_eq!(secs(1.5), 1_500_000);
        assert_eq!(millis(0.0004), 0);
        assert_eq!(millis(2.5), 2_500);
        assert_eq!(as_ms(2_500), 2.5);
    }

    proptest! {
        #[test]
        fn pops_are_sorted_by_time_then_sequence(times in proptest::collection::vec(0u64..50, 0..200)) {
            let mut q = Queue::new();
            for (i, t) in times.iter().enumerate() {
                q.push(*t, i);
            }
            let mut out = Vec::new();
            while let Some(e) = q.pop() {
                out.push(e);
            }
            let mut expected: Vec<(u64, usize)> = times.iter().copied().zip(0..).collect();
            expected.sort();
            prop_assert_eq!(out, expected);
        }
    }
}
