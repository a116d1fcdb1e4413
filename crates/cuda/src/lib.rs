//! CUDA for VSR, loaded at run time: the binary builds and runs on machines without a CUDA
//! toolkit, driver or GPU, and finds them when they are there. This crate answers "which
//! device runs the model, and why" (`select`), and runs it there (`CudaPlan`).
//!
//! Libraries are looked up by name on the system's search path, and first in the folders of
//! `VSR_CUDA_LIB_PATH` (colon-separated), such as pip's `site-packages/nvidia/*/lib`.

mod executor;
mod kernels;
mod lower;

pub use executor::{CudaPlan, CudaPlanError};
pub use kernels::compile_kernels;
pub use lower::unsupported_layers;

use std::fmt;
use std::path::PathBuf;

/// What the user asked for: `auto`, `cpu`, `cuda` or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceRequest {
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

impl std::str::FromStr for DeviceRequest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "auto" => Ok(DeviceRequest::Auto),
            "cpu" => Ok(DeviceRequest::Cpu),
            "cuda" => Ok(DeviceRequest::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceRequest::Cuda)
                .ok_or_else(|| format!("{other:?} is not auto, cpu, cuda or cuda:N")),
        }
    }
}

impl fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceRequest::Auto => f.write_str("auto"),
            DeviceRequest::Cpu => f.write_str("cpu"),
            DeviceRequest::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Where a service's workers run: every worker on one device request, or one worker per GPU
/// (`cuda:all`, or a list such as `cuda:0,2`), so a machine with several GPUs uses them all
/// and the segments of one video spread over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSet {
    One(DeviceRequest),
    /// Every GPU the driver lists.
    AllGpus,
    /// These GPUs, by index, each at most once.
    Gpus(Vec<usize>),
}

impl Default for DeviceSet {
    fn default() -> Self {
        DeviceSet::One(DeviceRequest::Auto)
    }
}

impl std::str::FromStr for DeviceSet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "cuda:all" {
            return Ok(DeviceSet::AllGpus);
        }
        if !s.contains(',') {
            return s.parse().map(DeviceSet::One);
        }
        // `cuda:0,1` or `cuda:0,cuda:1`.
        let mut gpus = Vec::new();
        for part in s.strip_prefix("cuda:").unwrap_or(s).split(',') {
            let part = part.trim();
            let index = part
                .strip_prefix("cuda:")
                .unwrap_or(part)
                .parse::<usize>()
                .map_err(|_| format!("{s:?}: {part:?} is not a GPU index"))?;
            if gpus.contains(&index) {
                return Err(format!("{s:?} names cuda:{index} twice"));
            }
            gpus.push(index);
        }
        Ok(DeviceSet::Gpus(gpus))
    }
}

impl fmt::Display for DeviceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSet::One(request) => request.fmt(f),
            DeviceSet::AllGpus => f.write_str("cuda:all"),
            DeviceSet::Gpus(gpus) => {
                let list: Vec<String> = gpus.iter().map(usize::to_string).collect();
                write!(f, "cuda:{}", list.join(","))
            }
        }
    }
}

impl DeviceSet {
    /// The one device of a set that names one; a set of GPUs is for a service to place
    /// workers on ([`place`]), not for one process.
    pub fn single(&self) -> Option<DeviceRequest> {
        match self {
            DeviceSet::One(request) => Some(*request),
            DeviceSet::Gpus(gpus) if gpus.len() == 1 => Some(DeviceRequest::Cuda(gpus[0])),
            _ => None,
        }
    }
}

/// The device of each of a service's worker slots: `workers` slots on one request, or, for a
/// set of GPUs, at least one slot per GPU (more when `workers` asks for more, dealt out in
/// turn). No slots for an API node (`workers` 0). A GPU named that the machine lacks is an
/// error, as `cuda:N` is for one process.
pub fn place(
    set: &DeviceSet,
    workers: usize,
    inventory: &Inventory,
) -> Result<Vec<DeviceRequest>, DeviceError> {
    let gpus: Vec<usize> = match set {
        DeviceSet::One(request) => return Ok(vec![*request; workers]),
        DeviceSet::AllGpus => {
            let found = inventory
                .gpus
                .as_ref()
                .map_err(|reason| DeviceError::NoGpus(reason.clone()))?;
            if found.is_empty() {
                return Err(DeviceError::NoGpus(
                    "the driver lists no CUDA device".into(),
                ));
            }
            found.iter().map(|g| g.index).collect()
        }
        DeviceSet::Gpus(list) => {
            for &index in list {
                select(DeviceRequest::Cuda(index), inventory)?;
            }
            list.clone()
        }
    };
    if workers == 0 {
        return Ok(Vec::new());
    }
    let slots = workers.max(gpus.len());
    Ok((0..slots)
        .map(|slot| DeviceRequest::Cuda(gpus[slot % gpus.len()]))
        .collect())
}

/// One GPU as the driver describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Gpu {
    pub index: usize,
    pub name: String,
    pub total_bytes: u64,
    pub compute_capability: (i32, i32),
}

/// What this machine offers.
#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    /// The GPUs, or why there are none.
    pub gpus: Result<Vec<Gpu>, String>,
    /// The CUDA libraries an executor needs, each found (with its path) or not.
    pub libraries: Vec<(&'static str, Option<PathBuf>)>,
}

/// Where the model runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Device {
    Cpu,
    Cuda(Gpu),
}

/// The device chosen and the one-line reason, for the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub device: Device,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeviceError {
    #[error("CUDA device {index} is not usable: {reason}")]
    CudaUnavailable { index: usize, reason: String },
    /// `cuda:all` on a machine without a usable GPU.
    #[error("cuda:all: no CUDA device: {0}")]
    NoGpus(String),
}

/// Picks the device for `request` given what the machine has.
pub fn select(request: DeviceRequest, inventory: &Inventory) -> Result<Selection, DeviceError> {
    let cpu = |reason: String| Selection {
        device: Device::Cpu,
        reason,
    };
    let usable = |index: usize| -> Result<Gpu, String> {
        let gpus = inventory.gpus.as_ref().map_err(Clone::clone)?;
        let gpu = gpus
            .get(index)
            .ok_or_else(|| format!("the machine has {} CUDA device(s)", gpus.len()))?;
        Ok(gpu.clone())
    };
    match request {
        DeviceRequest::Cpu => Ok(cpu("the CPU was asked for".into())),
        DeviceRequest::Auto => Ok(match usable(0) {
            Ok(gpu) => Selection {
                reason: format!("CUDA device 0 ({}) found", gpu.name),
                device: Device::Cuda(gpu),
            },
            Err(why) => cpu(format!("using the CPU: {why}")),
        }),
        DeviceRequest::Cuda(index) => usable(index)
            .map(|gpu| Selection {
                reason: format!("CUDA device {index} ({}) was asked for", gpu.name),
                device: Device::Cuda(gpu),
            })
            .map_err(|reason| DeviceError::CudaUnavailable { index, reason }),
    }
}

/// The libraries a CUDA executor loads, by the names their packages install.
const LIBRARIES: &[(&str, &[&str])] = &[
    ("driver", &["libcuda.so.1", "libcuda.so"]),
    (
        "nvrtc",
        &["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"],
    ),
    (
        "cublas",
        &["libcublas.so.13", "libcublas.so.12", "libcublas.so"],
    ),
    ("cudnn", &["libcudnn.so.9", "libcudnn.so"]),
];

/// Looks for the driver, the GPUs and the libraries; never fails, never panics.
pub fn inventory() -> Inventory {
    let libraries: Vec<(&'static str, Option<PathBuf>)> = LIBRARIES
        .iter()
        .map(|(what, names)| (*what, find_library(names)))
        .collect();
    let gpus = if libraries[0].1.is_some() {
        // cudarc loads the driver lazily and panics if it cannot; it is present here, but a
        // broken installation must still not take the process down.
        std::panic::catch_unwind(list_gpus)
            .unwrap_or_else(|_| Err("the CUDA driver failed to load".into()))
    } else {
        Err("no NVIDIA driver (libcuda.so.1 not found)".into())
    };
    Inventory { gpus, libraries }
}

fn list_gpus() -> Result<Vec<Gpu>, String> {
    use cudarc::driver::{result, sys::CUdevice_attribute as A, CudaContext};
    let err = |e: cudarc::driver::DriverError| e.to_string();
    result::init().map_err(err)?;
    let count = result::device::get_count().map_err(err)? as usize;
    (0..count)
        .map(|index| {
            let ctx = CudaContext::new(index).map_err(err)?;
            let attr = |a| ctx.attribute(a).map_err(err);
            Ok(Gpu {
                index,
                name: ctx.name().map_err(err)?,
                total_bytes: unsafe { result::device::total_mem(ctx.cu_device()) }.map_err(err)?
                    as u64,
                compute_capability: (
                    attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
                    attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
                ),
            })
        })
        .collect()
}

/// The first of `names` found in `VSR_CUDA_LIB_PATH`'s folders, else on the system's path.
/// A library found in a configured folder is loaded (and kept) now, so that later loads by
/// name, cudarc's included, get that copy.
fn find_library(names: &[&str]) -> Option<PathBuf> {
    let dirs: Vec<PathBuf> = std::env::var_os("VSR_CUDA_LIB_PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for name in names {
        for dir in &dirs {
            let path = dir.join(name);
            if path.is_file() && load_and_keep(&path) {
                // NVRTC opens its builtins by name when it first compiles: load them from
                // the same folder now, so that open finds them without LD_LIBRARY_PATH.
                if name.starts_with("libnvrtc.") {
                    companions(dir, "libnvrtc-builtins.so").for_each(|p| {
                        load_and_keep(&p);
                    });
                }
                return Some(path);
            }
        }
        if load_and_keep(std::path::Path::new(name)) {
            return Some(PathBuf::from(name));
        }
    }
    None
}

/// Loads a library for the rest of the process; false if it cannot be loaded.
fn load_and_keep(path: &std::path::Path) -> bool {
    // SAFETY: loading a CUDA library runs its initialisers, which is what using it means.
    unsafe { libloading::Library::new(path) }
        .map(std::mem::forget)
        .is_ok()
}

/// The files of `dir` named `prefix` and a version (`libnvrtc-builtins.so.13.0`).
fn companions(dir: &std::path::Path, prefix: &str) -> impl Iterator<Item = PathBuf> {
    let prefix = format!("{prefix}.");
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(move |p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
        })
}

impl fmt::Display for Inventory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.gpus {
            Ok(gpus) if gpus.is_empty() => writeln!(f, "CUDA: the driver reports no GPU")?,
            Ok(gpus) => {
                for g in gpus {
                    writeln!(
                        f,
                        "cuda:{}  {}  {:.1} GiB  compute capability {}.{}",
                        g.index,
                        g.name,
                        g.total_bytes as f64 / (1u64 << 30) as f64,
                        g.compute_capability.0,
                        g.compute_capability.1
                    )?
                }
            }
            Err(why) => writeln!(f, "CUDA: {why}")?,
        }
        for (what, path) in &self.libraries {
            match path {
                Some(p) => writeln!(f, "  {what:<7} {}", p.display())?,
                None => writeln!(f, "  {what:<7} not found (set VSR_CUDA_LIB_PATH)")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h200() -> Gpu {
        Gpu {
            index: 0,
            name: "NVIDIA H200".into(),
            total_bytes: 141 << 30,
            compute_capability: (9, 0),
        }
    }

    /// Two GPUs as a driver would list them, for placing workers without a GPU.
    fn two_gpus() -> Inventory {
        Inventory {
            gpus: Ok(vec![h200(), Gpu { index: 1, ..h200() }]),
            libraries: vec![],
        }
    }

    #[test]
    fn device_sets_parse_and_print() {
        for (text, set) in [
            ("auto", DeviceSet::One(DeviceRequest::Auto)),
            ("cuda:1", DeviceSet::One(DeviceRequest::Cuda(1))),
            ("cuda:all", DeviceSet::AllGpus),
            ("cuda:0,2", DeviceSet::Gpus(vec![0, 2])),
        ] {
            assert_eq!(text.parse::<DeviceSet>(), Ok(set.clone()));
            assert_eq!(set.to_string(), text);
        }
        assert_eq!("cuda:0, cuda:1".parse(), Ok(DeviceSet::Gpus(vec![0, 1])));
        assert!("cuda:0,0"
            .parse::<DeviceSet>()
            .unwrap_err()
            .contains("twice"));
        assert!("cuda:0,x".parse::<DeviceSet>().is_err());
        assert_eq!(DeviceSet::AllGpus.single(), None);
        assert_eq!(
            DeviceSet::Gpus(vec![3]).single(),
            Some(DeviceRequest::Cuda(3))
        );
    }

    /// One worker per GPU, more dealt out in turn; none for an API node; GPUs the machine
    /// lacks refused.
    #[test]
    fn workers_are_placed_one_per_gpu() {
        let two = two_gpus();
        let cuda = DeviceRequest::Cuda;
        assert_eq!(
            place(&DeviceSet::AllGpus, 1, &two),
            Ok(vec![cuda(0), cuda(1)])
        );
        assert_eq!(
            place(&DeviceSet::AllGpus, 3, &two),
            Ok(vec![cuda(0), cuda(1), cuda(0)])
        );
        assert_eq!(place(&DeviceSet::AllGpus, 0, &two), Ok(vec![]));
        assert_eq!(
            place(&DeviceSet::Gpus(vec![1]), 2, &two),
            Ok(vec![cuda(1), cuda(1)])
        );
        assert!(matches!(
            place(&DeviceSet::Gpus(vec![0, 2]), 1, &two),
            Err(DeviceError::CudaUnavailable { index: 2, .. })
        ));
        let none = Inventory {
            gpus: Err("no NVIDIA driver (libcuda.so.1 not found)".into()),
            libraries: vec![],
        };
        assert!(matches!(
            place(&DeviceSet::AllGpus, 1, &none),
            Err(DeviceError::NoGpus(reason)) if reason.contains("libcuda")
        ));
        assert_eq!(
            place(&DeviceSet::One(DeviceRequest::Cpu), 2, &none),
            Ok(vec![DeviceRequest::Cpu; 2])
        );
    }

    #[test]
    fn requests_parse() {
        assert_eq!("auto".parse(), Ok(DeviceRequest::Auto));
        assert_eq!("cpu".parse(), Ok(DeviceRequest::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceRequest::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceRequest::Cuda(3)));
        assert!("gpu".parse::<DeviceRequest>().is_err());
        assert!("cuda:x".parse::<DeviceRequest>().is_err());
    }

    #[test]
    fn auto_falls_back_to_the_cpu_with_a_reason() {
        let none = Inventory {
            gpus: Err("no NVIDIA driver (libcuda.so.1 not found)".into()),
            libraries: vec![],
        };
        let s = select(DeviceRequest::Auto, &none).unwrap();
        assert_eq!(s.device, Device::Cpu);
        assert!(s.reason.contains("libcuda.so.1"), "{}", s.reason);
        let e = select(DeviceRequest::Cuda(0), &none).unwrap_err();
        assert!(
            matches!(e, DeviceError::CudaUnavailable { index: 0, .. }),
            "{e}"
        );
        let one = Inventory {
            gpus: Ok(vec![h200()]),
            libraries: vec![],
        };
        let e = select(DeviceRequest::Cuda(1), &one).unwrap_err();
        assert!(e.to_string().contains("1 CUDA device"), "{e}");
        let s = select(DeviceRequest::Auto, &one).unwrap();
        assert_eq!(s.device, Device::Cuda(h200()));
        assert!(s.reason.contains("NVIDIA H200"), "{}", s.reason);
        assert_eq!(
            select(DeviceRequest::Cpu, &one).unwrap().device,
            Device::Cpu
        );
    }

    /// On this machine, whatever it has: the probe answers without panicking.
    #[test]
    fn inventory_never_panics() {
        let inv = inventory();
        assert_eq!(inv.libraries.len(), LIBRARIES.len());
        let _ = inv.to_string();
    }
}
