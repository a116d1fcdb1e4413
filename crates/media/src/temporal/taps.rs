//! Linear interpolation along one axis, as the stabiliser resamples its source-sized planes
//! (the trust, the motion) to the output's size and the motion from one pyramid level to the
//! next: where each output position falls between source positions is worked out once per
//! axis, then each row is two rows mixed and widened by those taps, sixteen outputs at a time
//! where the CPU has AVX-512.

use vsr_runtime::Isa;

use super::plane::Plane;

/// The two source positions an output position falls between along one axis, and how far
/// past the first, the edges repeated.
#[derive(Debug, Clone, Copy)]
pub struct Tap {
    first: usize,
    second: usize,
    t: f32,
}

impl Tap {
    /// `line` at this position (a column tap): its two values mixed.
    #[inline(always)]
    pub fn mix(self, line: &[f32]) -> f32 {
        line[self.first] + self.t * (line[self.second] - line[self.first])
    }

    /// `plane`'s two rows at this position (a row tap) mixed into `line`: with [`Tap::mix`]
    /// along it, bilinear sampling at one row's cost per output row.
    pub fn mix_rows(self, plane: &Plane, line: &mut [f32]) {
        let row = |r: usize| &plane.data[r * plane.w..][..plane.w];
        for ((l, a), b) in line.iter_mut().zip(row(self.first)).zip(row(self.second)) {
            *l = a + self.t * (b - a);
        }
    }
}

/// One [`Tap`] per output position along an axis.
pub struct Taps {
    taps: Vec<Tap>,
    /// The length of the axis of sources: what every line mixed has.
    sources: usize,
    /// The leading outputs in groups of sixteen, as [`mix_line_avx512`] reads them.
    #[cfg(target_arch = "x86_64")]
    lanes: Vec<Lanes>,
}

/// Sixteen consecutive outputs' taps as vector operands: their values lie in the 32 sources
/// from `start` on, picked by index.
#[cfg(target_arch = "x86_64")]
struct Lanes {
    start: usize,
    first: [i32; LANES],
    second: [i32; LANES],
    t: [f32; LANES],
}

/// Outputs per vector.
#[cfg(target_arch = "x86_64")]
const LANES: usize = 16;

impl Taps {
    /// Taps for `outputs` positions over `sources`, output `o` falling at source position
    /// `position(o)` (pixel centres at whole numbers; clamped to the axis).
    pub fn at(outputs: usize, sources: usize, position: impl Fn(usize) -> f32) -> Taps {
        let last = sources.saturating_sub(1) as f32;
        let taps: Vec<Tap> = (0..outputs)
            .map(|o| {
                let at = position(o).clamp(0.0, last);
                let first = at as usize;
                Tap {
                    first,
                    second: (first + 1).min(sources - 1),
                    t: at - first as f32,
                }
            })
            .collect();
        // Taps only move forward, by less than a source per output, so sixteen outputs read at
        // most seventeen consecutive sources: two vectors from the first lane's first tap hold
        // them, up to where the axis has no 32 sources left.
        #[cfg(target_arch = "x86_64")]
        let lanes = taps
            .chunks_exact(LANES)
            .map_while(|chunk| {
                let start = chunk[0].first;
                let fits =
                    start + 2 * LANES <= sources && chunk[LANES - 1].second < start + 2 * LANES;
                fits.then(|| Lanes {
                    start,
                    first: std::array::from_fn(|l| (chunk[l].first - start) as i32),
                    second: std::array::from_fn(|l| (chunk[l].second - start) as i32),
                    t: std::array::from_fn(|l| chunk[l].t),
                })
            })
            .collect();
        Taps {
            taps,
            sources,
            #[cfg(target_arch = "x86_64")]
            lanes,
        }
    }

    /// The tap of output `o`.
    pub fn tap(&self, o: usize) -> Tap {
        self.taps[o]
    }

    /// `line` (one value per source position of the axis) at every output position, into
    /// `out`: sixteen at a time where the CPU has AVX-512, the rest one by one.
    pub fn mix_line(&self, isa: Isa, line: &[f32], out: &mut [f32]) {
        assert!(line.len() >= self.sources && out.len() >= self.taps.len());
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if isa.level() == vsr_runtime::IsaLevel::Avx512 {
            // SAFETY: the Isa says the CPU has AVX-512F; `line` holds the axis's sources and
            // `out` its outputs (asserted above).
            unsafe { mix_line_avx512(&self.lanes, line, out) };
            done = self.lanes.len() * LANES;
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = isa;
        for (o, tap) in out[done..].iter_mut().zip(&self.taps[done..]) {
            *o = tap.mix(line);
        }
    }
}

/// [`Taps::mix_line`] for the outputs `lanes` covers, sixteen at a time: two loads and one
/// permute per tap.
///
/// # Safety
/// The CPU must have AVX-512F; every lane group's 32 sources from `start` lie in `line`, and
/// `out` has sixteen outputs per group.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn mix_line_avx512(lanes: &[Lanes], line: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::*;
    for (group, out) in lanes.iter().zip(out.chunks_exact_mut(LANES)) {
        let source = line.as_ptr().add(group.start);
        let (low, high) = (_mm512_loadu_ps(source), _mm512_loadu_ps(source.add(LANES)));
        let pick = |index: &[i32; LANES]| {
            _mm512_permutex2var_ps(low, _mm512_loadu_si512(index.as_ptr().cast()), high)
        };
        let (a, b) = (pick(&group.first), pick(&group.second));
        let t = _mm512_loadu_ps(group.t.as_ptr());
        _mm512_storeu_ps(
            out.as_mut_ptr(),
            _mm512_add_ps(a, _mm512_mul_ps(t, _mm512_sub_ps(b, a))),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Widening a line to output columns sixteen at a time gives what each tap gives alone,
    /// at every scale, up to the edges.
    #[test]
    fn lines_widen_as_their_taps_mix() {
        for (scale, sources) in [(1, 40), (2, 37), (3, 21), (4, 60), (4, 3)] {
            let line: Vec<f32> = (0..sources).map(|v| ((v * 7) % 5) as f32).collect();
            let taps = Taps::at(scale * sources, sources, |o| {
                (o as f32 + 0.5) / scale as f32 - 0.5
            });
            let mut out = vec![0.0; scale * sources];
            taps.mix_line(Isa::detect(), &line, &mut out);
            for (x, o) in out.iter().enumerate() {
                assert!(
                    (o - taps.tap(x).mix(&line)).abs() < 1e-5,
                    "scale {scale}, column {x}"
                );
            }
        }
    }
}
