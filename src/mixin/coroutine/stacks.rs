//! [`Stacks`]: a worker's coroutine stacks, the finished ones kept for the
//! next requests.

use std::io;

use corosensei::stack::DefaultStack;

/// How many finished stacks a worker keeps for reuse. Taking a kept stack
/// costs about 40 ns; mapping a new one (mmap, mprotect of the guard page)
/// and unmapping it afterwards 13–16 µs, which was most of a datagram's
/// cost. 32 covers the requests a worker finishes between two bursts of
/// new ones, and costs at most 32 × `stack_size` of address space (8 MiB
/// with the default), resident only for the pages handlers touched.
pub(super) const KEPT_STACKS: usize = 32;

/// The stacks of one worker: new ones mapped on demand, finished ones kept
/// (up to a bound) and handed out again, last in first out (the most
/// recently used pages are the likeliest still cached).
pub(super) struct Stacks {
    size: usize,
    keep: usize,
    free: Vec<DefaultStack>,
}

impl std::fmt::Debug for Stacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stacks")
            .field("size", &self.size)
            .field("keep", &self.keep)
            .field("kept", &self.free.len())
            .finish()
    }
}

impl Stacks {
    /// Stacks of at least `size` bytes (plus a guard page), keeping up to
    /// `keep` finished ones.
    pub(super) fn new(size: usize, keep: usize) -> Stacks {
        Stacks {
            size,
            keep,
            free: Vec::with_capacity(keep),
        }
    }

    /// A kept stack, or a new one; an error when none can be mapped (the
    /// address space is exhausted, `RLIMIT_AS`, or an absurd size).
    pub(super) fn take(&mut self) -> io::Result<DefaultStack> {
        if let Some(stack) = self.free.pop() {
            return Ok(stack);
        }
        let size = self.size;
        // DefaultStack::new panics when the size plus a guard page
        // overflows usize; no address space is that large anyway.
        if size > isize::MAX as usize / 2 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot map a coroutine stack of {size} bytes: too large"),
            ));
        }
        DefaultStack::new(size).map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("cannot map a coroutine stack of {size} bytes: {err}"),
            )
        })
    }

    /// Keeps a finished coroutine's stack for the next one, or unmaps it
    /// when enough are kept.
    pub(super) fn give_back(&mut self, stack: DefaultStack) {
        if self.free.len() < self.keep {
            self.free.push(stack);
        }
    }

    /// How many are kept now.
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corosensei::stack::Stack;

    const SIZE: usize = 64 * 1024;

    fn top(stack: &DefaultStack) -> usize {
        stack.base().get()
    }

    #[test]
    fn a_given_back_stack_is_the_next_one_taken() {
        let mut stacks = Stacks::new(SIZE, 4);
        let first = stacks.take().unwrap();
        let first_top = top(&first);
        assert!(
            first_top - first.limit().get() >= SIZE,
            "at least the size asked"
        );
        stacks.give_back(first);
        assert_eq!(stacks.kept(), 1);
        let again = stacks.take().unwrap();
        assert_eq!(top(&again), first_top, "the same mapping, reused");
        assert_eq!(stacks.kept(), 0);
        // None kept: a new mapping, a different one.
        let fresh = stacks.take().unwrap();
        assert_ne!(top(&fresh), first_top);
    }

    #[test]
    fn the_last_given_back_is_taken_first() {
        let mut stacks = Stacks::new(SIZE, 4);
        let (a, b) = (stacks.take().unwrap(), stacks.take().unwrap());
        let (a_top, b_top) = (top(&a), top(&b));
        stacks.give_back(a);
        stacks.give_back(b);
        assert_eq!(top(&stacks.take().unwrap()), b_top);
        assert_eq!(top(&stacks.take().unwrap()), a_top);
    }

    #[test]
    fn no_more_than_the_bound_are_kept() {
        let mut stacks = Stacks::new(SIZE, 2);
        let taken: Vec<DefaultStack> = (0..5).map(|_| stacks.take().unwrap()).collect();
        let tops: Vec<usize> = taken.iter().map(top).collect();
        for stack in taken {
            stacks.give_back(stack);
        }
        assert_eq!(stacks.kept(), 2, "the other three unmapped");
        // The two kept are the first two given back.
        let kept = [top(&stacks.take().unwrap()), top(&stacks.take().unwrap())];
        assert_eq!(kept, [tops[1], tops[0]]);
        let none_kept = Stacks::new(SIZE, 0);
        assert_eq!(none_kept.kept(), 0);
    }

    #[test]
    fn a_stack_that_cannot_be_mapped_is_an_error_not_a_panic() {
        // More than the 47-bit user address space of x86_64 and aarch64.
        let mut stacks = Stacks::new(1 << 50, 4);
        let Err(err) = stacks.take() else {
            panic!("a stack of 2^50 bytes mapped")
        };
        assert!(
            err.to_string().contains("cannot map a coroutine stack"),
            "{err}"
        );
        // A size whose guard page would overflow usize: refused the same way.
        let mut absurd = Stacks::new(usize::MAX - 1, 4);
        let Err(err) = absurd.take() else {
            panic!("a stack of usize::MAX - 1 bytes mapped")
        };
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    }
}
