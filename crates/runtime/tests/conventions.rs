//! Conventions inferred from graphs: small networks built here with known demands, the real
//! models whose demands the reference tools hard-code, and conventions that do not fit.

mod common;

use vsr_runtime::conventions::{self, Ambiguity, Geometry};
use vsr_runtime::{Graph, Isa, ModelSpec, Options, PadMode, Plan, Tensor, Upscaler};

/// An fp32-tagged block of `n` weights (all `value`) followed by `biases` zero biases.
fn conv_weights(n: usize, biases: usize, value: f32) -> Vec<u8> {
    let mut b = 0u32.to_le_bytes().to_vec();
    b.extend((0..n).flat_map(|_| value.to_le_bytes()));
    b.extend((0..biases).flat_map(|_| 0f32.to_le_bytes()));
    b
}

/// A network that goes down by `stride` and back up, added to its input: it takes only
/// sizes that are multiples of `stride`, at scale 1, keeping its border.
fn down_up(stride: usize) -> Graph {
    let k = stride;
    let n = 3 * 3 * k * k;
    let param = format!(
        "7767517\n5 6\nInput in 0 1 data\nSplit sp 1 2 data a b\n\
         Convolution down 1 1 a d 0=3 1={k} 3={k} 5=1 6={n}\n\
         Deconvolution up 1 1 d u 0=3 1={k} 3={k} 5=1 6={n}\n\
         BinaryOp add 2 1 u b out 0=0\n"
    );
    let mut bin = conv_weights(n, 3, 0.01);
    bin.extend(conv_weights(n, 3, 0.01));
    Graph::from_parts(&param, &bin).expect("valid graph")
}

fn plan(graph: &Graph) -> Plan {
    Plan::new(graph, Isa::detect(), 1).expect("plans")
}

/// The demands of networks built here are found as built.
#[test]
fn built_networks_show_their_demands() {
    let g = down_up(8);
    let found = conventions::infer(&g, &plan(&g)).expect("inferred");
    assert_eq!(
        found.geometry,
        Geometry {
            scale: 1,
            crop: 0,
            period: 8,
            residue: 0
        }
    );
    // Twice the border must be a multiple of 8 too: 10 + 10 is not, 12 + 12 is.
    assert_eq!((found.spec.prepadding, found.spec.align), (12, 8));
    assert_eq!(found.spec.pad_mode, PadMode::Reflect);
    assert!(!found.spec.add_nearest_input, "it draws the image");

    // A stride of 3 is no power-of-two alignment: ambiguous, and the keys that settle it.
    let g = down_up(3);
    let e = conventions::infer(&g, &plan(&g)).unwrap_err();
    assert!(matches!(e, Ambiguity::IrregularSizes { .. }), "{e}");
    assert_eq!(e.keys(), ["scale", "prepadding", "align"]);

    // Four output channels are no image.
    let param =
        "7767517\n2 2\nInput in 0 1 data\nConvolution conv 1 1 data out 0=4 1=3 4=1 5=1 6=108\n";
    let g = Graph::from_parts(param, &conv_weights(108, 4, 0.1)).unwrap();
    let e = conventions::infer(&g, &plan(&g)).unwrap_err();
    assert!(matches!(e, Ambiguity::NotAnImage(_)), "{e}");
}

/// A network that draws a residual is told from one that draws the image.
#[test]
fn a_residual_network_is_recognised() {
    let g = common::load("realcugan-se-up4x");
    let spec = ModelSpec {
        add_nearest_input: false,
        ..conventions::infer(&g, &plan(&g)).unwrap().spec
    };
    assert!(conventions::predicts_residual(&plan(&g), &spec).unwrap());
    let g = common::load("realcugan-se-up2x");
    let spec = conventions::infer(&g, &plan(&g)).unwrap().spec;
    assert!(!conventions::predicts_residual(&plan(&g), &spec).unwrap());
}

/// Conventions that would shift or break frames are refused, naming the key.
#[test]
fn misfitting_conventions_name_the_key() {
    let g = common::load("realcugan-se-up3x");
    let geometry = Geometry::measure(&plan(&g)).unwrap();
    let right = ModelSpec {
        scale: 3,
        prepadding: 14,
        align: 4,
        pad_mode: PadMode::Reflect,
        add_nearest_input: false,
    };
    assert_eq!(geometry.check(&right), Ok(()));
    let wrong = |spec: ModelSpec| geometry.check(&spec).unwrap_err().key;
    assert_eq!(wrong(ModelSpec::padded(3)), "prepadding");
    assert_eq!(
        wrong(ModelSpec {
            scale: 2,
            ..right.clone()
        }),
        "scale"
    );
    assert_eq!(
        wrong(ModelSpec {
            align: 2,
            ..right.clone()
        }),
        "align"
    );
    // Run anyway, the misfit is told as the conventions', not as a layer's broadcast.
    let up = Upscaler::new(
        &g,
        ModelSpec { align: 1, ..right },
        Options {
            threads: 1,
            ..Options::default()
        },
    )
    .expect("the probe size happens to fit");
    let e = up
        .upscale(&Tensor::zeros(33, 35, 3))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("conventions (scale 3, prepadding 14, align 1") && e.contains("cannot take"),
        "{e}"
    );
}

/// waifu2x's upconv_7 networks take any size: the alignment of 2 its reference tool pads to
/// only adds a column and a row it crops again, so align 1 (what inference finds, and what
/// the catalog says) gives the same pixels up to float rounding (the kernels split a wider
/// frame differently), far below one 8-bit level.
#[test]
fn alignment_beyond_the_networks_needs_changes_nothing() {
    for model in ["waifu2x-anime-up2x", "waifu2x-photo-up2x-denoise2x"] {
        let g = common::load(model);
        let mut input = Tensor::zeros(71, 91, 3);
        for (i, v) in input.data.iter_mut().enumerate() {
            *v = ((i * 7919) % 256) as f32 / 255.0;
        }
        let run = |align| {
            let spec = ModelSpec {
                scale: 2,
                prepadding: 7,
                align,
                pad_mode: PadMode::Replicate,
                add_nearest_input: false,
            };
            let options = Options {
                threads: 2,
                ..Options::default()
            };
            Upscaler::new(&g, spec, options)
                .unwrap()
                .upscale(&input)
                .unwrap()
        };
        let (one, two) = (run(1), run(2));
        assert_eq!((one.w, one.h), (182, 142));
        let diff = one
            .data
            .iter()
            .zip(&two.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-4, "{model}: align 1 and 2 differ by {diff:e}");
    }
}
