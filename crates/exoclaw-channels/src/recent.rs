//! The most recent ids seen, up to a count: enough to recognise a platform's retries of a
//! delivery, bounded so a busy channel does not grow it forever.

use std::collections::{HashSet, VecDeque};

/// The last `capacity` ids, oldest forgotten first.
pub(crate) struct Recent {
    order: VecDeque<String>,
    ids: HashSet<String>,
    capacity: usize,
}

impl Recent {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { order: VecDeque::new(), ids: HashSet::new(), capacity: capacity.max(1) }
    }

    /// Remembers `id`; whether it was new.
    pub(crate) fn insert(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        self.order.push_back(id.to_owned());
        self.ids.insert(id.to_owned());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_new_once_until_it_is_forgotten() {
        let mut recent = Recent::new(2);
        assert!(recent.insert("a"));
        assert!(!recent.insert("a"));
        assert!(recent.insert("b"));
        assert!(recent.insert("c"));
        // `a` was the oldest of three with room for two.
        assert!(recent.insert("a"));
        assert!(!recent.insert("c"));
    }
}
