//! A U-Net's skip connection, `Add(Crop(skip), Deconvolution(x))`, runs as one step (the
//! deconvolution adds the crop to each output row it writes): the plan must find it and give
//! exactly what the three layers give one by one.

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

#[test]
fn skip_addition_is_one_step_and_exact() {
    let (fused, unfused) = (unet_step(false), unet_step(true));
    for isa in Isa::all_supported() {
        for threads in [1, 2] {
            let plan = Plan::new(&fused, isa, threads).expect("plans");
            let reference = Plan::new(&unfused, isa, threads).expect("plans");
            // down, pool and the fused step; the reference runs up, one, cr and add apart.
            assert_eq!(plan.step_count(), 3, "{}", isa.name());
            assert_eq!(reference.step_count(), 6, "{}", isa.name());
            let (h, w) = (18, 22);
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
            assert_eq!((got.h, got.w, got.c), (16, 20, 3));
            assert_eq!(got.data, want.data, "{} threads={threads}", isa.name());
        }
    }
}

/// A skip the crop cannot cut to the deconvolution's size is a shape error, not a panic.
#[test]
fn a_skip_of_the_wrong_size_is_an_error() {
    let plan = Plan::new(&unet_step(false), Isa::detect(), 1).expect("plans");
    // 17 - 2 = 15 rows go down to 7 and back up to 14: the crop gives 15.
    let e = plan.run(Tensor::zeros(17, 22, 3)).unwrap_err();
    assert!(e.to_string().contains("skip connection"), "{e}");
}
