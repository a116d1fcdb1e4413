//! `kernels.cu` run on the CPU (compiled as C++ with `kernels_emulation.cpp`, one call per GPU
//! thread) against the CPU runtime's own operators, on fp16 data: what each kernel computes,
//! and how the executor parameterises it (activation modes, op codes, resize taps), checked on
//! machines without a GPU. fp16 storage allows a relative error of about 1e-3.

use std::path::PathBuf;
use std::sync::OnceLock;

use half::f16;
use libloading::{Library, Symbol};
use vsr_runtime::graph::{Activation, BinaryKind, InterpMode};
use vsr_runtime::ops::layout::resize_taps;
use vsr_runtime::ops::{elementwise, layout, reduce};
use vsr_runtime::{Isa, Tensor};

use crate::lower::{activation_mode, op_code};

type H = u16;

/// The kernels compiled for this CPU, once per test run.
fn library() -> &'static Library {
    static LIB: OnceLock<Library> = OnceLock::new();
    LIB.get_or_init(|| {
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/kernels_emulation.cpp");
        let out = std::env::temp_dir().join(format!("vsr-kernels-{}.so", std::process::id()));
        let status = std::process::Command::new("c++")
            .args(["-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", "-o"])
            .arg(&out)
            .arg(&src)
            .status()
            .expect("a C++ compiler (c++, from g++) to run kernels.cu on the CPU");
        assert!(status.success(), "compiling {}", src.display());
        // SAFETY: our own library, with no initialisers.
        let lib = unsafe { Library::new(&out) }.expect("load the emulated kernels");
        std::fs::remove_file(&out).ok();
        lib
    })
}

fn kernel<T>(name: &str) -> Symbol<'static, T> {
    // SAFETY: each test declares the kernel's signature as kernels.cu has it.
    unsafe { library().get(name.as_bytes()) }.unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Calls `body` once per GPU thread of a one-thread-per-element launch of `n` threads.
fn per_element(n: usize, mut body: impl FnMut()) {
    let thread: Symbol<unsafe extern "C" fn(u32, u32, u32)> = kernel("emu_thread");
    for i in 0..n {
        // SAFETY: sets this thread's emulated indices.
        unsafe { thread((i / 256) as u32, 256, (i % 256) as u32) };
        body();
    }
}

/// Deterministic values in `lo..hi`, rounded to fp16.
fn values(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (s >> 40) as f32 / (1u64 << 24) as f32;
            f16::from_f32(lo + (hi - lo) * u).to_f32()
        })
        .collect()
}

fn tensor(h: usize, w: usize, c: usize, seed: u64) -> Tensor {
    Tensor::from_vec(h, w, c, values(h * w * c, seed, -2.0, 2.0))
}

fn half(t: &[f32]) -> Vec<H> {
    t.iter().map(|&v| f16::from_f32(v).to_bits()).collect()
}

fn float(t: &[H]) -> Vec<f32> {
    t.iter().map(|&v| f16::from_bits(v).to_f32()).collect()
}

#[track_caller]
fn assert_close(got: &[H], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in float(got).iter().zip(want).enumerate() {
        let ok = (g - w).abs() <= 2e-3 * w.abs().max(1.0) || (g.is_nan() && w.is_nan());
        assert!(ok, "{what}: element {i}: kernel {g}, CPU {w}");
    }
}

fn activations() -> Vec<Activation> {
    vec![
        Activation::Identity,
        Activation::Relu { slope: 0.0 },
        Activation::Relu { slope: 0.1 },
        Activation::PRelu(vec![0.25]),
        Activation::PRelu(vec![0.1, 0.2, 0.3, 0.4, 0.5]),
        Activation::Sigmoid,
        Activation::Swish,
        Activation::Mish,
        Activation::HardSwish {
            alpha: 0.2,
            beta: 0.5,
        },
        Activation::Clip {
            min: -0.5,
            max: 0.75,
        },
        Activation::TanH,
    ]
}

fn slopes(a: &Activation) -> Vec<f32> {
    match a {
        Activation::PRelu(s) => s.clone(),
        _ => vec![0.0],
    }
}

#[test]
fn activations_alone_and_after_a_bias() {
    type Act = unsafe extern "C" fn(*const H, *mut H, i64, *const f32, i32, i32, f32, f32);
    type BiasAct = unsafe extern "C" fn(*mut H, *const f32, *const f32, i64, i32, i32, f32, f32);
    let (act, bias_act) = (kernel::<Act>("act"), kernel::<BiasAct>("bias_act"));
    let x = tensor(3, 4, 5, 1);
    let bias = values(5, 2, -0.5, 0.5);
    for a in activations() {
        let (mode, p0, p1) = activation_mode(&a);
        let s = slopes(&a);
        let mut want = x.data.clone();
        vsr_runtime::kernels::math::activation(&mut want, 5, &a);
        let (xs, mut y, n) = (half(&x.data), vec![0; x.len()], x.len());
        per_element(n, || unsafe {
            act(
                xs.as_ptr(),
                y.as_mut_ptr(),
                n as i64,
                s.as_ptr(),
                5,
                mode,
                p0,
                p1,
            )
        });
        assert_close(&y, &want, &format!("act {a:?}"));

        let mut want: Vec<f32> = x
            .data
            .iter()
            .enumerate()
            .map(|(i, v)| v + bias[i % 5])
            .collect();
        vsr_runtime::kernels::math::activation(&mut want, 5, &a);
        let mut y = half(&x.data);
        per_element(n, || unsafe {
            bias_act(
                y.as_mut_ptr(),
                bias.as_ptr(),
                s.as_ptr(),
                n as i64,
                5,
                mode,
                p0,
                p1,
            )
        });
        // The kernel rounds x + bias only once, at the end.
        assert_close(&y, &want, &format!("bias_act {a:?}"));
    }
}

#[test]
fn binary_ops_broadcast_as_ncnn_does() {
    type Binary = unsafe extern "C" fn(
        *const H,
        *const H,
        *mut H,
        i64,
        i32,
        i32,
        i32,
        i32,
        i32,
        i32,
        i32,
        i32,
        i32,
        f32,
    );
    let binary = kernel::<Binary>("binary");
    let kinds = [
        BinaryKind::Add,
        BinaryKind::Sub,
        BinaryKind::Mul,
        BinaryKind::Div,
        BinaryKind::Max,
        BinaryKind::Min,
        BinaryKind::Pow,
        BinaryKind::RSub,
        BinaryKind::RDiv,
    ];
    // Positive values keep Pow and the divisions finite.
    let t = |h, w, c, seed| Tensor::from_vec(h, w, c, values(h * w * c, seed, 0.25, 2.0));
    let shapes = [
        ((5, 7, 6), (5, 7, 6)),
        ((5, 7, 6), (1, 1, 6)),
        ((1, 1, 6), (5, 7, 6)),
        ((5, 7, 6), (5, 1, 6)),
        ((5, 7, 1), (1, 1, 6)),
    ];
    for kind in kinds {
        for ((ah, aw, ac), (bh, bw, bc)) in shapes {
            let (a, b) = (t(ah, aw, ac, 3), t(bh, bw, bc, 4));
            let shape = elementwise::broadcast_shape(a.shape(), b.shape()).unwrap();
            let mut want = Tensor::zeros(shape.h, shape.w, shape.c);
            elementwise::binary(Isa::portable(), kind, &a, &b, &mut want);
            let (ax, bx, n) = (half(&a.data), half(&b.data), want.len());
            let mut y = vec![0; n];
            let i = |v: usize| v as i32;
            per_element(n, || unsafe {
                binary(
                    ax.as_ptr(),
                    bx.as_ptr(),
                    y.as_mut_ptr(),
                    n as i64,
                    i(shape.w),
                    i(shape.c),
                    i(ah),
                    i(aw),
                    i(ac),
                    i(bh),
                    i(bw),
                    i(bc),
                    op_code(kind),
                    0.0,
                )
            });
            assert_close(
                &y,
                &want.data,
                &format!("{kind:?} {:?} {:?}", a.shape(), b.shape()),
            );
        }
        // With a scalar (bh = 0).
        let a = t(3, 4, 5, 5);
        let mut want = a.clone();
        elementwise::binary_scalar(Isa::portable(), kind, &mut want, 0.75);
        let (ax, n) = (half(&a.data), a.len());
        let mut y = vec![0; n];
        per_element(n, || unsafe {
            binary(
                ax.as_ptr(),
                ax.as_ptr(),
                y.as_mut_ptr(),
                n as i64,
                4,
                5,
                3,
                4,
                5,
                0,
                0,
                0,
                op_code(kind),
                0.75,
            )
        });
        assert_close(&y, &want.data, &format!("{kind:?} with a scalar"));
    }
}

#[test]
fn weighted_sum() {
    type Axpby = unsafe extern "C" fn(*const H, *const H, *mut H, i64, f32, f32);
    let axpby = kernel::<Axpby>("axpby");
    let (a, b) = (tensor(4, 5, 3, 6), tensor(4, 5, 3, 7));
    let want: Vec<f32> = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| 0.5 * x - 2.0 * y)
        .collect();
    let (ax, bx, n) = (half(&a.data), half(&b.data), a.len());
    let mut y = vec![0; n];
    per_element(n, || unsafe {
        axpby(
            ax.as_ptr(),
            bx.as_ptr(),
            y.as_mut_ptr(),
            n as i64,
            0.5,
            -2.0,
        )
    });
    assert_close(&y, &want, "axpby");
}

#[test]
fn layout_kernels_move_what_the_cpu_moves() {
    let x = tensor(5, 6, 8, 8);
    let xs = half(&x.data);

    type Shuffle = unsafe extern "C" fn(*const H, *mut H, i64, i32, i32, i32);
    let shuffle = kernel::<Shuffle>("pixel_shuffle");
    let mut want = Tensor::zeros(10, 12, 2);
    layout::pixel_shuffle(&x, 2, false, &mut want, 1);
    let mut y = vec![0; want.len()];
    per_element(want.len(), || unsafe {
        shuffle(xs.as_ptr(), y.as_mut_ptr(), want.len() as i64, 6, 2, 2)
    });
    assert_close(&y, &want.data, "pixel_shuffle");

    type Pad = unsafe extern "C" fn(*const H, *mut H, i64, i32, i32, i32, i32, i32, i32);
    let pad = kernel::<Pad>("pad");
    let (top, left, bottom, right) = (1, 2, 0, 3);
    let (oh, ow) = (5 + top + bottom, 6 + left + right);
    let mut want = Tensor::zeros(oh, ow, 8);
    want.copy_region((top, left), &x, (0, 0), 5, 6);
    let mut y = vec![0; want.len()];
    per_element(want.len(), || unsafe {
        pad(
            xs.as_ptr(),
            y.as_mut_ptr(),
            want.len() as i64,
            5,
            6,
            8,
            top as i32,
            left as i32,
            ow as i32,
        )
    });
    assert_close(&y, &want.data, "pad");

    type Crop = unsafe extern "C" fn(*const H, *mut H, i64, i32, i32, i32, i32, i32, i32, i32);
    let crop = kernel::<Crop>("crop");
    let r = layout::CropRegion {
        y: 1,
        x: 2,
        c: 3,
        h: 3,
        w: 4,
        ch: 4,
    };
    let mut want = Tensor::zeros(r.h, r.w, r.ch);
    layout::crop(&x, r, &mut want);
    let mut y = vec![0; want.len()];
    let i = |v: usize| v as i32;
    per_element(want.len(), || unsafe {
        crop(
            xs.as_ptr(),
            y.as_mut_ptr(),
            want.len() as i64,
            6,
            8,
            i(r.y),
            i(r.x),
            i(r.c),
            i(r.w),
            i(r.ch),
        )
    });
    assert_close(&y, &want.data, "crop");

    type Copy = unsafe extern "C" fn(*const H, *mut H, i64, i32, i32, i32);
    let copy = kernel::<Copy>("copy_channels");
    let other = tensor(5, 6, 3, 9);
    let mut want = Tensor::zeros(5, 6, 11);
    let axis = layout::concat_axis(0, 3).unwrap();
    layout::concat(&[&x, &other], axis, &mut want, Isa::portable(), 1);
    let mut y = vec![0; want.len()];
    let os = half(&other.data);
    per_element(x.len(), || unsafe {
        copy(xs.as_ptr(), y.as_mut_ptr(), x.len() as i64, 8, 11, 0)
    });
    per_element(other.len(), || unsafe {
        copy(os.as_ptr(), y.as_mut_ptr(), other.len() as i64, 3, 11, 8)
    });
    assert_close(&y, &want.data, "copy_channels (concat)");
}

#[test]
fn resampling_matches_the_cpu_interp() {
    type Resample = unsafe extern "C" fn(
        *const H,
        *mut H,
        i64,
        i32,
        i32,
        i32,
        i32,
        i32,
        *const i32,
        *const f32,
        *const i32,
        *const f32,
    );
    let resample = kernel::<Resample>("resample");
    // 3 rows: too few for bicubic on one axis, which makes both axes bilinear.
    for (ih, iw) in [(7, 9), (3, 9)] {
        let x = tensor(ih, iw, 3, 10);
        let xs = half(&x.data);
        for mode in [
            InterpMode::Nearest,
            InterpMode::Bilinear,
            InterpMode::Bicubic,
        ] {
            for align_corner in [false, true] {
                for (oh, ow) in [(14, 18), (21, 27), (5, 6)] {
                    let mut want = Tensor::zeros(oh, ow, 3);
                    layout::interp(&x, mode, align_corner, &mut want, 1);
                    let (ty, tx, taps) = resize_taps(mode, (ih, iw), (oh, ow), align_corner);
                    let ints = |v: Vec<usize>| v.into_iter().map(|i| i as i32).collect::<Vec<_>>();
                    let (iy, ix) = (ints(ty.index), ints(tx.index));
                    let (wy, wx) = (ty.weights.concat(), tx.weights.concat());
                    let mut y = vec![0; want.len()];
                    per_element(want.len(), || unsafe {
                        resample(
                            xs.as_ptr(),
                            y.as_mut_ptr(),
                            want.len() as i64,
                            ih as i32,
                            iw as i32,
                            ow as i32,
                            3,
                            taps as i32,
                            iy.as_ptr(),
                            wy.as_ptr(),
                            ix.as_ptr(),
                            wx.as_ptr(),
                        )
                    });
                    let what =
                        format!("{mode:?} align_corner {align_corner} {ih}x{iw} to {oh}x{ow}");
                    assert_close(&y, &want.data, &what);
                }
            }
        }
    }
}

#[test]
fn squeeze_excitation_pooling_and_dense_layers() {
    type Pool = unsafe extern "C" fn(*const H, *mut H, i64, i32, i32);
    let pool = kernel::<Pool>("emu_channel_pool");
    // More pixels than a block has threads, so each thread sums several.
    let x = tensor(23, 19, 6, 11);
    let xs = half(&x.data);
    for max in [false, true] {
        let want = reduce::global_pool(&x, max);
        let mut y = vec![0; 6];
        unsafe {
            pool(
                xs.as_ptr(),
                y.as_mut_ptr(),
                (23 * 19) as i64,
                6,
                i32::from(max),
            )
        };
        assert_close(&y, &want.data, &format!("channel_pool max={max}"));
    }

    type Dense = unsafe extern "C" fn(
        *const H,
        *const f32,
        *const f32,
        *const f32,
        *mut H,
        i32,
        i32,
        i32,
        f32,
        f32,
    );
    let dense = kernel::<Dense>("dense");
    let (inputs, outputs) = (24, 7);
    let v = values(inputs, 12, -1.0, 1.0);
    let weights = values(inputs * outputs, 13, -0.3, 0.3);
    let bias = values(outputs, 14, -0.2, 0.2);
    for act in [
        Activation::Identity,
        Activation::Relu { slope: 0.1 },
        Activation::Sigmoid,
    ] {
        let layer = reduce::InnerProduct::new(&weights, &bias, &act, Isa::portable());
        let want = layer.run(&Tensor::vector(v.clone()));
        let (mode, p0, p1) = activation_mode(&act);
        let (vs, s) = (half(&v), slopes(&act));
        let mut y = vec![0; outputs];
        per_element(outputs, || unsafe {
            dense(
                vs.as_ptr(),
                weights.as_ptr(),
                bias.as_ptr(),
                s.as_ptr(),
                y.as_mut_ptr(),
                inputs as i32,
                outputs as i32,
                mode,
                p0,
                p1,
            )
        });
        assert_close(&y, &want.data, &format!("dense {act:?}"));
    }
}

#[test]
fn frames_convert_to_half_and_back() {
    type ToHalf = unsafe extern "C" fn(*const f32, *mut H, i64);
    type ToFloat = unsafe extern "C" fn(*const H, *mut f32, i64);
    let (to_half, to_float) = (kernel::<ToHalf>("to_half"), kernel::<ToFloat>("to_float"));
    let frame: Vec<f32> = (0..=255).map(|v| v as f32 / 255.0).collect();
    let mut h = vec![0; frame.len()];
    per_element(frame.len(), || unsafe {
        to_half(frame.as_ptr(), h.as_mut_ptr(), frame.len() as i64)
    });
    assert_eq!(h, half(&frame), "rounds to nearest as the half crate does");
    let mut back = vec![0.0; frame.len()];
    per_element(frame.len(), || unsafe {
        to_float(h.as_ptr(), back.as_mut_ptr(), frame.len() as i64)
    });
    for (level, v) in back.iter().enumerate() {
        assert_eq!(
            (v * 255.0).round() as usize,
            level,
            "8-bit level {level} survives fp16"
        );
    }
}
