//! Cubic sampling of an interleaved image (RGB, or one channel) at sixteen positions at
//! once with AVX-512: the motion-compensated warp is the stabiliser's heaviest pass (48 loads
//! per output pixel), and the motion search samples the source's luma the same way.
//!
//! The motion is smooth, so sixteen neighbouring output pixels almost always sample sixteen
//! neighbouring places: their taps then lie in one window of 5 x 20 pixels (each lane's four
//! columns start at most one column later than its neighbour's shifted by one, and their rows
//! at most one row apart), 4 x 19 where no lane starts a tap later. That window is read with
//! plain contiguous loads on the interleaved data; on an axis where some lanes start a tap
//! later, each lane's weights are set to zero on the tap it does not use. Anything else (a
//! motion edge, the frame's borders) takes gathers from the places only the motion knows. The
//! scalar [`cubic_sample`](super::plane::cubic_sample) is the reference and the fallback;
//! all three agree up to the order of the sums.

#[cfg(target_arch = "x86_64")]
use super::plane::CUBIC;

/// Pixels per call.
pub const LANES: usize = 16;

/// How [`cubic`] read its taps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// One window of contiguous rows: the common case.
    Window,
    /// A gather per tap and channel.
    Gathered,
}

/// Samples the interleaved `data` (`w` x `h`, `C` channels) at `(xs[l], ys[l])` for the
/// sixteen lanes, into `out[lane]`, the edges repeated outwards.
///
/// # Safety
/// The CPU must have AVX-512F (an [`vsr_runtime::Isa`] of level AVX-512 says so), and
/// `data` must hold `w * h * C` values with `w * h * C` within `i32`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub unsafe fn cubic<const C: usize>(
    data: &[f32],
    w: usize,
    h: usize,
    xs: &[f32; LANES],
    ys: &[f32; LANES],
    out: &mut [[f32; C]; LANES],
) -> Read {
    use std::arch::x86_64::*;
    debug_assert!(data.len() >= w * h * C && w * h * C <= i32::MAX as usize);
    // As the scalar sampler: clamp to two pixels outside (every tap on the edge there), so
    // the shifted coordinate is non-negative and truncation is the floor.
    let split = |v: __m512, limit: usize| {
        let v = _mm512_min_ps(
            _mm512_max_ps(v, _mm512_set1_ps(-2.0)),
            _mm512_set1_ps(limit as f32),
        );
        let shifted = _mm512_add_ps(v, _mm512_set1_ps(2.0));
        let whole = _mm512_cvttps_epi32(shifted);
        (whole, _mm512_sub_ps(shifted, _mm512_cvtepi32_ps(whole)))
    };
    // The scalar sampler's polynomials, by Horner's rule as there.
    let weights = |t: __m512| {
        CUBIC.map(|[t3, t2, t1, one]| {
            let v = _mm512_fmadd_ps(_mm512_set1_ps(t3), t, _mm512_set1_ps(t2));
            let v = _mm512_fmadd_ps(v, t, _mm512_set1_ps(t1));
            _mm512_fmadd_ps(v, t, _mm512_set1_ps(one))
        })
    };
    // Tap `k` of 4 sits at `whole - 3 + k` (floor - 1 + k), clamped into the frame.
    let taps = |whole: __m512i, n: usize| -> [__m512i; 4] {
        std::array::from_fn(|k| {
            let at = _mm512_add_epi32(whole, _mm512_set1_epi32(k as i32 - 3));
            _mm512_min_epi32(
                _mm512_max_epi32(at, _mm512_setzero_si512()),
                _mm512_set1_epi32(n as i32 - 1),
            )
        })
    };
    let (ix, fx) = split(_mm512_loadu_ps(xs.as_ptr()), w);
    let (iy, fy) = split(_mm512_loadu_ps(ys.as_ptr()), h);
    let (wx, wy) = (weights(fx), weights(fy));
    if window(data, w, h, ix, iy, &wx, &wy, out) {
        return Read::Window;
    }
    let (columns, rows) = (taps(ix, w), taps(iy, h));
    let channels = _mm512_set1_epi32(C as i32);
    let base = data.as_ptr();
    let mut value = [_mm512_setzero_ps(); C];
    for (row, wj) in rows.iter().zip(&wy) {
        let start = _mm512_mullo_epi32(*row, _mm512_set1_epi32(w as i32));
        let mut line = [_mm512_setzero_ps(); C];
        for (column, wi) in columns.iter().zip(&wx) {
            let at = _mm512_mullo_epi32(_mm512_add_epi32(start, *column), channels);
            for (channel, l) in line.iter_mut().enumerate() {
                let index = _mm512_add_epi32(at, _mm512_set1_epi32(channel as i32));
                // SAFETY: every index is a clamped pixel's channel, inside `data`.
                let v = _mm512_i32gather_ps::<4>(index, base);
                *l = _mm512_fmadd_ps(*wi, v, *l);
            }
        }
        for (v, l) in value.iter_mut().zip(&line) {
            *v = _mm512_fmadd_ps(*wj, *l, *v);
        }
    }
    let mut lanes = [[0.0; LANES]; C];
    for (o, v) in lanes.iter_mut().zip(&value) {
        _mm512_storeu_ps(o.as_mut_ptr(), *v);
    }
    for (l, o) in out.iter_mut().enumerate() {
        *o = std::array::from_fn(|c| lanes[c][l]);
    }
    Read::Gathered
}

/// For the whole runs of sixteen pixels of a row: `data` sampled at `(xs, ys)` ([`cubic`])
/// into `moved`, for each run where any pixel's `trust` is above zero; runs with none keep
/// their (stale) values, which the blend leaves alone. Returns how many pixels that was; the
/// rest of the row is the caller's. The warp's inner loop, with the sampler inlined into it.
///
/// # Safety
/// As [`cubic`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub unsafe fn sample_trusted<const C: usize>(
    data: &[f32],
    w: usize,
    h: usize,
    xs: &[f32],
    ys: &[f32],
    trust: &[f32],
    moved: &mut [[f32; C]],
) -> usize {
    use std::arch::x86_64::*;
    let mut done = 0;
    for (((moved, xs), ys), trust) in moved
        .chunks_exact_mut(LANES)
        .zip(xs.chunks_exact(LANES))
        .zip(ys.chunks_exact(LANES))
        .zip(trust.chunks_exact(LANES))
    {
        done += LANES;
        // "Not at most zero", so that a run is skipped exactly where every trust is <= 0.
        let trusted =
            _mm512_cmp_ps_mask::<_CMP_NLE_UQ>(_mm512_loadu_ps(trust.as_ptr()), _mm512_setzero_ps());
        if trusted == 0 {
            continue;
        }
        let (xs, ys) = (xs.try_into().expect("16"), ys.try_into().expect("16"));
        cubic(data, w, h, xs, ys, moved.try_into().expect("16"));
    }
    done
}

/// For the whole runs of sixteen pixels of row `y` of a one-channel plane: `data` (`w` x `h`)
/// sampled where each pixel was, moved by `(dxs, dys)` ([`cubic`]), minus the pixel's value
/// now (`now`), into `out`. Returns how many pixels that was; the rest of the row is the
/// caller's. The motion search's inner loop: positions and differences sixteen at a time, and
/// the sampler inlined into it.
///
/// # Safety
/// As [`cubic`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn moved_difference(
    data: &[f32],
    w: usize,
    h: usize,
    y: usize,
    dxs: &[f32],
    dys: &[f32],
    now: &[f32],
    out: &mut [f32],
) -> usize {
    use std::arch::x86_64::*;
    let lane = _mm512_setr_ps(
        0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0,
    );
    let row = _mm512_set1_ps(y as f32);
    let mut done = 0;
    for (((e, dx), dy), c) in out
        .chunks_exact_mut(LANES)
        .zip(dxs.chunks_exact(LANES))
        .zip(dys.chunks_exact(LANES))
        .zip(now.chunks_exact(LANES))
    {
        // Whole numbers below 2^24: the sums are exact, as the scalar path's conversions.
        let column = _mm512_add_ps(_mm512_set1_ps(done as f32), lane);
        let mut xs = [0.0; LANES];
        let mut ys = [0.0; LANES];
        _mm512_storeu_ps(
            xs.as_mut_ptr(),
            _mm512_add_ps(column, _mm512_loadu_ps(dx.as_ptr())),
        );
        _mm512_storeu_ps(
            ys.as_mut_ptr(),
            _mm512_add_ps(row, _mm512_loadu_ps(dy.as_ptr())),
        );
        let mut moved = [[0.0]; LANES];
        cubic(data, w, h, &xs, &ys, &mut moved);
        let moved = _mm512_loadu_ps(moved.as_ptr().cast());
        _mm512_storeu_ps(
            e.as_mut_ptr(),
            _mm512_sub_ps(moved, _mm512_loadu_ps(c.as_ptr())),
        );
        done += LANES;
    }
    done
}

/// The window path of [`cubic`], given each lane's first tap (`ix`, `iy`: floor + 2, as
/// there) and weights; `false`, with nothing written, where the lanes' taps do not fit one
/// window inside the frame's columns (rows are clamped: every lane shares them).
///
/// # Safety
/// As [`cubic`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn window<const C: usize>(
    data: &[f32],
    w: usize,
    h: usize,
    ix: std::arch::x86_64::__m512i,
    iy: std::arch::x86_64::__m512i,
    wx: &[std::arch::x86_64::__m512; 4],
    wy: &[std::arch::x86_64::__m512; 4],
    out: &mut [[f32; C]; LANES],
) -> bool {
    use std::arch::x86_64::*;
    let lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let offset = _mm512_sub_epi32(ix, lane);
    let (left, right) = (
        _mm512_reduce_min_epi32(offset),
        _mm512_reduce_max_epi32(offset),
    );
    let (top, bottom) = (_mm512_reduce_min_epi32(iy), _mm512_reduce_max_epi32(iy));
    // Lane l's taps are columns `offset - 3 + l ..`, so the window starts at `left - 3` and
    // spans 16 + 4 columns.
    let first = left - 3;
    if right - left > 1 || bottom - top > 1 || first < 0 || first as usize + LANES + 4 > w {
        return false;
    }
    // Five taps on an axis where a lane is one tap later than another: the later lane's
    // weights moved up by one, a zero first. On an axis where none is, four: each lane's own
    // weights (five would only add a zero-weighted tap: for finite data the same sums, with
    // a fifth fewer loads and multiplies; most runs of sixteen take this on both axes).
    let five = |weights: &[__m512; 4], later: __mmask16| -> [__m512; 5] {
        let zero = _mm512_setzero_ps();
        std::array::from_fn(|k| {
            let own = if k < 4 { weights[k] } else { zero };
            let moved = if k > 0 { weights[k - 1] } else { zero };
            _mm512_mask_blend_ps(later, own, moved)
        })
    };
    let later_column = _mm512_cmpgt_epi32_mask(offset, _mm512_set1_epi32(left));
    let later_row = _mm512_cmpgt_epi32_mask(iy, _mm512_set1_epi32(top));
    let first = first as usize;
    match (later_column, later_row) {
        (0, 0) => sum_window(data, w, h, first, top, wx, wy, out),
        (0, later) => sum_window(data, w, h, first, top, wx, &five(wy, later), out),
        (later, 0) => sum_window(data, w, h, first, top, &five(wx, later), wy, out),
        (columns, rows) => {
            let (wx, wy) = (five(wx, columns), five(wy, rows));
            sum_window(data, w, h, first, top, &wx, &wy, out)
        }
    }
    true
}

/// The weighted sum of a window of `R` rows from `top - 3` (clamped) by `K + 15` columns
/// from `first`, each lane's weights per column and row given, into `out`.
///
/// # Safety
/// As [`cubic`]; the window's columns must lie inside the frame.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn sum_window<const C: usize, const K: usize, const R: usize>(
    data: &[f32],
    w: usize,
    h: usize,
    first: usize,
    top: i32,
    columns: &[std::arch::x86_64::__m512; K],
    rows: &[std::arch::x86_64::__m512; R],
    out: &mut [[f32; C]; LANES],
) {
    use std::arch::x86_64::*;
    // A lane's weight on each of its C interleaved channels: the 16C values of sixteen
    // pixels are C vectors, element e of vector p belonging to pixel (16p + e) / C.
    let spread = |v: __m512| -> [__m512; C] {
        std::array::from_fn(|p| {
            let index: [i32; LANES] = std::array::from_fn(|e| ((LANES * p + e) / C) as i32);
            _mm512_permutexvar_ps(_mm512_loadu_si512(index.as_ptr().cast()), v)
        })
    };
    let columns = columns.map(spread);
    let base = data.as_ptr();
    let mut value = [_mm512_setzero_ps(); C];
    for (j, weight) in rows.iter().enumerate() {
        let row = (top - 3 + j as i32).clamp(0, h as i32 - 1) as usize;
        // SAFETY: the window's columns lie inside the frame (the caller checked), its rows
        // clamped.
        let start = base.add((row * w + first) * C);
        let mut line = [_mm512_setzero_ps(); C];
        for (k, column) in columns.iter().enumerate() {
            for (p, l) in line.iter_mut().enumerate() {
                let v = _mm512_loadu_ps(start.add(C * k + LANES * p));
                *l = _mm512_fmadd_ps(column[p], v, *l);
            }
        }
        for ((v, l), weight) in value.iter_mut().zip(&line).zip(spread(*weight)) {
            *v = _mm512_fmadd_ps(weight, *l, *v);
        }
    }
    let out = out.as_mut_ptr().cast::<f32>();
    for (p, v) in value.iter().enumerate() {
        _mm512_storeu_ps(out.add(LANES * p), *v);
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::temporal::plane::cubic_sample;

    /// Samples an RGB and a one-channel frame with [`cubic`] and checks every lane against
    /// the scalar sampler; says how the taps were read (alike for both).
    fn check(w: usize, h: usize, xs: [f32; LANES], ys: [f32; LANES]) -> Read {
        let rgb = channels::<3>(w, h, xs, ys);
        assert_eq!(channels::<1>(w, h, xs, ys), rgb);
        rgb
    }

    fn channels<const C: usize>(w: usize, h: usize, xs: [f32; LANES], ys: [f32; LANES]) -> Read {
        let data = frame(w, h, C);
        let data = &data[..];
        let mut out = [[0.0; C]; LANES];
        // SAFETY: the callers detected AVX-512F; `data` is the whole frame.
        let read = unsafe { cubic(data, w, h, &xs, &ys, &mut out) };
        for l in 0..LANES {
            let want: [f32; C] = cubic_sample(data, w, h, xs[l], ys[l]);
            for c in 0..C {
                assert!(
                    (out[l][c] - want[c]).abs() < 1e-5,
                    "{read:?} at {},{} channel {c}: {} vs {}",
                    xs[l],
                    ys[l],
                    out[l][c],
                    want[c]
                );
            }
        }
        read
    }

    fn frame(w: usize, h: usize, channels: usize) -> Vec<f32> {
        (0..w * h * channels)
            .map(|v| ((v * 37) % 101) as f32 / 101.0)
            .collect()
    }

    /// Scattered places, inside, at the edges and far outside: the gathers give the scalar
    /// sampler's values.
    #[test]
    fn gathers_match_the_scalar_sampler() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        let (w, h) = (23, 11);
        for round in 0..8 {
            let xs = std::array::from_fn(|l| (l as f32 * 1.7 + round as f32 * 3.1) % 30.0 - 4.0);
            let ys = std::array::from_fn(|l| (l as f32 * 0.9 + round as f32 * 2.3) % 17.0 - 3.0);
            assert_eq!(check(w, h, xs, ys), Read::Gathered);
        }
    }

    /// Sixteen neighbours moved alike, their places straddling pixel boundaries (some lanes a
    /// column or a row further than the others), at the top and bottom rows too: read as one
    /// window, with the scalar sampler's values; at the left and right edges, gathered.
    #[test]
    fn neighbours_are_read_as_one_window() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        let (w, h) = (40, 9);
        for (x0, y0) in [
            (5.0, 4.0),
            (3.02, 0.03),
            (20.5, 8.0),
            (7.0, -0.6),
            (12.9, 6.97),
        ] {
            let xs = std::array::from_fn(|l| x0 + l as f32 + 0.03 * (l as f32 * 1.3).sin());
            let ys = std::array::from_fn(|l| y0 + 0.02 * (l as f32 * 0.7).cos() - 0.01);
            assert_eq!(check(w, h, xs, ys), Read::Window, "{x0},{y0}");
        }
        for x0 in [0.5, 24.5] {
            let xs = std::array::from_fn(|l| x0 + l as f32);
            assert_eq!(check(w, h, xs, [4.0; LANES]), Read::Gathered, "{x0}");
        }
        // Each of the window's shapes: every lane's taps starting alike on both axes (four
        // taps each), some lanes a row further (five rows), some a column further (five
        // columns).
        let alike: [f32; LANES] = std::array::from_fn(|l| 10.25 + l as f32);
        let straddling: [f32; LANES] = std::array::from_fn(|l| 10.9 + l as f32 * 1.01);
        let rows_straddling: [f32; LANES] = std::array::from_fn(|l| 4.98 + 0.004 * l as f32);
        for (xs, ys) in [
            (alike, [4.5; LANES]),
            (alike, rows_straddling),
            (straddling, [4.5; LANES]),
        ] {
            assert_eq!(check(w, h, xs, ys), Read::Window, "{xs:?} {ys:?}");
        }
    }

    /// The row loops give what the sampler gives pixel by pixel: the motion search's
    /// differences, and the warp's samples wherever a run of sixteen has any trust (the runs
    /// without keep what they held); both leave the row's partial last run to the caller.
    #[test]
    fn row_loops_match_the_sampler() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        let (w, h, y) = (53, 9, 4);
        let dxs: Vec<f32> = (0..w).map(|x| 0.3 * (x as f32 * 0.2).sin() - 0.7).collect();
        let dys: Vec<f32> = (0..w).map(|x| 0.4 * (x as f32 * 0.1).cos()).collect();
        let luma = frame(w, h, 1);
        let now: Vec<f32> = (0..w).map(|x| x as f32 / w as f32).collect();
        let mut difference = vec![9.0; w];
        // SAFETY: AVX-512F detected above; `luma` is the whole plane.
        let done = unsafe { moved_difference(&luma, w, h, y, &dxs, &dys, &now, &mut difference) };
        assert_eq!(done, 48);
        for x in 0..done {
            let (at_x, at_y) = (x as f32 + dxs[x], y as f32 + dys[x]);
            let want = cubic_sample::<1>(&luma, w, h, at_x, at_y)[0] - now[x];
            assert!(
                (difference[x] - want).abs() < 1e-5,
                "{x}: {} vs {want}",
                difference[x]
            );
        }
        // To the bit what a call to the sampler per sixteen gives (the loop it replaced).
        for run in (0..done).step_by(LANES) {
            let xs = std::array::from_fn(|l| (run + l) as f32 + dxs[run + l]);
            let ys = std::array::from_fn(|l| y as f32 + dys[run + l]);
            let mut moved = [[0.0]; LANES];
            // SAFETY: as above.
            unsafe { cubic(&luma, w, h, &xs, &ys, &mut moved) };
            for l in 0..LANES {
                assert_eq!(difference[run + l], moved[l][0] - now[run + l]);
            }
        }
        assert!(difference[done..].iter().all(|d| *d == 9.0));

        let rgb = frame(w, h, 3);
        let xs: Vec<f32> = (0..w).map(|x| x as f32 + dxs[x]).collect();
        let ys: Vec<f32> = (0..w).map(|x| y as f32 + dys[x]).collect();
        // No trust in the first run (zeros and negatives), one trusted pixel in the second,
        // all in the third.
        let trust: Vec<f32> = (0..w)
            .map(|x| match x / LANES {
                0 => -((x % 2) as f32),
                1 if x == 20 => 0.1,
                1 => 0.0,
                _ => 1.0,
            })
            .collect();
        let mut moved = vec![[7.0; 3]; w];
        // SAFETY: as above.
        let done = unsafe { sample_trusted(&rgb, w, h, &xs, &ys, &trust, &mut moved) };
        assert_eq!(done, 48);
        for (x, moved) in moved.iter().enumerate() {
            if !(LANES..done).contains(&x) {
                assert_eq!(*moved, [7.0; 3], "{x}");
                continue;
            }
            let want: [f32; 3] = cubic_sample(&rgb, w, h, xs[x], ys[x]);
            for c in 0..3 {
                assert!(
                    (moved[c] - want[c]).abs() < 1e-5,
                    "{x}: {moved:?} vs {want:?}"
                );
            }
        }
        for run in (LANES..done).step_by(LANES) {
            let mut want = [[0.0; 3]; LANES];
            let at = |v: &[f32]| -> [f32; LANES] { v[run..run + LANES].try_into().unwrap() };
            // SAFETY: as above.
            unsafe { cubic(&rgb, w, h, &at(&xs), &at(&ys), &mut want) };
            assert_eq!(moved[run..run + LANES], want);
        }
    }

    /// Four taps on an axis sum to the bit what five did with a zero-weighted fifth (the
    /// window's only shape before it took four where no lane starts a tap later), on either
    /// axis and both.
    #[test]
    fn four_taps_sum_as_five_with_a_zero_fifth() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        use std::arch::x86_64::*;
        let (w, h) = (40, 9);
        let data = frame(w, h, 3);
        let lanes = |k: usize| -> [f32; LANES] {
            std::array::from_fn(|l| 0.3 - 0.11 * k as f32 + 0.013 * l as f32)
        };
        // SAFETY: AVX-512F detected above; the window (columns 7..27, rows 2..7) is inside.
        unsafe {
            let four: [__m512; 4] = std::array::from_fn(|k| _mm512_loadu_ps(lanes(k).as_ptr()));
            let five: [__m512; 5] =
                std::array::from_fn(|k| if k < 4 { four[k] } else { _mm512_setzero_ps() });
            let mut want = [[0.0; 3]; LANES];
            sum_window(&data, w, h, 7, 5, &five, &five, &mut want);
            for (columns, rows) in [(true, true), (true, false), (false, true)] {
                let mut got = [[0.0; 3]; LANES];
                match (columns, rows) {
                    (true, true) => sum_window(&data, w, h, 7, 5, &four, &four, &mut got),
                    (true, false) => sum_window(&data, w, h, 7, 5, &four, &five, &mut got),
                    _ => sum_window(&data, w, h, 7, 5, &five, &four, &mut got),
                }
                assert_eq!(got, want, "four columns {columns}, four rows {rows}");
            }
        }
    }
}
