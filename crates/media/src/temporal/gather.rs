//! Catmull-Rom sampling of an RGB frame at sixteen arbitrary positions at once, with
//! AVX-512 gathers: the motion-compensated warp is the stabiliser's heaviest pass (48 loads
//! per output pixel, from places only the motion knows), and one-at-a-time loads leave the
//! vector units idle. The scalar [`cubic_sample`](super::plane::cubic_sample) is the
//! reference and the fallback; the two agree up to the order of the sums.

/// Pixels per call.
pub const LANES: usize = 16;

/// Samples the interleaved RGB `data` (`w` x `h`) at `(xs[l], ys[l])` for the sixteen lanes,
/// into `out[channel][lane]`, the edges repeated outwards.
///
/// # Safety
/// The CPU must have AVX-512F (an [`vsr_runtime::Isa`] of level AVX-512 says so), and
/// `data` must hold `w * h * 3` values with `w * h * 3` within `i32`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub unsafe fn cubic_rgb(
    data: &[f32],
    w: usize,
    h: usize,
    xs: &[f32; LANES],
    ys: &[f32; LANES],
    out: &mut [[f32; LANES]; 3],
) {
    use std::arch::x86_64::*;
    debug_assert!(data.len() >= w * h * 3 && w * h * 3 <= i32::MAX as usize);
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
    let weights = |t: __m512| {
        let half = _mm512_set1_ps(0.5);
        let (t2, t3) = (_mm512_mul_ps(t, t), _mm512_mul_ps(_mm512_mul_ps(t, t), t));
        let sum = |a: f32, b: f32, c: f32, d: f32| {
            let v = _mm512_fmadd_ps(
                _mm512_set1_ps(a),
                t3,
                _mm512_fmadd_ps(
                    _mm512_set1_ps(b),
                    t2,
                    _mm512_fmadd_ps(_mm512_set1_ps(c), t, _mm512_set1_ps(d)),
                ),
            );
            _mm512_mul_ps(half, v)
        };
        [
            sum(-1.0, 2.0, -1.0, 0.0),
            sum(3.0, -5.0, 0.0, 2.0),
            sum(-3.0, 4.0, 1.0, 0.0),
            sum(1.0, -1.0, 0.0, 0.0),
        ]
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
    let (columns, rows) = (taps(ix, w), taps(iy, h));
    let three = _mm512_set1_epi32(3);
    let base = data.as_ptr();
    let mut value = [_mm512_setzero_ps(); 3];
    for (row, wj) in rows.iter().zip(&wy) {
        let start = _mm512_mullo_epi32(*row, _mm512_set1_epi32(w as i32));
        let mut line = [_mm512_setzero_ps(); 3];
        for (column, wi) in columns.iter().zip(&wx) {
            let at = _mm512_mullo_epi32(_mm512_add_epi32(start, *column), three);
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
    for (o, v) in out.iter_mut().zip(&value) {
        _mm512_storeu_ps(o.as_mut_ptr(), *v);
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::temporal::plane::cubic_sample;

    /// Inside, at the edges and far outside, the gathers give the scalar sampler's values.
    #[test]
    fn gathers_match_the_scalar_sampler() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        let (w, h) = (23, 11);
        let data: Vec<f32> = (0..w * h * 3)
            .map(|v| ((v * 37) % 101) as f32 / 101.0)
            .collect();
        for round in 0..8 {
            let xs: [f32; LANES] =
                std::array::from_fn(|l| (l as f32 * 1.7 + round as f32 * 3.1) % 30.0 - 4.0);
            let ys: [f32; LANES] =
                std::array::from_fn(|l| (l as f32 * 0.9 + round as f32 * 2.3) % 17.0 - 3.0);
            let mut out = [[0.0; LANES]; 3];
            // SAFETY: AVX-512F was detected; `data` is the whole frame.
            unsafe { cubic_rgb(&data, w, h, &xs, &ys, &mut out) };
            for l in 0..LANES {
                let want: [f32; 3] = cubic_sample(&data, w, h, xs[l], ys[l]);
                for c in 0..3 {
                    assert!(
                        (out[c][l] - want[c]).abs() < 1e-5,
                        "at {},{} channel {c}: {} vs {}",
                        xs[l],
                        ys[l],
                        out[c][l],
                        want[c]
                    );
                }
            }
        }
    }
}
