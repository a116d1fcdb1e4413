//! The operators, each in the form the executor runs: weights prepared at load time, a shape
//! function used both for planning memory and at run time, and a `run` over channels-last tensors.

pub mod conv;
pub mod deconv;
pub mod elementwise;
pub mod layout;
pub mod reduce;
mod scratch;
pub mod winograd;

use rayon::prelude::*;

/// A raw pointer that worker threads may share because each writes a disjoint region.
#[derive(Clone, Copy)]
pub(crate) struct SyncPtr(pub *mut f32);
// SAFETY: users guarantee disjoint writes (documented at each use).
unsafe impl Send for SyncPtr {}
unsafe impl Sync for SyncPtr {}

impl SyncPtr {
    /// Going through a method makes closures capture the wrapper, not the bare pointer.
    pub fn get(&self) -> *mut f32 {
        self.0
    }
}

/// Runs `f(thread, threads)` on `threads` workers of the current pool.
pub(crate) fn par_for_each_thread(threads: usize, f: impl Fn(usize, usize) + Sync) {
    let threads = threads.max(1);
    if threads == 1 {
        f(0, 1);
    } else {
        (0..threads).into_par_iter().for_each(|t| f(t, threads));
    }
}

/// Runs `f(index, chunk)` over `chunk`-sized pieces of `data`, in parallel when `threads > 1`.
pub(crate) fn par_chunks(
    data: &mut [f32],
    chunk: usize,
    threads: usize,
    f: impl Fn(usize, &mut [f32]) + Sync + Send,
) {
    let chunk = chunk.max(1);
    if threads <= 1 {
        data.chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    } else {
        data.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    }
}
