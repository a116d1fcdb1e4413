//! Broken model files give clear, typed errors that name the file and the place; never a panic.
#![allow(clippy::print_stdout)] // a test reports what it sampled

mod common;

use vsr_runtime::error::Location;
use vsr_runtime::graph::FileKind;
use vsr_runtime::{Graph, Isa, LoadErrorKind, Plan, Shape, Tensor};

const PARAM: &str = "7767517\n3 3\nInput in 0 1 data\nConvolution conv 1 1 data c 0=4 1=3 4=1 5=1 6=108\nPReLU act 1 1 c out 0=4\n";

/// Weights for PARAM: fp32-tagged 4x3x3x3 kernel, 4 biases, 4 slopes.
fn bin() -> Vec<u8> {
    let mut b = 0u32.to_le_bytes().to_vec();
    for i in 0..108 {
        b.extend((i as f32 / 108.0 - 0.5).to_le_bytes());
    }
    for v in [0.1f32, -0.1, 0.0, 0.2, 0.25, 0.25, 0.1, 0.0] {
        b.extend(v.to_le_bytes());
    }
    b
}

fn load(param: &str, bin: &[u8]) -> Result<Graph, (FileKind, Location, LoadErrorKind)> {
    Graph::from_parts(param, bin)
}

#[test]
fn tiny_valid_model_loads_and_runs() {
    let g = load(PARAM, &bin()).expect("valid");
    let plan = Plan::new(&g, Isa::detect(), 1).unwrap();
    let out = plan.run(Tensor::zeros(5, 7, 3)).unwrap();
    assert_eq!((out.h, out.w, out.c), (5, 7, 4));
    // Zero input: output is PReLU(bias).
    assert_eq!(&out.data[..4], &[0.1, -0.1 * 0.25, 0.0, 0.2]);
}

#[test]
fn wrong_magic() {
    let e = load(&PARAM.replace("7767517", "7767518"), &bin()).unwrap_err();
    assert!(
        matches!(
            e,
            (
                FileKind::Param,
                Location::Line(1),
                LoadErrorKind::BadMagic(_)
            )
        ),
        "{e:?}"
    );
}

#[test]
fn truncated_bin_names_the_offset() {
    let b = bin();
    let e = load(PARAM, &b[..b.len() - 4]).unwrap_err();
    // The PReLU slopes start after the tag, 108 weights and 4 biases.
    assert!(
        matches!(
            e,
            (
                FileKind::Bin,
                Location::Byte(452),
                LoadErrorKind::Truncated { .. }
            )
        ),
        "{e:?}"
    );
}

#[test]
fn leftover_weight_bytes() {
    let mut b = bin();
    b.extend([0u8; 8]);
    let e = load(PARAM, &b).unwrap_err();
    assert!(
        matches!(
            e,
            (
                FileKind::Bin,
                Location::Byte(468),
                LoadErrorKind::TrailingBytes(8)
            )
        ),
        "{e:?}"
    );
}

#[test]
fn unknown_layer_type() {
    let e = load(&PARAM.replace("PReLU act", "FancyOp act"), &bin()).unwrap_err();
    assert!(
        matches!(&e, (FileKind::Param, Location::Line(5), LoadErrorKind::UnknownLayer(t)) if t == "FancyOp"),
        "{e:?}"
    );
}

#[test]
fn absurd_dimensions() {
    for (from, to, key) in [
        ("0=4 1=3", "0=100000000 1=3", 0),
        ("1=3 4=1", "1=9999 4=1", 1),
        ("6=108", "6=107", 6),
        ("6=108", "6=-5", 6),
    ] {
        let e = load(&PARAM.replace(from, to), &bin()).unwrap_err();
        assert!(
            matches!(&e, (FileKind::Param, Location::Line(4), LoadErrorKind::BadParam { key: k, .. }) if *k == key),
            "{to}: {e:?}"
        );
    }
}

#[test]
fn dangling_and_duplicate_blobs() {
    let e = load(
        &PARAM.replace("act 1 1 c out", "act 1 1 nowhere out"),
        &bin(),
    )
    .unwrap_err();
    assert!(
        matches!(&e, (_, Location::Line(5), LoadErrorKind::DanglingBlob { blob, .. }) if blob == "nowhere"),
        "{e:?}"
    );
    let e = load(&PARAM.replace("act 1 1 c out", "act 1 1 c data"), &bin()).unwrap_err();
    assert!(
        matches!(&e, (_, Location::Line(5), LoadErrorKind::DuplicateBlob(b)) if b == "data"),
        "{e:?}"
    );
}

#[test]
fn declared_counts_must_match() {
    let e = load(&PARAM.replace("3 3\n", "4 3\n"), &bin()).unwrap_err();
    assert!(
        matches!(
            e,
            (_, _, LoadErrorKind::CountMismatch { what: "layers", .. })
        ),
        "{e:?}"
    );
    let e = load(&PARAM.replace("3 3\n", "3 9\n"), &bin()).unwrap_err();
    assert!(
        matches!(
            e,
            (
                _,
                Location::Line(2),
                LoadErrorKind::CountMismatch { what: "blobs", .. }
            )
        ),
        "{e:?}"
    );
}

#[test]
fn garbage_text_is_a_syntax_error() {
    for text in [
        "",
        "7767517",
        "7767517\nx y\n",
        "7767517\n1 1\nInput\n",
        "7767517\n1 1\nInput in 0 1 d 0=zz\n",
    ] {
        let e = load(text, &[]).unwrap_err();
        assert!(
            matches!(
                e.2,
                LoadErrorKind::Syntax(_)
                    | LoadErrorKind::BadMagic(_)
                    | LoadErrorKind::BadParam { .. }
            ),
            "{text:?}: {e:?}"
        );
    }
}

#[test]
fn errors_name_the_file_and_place() {
    let dir = std::env::temp_dir().join(format!("vsr-malformed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (p, b) = (dir.join("m.param"), dir.join("m.bin"));
    std::fs::write(&p, PARAM.replace("PReLU act", "FancyOp act")).unwrap();
    std::fs::write(&b, bin()).unwrap();
    let msg = Graph::load(&p, &b).unwrap_err().to_string();
    assert!(
        msg.contains("m.param") && msg.contains("line 5") && msg.contains("FancyOp"),
        "{msg}"
    );
    std::fs::write(&p, PARAM).unwrap();
    std::fs::write(&b, &bin()[..100]).unwrap();
    let msg = Graph::load(&p, &b).unwrap_err().to_string();
    assert!(
        msg.contains("m.bin") && msg.contains("byte offset 0"),
        "{msg}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn wrong_input_shapes_are_errors_not_panics() {
    let g = load(PARAM, &bin()).unwrap();
    let plan = Plan::new(&g, Isa::detect(), 1).unwrap();
    assert!(
        plan.run(Tensor::zeros(5, 7, 2)).is_err(),
        "wrong channel count"
    );
    let valid = load(&PARAM.replace("4=1 5=1", "4=0 5=1"), &bin()).unwrap();
    let plan = Plan::new(&valid, Isa::detect(), 1).unwrap();
    assert!(
        plan.output_shape(Shape::image(2, 2, 3)).is_err(),
        "smaller than the kernel"
    );
}

#[test]
fn real_model_truncated_or_swapped() {
    let dir = common::models_dir();
    let param = dir.join("realesr-animevideov3-x2.param");
    let text = std::fs::read_to_string(&param).unwrap();
    let b = std::fs::read(dir.join("realesr-animevideov3-x2.bin")).unwrap();
    assert!(load(&text, &b).is_ok());
    let e = load(&text, &b[..b.len() / 2]).unwrap_err();
    assert!(
        matches!(
            e,
            (
                FileKind::Bin,
                Location::Byte(_),
                LoadErrorKind::Truncated { .. }
            )
        ),
        "{e:?}"
    );
    // The .bin of a bigger model: weights run out of layers.
    let other = std::fs::read(dir.join("realesrgan-x4plus-anime.bin")).unwrap();
    assert!(load(&text, &other).is_err());
}

/// Real graphs with their parameters mutated (strides, kernels, crops, factors, channel
/// counts, as a broken conversion leaves them): each loads or is refused, and every graph that
/// plans gets conventions or an ambiguity from inference, never a panic. A deterministic
/// sample of what the fuzz target (`fuzz/`, which also runs inference) explores.
#[test]
fn inference_on_mutated_real_graphs_answers_or_is_ambiguous() {
    let dir = common::models_dir();
    let (mut loaded, mut inferred, mut ambiguous) = (0, 0, 0);
    for model in [
        "waifu2x-anime-up2x",
        "realcugan-se-up2x",
        "realesr-animevideov3-x2",
    ] {
        let text = std::fs::read_to_string(dir.join(format!("{model}.param"))).unwrap();
        let bin = std::fs::read(dir.join(format!("{model}.bin"))).unwrap();
        // Every `key=value` of every layer line, by position in the file.
        let values: Vec<(usize, usize)> = text
            .match_indices('=')
            .filter_map(|(at, _)| {
                let end = text[at + 1..]
                    .find(|c: char| c.is_whitespace() || c == ',')
                    .map(|e| at + 1 + e)?;
                Some((at + 1, end))
            })
            .collect();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..80 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let (start, end) = values[(seed % values.len() as u64) as usize];
            let replacement =
                ["0", "1", "2", "3", "4", "7", "-1", "-233"][(seed >> 32) as usize % 8];
            let mutated = format!("{}{replacement}{}", &text[..start], &text[end..]);
            let Ok(graph) = Graph::from_parts(&mutated, &bin) else {
                continue;
            };
            loaded += 1;
            let Ok(plan) = Plan::new(&graph, Isa::detect(), 1) else {
                continue;
            };
            // Inference runs the network on frames of a few hundred pixels a side.
            let large = plan
                .peak_bytes(Shape::image(352, 352, 3))
                .is_ok_and(|b| b > 1 << 28);
            if large {
                continue;
            }
            match vsr_runtime::conventions::infer(&graph, &plan) {
                Ok(_) => inferred += 1,
                Err(e) => {
                    assert!(!e.keys().is_empty(), "{e}");
                    ambiguous += 1;
                }
            }
        }
    }
    println!("{loaded} mutated graphs loaded: {inferred} inferred, {ambiguous} ambiguous");
    assert!(
        inferred > 0 && ambiguous > 0,
        "the sample reaches both outcomes"
    );
}
