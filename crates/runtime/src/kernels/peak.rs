//! The arithmetic peak, measured: fused multiply-adds on independent registers, with no
//! memory traffic, as fast as the instruction set allows. The roofline's compute ceiling.

use super::{Isa, IsaLevel};

/// Runs `rounds` rounds of multiply-adds on independent accumulators with `isa`. Returns the
/// floating-point operations done (two per multiply-add) and a sum of the accumulators, which
/// the caller must use so that the work is not optimised away.
pub fn fma_burst(isa: Isa, rounds: usize) -> (f64, f32) {
    match isa.level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an `Isa` exists only for an instruction set the CPU has.
        IsaLevel::Avx512 => (rounds as f64 * 16.0 * 16.0 * 2.0, unsafe {
            x86::burst_avx512(rounds)
        }),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        IsaLevel::Avx2 => (rounds as f64 * 12.0 * 8.0 * 2.0, unsafe {
            x86::burst_avx2(rounds)
        }),
        _ => (rounds as f64 * 8.0 * 2.0, burst_portable(rounds)),
    }
}

fn burst_portable(rounds: usize) -> f32 {
    let mut acc = [1.0f32; 8];
    let (a, b) = (
        std::hint::black_box(0.999_999f32),
        std::hint::black_box(1e-7f32),
    );
    for _ in 0..rounds {
        for v in &mut acc {
            *v = *v * a + b;
        }
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Sixteen zmm accumulators: enough in flight for two FMA pipes of four cycles' latency.
    #[target_feature(enable = "avx512f,fma")]
    pub unsafe fn burst_avx512(rounds: usize) -> f32 {
        let mut acc = [_mm512_set1_ps(1.0); 16];
        let a = _mm512_set1_ps(std::hint::black_box(0.999_999));
        let b = _mm512_set1_ps(std::hint::black_box(1e-7));
        for _ in 0..rounds {
            for v in &mut acc {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        acc.iter().map(|&v| _mm512_reduce_add_ps(v)).sum()
    }

    /// Twelve ymm accumulators.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn burst_avx2(rounds: usize) -> f32 {
        let mut acc = [_mm256_set1_ps(1.0); 12];
        let a = _mm256_set1_ps(std::hint::black_box(0.999_999));
        let b = _mm256_set1_ps(std::hint::black_box(1e-7));
        for _ in 0..rounds {
            for v in &mut acc {
                *v = _mm256_fmadd_ps(*v, a, b);
            }
        }
        let mut lanes = [0f32; 8];
        let mut sum = 0.0;
        for v in acc {
            _mm256_storeu_ps(lanes.as_mut_ptr(), v);
            sum += lanes.iter().sum::<f32>();
        }
        sum
    }
}
