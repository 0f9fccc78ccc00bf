//! Event ids and sets of them.

pub use crate::service::EventId;

/// A set of event ids, as returned by the waits of a
/// [`Listener`](super::Listener).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventSet {
    pub(crate) words: Vec<u64>,
}

impl EventSet {
    /// True if no id is in the set.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    /// Number of ids in the set.
    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether `id` is in the set.
    pub fn contains(&self, id: impl Into<EventId>) -> bool {
        let id = id.into().0;
        self.words
            .get(id / 64)
            .is_some_and(|w| w & (1 << (id % 64)) != 0)
    }

    /// The ids, ascending.
    pub fn iter(&self) -> impl Iterator<Item = EventId> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            (0..64)
                .filter(move |b| w & (1u64 << b) != 0)
                .map(move |b| EventId(i * 64 + b))
        })
    }

    /// Adds every id of `other`.
    pub fn merge(&mut self, other: &EventSet) {
        if self.words.len() < other.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn sets_hold_and_merge_ids() {
        let mut a = EventSet {
            words: vec![0b101, 0],
        };
        assert!(a.contains(0) && !a.contains(1) && a.contains(EventId(2)));
        assert!(!a.contains(1000));
        let b = EventSet {
            words: vec![0, 0, 1],
        };
        a.merge(&b);
        assert_eq!(
            a.iter().map(EventId::value).collect::<Vec<_>>(),
            vec![0, 2, 128]
        );
        assert_eq!(a.len(), 3);
        assert!(!a.is_empty() && EventSet::default().is_empty());
    }
}
