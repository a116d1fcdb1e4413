//! Per-thread scratch memory that outlives a call. Without it, a layer's temporary buffers
//! are mapped, faulted in and unmapped again on every layer of every frame: measured as 15%
//! of a video job's time in the kernel once the allocator starts returning them to the system.

use std::cell::RefCell;

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with `len` floats of this thread's scratch; their contents are left over from
/// earlier calls. Not re-entrant: `f` must not call it again.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < len {
            s.resize(len, 0.0);
        }
        f(&mut s[..len])
    })
}
