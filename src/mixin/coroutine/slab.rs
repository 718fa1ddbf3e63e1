//! [`Slab`]: a worker's coroutines by id, the id being what epoll events
//! and deadlines carry.

/// The coroutines of a worker, by id: a slot index and the slot's
/// generation, so that an id stays unique after its slot is reused (epoll
/// events and deadlines of a finished coroutine are then ignored). Ids are
/// never 0, the wake-up token.
///
/// An id is `generation << 32 | (index + 1)`: the low half names the slot
/// (never 0), the high half how many times the slot has been filled.
#[derive(Debug)]
pub(super) struct Slab<T> {
    slots: Vec<(u32, Option<T>)>,
    /// Empty slots, the last freed reused first.
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// Stores `value` in a free slot (a new one if none is) and returns its
    /// id.
    pub(super) fn insert(&mut self, value: T) -> u64 {
        self.len += 1;
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push((0, None));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 coroutines")
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.0 = slot.0.wrapping_add(1);
        slot.1 = Some(value);
        (u64::from(slot.0) << 32) | (u64::from(index) + 1)
    }

    /// The slot `id` names, if it still holds that generation.
    fn slot(&mut self, id: u64) -> Option<&mut (u32, Option<T>)> {
        let index = usize::try_from((id & 0xffff_ffff).checked_sub(1)?).ok()?;
        let slot = self.slots.get_mut(index)?;
        (u64::from(slot.0) == id >> 32).then_some(slot)
    }

    /// The value stored under `id`, unless it has been removed since.
    pub(super) fn get_mut(&mut self, id: u64) -> Option<&mut T> {
        self.slot(id)?.1.as_mut()
    }

    /// Takes the value stored under `id` out, freeing its slot.
    pub(super) fn remove(&mut self, id: u64) -> Option<T> {
        let value = self.slot(id)?.1.take()?;
        self.free.push((id & 0xffff_ffff) as u32 - 1);
        self.len -= 1;
        Some(value)
    }

    /// Whether no value is stored.
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many values are stored.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The ids of every value stored, with the values.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (u64, &mut T)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(index, (generation, value))| {
                let id = (u64::from(*generation) << 32) | (index as u64 + 1);
                value.as_mut().map(|value| (id, value))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn an_inserted_value_is_found_by_its_id_until_removed() {
        let mut slab = Slab::default();
        assert!(slab.is_empty());
        let a = slab.insert("a");
        let b = slab.insert("b");
        assert_ne!(a, b);
        assert!(!slab.is_empty());
        assert_eq!(slab.get_mut(a), Some(&mut "a"));
        assert_eq!(slab.get_mut(b), Some(&mut "b"));
        *slab.get_mut(b).unwrap() = "B";
        assert_eq!(slab.remove(b), Some("B"));
        assert_eq!(slab.get_mut(b), None);
        assert_eq!(slab.remove(b), None, "removed once only");
        assert_eq!(slab.get_mut(a), Some(&mut "a"), "the other stays");
        let all: Vec<(u64, &str)> = slab.iter_mut().map(|(id, v)| (id, *v)).collect();
        assert_eq!(all, [(a, "a")]);
        assert_eq!(slab.len(), 1);
        assert_eq!(slab.remove(a), Some("a"));
        assert!(slab.is_empty());
    }

    #[test]
    fn ids_are_never_the_wake_token() {
        let mut slab = Slab::default();
        let ids: Vec<u64> = (0..100).map(|n| slab.insert(n)).collect();
        assert!(ids.iter().all(|&id| id != 0), "{ids:?}");
        assert_eq!(slab.get_mut(0), None);
        assert_eq!(slab.remove(0), None);
        // An id with the slot half 0 names no slot, whatever its generation.
        assert_eq!(slab.get_mut(1 << 32), None);
        assert_eq!(slab.len, 100);
    }

    #[test]
    fn a_freed_slot_is_reused_under_a_new_id() {
        let mut slab = Slab::default();
        let first = slab.insert('x');
        let _other = slab.insert('y');
        assert_eq!(slab.remove(first), Some('x'));
        let second = slab.insert('z');
        // The same slot (no new one was made), a new generation.
        assert_eq!(slab.slots.len(), 2);
        assert_eq!(second & 0xffff_ffff, first & 0xffff_ffff);
        assert_ne!(second, first);
        // The old id no longer reaches the slot's new occupant.
        assert_eq!(slab.get_mut(first), None);
        assert_eq!(slab.remove(first), None);
        assert_eq!(slab.get_mut(second), Some(&mut 'z'));
        assert_eq!(slab.len, 2);
    }

    #[test]
    fn the_last_freed_slot_is_reused_first() {
        let mut slab = Slab::default();
        let ids: Vec<u64> = (0..4).map(|n| slab.insert(n)).collect();
        slab.remove(ids[1]);
        slab.remove(ids[3]);
        let again = slab.insert(30);
        assert_eq!(again & 0xffff_ffff, ids[3] & 0xffff_ffff);
        let again = slab.insert(10);
        assert_eq!(again & 0xffff_ffff, ids[1] & 0xffff_ffff);
        let fresh = slab.insert(4);
        assert_eq!(fresh & 0xffff_ffff, 5, "a new slot once none is free");
        assert_eq!(slab.slots.len(), 5);
    }

    #[test]
    fn ids_stay_unique_over_many_reuses() {
        let mut slab = Slab::default();
        let mut seen = HashSet::new();
        let resident = slab.insert(usize::MAX);
        seen.insert(resident);
        let mut live = Vec::new();
        for round in 0..1000 {
            // Fill a few slots, then free them in another order, so that
            // slots are reused in varying order.
            for n in 0..(round % 7 + 1) {
                let id = slab.insert(round * 10 + n);
                assert!(seen.insert(id), "id {id:#x} handed out twice");
                live.push((id, round * 10 + n));
            }
            let turn = round % live.len();
            live.rotate_left(turn);
            for (id, value) in live.drain(..) {
                assert_eq!(slab.remove(id), Some(value));
            }
        }
        assert_eq!(slab.get_mut(resident).copied(), Some(usize::MAX));
        assert_eq!(slab.len, 1);
        assert!(slab.slots.len() <= 8, "slots reused, not grown");
        // Every id that went is gone for good.
        for &id in seen.iter().filter(|&&id| id != resident) {
            assert_eq!(slab.get_mut(id), None);
        }
    }
}
