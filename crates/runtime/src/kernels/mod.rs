//! Compute kernels, chosen once at run time by what the CPU offers.
//!
//! Every kernel is written once as generic Rust over fixed-width lane arrays and instantiated
//! inside `#[target_feature]` wrappers, so the AVX-512, AVX2 and portable builds share one
//! source and give the same results up to summation order.

pub mod gemm;
pub mod math;

/// Width of the lane arrays the element-wise kernels work on.
pub const LANES: usize = 16;

/// The instruction set the kernels run with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
    Portable,
}

impl Isa {
    /// The best the CPU supports, unless `VSR_ISA=portable|avx2|avx512` asks for less.
    pub fn detect() -> Isa {
        let best = Self::best_supported();
        match std::env::var("VSR_ISA").ok().as_deref() {
            Some("portable") => Isa::Portable,
            Some("avx2") if best != Isa::Portable => Isa::Avx2,
            _ => best,
        }
    }

    fn best_supported() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }

    /// Every ISA this CPU can run, best first (for tests that compare them).
    pub fn all_supported() -> Vec<Isa> {
        let mut v = vec![Self::best_supported()];
        if v[0] == Isa::Avx512 {
            v.push(Isa::Avx2);
        }
        if v[0] != Isa::Portable {
            v.push(Isa::Portable);
        }
        v
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Portable => "portable",
        }
    }
}

/// Identity; lets `dispatch!` build its closure outside the `unsafe` call.
#[doc(hidden)]
pub fn closure<R, F: FnOnce() -> R>(f: F) -> F {
    f
}

/// Runs the block `$body` compiled for the given ISA.
///
/// The block becomes an always-inlined closure inside a `#[target_feature]` function, so
/// everything it inlines is vectorised with that instruction set.
#[macro_export]
#[doc(hidden)]
macro_rules! dispatch {
    ($isa:expr, $body:block) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
            unsafe fn run_avx512<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            #[target_feature(enable = "avx2,fma")]
            unsafe fn run_avx2<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            match $isa {
                // SAFETY: `Isa::detect` only returns an ISA the CPU supports.
                $crate::kernels::Isa::Avx512 => {
                    let f = $crate::kernels::closure(
                        #[inline(always)]
                        || $body,
                    );
                    unsafe { run_avx512(f) }
                }
                $crate::kernels::Isa::Avx2 => {
                    let f = $crate::kernels::closure(
                        #[inline(always)]
                        || $body,
                    );
                    unsafe { run_avx2(f) }
                }
                $crate::kernels::Isa::Portable => $body,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = $isa;
            $body
        }
    }};
}
