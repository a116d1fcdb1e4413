//! Compute kernels, chosen once at run time by what the CPU offers.
//!
//! Every kernel is written once as generic Rust over fixed-width lane arrays and instantiated
//! inside `#[target_feature]` wrappers, so the AVX-512, AVX2 and portable builds share one
//! source and give the same results up to summation order.

pub mod gemm;
pub mod math;
pub mod peak;

/// Width of the lane arrays the element-wise kernels work on.
pub const LANES: usize = 16;

/// An instruction-set level, as a user names one (`--isa`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IsaLevel {
    Avx512,
    Avx2,
    Portable,
}

impl std::str::FromStr for IsaLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<IsaLevel, String> {
        [IsaLevel::Avx512, IsaLevel::Avx2, IsaLevel::Portable]
            .into_iter()
            .find(|l| l.name() == s.trim())
            .ok_or_else(|| format!("{s:?} is not avx512, avx2 or portable"))
    }
}

impl IsaLevel {
    pub fn name(self) -> &'static str {
        match self {
            IsaLevel::Avx512 => "avx512",
            IsaLevel::Avx2 => "avx2",
            IsaLevel::Portable => "portable",
        }
    }

    /// The CPU features the level's kernels are compiled with.
    fn features(self) -> &'static [&'static str] {
        match self {
            IsaLevel::Avx512 => &["avx512f", "avx512vl", "avx2", "fma"],
            IsaLevel::Avx2 => &["avx2", "fma"],
            IsaLevel::Portable => &[],
        }
    }
}

/// An instruction set this CPU has, which the kernels run with. Only the constructors here
/// make one, and each checks the CPU, so a kernel compiled for it (`dispatch!`) can never run
/// on a CPU without it: the safety argument of every `#[target_feature]` call rests on this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Isa(IsaLevel);

/// An instruction set was asked for that this CPU does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this CPU does not support {} (it has {})", .wanted.name(), .best.name())]
pub struct UnsupportedIsa {
    pub wanted: IsaLevel,
    pub best: IsaLevel,
}

impl Isa {
    /// The best instruction set the CPU has.
    pub fn detect() -> Isa {
        Isa(Self::best_level(&cpu_has))
    }

    /// `level`, if the CPU has it.
    pub fn new(level: IsaLevel) -> Result<Isa, UnsupportedIsa> {
        Self::checked(level, &cpu_has)
    }

    /// Plain Rust kernels, which every CPU runs.
    pub fn portable() -> Isa {
        Isa(IsaLevel::Portable)
    }

    /// `level` if `has` reports every feature it needs.
    fn checked(level: IsaLevel, has: &dyn Fn(&str) -> bool) -> Result<Isa, UnsupportedIsa> {
        if level.features().iter().all(|f| has(f)) {
            Ok(Isa(level))
        } else {
            Err(UnsupportedIsa {
                wanted: level,
                best: Self::best_level(has),
            })
        }
    }

    fn best_level(has: &dyn Fn(&str) -> bool) -> IsaLevel {
        [IsaLevel::Avx512, IsaLevel::Avx2]
            .into_iter()
            .find(|l| l.features().iter().all(|f| has(f)))
            .unwrap_or(IsaLevel::Portable)
    }

    /// Every instruction set this CPU can run, best first (for tests that compare them).
    pub fn all_supported() -> Vec<Isa> {
        [IsaLevel::Avx512, IsaLevel::Avx2, IsaLevel::Portable]
            .into_iter()
            .filter_map(|l| Isa::new(l).ok())
            .collect()
    }

    pub fn level(self) -> IsaLevel {
        self.0
    }

    /// Whether kernels compiled for this ISA have a fused multiply-add instruction
    /// (`math::mul_add`): the vector ISAs do, and so does every AArch64 CPU; x86's portable
    /// baseline does not.
    pub fn fused_multiply_add(self) -> bool {
        self.0 != IsaLevel::Portable || cfg!(target_arch = "aarch64")
    }

    pub fn name(self) -> &'static str {
        self.0.name()
    }
}

/// Whether this CPU has the named feature.
fn cpu_has(feature: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        match feature {
            "avx512f" => std::arch::is_x86_feature_detected!("avx512f"),
            "avx512vl" => std::arch::is_x86_feature_detected!("avx512vl"),
            "avx2" => std::arch::is_x86_feature_detected!("avx2"),
            "fma" => std::arch::is_x86_feature_detected!("fma"),
            _ => false,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = feature;
        false
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
            match $crate::kernels::Isa::level($isa) {
                // SAFETY: an `Isa` exists only for an instruction set the CPU has.
                $crate::kernels::IsaLevel::Avx512 => {
                    let f = $crate::kernels::closure(
                        #[inline(always)]
                        || $body,
                    );
                    unsafe { run_avx512(f) }
                }
                $crate::kernels::IsaLevel::Avx2 => {
                    let f = $crate::kernels::closure(
                        #[inline(always)]
                        || $body,
                    );
                    unsafe { run_avx2(f) }
                }
                $crate::kernels::IsaLevel::Portable => $body,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = $isa;
            $body
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CPU without AVX-512 or AVX2 gets an error for them, and portable kernels.
    #[test]
    fn an_isa_the_cpu_lacks_is_refused() {
        let nothing = |_: &str| false;
        for level in [IsaLevel::Avx512, IsaLevel::Avx2] {
            let err = Isa::checked(level, &nothing).unwrap_err();
            assert_eq!(err.best, IsaLevel::Portable);
            assert!(err.to_string().contains(level.name()), "{err}");
        }
        assert_eq!(
            Isa::checked(IsaLevel::Portable, &nothing),
            Ok(Isa::portable())
        );
        let avx2_only = |f: &str| f == "avx2" || f == "fma";
        assert!(Isa::checked(IsaLevel::Avx512, &avx2_only).is_err());
        assert_eq!(Isa::best_level(&avx2_only), IsaLevel::Avx2);
        // What this CPU has is always accepted, the best first.
        assert_eq!(Isa::all_supported()[0], Isa::detect());
        assert_eq!(Isa::new(Isa::detect().level()), Ok(Isa::detect()));
    }
}
