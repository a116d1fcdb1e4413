//! Matrix product `C = A · B` with `B` packed once at load time (it is always a weight matrix).
//!
//! `B` is stored in panels of `NR` columns (`[panel][k][NR]`, zero-padded), so the micro-kernel
//! streams it linearly while broadcasting elements of row-major `A`. Register blocking per ISA:
//! AVX-512 12x32, AVX2 6x16, portable 4x16.

use super::{Isa, IsaLevel};

/// Width of a packed panel for an ISA.
pub fn panel_width(isa: Isa) -> usize {
    match isa.level() {
        IsaLevel::Avx512 => 32,
        IsaLevel::Avx2 | IsaLevel::Portable => 16,
    }
}

/// A `k x n` weight matrix packed for the micro-kernels of one ISA.
#[derive(Debug, Clone)]
pub struct PackedB {
    // Crate-private: the micro-kernels read `data` unchecked, trusting these three.
    pub(crate) k: usize,
    pub(crate) n: usize,
    pub(crate) nr: usize,
    data: Vec<f32>,
}

impl PackedB {
    /// Packs the matrix whose element (row `kk`, column `nn`) is `value(kk, nn)`.
    pub fn new(isa: Isa, k: usize, n: usize, value: impl Fn(usize, usize) -> f32) -> Self {
        let nr = panel_width(isa);
        let panels = n.div_ceil(nr);
        let mut data = vec![0.0; panels * k * nr];
        for p in 0..panels {
            for kk in 0..k {
                for j in 0..nr.min(n - p * nr) {
                    data[(p * k + kk) * nr + j] = value(kk, p * nr + j);
                }
            }
        }
        Self { k, n, nr, data }
    }

    /// Columns rounded up to whole panels: the row stride at which `C` may take full-panel stores.
    pub fn padded_n(&self) -> usize {
        self.n.div_ceil(self.nr) * self.nr
    }
}

/// `C[m x n] = A[m x k] · B`. Rows of `A` are `lda` apart, rows of `C` `ldc` apart.
/// When `ldc >= b.padded_n()` the padding columns of `C` are overwritten with garbage.
pub fn gemm(isa: Isa, m: usize, a: &[f32], lda: usize, b: &PackedB, c: &mut [f32], ldc: usize) {
    if m == 0 || b.n == 0 {
        return;
    }
    assert!(lda >= b.k && ldc >= b.n, "gemm strides too small");
    // Checked arithmetic: a wrapped product would let a short slice pass.
    let reach = |stride: usize, last: usize| {
        (m - 1)
            .checked_mul(stride)
            .and_then(|r| r.checked_add(last))
            .expect("gemm sizes overflow")
    };
    assert!(a.len() >= reach(lda, b.k), "gemm A too short");
    assert!(c.len() >= reach(ldc, b.n.min(ldc)), "gemm C too short");
    assert_eq!(b.nr, panel_width(isa), "B packed for another ISA");
    // SAFETY: the asserts above bound every access the drivers make; an `Isa` is one the CPU
    // has.
    unsafe {
        match isa.level() {
            #[cfg(target_arch = "x86_64")]
            IsaLevel::Avx512 => x86::gemm_avx512(m, a, lda, b, c, ldc),
            #[cfg(target_arch = "x86_64")]
            IsaLevel::Avx2 => x86::gemm_avx2(m, a, lda, b, c, ldc),
            _ => drive::<Portable>(m, a, lda, b, c, ldc),
        }
    }
}

trait MicroKernel {
    const MR: usize;
    const NR: usize;
    /// Computes an `MR x NR` block (rows `>= m` are neither read nor written).
    unsafe fn run(block: Block);
}

/// One micro-kernel call: `rows` (at most `MR`) rows of `C` times one `NR`-wide panel, from
/// `k`-long rows of `A` and a packed panel of `B`.
#[derive(Clone, Copy)]
struct Block {
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
}

#[inline(always)]
unsafe fn drive<K: MicroKernel>(
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedB,
    c: &mut [f32],
    ldc: usize,
) {
    let (k, n, nr) = (b.k, b.n, K::NR);
    let panels = n.div_ceil(nr);
    let full_rows = ldc >= panels * nr && c.len() >= (m - 1) * ldc + panels * nr;
    // Only partial panels go through here, and only the rows the kernel wrote are read back:
    // left uninitialised, as zeroing it was a `memset` call per GEMM (1.5% of a frame).
    let mut tmp = std::mem::MaybeUninit::<[f32; 12 * 32]>::uninit();
    let tmp = tmp.as_mut_ptr().cast::<f32>();
    debug_assert!(K::MR * K::NR <= 12 * 32);
    for p in 0..panels {
        let bp = b.data.as_ptr().add(p * k * nr);
        let cols = nr.min(n - p * nr);
        let mut i = 0;
        while i < m {
            let rows = K::MR.min(m - i);
            let block = Block {
                k,
                a: a.as_ptr().add(i * lda),
                lda,
                b: bp,
                c: c.as_mut_ptr().add(i * ldc + p * nr),
                ldc,
                rows,
            };
            if full_rows || cols == nr {
                K::run(block);
            } else {
                K::run(Block {
                    c: tmp,
                    ldc: nr,
                    ..block
                });
                for r in 0..rows {
                    let dst = &mut c[(i + r) * ldc + p * nr..(i + r) * ldc + p * nr + cols];
                    // SAFETY: the kernel wrote `nr` values of each of these `rows` rows.
                    dst.copy_from_slice(std::slice::from_raw_parts(tmp.add(r * nr), cols));
                }
            }
            i += K::MR;
        }
    }
}

struct Portable;

impl MicroKernel for Portable {
    const MR: usize = 4;
    const NR: usize = 16;

    #[inline(always)]
    unsafe fn run(block: Block) {
        let Block {
            k,
            a,
            lda,
            b,
            c,
            ldc,
            rows: m,
        } = block;
        let mut acc = [[0.0f32; 16]; 4];
        let rows: [*const f32; 4] = std::array::from_fn(|r| if r < m { a.add(r * lda) } else { a });
        for kk in 0..k {
            let bv: [f32; 16] = *(b.add(kk * 16) as *const [f32; 16]);
            for r in 0..4 {
                let av = *rows[r].add(kk);
                for j in 0..16 {
                    acc[r][j] += av * bv[j];
                }
            }
        }
        for (r, row) in acc.iter().enumerate().take(m) {
            std::ptr::copy_nonoverlapping(row.as_ptr(), c.add(r * ldc), 16);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{drive, Block, MicroKernel, PackedB};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f,fma")]
    pub unsafe fn gemm_avx512(
        m: usize,
        a: &[f32],
        lda: usize,
        b: &PackedB,
        c: &mut [f32],
        ldc: usize,
    ) {
        drive::<Avx512>(m, a, lda, b, c, ldc)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn gemm_avx2(
        m: usize,
        a: &[f32],
        lda: usize,
        b: &PackedB,
        c: &mut [f32],
        ldc: usize,
    ) {
        drive::<Avx2>(m, a, lda, b, c, ldc)
    }

    struct Avx512;

    impl MicroKernel for Avx512 {
        const MR: usize = 12;
        const NR: usize = 32;

        #[inline]
        #[target_feature(enable = "avx512f,fma")]
        unsafe fn run(block: Block) {
            let Block {
                k,
                a,
                lda,
                b,
                c,
                ldc,
                rows: m,
            } = block;
            let mut lo = [_mm512_setzero_ps(); 12];
            let mut hi = [_mm512_setzero_ps(); 12];
            let rows: [*const f32; 12] =
                std::array::from_fn(|r| if r < m { a.add(r * lda) } else { a });
            for kk in 0..k {
                let b0 = _mm512_loadu_ps(b.add(kk * 32));
                let b1 = _mm512_loadu_ps(b.add(kk * 32 + 16));
                for r in 0..12 {
                    let av = _mm512_set1_ps(*rows[r].add(kk));
                    lo[r] = _mm512_fmadd_ps(av, b0, lo[r]);
                    hi[r] = _mm512_fmadd_ps(av, b1, hi[r]);
                }
            }
            for r in 0..m {
                _mm512_storeu_ps(c.add(r * ldc), lo[r]);
                _mm512_storeu_ps(c.add(r * ldc + 16), hi[r]);
            }
        }
    }

    struct Avx2;

    impl MicroKernel for Avx2 {
        const MR: usize = 6;
        const NR: usize = 16;

        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn run(block: Block) {
            let Block {
                k,
                a,
                lda,
                b,
                c,
                ldc,
                rows: m,
            } = block;
            let mut lo = [_mm256_setzero_ps(); 6];
            let mut hi = [_mm256_setzero_ps(); 6];
            let rows: [*const f32; 6] =
                std::array::from_fn(|r| if r < m { a.add(r * lda) } else { a });
            for kk in 0..k {
                let b0 = _mm256_loadu_ps(b.add(kk * 16));
                let b1 = _mm256_loadu_ps(b.add(kk * 16 + 8));
                for r in 0..6 {
                    let av = _mm256_set1_ps(*rows[r].add(kk));
                    lo[r] = _mm256_fmadd_ps(av, b0, lo[r]);
                    hi[r] = _mm256_fmadd_ps(av, b1, hi[r]);
                }
            }
            for r in 0..m {
                _mm256_storeu_ps(c.add(r * ldc), lo[r]);
                _mm256_storeu_ps(c.add(r * ldc + 8), hi[r]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_isa_matches_naive_product() {
        for isa in Isa::all_supported() {
            for &(m, k, n) in &[
                (1, 1, 1),
                (13, 27, 64),
                (25, 64, 48),
                (7, 3, 52),
                (40, 100, 33),
            ] {
                let a: Vec<f32> = (0..m * k)
                    .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
                    .collect();
                let bm: Vec<f32> = (0..k * n)
                    .map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0)
                    .collect();
                let packed = PackedB::new(isa, k, n, |kk, nn| bm[kk * n + nn]);
                for ldc in [n, packed.padded_n()] {
                    let mut c = vec![f32::NAN; m * ldc];
                    gemm(isa, m, &a, k, &packed, &mut c, ldc);
                    for i in 0..m {
                        for j in 0..n {
                            let want: f32 = (0..k).map(|kk| a[i * k + kk] * bm[kk * n + j]).sum();
                            let got = c[i * ldc + j];
                            assert!(
                                (got - want).abs() < 1e-4,
                                "{isa:?} {m}x{k}x{n} ({i},{j}): {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
