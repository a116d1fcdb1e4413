//! Dense motion between two low-resolution luma frames: coarse-to-fine Lucas-Kanade. For
//! every pixel of the current frame it finds where that pixel was in the previous one, from
//! the brightness gradients over a small window around it, first on a coarse pyramid level
//! (large motion in few pixels) and then refined level by level.
//!
//! The gradients are the current frame's, so each level's window sums of gradient products are
//! computed once; every iteration only samples the previous frame at the moved places, by
//! cubic interpolation (bilinear's blur at half-pixel phases biases the match by a tenth of a
//! pixel on fine texture). A small damping term keeps flat regions (no gradient, no
//! information) at the coarser estimate, and after each level a mean weighted by how well
//! each window pins its motion down carries the textured regions' motion into flat ones.

use rayon::prelude::*;

use vsr_runtime::{dispatch, Isa};

#[cfg(target_arch = "x86_64")]
use super::gather::moved_difference;
use super::plane::{box_sum_of, rows_per_task, Plane, MIN_TASK};
use super::taps::Taps;

/// Pyramid levels, at most (fewer for small frames).
const LEVELS: usize = 4;
/// The coarsest level keeps at least this many pixels on its shorter side.
const MIN_SIDE: usize = 8;
/// Window radius (a 5x5 window).
const RADIUS: usize = 2;
/// Radius of the confidence-weighted mean applied to the field after each level.
const SMOOTH: usize = 3;
/// Gauss-Newton steps per level.
const STEPS: usize = 4;
/// Damping per window pixel, in squared luma gradient (0..1 luma per pixel): a gradient of
/// about six levels of 255 per pixel counts as much as the prior.
const DAMPING: f32 = (6.0 / 255.0) * (6.0 / 255.0);
/// Largest motion followed, in pixels of the finest level: a search that runs further has
/// lost its way (content entering the frame, a flash), and the trust test rejects it.
const MAX_MOTION: f32 = 16.0;
/// Largest update per step, in pixels of the level, against overshoot on poor matches.
const MAX_STEP: f32 = 1.0;

/// A motion field: `(dx, dy)` per pixel of the current frame, pointing to where that pixel
/// was in the previous frame.
#[derive(Debug, Clone)]
pub struct Flow {
    pub dx: Plane,
    pub dy: Plane,
}

impl Flow {
    fn zeros(w: usize, h: usize) -> Flow {
        Flow {
            dx: Plane::zeros(w, h),
            dy: Plane::zeros(w, h),
        }
    }

    /// This field at another level's size, the vectors scaled with it: bilinear, by taps
    /// worked out once per axis, in parallel over rows.
    fn resized(&self, isa: Isa, w: usize, h: usize) -> Flow {
        let (from_w, from_h) = (self.dx.w, self.dx.h);
        let (sx, sy) = (from_w as f32 / w as f32, from_h as f32 / h as f32);
        let columns = Taps::at(w, from_w, |x| (x as f32 + 0.5) * sx - 0.5);
        let rows = Taps::at(h, from_h, |y| (y as f32 + 0.5) * sy - 0.5);
        let mut out = Flow::zeros(w, h);
        out.dx
            .data
            .par_chunks_mut(w)
            .zip(out.dy.data.par_chunks_mut(w))
            .enumerate()
            .with_min_len(rows_per_task(w))
            .for_each_init(
                || vec![0.0; from_w],
                |line, (y, (dxs, dys))| {
                    for (plane, out, scale) in [(&self.dx, dxs, sx), (&self.dy, dys, sy)] {
                        rows.tap(y).mix_rows(plane, line);
                        columns.mix_line(isa, line, out);
                        out.iter_mut().for_each(|v| *v /= scale);
                    }
                },
            );
        out
    }

    /// Per pixel, how far the current frame is from the previous one moved by this field.
    pub fn residual(&self, isa: Isa, previous: &Plane, current: &Plane) -> Plane {
        let mut residual = Plane::zeros(current.w, current.h);
        self.compare(isa, previous, current, &mut residual.data);
        residual.data.iter_mut().for_each(|r| *r = r.abs());
        residual
    }

    /// Per pixel, `previous` (this field's size) moved by this field minus `current`, into
    /// `out`: in parallel over rows, sixteen pixels at a time where the CPU has AVX-512
    /// ([`moved_difference`]), the rest compiled for the CPU's vector instructions.
    fn compare(&self, isa: Isa, previous: &Plane, current: &Plane, out: &mut [f32]) {
        let w = current.w;
        let rows = out.par_chunks_mut(w).enumerate();
        rows.with_min_len(rows_per_task(w)).for_each(|(y, row)| {
            let at = y * w;
            let (dxs, dys) = (&self.dx.data[at..][..w], &self.dy.data[at..][..w]);
            let now = &current.data[at..][..w];
            let mut done = 0;
            #[cfg(target_arch = "x86_64")]
            if isa.level() == vsr_runtime::IsaLevel::Avx512 {
                debug_assert_eq!((previous.w, previous.data.len()), (w, w * previous.h));
                // SAFETY: the Isa says the CPU has AVX-512F; `previous` is a whole plane of
                // this row's width.
                done = unsafe {
                    moved_difference(&previous.data, w, previous.h, y, dxs, dys, now, row)
                };
            }
            dispatch!(isa, {
                for (x, (((e, dx), dy), c)) in row
                    .iter_mut()
                    .zip(dxs)
                    .zip(dys)
                    .zip(now)
                    .enumerate()
                    .skip(done)
                {
                    *e = previous.cubic(x as f32 + dx, y as f32 + dy) - c;
                }
            })
        });
    }
}

/// The motion from `current` back to `previous` (frames of one size).
pub fn backward(isa: Isa, previous: &Plane, current: &Plane) -> Flow {
    let pyramid = |finest: &Plane| {
        let mut levels = vec![finest.clone()];
        while levels.len() < LEVELS {
            let last = levels.last().expect("one level at least");
            if last.w.min(last.h) / 2 < MIN_SIDE {
                break;
            }
            levels.push(last.half());
        }
        levels
    };
    let (previous, current) = (pyramid(previous), pyramid(current));
    let coarsest = current.last().expect("one level at least");
    let mut flow = Flow::zeros(coarsest.w, coarsest.h);
    for (level, (prev, cur)) in previous.iter().zip(&current).enumerate().rev() {
        if flow.dx.w != cur.w || flow.dx.h != cur.h {
            flow = flow.resized(isa, cur.w, cur.h);
        }
        let confidence = refine(isa, prev, cur, &mut flow, MAX_MOTION / (1 << level) as f32);
        // Spread estimates from textured windows into ambiguous ones (flat regions, the
        // aperture problem): a mean weighted by how well each window pins its motion down.
        let weight_sum = confidence.box_sum(isa, SMOOTH);
        for plane in [&mut flow.dx, &mut flow.dy] {
            let sums = product_sum(isa, plane, &confidence.data, SMOOTH);
            plane
                .data
                .par_iter_mut()
                .zip(&sums.data)
                .zip(&weight_sum.data)
                .with_min_len(MIN_TASK)
                .for_each(|((v, s), c)| *v = s / (c + 1e-12));
        }
    }
    flow
}

/// The box sum of radius `r` over the product of `a` and `b` (one plane's size), the
/// product made row by row as the sum needs it.
fn product_sum(isa: Isa, a: &Plane, b: &[f32], r: usize) -> Plane {
    let w = a.w;
    box_sum_of(
        isa,
        w,
        a.h,
        r,
        Vec::new(),
        || (),
        |_, y, row| {
            let at = y * w..(y + 1) * w;
            dispatch!(isa, {
                for ((o, p), q) in row.iter_mut().zip(&a.data[at.clone()]).zip(&b[at]) {
                    *o = p * q;
                }
            })
        },
    )
}

/// `v` clamped to `-limit..=limit`, as `f32::clamp` does it but without its check that the
/// bounds are ordered (they are), which kept the update loop from vectorising.
#[inline(always)]
fn within(v: f32, limit: f32) -> f32 {
    let v = if v < -limit { -limit } else { v };
    if v > limit {
        limit
    } else {
        v
    }
}

/// Gauss-Newton steps on one level.
fn refine(isa: Isa, previous: &Plane, current: &Plane, flow: &mut Flow, limit: f32) -> Plane {
    let (w, h) = (current.w, current.h);
    // Central differences, one-sided at the edges.
    let gradient = |horizontal: bool| {
        let mut g = Plane::zeros(w, h);
        let rows = g.data.par_chunks_mut(w).enumerate();
        rows.with_min_len(rows_per_task(w)).for_each(|(y, row)| {
            let line = |r: usize| &current.data[r * w..][..w];
            dispatch!(isa, {
                if horizontal {
                    let line = line(y);
                    if w > 1 {
                        for ((g, before), after) in
                            row[1..w - 1].iter_mut().zip(line).zip(&line[2..])
                        {
                            *g = 0.5 * (after - before);
                        }
                        row[0] = 0.5 * (line[1] - line[0]);
                        row[w - 1] = 0.5 * (line[w - 1] - line[w - 2]);
                    }
                } else {
                    let (up, down) = (line(y.saturating_sub(1)), line((y + 1).min(h - 1)));
                    for ((g, u), d) in row.iter_mut().zip(up).zip(down) {
                        *g = 0.5 * (d - u);
                    }
                }
            })
        });
        g
    };
    let (gx, gy) = (gradient(true), gradient(false));
    let product = |a: &Plane, b: &[f32]| product_sum(isa, a, b, RADIUS);
    let damping = DAMPING * ((2 * RADIUS + 1) * (2 * RADIUS + 1)) as f32;
    let sxx = product(&gx, &gx.data);
    let sxy = product(&gx, &gy.data);
    let syy = product(&gy, &gy.data);
    let mut error = vec![0.0; w * h];
    for _ in 0..STEPS {
        flow.compare(isa, previous, current, &mut error);
        let bx = product(&gx, &error);
        let by = product(&gy, &error);
        flow.dx
            .data
            .par_chunks_mut(w)
            .zip(flow.dy.data.par_chunks_mut(w))
            .enumerate()
            .with_min_len(rows_per_task(w))
            .for_each(|(y, (dxs, dys))| {
                let at = y * w..(y + 1) * w;
                let (sxx, sxy, syy) = (
                    &sxx.data[at.clone()],
                    &sxy.data[at.clone()],
                    &syy.data[at.clone()],
                );
                let (bx, by) = (&bx.data[at.clone()], &by.data[at]);
                dispatch!(isa, {
                    for ((((dx, dy), (a, b)), d), (ex, ey)) in dxs
                        .iter_mut()
                        .zip(dys.iter_mut())
                        .zip(sxx.iter().zip(sxy))
                        .zip(syy)
                        .zip(bx.iter().zip(by))
                    {
                        let (a, b, d) = (a + damping, *b, d + damping);
                        let det = a * d - b * b;
                        let step_x = -(d * ex - b * ey) / det;
                        let step_y = -(a * ey - b * ex) / det;
                        *dx = within(*dx + step_x.clamp(-MAX_STEP, MAX_STEP), limit);
                        *dy = within(*dy + step_y.clamp(-MAX_STEP, MAX_STEP), limit);
                    }
                })
            });
    }
    // The smaller eigenvalue of each window's gradient matrix: large only where the window
    // has texture in two directions.
    let confidence = (0..w * h)
        .into_par_iter()
        .with_min_len(MIN_TASK)
        .map(|i| {
            let (a, b, d) = (sxx.data[i], sxy.data[i], syy.data[i]);
            let half_trace = 0.5 * (a + d);
            (half_trace - (0.25 * (a - d) * (a - d) + b * b).sqrt()).max(0.0) + 1e-9
        })
        .collect();
    Plane::new(w, h, confidence)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A texture with fine and coarse structure in several directions, as scenes have,
    /// moved by `shift` pixels.
    fn texture(w: usize, h: usize, shift_x: f32, shift_y: f32) -> Plane {
        let mut p = Plane::zeros(w, h);
        for y in 0..h {
            for x in 0..w {
                let (fx, fy) = (x as f32 + shift_x, y as f32 + shift_y);
                p.data[y * w + x] = 0.5
                    + 0.2 * (fx * 0.31).sin() * (fy * 0.23).cos()
                    + 0.1 * (fx * 0.07 + fy * 0.11).sin()
                    + 0.1 * (fx * 0.09 - fy * 0.06).cos();
            }
        }
        p
    }

    #[test]
    fn subpixel_and_large_motion_are_found() {
        for (sx, sy) in [(0.4, -0.3), (3.5, 2.0), (-2.5, 1.25)] {
            let previous = texture(96, 64, 0.0, 0.0);
            let current = texture(96, 64, sx, sy);
            let flow = backward(Isa::detect(), &previous, &current);
            // Inside the frame (edges see content coming in), the motion is the shift.
            let mut errors = Vec::new();
            for y in 12..52 {
                for x in 12..84 {
                    let (dx, dy) = (flow.dx.data[y * 96 + x], flow.dy.data[y * 96 + x]);
                    errors.push((dx - sx).abs().max((dy - sy).abs()));
                }
            }
            errors.sort_by(f32::total_cmp);
            let mean = errors.iter().sum::<f32>() / errors.len() as f32;
            let p99 = errors[errors.len() * 99 / 100];
            assert!(
                mean < 0.2 && p99 < 1.0,
                "shift {sx},{sy}: mean {mean}, p99 {p99}"
            );
        }
    }
}
