//! How fast this machine could run a model at best: its measured arithmetic peak and memory
//! bandwidths, and a model's floor on them (every step's GEMM FLOPs over the peak, plus the
//! bytes it streams over the bandwidth of the cache level its tensors fit in). `vsr bench`
//! prints the measured time over this floor: how far from the machine's limit we are.

use std::time::Instant;

use crate::error::RunError;
use crate::kernels::{peak, Isa};
use crate::plan::Plan;
use crate::tensor::Shape;

/// What this machine sustains with a number of threads, measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Machine {
    pub threads: usize,
    /// Fused multiply-adds from registers, all threads, in FLOP/s.
    pub flops: f64,
    /// Copy bandwidth (bytes read plus written per second, all threads) with each thread's
    /// buffers in its L2, in the shared L3, and in DRAM.
    pub l2_bandwidth: f64,
    pub l3_bandwidth: f64,
    pub dram_bandwidth: f64,
    /// Cache sizes the working sets are judged against (per core for L2, in all for L3).
    pub l2_bytes: usize,
    pub l3_bytes: usize,
}

/// A model's floor on a machine for one input size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Floor {
    /// The floor: compute plus memory time.
    pub seconds: f64,
    /// The GEMM FLOPs over the peak.
    pub compute_seconds: f64,
    /// The streamed bytes over the bandwidths.
    pub memory_seconds: f64,
    pub gemm_flops: f64,
    pub bytes: f64,
}

impl Machine {
    /// Measures the peak and the bandwidths on `threads` threads (about a second).
    pub fn measure(isa: Isa, threads: usize) -> Result<Machine, RunError> {
        let threads = threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| RunError::Threads(e.to_string()))?;
        let (l2_bytes, l3_bytes) = cache_sizes();
        // Every thread at once, timed by each (set-up outside its clock); the best of three
        // rounds: the sustained rate, not a spike or a neighbour's noise.
        let best_of = |work: &(dyn Fn() -> (f64, f64) + Sync)| -> f64 {
            (0..3)
                .map(|_| {
                    let runs = pool.broadcast(|_| work());
                    let done: f64 = runs.iter().map(|r| r.0).sum();
                    let slowest = runs.iter().map(|r| r.1).fold(f64::MIN_POSITIVE, f64::max);
                    done / slowest
                })
                .fold(0.0, f64::max)
        };
        let flops = best_of(&|| {
            let start = Instant::now();
            let (flops, keep) = peak::fma_burst(isa, 2_000_000);
            std::hint::black_box(keep);
            (flops, start.elapsed().as_secs_f64())
        });
        // Each thread copies between two buffers of `pair_bytes` together.
        let copy_rate = |pair_bytes: usize, passes: usize| {
            best_of(&move || {
                let n = pair_bytes / 2 / 4;
                let src = vec![1.0f32; n];
                let mut dst = vec![0.0f32; n];
                dst.copy_from_slice(&src);
                let start = Instant::now();
                for _ in 0..passes {
                    dst.copy_from_slice(std::hint::black_box(&src));
                    std::hint::black_box(&mut dst);
                }
                ((passes * 2 * n * 4) as f64, start.elapsed().as_secs_f64())
            })
        };
        Ok(Machine {
            threads,
            flops,
            // Half of each level, so the pair stays in it.
            l2_bandwidth: copy_rate(l2_bytes / 2, 4000),
            l3_bandwidth: copy_rate(l3_bytes / 2 / threads, 60),
            dram_bandwidth: copy_rate(16 * l3_bytes / threads, 2),
            l2_bytes,
            l3_bytes,
        })
    }

    /// The bandwidth for a step whose tensors total `bytes`: the smallest level they fit in.
    fn bandwidth_for(&self, bytes: u64) -> f64 {
        let bytes = bytes as usize;
        if bytes <= self.l2_bytes * self.threads {
            self.l2_bandwidth
        } else if bytes <= self.l3_bytes {
            self.l3_bandwidth
        } else {
            self.dram_bandwidth
        }
    }

    /// `plan`'s floor on this machine for an input of `input`.
    pub fn floor(&self, plan: &Plan, input: Shape) -> Result<Floor, RunError> {
        let costs = plan.costs(input)?;
        let gemm_flops: f64 = costs.iter().map(|c| c.gemm_flops).sum();
        let bytes: f64 = costs.iter().map(|c| c.bytes as f64).sum();
        let compute_seconds = gemm_flops / self.flops;
        let memory_seconds: f64 = costs
            .iter()
            .map(|c| c.bytes as f64 / self.bandwidth_for(c.bytes))
            .sum();
        Ok(Floor {
            seconds: compute_seconds + memory_seconds,
            compute_seconds,
            memory_seconds,
            gemm_flops,
            bytes,
        })
    }
}

/// L2 (per core) and L3 (shared) sizes from sysfs, or typical ones where it is not readable.
fn cache_sizes() -> (usize, usize) {
    let read = |index: usize| -> Option<usize> {
        let text = std::fs::read_to_string(format!(
            "/sys/devices/system/cpu/cpu0/cache/index{index}/size"
        ))
        .ok()?;
        let text = text.trim();
        let (digits, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
        let n: usize = digits.parse().ok()?;
        Some(match unit {
            "K" => n << 10,
            "M" => n << 20,
            _ => n,
        })
    };
    (read(2).unwrap_or(1 << 20), read(3).unwrap_or(16 << 20))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Graph;

    /// One 3x3 convolution, 8 to 16 channels: its Winograd GEMMs and its two tensors.
    #[test]
    fn the_floor_adds_gemm_time_and_streaming_time() {
        let n = 16 * 8 * 9;
        let param = format!(
            "7767517\n2 2\nInput in 0 1 data\nConvolution conv 1 1 data out 0=16 1=3 4=1 5=1 6={n}\n"
        );
        let mut bin = 0u32.to_le_bytes().to_vec();
        bin.extend((0..n + 16).flat_map(|_| 0.5f32.to_le_bytes()));
        let graph = Graph::from_parts(&param, &bin).unwrap();
        let plan = Plan::new(&graph, Isa::portable(), 1).unwrap();
        let input = Shape::image(60, 48, 8);
        let costs = plan.costs(input).unwrap();
        assert_eq!(costs.len(), 1);
        // 10 x 8 output tiles of 6x6, 64 positions, 8 x 16 channel pairs, 2 FLOPs each.
        assert_eq!(costs[0].gemm_flops, 2.0 * 64.0 * 80.0 * 128.0);
        assert_eq!(costs[0].bytes, 4 * 60 * 48 * (8 + 16));
        let machine = Machine {
            threads: 1,
            flops: 1e9,
            l2_bandwidth: 1e10,
            l3_bandwidth: 1e9,
            dram_bandwidth: 1e8,
            l2_bytes: 1 << 20,
            l3_bytes: 16 << 20,
        };
        let floor = machine.floor(&plan, input).unwrap();
        assert_eq!(floor.compute_seconds, costs[0].gemm_flops / 1e9);
        // 276 KB: the L2's rate.
        assert_eq!(floor.memory_seconds, costs[0].bytes as f64 / 1e10);
        assert_eq!(floor.seconds, floor.compute_seconds + floor.memory_seconds);
        // Larger than L3: DRAM's.
        let big = Shape::image(600, 480, 8);
        let floor = machine.floor(&plan, big).unwrap();
        let bytes = 4.0 * (600.0 * 480.0 * 24.0);
        assert_eq!(floor.memory_seconds, bytes / 1e8);
    }

    #[test]
    fn every_isa_reports_its_fma_work() {
        for isa in Isa::all_supported() {
            let (flops, sum) = peak::fma_burst(isa, 10);
            assert!(flops >= 160.0 && sum.is_finite(), "{isa:?}");
        }
    }
}
