//! Additions fused with the steps that make their operands: a U-Net's skip connection,
//! `Add(Crop(skip), Deconvolution(x))` (the deconvolution adds the crop to each output row it
//! writes), and a compact model's tail, `Add(PixelShuffle(x), Interp(input))` (one pass over
//! the output). The plan must find each and give exactly what the three layers give one by
//! one.

mod common;

use common::weights;
use vsr_runtime::{Graph, Isa, Plan, Tensor};

/// `data` -> 3x3 convolution (no padding) -> 2x2 stride-2 convolution -> 2x2 stride-2
/// deconvolution (LeakyReLU), plus `data` cropped by one pixel all round. With `unfused`, the
/// deconvolution's output is first multiplied by 1 (exact), which no fusion looks through.
fn unet_step(unfused: bool) -> Graph {
    let (mul, added) = if unfused {
        ("BinaryOp one 1 1 u v 0=2 1=1 2=1.0\n", "v")
    } else {
        ("", "u")
    };
    let param = format!(
        "7767517\n{} {}\n\
         Input in 0 1 data\n\
         Split sp 1 2 data a b\n\
         Convolution down 1 1 a d 0=8 1=3 5=1 6=216\n\
         Convolution pool 1 1 d e 0=8 1=2 3=2 5=1 6=256\n\
         Deconvolution up 1 1 e u 0=3 1=2 3=2 5=1 6=96 9=2 -23310=1,0.1\n\
         {mul}\
         Crop cr 1 1 b c -23309=2,1,1 -23310=2,-1,-1 -23311=2,-2,-1\n\
         BinaryOp add 2 1 c {added} out 0=0\n",
        7 + unfused as usize,
        8 + unfused as usize,
    );
    let mut bin = weights(216, 8, 1);
    bin.extend(weights(256, 8, 2));
    bin.extend(weights(96, 3, 3));
    Graph::from_parts(&param, &bin).expect("valid graph")
}

/// `data` -> 3x3 convolution (padding 1) to 12 channels -> 2x pixel shuffle, plus `data`
/// resized 2x (nearest), as Real-ESRGAN's compact models end. `unfused` as for [`unet_step`];
/// `size`, if given, is the resize's fixed output size instead of its scale.
fn compact_tail(unfused: bool, size: Option<(usize, usize)>) -> Graph {
    let (mul, added) = if unfused {
        ("BinaryOp one 1 1 s v 0=2 1=1 2=1.0\n", "v")
    } else {
        ("", "s")
    };
    let resize = match size {
        Some((h, w)) => format!("3={h} 4={w}"),
        None => "1=2.0 2=2.0".into(),
    };
    let param = format!(
        "7767517\n{} {}\n\
         Input in 0 1 data\n\
         Split sp 1 2 data a b\n\
         Convolution body 1 1 a f 0=12 1=3 4=1 5=1 6=324\n\
         PixelShuffle up 1 1 f s 0=2\n\
         {mul}\
         Interp base 1 1 b r 0=1 {resize}\n\
         BinaryOp add 2 1 {added} r out 0=0\n",
        6 + unfused as usize,
        7 + unfused as usize,
    );
    Graph::from_parts(&param, &weights(324, 12, 4)).expect("valid graph")
}

/// Runs `fused` (planned as `steps` steps) and `unfused` (`reference_steps`) on an `h x w` RGB
/// input on every ISA and thread count: the same `out` shape, the same values to the bit.
fn fused_is_exact(
    (fused, steps): (&Graph, usize),
    (unfused, reference_steps): (&Graph, usize),
    (h, w): (usize, usize),
    out: (usize, usize, usize),
) {
    for isa in Isa::all_supported() {
        for threads in [1, 2] {
            let plan = Plan::new(fused, isa, threads).expect("plans");
            let reference = Plan::new(unfused, isa, threads).expect("plans");
            assert_eq!(plan.step_count(), steps, "{}", isa.name());
            assert_eq!(reference.step_count(), reference_steps, "{}", isa.name());
            let x = Tensor::from_vec(
                h,
                w,
                3,
                (0..h * w * 3)
                    .map(|i| ((i * 13 % 29) as f32 - 14.0) / 14.0)
                    .collect(),
            );
            let got = plan.run(x.clone()).expect("runs");
            let want = reference.run(x).expect("runs");
            assert_eq!((got.h, got.w, got.c), out);
            assert_eq!(got.data, want.data, "{} threads={threads}", isa.name());
        }
    }
}

#[test]
fn skip_addition_is_one_step_and_exact() {
    // down, pool and the fused step; the reference runs up, one, cr and add apart.
    let (fused, unfused) = (unet_step(false), unet_step(true));
    fused_is_exact((&fused, 3), (&unfused, 6), (18, 22), (16, 20, 3));
}

#[test]
fn compact_tail_is_one_step_and_exact() {
    // body and the fused step; the reference runs up, one, base and add apart.
    let (fused, unfused) = (compact_tail(false, None), compact_tail(true, None));
    fused_is_exact((&fused, 2), (&unfused, 5), (9, 14), (18, 28, 3));
}

/// A resize to another size than the shuffle's is a shape error, not a panic.
#[test]
fn a_resized_input_of_the_wrong_size_is_an_error() {
    let plan = Plan::new(&compact_tail(false, Some((18, 27))), Isa::detect(), 1).expect("plans");
    let e = plan.run(Tensor::zeros(9, 14, 3)).unwrap_err();
    assert!(e.to_string().contains("does not match"), "{e}");
}

/// A skip the crop cannot cut to the deconvolution's size is a shape error, not a panic.
#[test]
fn a_skip_of_the_wrong_size_is_an_error() {
    let plan = Plan::new(&unet_step(false), Isa::detect(), 1).expect("plans");
    // 17 - 2 = 15 rows go down to 7 and back up to 14: the crop gives 15.
    let e = plan.run(Tensor::zeros(17, 22, 3)).unwrap_err();
    assert!(e.to_string().contains("skip connection"), "{e}");
}
