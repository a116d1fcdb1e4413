//! Lanczos-3 resizing, for blending a classic upscale into a neural one ("preserve details").

use rayon::prelude::*;
use vsr_runtime::Tensor;

/// The source pixels (index, weight) that make one output pixel along one axis.
type Taps = Vec<(usize, f32)>;

/// Resizes an interleaved `h x w x c` image to `out_w x out_h`.
pub fn lanczos3(src: &Tensor, out_w: usize, out_h: usize) -> Tensor {
    let c = src.c;
    let (cols, rows) = (taps(src.w, out_w), taps(src.h, out_h));
    // Horizontal first: the vertical pass then reads whole rows.
    let mut wide = vec![0f32; src.h * out_w * c];
    wide.par_chunks_mut(out_w * c)
        .enumerate()
        .for_each(|(y, row)| {
            let line = &src.data[y * src.w * c..(y + 1) * src.w * c];
            for (x, taps) in cols.iter().enumerate() {
                for k in 0..c {
                    row[x * c + k] = taps.iter().map(|&(i, wt)| wt * line[i * c + k]).sum();
                }
            }
        });
    let mut out = vec![0f32; out_h * out_w * c];
    out.par_chunks_mut(out_w * c)
        .zip(rows.par_iter())
        .for_each(|(row, taps)| {
            for &(i, wt) in taps {
                let line = &wide[i * out_w * c..(i + 1) * out_w * c];
                for (o, &v) in row.iter_mut().zip(line) {
                    *o += wt * v;
                }
            }
        });
    Tensor::from_vec(out_h, out_w, c, out)
}

fn taps(n_in: usize, n_out: usize) -> Vec<Taps> {
    let ratio = n_in as f64 / n_out as f64;
    // Downscaling widens the kernel so every source pixel counts.
    let support = 3.0 * ratio.max(1.0);
    let stretch = ratio.max(1.0);
    (0..n_out)
        .map(|o| {
            let center = (o as f64 + 0.5) * ratio - 0.5;
            let (lo, hi) = (
                (center - support).ceil() as i64,
                (center + support).floor() as i64,
            );
            let mut taps: Taps = Vec::new();
            for i in lo..=hi {
                let wt = lanczos((i as f64 - center) / stretch);
                if wt == 0.0 {
                    continue;
                }
                // Edges repeat the border pixel.
                let idx = i.clamp(0, n_in as i64 - 1) as usize;
                match taps.iter_mut().find(|(j, _)| *j == idx) {
                    Some(t) => t.1 += wt as f32,
                    None => taps.push((idx, wt as f32)),
                }
            }
            let sum: f32 = taps.iter().map(|t| t.1).sum();
            taps.iter_mut().for_each(|t| t.1 /= sum);
            taps
        })
        .collect()
}

/// The Lanczos-3 kernel: the sinc windowed by a sinc three times wider, zero from 3 out.
pub(crate) fn lanczos(x: f64) -> f64 {
    if x.abs() < 1e-9 {
        return 1.0;
    }
    if x.abs() >= 3.0 {
        return 0.0;
    }
    let px = std::f64::consts::PI * x;
    3.0 * px.sin() * (px / 3.0).sin() / (px * px)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_stays_flat_and_ramps_stay_ramps() {
        let flat = Tensor::from_vec(5, 7, 3, vec![0.4; 5 * 7 * 3]);
        let up = lanczos3(&flat, 14, 10);
        assert!(up.data.iter().all(|v| (v - 0.4).abs() < 1e-5));
        // A ramp upscaled 2x stays a ramp (Lanczos reproduces lines up to a small ripple).
        let ramp = Tensor::from_vec(1, 16, 1, (0..16).map(|i| i as f32).collect());
        let up = lanczos3(&ramp, 32, 1);
        for x in 8..24 {
            let expected = (x as f32 + 0.5) / 2.0 - 0.5;
            assert!((up.data[x] - expected).abs() < 0.03, "{x}: {}", up.data[x]);
        }
    }

    #[test]
    fn one_pixel_and_odd_sizes() {
        let dot = Tensor::from_vec(1, 1, 3, vec![0.1, 0.5, 0.9]);
        let up = lanczos3(&dot, 3, 3);
        assert_eq!(up.data.len(), 27);
        assert!((up.data[25] - 0.5).abs() < 1e-6);
    }
}
