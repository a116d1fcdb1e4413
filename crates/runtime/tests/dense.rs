//! Dense blocks (a convolution's input concatenated with its output, fed to the next one, as
//! in ESRGAN's RRDB) run as one step in one buffer: the plan must find them and give exactly
//! what the layers give one by one.

mod common;

use common::weights;
use vsr_runtime::graph::Op;
use vsr_runtime::ops::conv::Im2colConv;
use vsr_runtime::ops::layout;
use vsr_runtime::{Graph, Isa, Plan, Tensor};

/// `x` (3 channels) -> y1 = conv(x) -> y2 = conv([x, y1]) -> y3 = conv([x, y1, y2]) ->
/// out = conv([x, y1, y2, y3]), LeakyReLU after the inner three.
fn dense_graph() -> Graph {
    let param = "7767517\n11 17\n\
        Input in 0 1 data\n\
        Split sp 1 4 data x0 x1 x2 x3\n\
        Convolution c1 1 1 x0 y1 0=4 1=3 4=1 5=1 6=108 9=2 -23310=1,0.2\n\
        Split s1 1 3 y1 y1a y1b y1c\n\
        Concat cat1 2 1 x1 y1a k1 0=0\n\
        Convolution c2 1 1 k1 y2 0=4 1=3 4=1 5=1 6=252 9=2 -23310=1,0.2\n\
        Split s2 1 2 y2 y2a y2b\n\
        Concat cat2 3 1 x2 y1b y2a k2 0=0\n\
        Convolution c3 1 1 k2 y3 0=4 1=3 4=1 5=1 6=396 9=2 -23310=1,0.2\n\
        Concat cat3 4 1 x3 y1c y2b y3 k3 0=0\n\
        Convolution c4 1 1 k3 out 0=3 1=3 4=1 5=1 6=405\n";
    let mut bin = weights(108, 4, 1);
    bin.extend(weights(252, 4, 2));
    bin.extend(weights(396, 4, 3));
    bin.extend(weights(405, 3, 4));
    Graph::from_parts(param, &bin).expect("valid graph")
}

/// The same network layer by layer: direct convolutions and copying concatenations.
fn layer_by_layer(graph: &Graph, x: &Tensor) -> Tensor {
    let convs: Vec<Im2colConv> = graph
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Convolution(s) => Some(Im2colConv::new(s, Isa::portable())),
            _ => None,
        })
        .collect();
    let run = |conv: &Im2colConv, input: &Tensor| {
        let (h, w) = conv.geometry().out_shape(input.h, input.w).expect("fits");
        let mut out = Tensor::zeros(h, w, conv.geometry().out_c);
        conv.run(input, &mut out, 1);
        out
    };
    let mut parts = vec![x.clone()];
    for conv in &convs[..3] {
        let input = if parts.len() == 1 {
            parts[0].clone()
        } else {
            cat(&parts)
        };
        parts.push(run(conv, &input));
    }
    run(&convs[3], &cat(&parts))
}

fn cat(parts: &[Tensor]) -> Tensor {
    let refs: Vec<&Tensor> = parts.iter().collect();
    let c = parts.iter().map(|t| t.c).sum();
    let mut out = Tensor::zeros(parts[0].h, parts[0].w, c);
    layout::concat(&refs, 0, &mut out, Isa::portable(), 1);
    out
}

#[test]
fn dense_blocks_run_as_one_step_and_match_the_layers() {
    let graph = dense_graph();
    // Odd sizes: border tiles, and a width that is no multiple of the 6-wide tiles.
    let (h, w) = (13, 17);
    let x = Tensor::from_vec(
        h,
        w,
        3,
        (0..h * w * 3)
            .map(|i| ((i * 13 % 29) as f32 - 14.0) / 14.0)
            .collect(),
    );
    let want = layer_by_layer(&graph, &x);
    for isa in Isa::all_supported() {
        for threads in [1, 2] {
            let plan = Plan::new(&graph, isa, threads).expect("plans");
            // c1, cat1, c2, cat2, c3, cat3 as one block; c4 stays (it ends the block).
            assert_eq!(plan.step_count(), 2, "{isa:?}: the block was not fused");
            let got = plan.run(x.clone()).expect("runs");
            assert_eq!((got.h, got.w, got.c), (want.h, want.w, want.c));
            let scale = want.data.iter().map(|v| v.abs()).fold(1.0, f32::max);
            let diff = got
                .data
                .iter()
                .zip(&want.data)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(
                diff < 1e-4 * scale,
                "{isa:?} x{threads}: off by {diff} of {scale}"
            );
        }
    }
}
