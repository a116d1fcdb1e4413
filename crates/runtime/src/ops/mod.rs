//! The operators, each in the form the executor runs: weights prepared at load time, a shape
//! function used both for planning memory and at run time, and a `run` over channels-last tensors.

pub mod conv;
pub mod deconv;
pub mod dense;
pub mod elementwise;
pub mod layout;
pub mod narrow;
pub mod reduce;
mod scratch;
#[cfg(test)]
mod testing;
pub mod winograd;

use crate::kernels::LANES;
use rayon::prelude::*;

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

/// Copies `dst.len()` channels in whole lane vectors (a call to memcpy per pixel costs more
/// than the copy).
#[inline(always)]
pub(crate) fn copy_channels(src: &[f32], dst: &mut [f32]) {
    let done = dst.len() / LANES * LANES;
    let mut chunks = dst.chunks_exact_mut(LANES);
    for (i, d) in (&mut chunks).enumerate() {
        let s: &[f32; LANES] = src[i * LANES..(i + 1) * LANES]
            .try_into()
            .expect("whole lanes");
        d.copy_from_slice(s);
    }
    for (d, s) in chunks.into_remainder().iter_mut().zip(&src[done..]) {
        *d = *s;
    }
}
