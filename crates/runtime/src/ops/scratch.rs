//! Per-thread scratch memory that outlives a call. Without it, a layer's temporary buffers
//! are mapped, faulted in and unmapped again on every layer of every frame: measured as 15%
//! of a video job's time in the kernel once the allocator starts returning them to the system.
//!
//! The slice handed out starts on a cache line. The system allocator aligns large blocks to
//! 16 bytes only, so every 64-byte vector load and store of the Winograd blocks (its
//! transformed tiles, GEMM results and output tiles, all in scratch) touched two lines: about
//! 4% of a layer (docs/benchmarks.md).

use std::cell::RefCell;

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Cache-line size in floats.
const LINE: usize = 16;

/// Runs `f` with `len` floats of this thread's scratch, starting on a 64-byte boundary; their
/// contents are left over from earlier calls. Not re-entrant: `f` must not call it again.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < len + LINE {
            // A fresh buffer rather than a grown one: the contents need not survive, and a
            // fresh one gets huge pages.
            *s = crate::buffers::zeroed(len + LINE);
        }
        let skip = s.as_ptr().align_offset(LINE * 4).min(LINE);
        f(&mut s[skip..skip + len])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_starts_on_a_cache_line() {
        for len in [1, 100, 1 << 20, 3 << 20] {
            with_scratch(len, |s| {
                assert_eq!(s.len(), len);
                assert_eq!(s.as_ptr() as usize % 64, 0, "{len} floats");
            });
        }
    }
}
