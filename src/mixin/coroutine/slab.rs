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
}
