//! 3x3 stride-1 convolution by Winograd F(6x6, 3x3): each 8x8 input patch yields a 6x6 output
//! patch with 64 multiplications per channel pair instead of 324.
//!
//! Per block of tiles: transform input patches (vectorised over channels, which are contiguous
//! in our channels-last layout), run one packed GEMM per of the 64 transform positions, then
//! transform back and apply bias and activation while the block is still in cache.
//! The transform matrices are the standard ones for interpolation points 0, ±1, ±2, ±1/2
//! (the ±1/2 rows scaled by 32 as in ncnn's winograd63), checked against direct
//! convolution in the tests.

use super::scratch::with_scratch;
use crate::graph::{Activation, ConvSpec, Padding};
use crate::kernels::gemm::{gemm, PackedB};
use crate::kernels::{math, Isa, LANES};
use crate::ops::{copy_channels, par_for_each_thread};
use crate::tensor::Tensor;
use std::sync::atomic::{AtomicUsize, Ordering};

type Lanes = [f32; LANES];
const ZERO: Lanes = [0.0; LANES];

/// Kernel transform G (8x3).
const G: [[f32; 3]; 8] = [
    [1.0, 0.0, 0.0],
    [-2.0 / 9.0, -2.0 / 9.0, -2.0 / 9.0],
    [-2.0 / 9.0, 2.0 / 9.0, -2.0 / 9.0],
    [1.0 / 90.0, 1.0 / 45.0, 2.0 / 45.0],
    [1.0 / 90.0, -1.0 / 45.0, 2.0 / 45.0],
    [1.0 / 45.0, 1.0 / 90.0, 1.0 / 180.0],
    [1.0 / 45.0, -1.0 / 90.0, 1.0 / 180.0],
    [0.0, 0.0, 1.0],
];

/// A 3x3 stride-1 convolution with its kernels transformed and packed.
#[derive(Debug)]
pub struct Winograd {
    in_c: usize,
    out_c: usize,
    pad: Padding,
    /// One packed `in_c x out_c` matrix per transform position.
    u: Vec<PackedB>,
    /// Bias and activation padded to `u[0].padded_n()` channels. The bias is added once per
    /// tile, at transform position (1, 1) (`output_transform`).
    bias: Vec<f32>,
    act: Activation,
    /// The activation's slopes when it is ReLU's kind (`math::negative_slopes`): then the
    /// activation is applied from registers as the output transform stores, not in a pass of
    /// its own over each tile.
    slopes: Option<Vec<f32>>,
    isa: Isa,
    /// Tiles per block when tuning asks for a count (`Tuning::winograd_tiles`).
    block_tiles: Option<usize>,
}

impl Winograd {
    pub fn supports(spec: &ConvSpec) -> bool {
        spec.kh == 3
            && spec.kw == 3
            && spec.stride_h == 1
            && spec.stride_w == 1
            && spec.dil_h == 1
            && spec.dil_w == 1
    }

    pub fn new(spec: &ConvSpec, isa: Isa) -> Self {
        let (in_c, out_c) = (spec.in_c, spec.out_c);
        // U[pos][i][o] = (G g G^T)[pos] for g = W[o][i].
        let mut transformed = vec![0.0f32; 64 * in_c * out_c];
        for o in 0..out_c {
            for i in 0..in_c {
                let g = &spec.weights[(o * in_c + i) * 9..(o * in_c + i) * 9 + 9];
                let mut tmp = [[0.0f32; 3]; 8]; // G g
                for (r, row) in tmp.iter_mut().enumerate() {
                    for (col, v) in row.iter_mut().enumerate() {
                        *v = (0..3).map(|k| G[r][k] * g[k * 3 + col]).sum();
                    }
                }
                for r in 0..8 {
                    for col in 0..8 {
                        let v: f32 = (0..3).map(|k| tmp[r][k] * G[col][k]).sum();
                        transformed[((r * 8 + col) * in_c + i) * out_c + o] = v;
                    }
                }
            }
        }
        let u: Vec<PackedB> = (0..64)
            .map(|pos| {
                let base = pos * in_c * out_c;
                PackedB::new(isa, in_c, out_c, |i, o| transformed[base + i * out_c + o])
            })
            .collect();
        let n_pad = u[0].padded_n();
        let mut bias = spec.bias.clone();
        bias.resize(n_pad, 0.0);
        let act = match &spec.act {
            Activation::PRelu(s) if s.len() > 1 => {
                let mut s = s.clone();
                s.resize(n_pad, 0.0);
                Activation::PRelu(s)
            }
            a => a.clone(),
        };
        Winograd {
            in_c,
            out_c,
            pad: spec.pad,
            u,
            bias,
            slopes: math::negative_slopes(&act, n_pad),
            act,
            isa,
            block_tiles: None,
        }
    }

    /// Runs with `tiles` tiles per block instead of the L2-sized default (for tuning).
    pub fn with_block_tiles(mut self, tiles: Option<usize>) -> Self {
        self.block_tiles = tiles;
        self
    }

    pub fn in_channels(&self) -> usize {
        self.in_c
    }

    /// Whether the output has the input's size (padding 1 on every side), as a convolution
    /// in a dense block must.
    pub fn keeps_size(&self) -> bool {
        self.pad.top + self.pad.bottom == 2 && self.pad.left + self.pad.right == 2
    }

    pub fn out_channels(&self) -> usize {
        self.out_c
    }

    pub fn out_shape(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let oh = (h + self.pad.top + self.pad.bottom).checked_sub(2)?;
        let ow = (w + self.pad.left + self.pad.right).checked_sub(2)?;
        (oh > 0 && ow > 0).then_some((oh, ow))
    }

    /// Tiles per block: enough rows for the GEMM, few enough that the block stays in L2.
    fn block_tiles(&self) -> usize {
        if let Some(t) = self.block_tiles.filter(|&t| t > 0) {
            return t;
        }
        let per_tile = 64 * (self.in_c.next_multiple_of(LANES) + self.u[0].padded_n());
        (96 * 1024 / per_tile).clamp(12, 48) / 12 * 12
    }

    pub fn run(&self, input: &Tensor, output: &mut Tensor, threads: usize) {
        // The output is written through raw pointers below: its size is checked here, where
        // a caller hands it over.
        let len = |t: &Tensor| t.h.checked_mul(t.w).and_then(|p| p.checked_mul(t.c));
        assert!(
            input.c == self.in_c && Some(input.data.len()) == len(input),
            "winograd input is not {}-channel {}x{}",
            self.in_c,
            input.w,
            input.h
        );
        assert!(
            output.c == self.out_c
                && Some(output.data.len()) == len(output)
                && self.out_shape(input.h, input.w) == Some((output.h, output.w)),
            "winograd output buffer does not fit the input"
        );
        let src = Pixels {
            ptr: input.data.as_ptr() as *mut f32,
            h: input.h,
            w: input.w,
            stride: input.c,
            offset: 0,
        };
        let dst = Pixels {
            ptr: output.data.as_mut_ptr(),
            h: output.h,
            w: output.w,
            stride: output.c,
            offset: 0,
        };
        // SAFETY: two separate, exclusively borrowed tensors of the checked sizes.
        unsafe { self.run_pixels(src, dst, threads) }
    }

    /// Runs within one buffer, as a dense block does: reads channels `0..in_c` of every pixel
    /// of `buf` and writes its output to channels `at..at + out_c` of the same pixels (a
    /// same-size convolution), so that the block's concatenations cost no copies.
    pub fn run_within(&self, buf: &mut Tensor, at: usize, threads: usize) {
        assert!(
            self.in_c <= at
                && at + self.out_c <= buf.c
                && buf.h.checked_mul(buf.w).and_then(|p| p.checked_mul(buf.c))
                    == Some(buf.data.len())
                && self.out_shape(buf.h, buf.w) == Some((buf.h, buf.w)),
            "winograd window {at}+{} does not fit a {}-channel {}x{} buffer after {} inputs",
            self.out_c,
            buf.c,
            buf.w,
            buf.h,
            self.in_c
        );
        let ptr = buf.data.as_mut_ptr();
        let at_offset = |offset| Pixels {
            ptr,
            h: buf.h,
            w: buf.w,
            stride: buf.c,
            offset,
        };
        // SAFETY: the channels read (`0..in_c`) and written (`at..`) are disjoint, checked
        // above, and the buffer is borrowed exclusively for the call.
        unsafe { self.run_pixels(at_offset(0), at_offset(at), threads) }
    }

    /// # Safety
    /// `src` must hold `in_c` readable channels and `dst` `out_c` writable ones at every pixel
    /// of their sizes, `dst` of the output size for `src`'s, and nothing else may write the
    /// channels read or touch the channels written during the call.
    unsafe fn run_pixels(&self, src: Pixels, dst: Pixels, threads: usize) {
        debug_assert_eq!(self.out_shape(src.h, src.w), Some((dst.h, dst.w)));
        let (oh, ow) = (dst.h, dst.w);
        let tiles_w = ow.div_ceil(6);
        let tiles = oh.div_ceil(6) * tiles_w;
        let bt = self.block_tiles();
        let blocks = tiles.div_ceil(bt);
        let cin_p = self.in_c.next_multiple_of(LANES);
        let n_pad = self.u[0].padded_n();
        let isa = self.isa;
        let fused = isa.fused_multiply_add();
        // The transformed tiles (`V`) and the GEMM results (`M`) are stored tile-major: a
        // tile's 64 positions in one run, which the transforms write and read in order (the
        // position-major layout scattered each tile over 64 places 3 KB apart). A GEMM then
        // reads its rows one tile stride apart, and the stride is a line more than the 16 KB
        // of a tile's values so that those rows do not all fall into the same L1 sets (without
        // the line: 8-14% slower than position-major; with it: about 4% faster).
        let (v_tile, m_tile) = (64 * cin_p + LANES, 64 * n_pad + LANES);
        // Blocks go to whichever thread is free, not in a fixed interleave: on a shared host
        // one core is often slowed for a while, and a fixed share would make the layer wait
        // for it. A thread claims its next block as it starts one, so that it can prefetch it.
        let claimed = AtomicUsize::new(0);
        let claim = || claimed.fetch_add(1, Ordering::Relaxed);
        par_for_each_thread(threads.min(blocks), |_, _| {
            let (v_len, m_len) = (bt * v_tile, bt * m_tile);
            with_scratch(v_len + m_len + 36 * n_pad, |scratch| {
                let (v, rest) = scratch.split_at_mut(v_len);
                let (m, tile_out) = rest.split_at_mut(m_len);
                let mut block = claim();
                while block < blocks {
                    let next = claim();
                    let first = block * bt;
                    let count = bt.min(tiles - first);
                    crate::dispatch!(isa, {
                        if fused {
                            self.input_transform::<true>(
                                &src, first, count, tiles_w, v_tile, cin_p, v,
                            )
                        } else {
                            self.input_transform::<false>(
                                &src, first, count, tiles_w, v_tile, cin_p, v,
                            )
                        }
                    });
                    // The GEMMs are compute-bound and the transforms memory-bound: while the
                    // GEMMs run, pull in this block's output rows and the next block's input rows.
                    let mut prefetch = Prefetch::default();
                    let out_grid = TileGrid {
                        h: oh,
                        w: ow,
                        c: self.out_c,
                        stride: dst.stride,
                        offset: dst.offset,
                        tiles_w,
                        size: 6,
                        top: 0,
                        left: 0,
                    };
                    prefetch.add_tiles(dst.ptr, &out_grid, first, count);
                    if next < blocks {
                        let in_grid = TileGrid {
                            h: src.h,
                            w: src.w,
                            c: self.in_c,
                            stride: src.stride,
                            offset: src.offset,
                            tiles_w,
                            size: 8,
                            top: self.pad.top,
                            left: self.pad.left,
                        };
                        prefetch.add_tiles(src.ptr, &in_grid, next * bt, bt.min(tiles - next * bt));
                    }
                    for pos in 0..64 {
                        gemm(
                            isa,
                            count,
                            &v[pos * cin_p..],
                            v_tile,
                            &self.u[pos],
                            &mut m[pos * n_pad..],
                            m_tile,
                        );
                        prefetch.issue(pos, 64);
                    }
                    crate::dispatch!(isa, {
                        let mut tmp = [[ZERO; 8]; 6];
                        for t in 0..count {
                            let tile = first + t;
                            if fused {
                                self.output_transform::<true>(
                                    m, t, m_tile, n_pad, &mut tmp, tile_out,
                                );
                            } else {
                                self.output_transform::<false>(
                                    m, t, m_tile, n_pad, &mut tmp, tile_out,
                                );
                            }
                            if self.slopes.is_none() {
                                math::activation(tile_out, n_pad, &self.act);
                            }
                            let (y0, x0) = (tile / tiles_w * 6, tile % tiles_w * 6);
                            for dy in 0..6.min(oh - y0) {
                                for dx in 0..6.min(ow - x0) {
                                    let from = &tile_out[(dy * 6 + dx) * n_pad..][..n_pad];
                                    // SAFETY: each tile writes only its own output pixels'
                                    // `out_c` channels of the window, inside the buffer.
                                    let to = unsafe { dst.channels(y0 + dy, x0 + dx, self.out_c) };
                                    copy_channels(from, to);
                                }
                            }
                        }
                    });
                    block = next;
                }
            });
        });
    }

    /// Writes `V[t][pos][c]` for `count` tiles starting at `first`, tiles `tile_stride` floats
    /// apart.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn input_transform<const FUSED: bool>(
        &self,
        input: &Pixels,
        first: usize,
        count: usize,
        tiles_w: usize,
        tile_stride: usize,
        cin_p: usize,
        v: &mut [f32],
    ) {
        let (h, w, c) = (input.h as isize, input.w as isize, self.in_c);
        // Zeroed once: every use below writes all of them first (zeroing them per tile was a
        // `memset` call per tile and lane group, 3% of a frame).
        let mut patch = [ZERO; 8];
        let mut tmp = [[ZERO; 8]; 8];
        for t in 0..count {
            let tile = first + t;
            let y0 = (tile / tiles_w * 6) as isize - self.pad.top as isize;
            let x0 = (tile % tiles_w * 6) as isize - self.pad.left as isize;
            let inside = y0 >= 0 && x0 >= 0 && y0 + 8 <= h && x0 + 8 <= w;
            for c0 in (0..c).step_by(LANES) {
                let lanes = LANES.min(c - c0);
                // Rows then columns: patch -> BT d -> (BT d) B, each row of the patch
                // transformed as soon as it is read.
                for (dy, y) in (y0..y0 + 8).enumerate() {
                    if inside && lanes == LANES {
                        // Most tiles: whole lane vectors, no border checks.
                        for (dx, px) in patch.iter_mut().enumerate() {
                            // SAFETY: the tile lies inside the input, `c0 + LANES <= in_c`.
                            let from =
                                unsafe { input.read(y as usize, x0 as usize + dx, c0, LANES) };
                            *px = from.try_into().expect("lane vector");
                        }
                    } else {
                        for (dx, px) in patch.iter_mut().enumerate() {
                            let x = x0 + dx as isize;
                            *px = ZERO;
                            if y >= 0 && y < h && x >= 0 && x < w {
                                // SAFETY: (y, x) checked inside, `c0 + lanes <= in_c`.
                                let from = unsafe { input.read(y as usize, x as usize, c0, lanes) };
                                px[..lanes].copy_from_slice(from);
                            }
                        }
                    }
                    for (col, o) in tmp.iter_mut().zip(bt_1d::<FUSED>(&patch)) {
                        col[dy] = o;
                    }
                }
                for (i, col) in tmp.iter().enumerate() {
                    let r = bt_1d::<FUSED>(col);
                    for (j, val) in r.iter().enumerate() {
                        let at = t * tile_stride + (j * 8 + i) * cin_p + c0;
                        v[at..at + LANES].copy_from_slice(val);
                    }
                }
            }
        }
    }

    /// Transforms tile `t` of `M` (tiles `tile_stride` floats apart) back into a 6x6 patch of
    /// `n_pad` channels with the bias added, and the activation too when it is ReLU's kind
    /// (`slopes`). `tmp` is scratch, written before it is read: the caller zeroes it once per
    /// block rather than this per tile.
    #[inline(always)]
    fn output_transform<const FUSED: bool>(
        &self,
        m: &[f32],
        t: usize,
        tile_stride: usize,
        n_pad: usize,
        tmp: &mut [[Lanes; 8]; 6],
        out: &mut [f32],
    ) {
        let lanes =
            |v: &[f32], c0: usize| -> Lanes { v[c0..c0 + LANES].try_into().expect("lanes") };
        let mut r = [ZERO; 8];
        for c0 in (0..n_pad).step_by(LANES) {
            for row in 0..8 {
                for (col, rv) in r.iter_mut().enumerate() {
                    let at = t * tile_stride + (row * 8 + col) * n_pad + c0;
                    rv.copy_from_slice(&m[at..at + LANES]);
                }
                if row == 1 {
                    // Position (1, 1) has weight 1 in every output (`at_1d`): one addition
                    // of the bias there instead of 36.
                    let bias = lanes(&self.bias, c0);
                    for l in 0..LANES {
                        r[1][l] += bias[l];
                    }
                }
                for (t_row, o) in tmp.iter_mut().zip(at_1d::<FUSED>(&r)) {
                    t_row[row] = o;
                }
            }
            let slope = self.slopes.as_ref().map(|s| lanes(s, c0));
            for (i, col) in tmp.iter().enumerate() {
                let o = at_1d::<FUSED>(col);
                for (j, val) in o.iter().enumerate() {
                    let at = (j * 6 + i) * n_pad + c0;
                    let to: &mut Lanes = (&mut out[at..at + LANES]).try_into().expect("lanes");
                    match &slope {
                        Some(slope) => {
                            for l in 0..LANES {
                                let v = val[l];
                                to[l] = if v < 0.0 { v * slope[l] } else { v };
                            }
                        }
                        None => *to = *val,
                    }
                }
            }
        }
    }
}

/// A channels-last buffer as a convolution sees it: `stride` values per pixel, of which it
/// uses the channels from `offset` on (all of a plain tensor; a window of a dense block's).
#[derive(Clone, Copy)]
struct Pixels {
    ptr: *mut f32,
    h: usize,
    w: usize,
    stride: usize,
    offset: usize,
}

// SAFETY: shared by the worker threads, which read channels no one writes and write disjoint
// tiles (`Winograd::run_pixels`'s contract).
unsafe impl Send for Pixels {}
unsafe impl Sync for Pixels {}

impl Pixels {
    /// Channels `c0..c0 + n` of the window at pixel (`y`, `x`), to read.
    ///
    /// # Safety
    /// The pixel must lie inside, the channels inside the window, and no one may write them
    /// while the slice lives.
    #[inline(always)]
    unsafe fn read(&self, y: usize, x: usize, c0: usize, n: usize) -> &[f32] {
        debug_assert!(y < self.h && x < self.w && self.offset + c0 + n <= self.stride);
        std::slice::from_raw_parts(
            self.ptr
                .add((y * self.w + x) * self.stride + self.offset + c0),
            n,
        )
    }

    /// The window's first `n` channels at pixel (`y`, `x`), to write.
    ///
    /// # Safety
    /// As [`Pixels::read`], and no one else may touch them while the slice lives.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    unsafe fn channels(&self, y: usize, x: usize, n: usize) -> &mut [f32] {
        debug_assert!(y < self.h && x < self.w && self.offset + n <= self.stride);
        std::slice::from_raw_parts_mut(
            self.ptr.add((y * self.w + x) * self.stride + self.offset),
            n,
        )
    }
}

/// Where the tiles of a block lie in a channels-last tensor: tile `t` covers `size` rows and
/// columns from (`t / tiles_w * 6 - top`, `t % tiles_w * 6 - left`).
struct TileGrid {
    h: usize,
    w: usize,
    /// Channels used of each pixel's `stride`, from `offset` on.
    c: usize,
    stride: usize,
    offset: usize,
    tiles_w: usize,
    size: usize,
    top: usize,
    left: usize,
}

/// Row segments to pull into L2 ahead of use, issued a slice at a time between GEMMs.
#[derive(Default)]
struct Prefetch {
    /// (address, bytes)
    segments: Vec<(usize, usize)>,
}

impl Prefetch {
    fn add_tiles(&mut self, base: *const f32, grid: &TileGrid, first: usize, count: usize) {
        for tile in first..first + count {
            let y0 = (tile / grid.tiles_w * 6) as isize - grid.top as isize;
            let x0 = ((tile % grid.tiles_w * 6) as isize - grid.left as isize).max(0) as usize;
            let x1 = ((tile % grid.tiles_w * 6 + grid.size) as isize - grid.left as isize)
                .min(grid.w as isize);
            if x1 <= x0 as isize {
                continue;
            }
            for y in y0.max(0)..(y0 + grid.size as isize).min(grid.h as isize) {
                let at = |x: usize| {
                    let start = (y as usize * grid.w + x) * grid.stride + grid.offset;
                    base.wrapping_add(start) as usize
                };
                if grid.c == grid.stride {
                    self.segments
                        .push((at(x0), (x1 as usize - x0) * grid.c * 4));
                } else {
                    // A window of wider pixels: only the channels used.
                    for x in x0..x1 as usize {
                        self.segments.push((at(x), grid.c * 4));
                    }
                }
            }
        }
    }

    /// Issues part `step` of `steps` of the segments.
    fn issue(&self, step: usize, steps: usize) {
        let n = self.segments.len();
        for &(addr, bytes) in &self.segments[n * step / steps..n * (step + 1) / steps] {
            for offset in (0..bytes).step_by(64) {
                prefetch_l2(addr + offset);
            }
        }
    }
}

#[inline(always)]
fn prefetch_l2(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching is a hint; it never faults, whatever the address.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        _mm_prefetch::<_MM_HINT_T1>(addr as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// `B^T r` for one line of 8 lane vectors, as multiply-adds (paired as in ncnn's winograd63)
/// that are fused where the ISA has the instruction (`FUSED`): a third fewer instructions
/// than a product and a sum each.
#[inline(always)]
fn bt_1d<const FUSED: bool>(r: &[Lanes; 8]) -> [Lanes; 8] {
    let fma = math::mul_add::<FUSED>;
    let mut o = [ZERO; 8];
    for l in 0..LANES {
        let (r0, r1, r2, r3, r4, r5, r6, r7) = (
            r[0][l], r[1][l], r[2][l], r[3][l], r[4][l], r[5][l], r[6][l], r[7][l],
        );
        o[0][l] = fma(r4 - r2, 5.25, r0 - r6);
        o[7][l] = fma(r3 - r5, 5.25, r7 - r1);
        let a = fma(r4, -4.25, r2 + r6);
        let b = fma(r3, -4.25, r1 + r5);
        o[1][l] = a + b;
        o[2][l] = a - b;
        let a = fma(r4, -1.25, fma(r2, 0.25, r6));
        let b = fma(r5, 2.0, fma(r3, -2.5, r1 * 0.5));
        o[3][l] = a + b;
        o[4][l] = a - b;
        let a = fma(fma(r4, -1.25, r2), 4.0, r6);
        let b = fma(r5, 0.5, fma(r3, -2.5, r1 * 2.0));
        o[5][l] = a + b;
        o[6][l] = a - b;
    }
    o
}

/// `A^T r` for one line of 8 lane vectors, giving 6. Every output takes `r[1]` with weight 1,
/// which is why a bias added at transform position (1, 1) reaches all 36 outputs of a tile.
#[inline(always)]
fn at_1d<const FUSED: bool>(r: &[Lanes; 8]) -> [Lanes; 6] {
    let fma = math::mul_add::<FUSED>;
    let mut o = [ZERO; 6];
    for l in 0..LANES {
        let e024a = r[1][l] + r[2][l];
        let e135a = r[1][l] - r[2][l];
        let e024b = r[3][l] + r[4][l];
        let e135b = r[3][l] - r[4][l];
        let e024c = r[5][l] + r[6][l];
        let e135c = r[5][l] - r[6][l];
        o[0][l] = fma(e024c, 32.0, r[0][l] + e024a + e024b);
        o[2][l] = fma(e024c, 8.0, fma(e024b, 4.0, e024a));
        o[4][l] = fma(e024c, 2.0, fma(e024b, 16.0, e024a));
        o[1][l] = fma(e135c, 16.0, fma(e135b, 2.0, e135a));
        o[3][l] = fma(e135c, 4.0, fma(e135b, 8.0, e135a));
        o[5][l] = fma(e135b, 32.0, r[7][l] + e135a + e135c);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv::Im2colConv;
    use crate::ops::testing::{input, spec};

    /// Winograd against direct convolution (im2col), across channel tails, borders, ISAs and
    /// activations (those of ReLU's kind applied as the output transform stores, the others
    /// in a pass of their own). F(6x6,3x3) trades some precision for speed: about 2e-5
    /// relative here, as in ncnn.
    #[test]
    fn matches_direct_convolution() {
        let shapes = [
            (3, 64, 1, 13, 17),
            (64, 48, 1, 20, 9),
            (52, 52, 0, 11, 14),
            (16, 3, 1, 7, 6),
            (8, 33, 0, 9, 9),
        ];
        for isa in Isa::all_supported() {
            for (n, &(in_c, out_c, pad, h, w)) in shapes.iter().enumerate() {
                let act = match n % 4 {
                    0 => Activation::PRelu((0..out_c).map(|o| 0.05 * o as f32).collect()),
                    1 => Activation::Relu { slope: 0.1 },
                    2 => Activation::Sigmoid,
                    _ => Activation::Identity,
                };
                let s = spec(in_c, out_c, 3, 1, pad, act);
                let input = input(h, w, in_c);
                let wino = Winograd::new(&s, isa);
                let direct = Im2colConv::new(&s, isa);
                let (oh, ow) = wino.out_shape(h, w).unwrap();
                assert_eq!(Some((oh, ow)), direct.geometry().out_shape(h, w));
                let mut a = Tensor::zeros(oh, ow, out_c);
                let mut b = Tensor::zeros(oh, ow, out_c);
                wino.run(&input, &mut a, 2);
                direct.run(&input, &mut b, 2);
                let diff = a
                    .data
                    .iter()
                    .zip(&b.data)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f32::max);
                let scale = b.data.iter().map(|v| v.abs()).fold(1.0, f32::max);
                assert!(
                    diff < 5e-5 * scale,
                    "{isa:?} {in_c}->{out_c} pad {pad} {w}x{h}: {diff} (outputs up to {scale})"
                );
            }
        }
    }
}
