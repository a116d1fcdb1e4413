//! The typed graph: every `.param` layer becomes an [`Op`] with checked parameters and its
//! weights from the `.bin`, so the executor never has to interpret strings or guess defaults.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{LoadError, LoadErrorKind, Location};
use crate::param::{self, LayerDecl, ParamValue};
use crate::tensor::Tensor;
use crate::weights::WeightReader;

/// Caps on single dimensions; far above any real SR model, low enough to stop absurd allocations.
const MAX_CHANNELS: i32 = 1 << 16;
const MAX_KERNEL: i32 = 64;
const MAX_WEIGHTS: usize = 1 << 28;

/// An activation fused into a producing op, or applied on its own.
#[derive(Debug, Clone, PartialEq)]
pub enum Activation {
    Identity,
    /// ReLU; a non-zero slope makes it leaky.
    Relu {
        slope: f32,
    },
    Clip {
        min: f32,
        max: f32,
    },
    Sigmoid,
    Mish,
    HardSwish {
        alpha: f32,
        beta: f32,
    },
    Swish,
    TanH,
    /// Per-channel slopes (one slope broadcasts to all channels).
    PRelu(Vec<f32>),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Padding {
    pub left: usize,
    pub right: usize,
    pub top: usize,
    pub bottom: usize,
}

/// Convolution and deconvolution share one parameter block.
#[derive(Debug, Clone)]
pub struct ConvSpec {
    pub out_c: usize,
    pub in_c: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub dil_h: usize,
    pub dil_w: usize,
    pub pad: Padding,
    /// Output padding and fixed output size, used by deconvolution only.
    pub out_pad_right: usize,
    pub out_pad_bottom: usize,
    /// Weights in ncnn order: `[out_c][in_c][kh][kw]`.
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
    pub act: Activation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryKind {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    Pow,
    RSub,
    RDiv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EltwiseKind {
    Prod,
    Sum,
    Max,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterpMode {
    Nearest,
    Bilinear,
    Bicubic,
}

/// Crop, in either of ncnn's forms, reduced to per-axis ranges at run time.
#[derive(Debug, Clone, PartialEq)]
pub enum CropSpec {
    /// `0=woffset 1=hoffset 2=coffset 3=outw 4=outh 5=outc`, trailing offsets `6,7,8`; with a
    /// second input the output size comes from it.
    Offsets {
        w: usize,
        h: usize,
        c: usize,
        out_w: usize,
        out_h: usize,
        out_c: usize,
        w2: usize,
        h2: usize,
        c2: usize,
    },
    /// `starts`/`ends`/`axes` arrays; negative ends count from the end.
    Ranges {
        starts: Vec<i32>,
        ends: Vec<i32>,
        axes: Vec<i32>,
    },
}

#[derive(Debug, Clone)]
pub enum Op {
    /// The network input. Models converted from Caffe (waifu2x-caffe's, among them) declare
    /// the patch size they were trained on (`0=w 1=h 2=c`); it is kept as a hint of where the
    /// model comes from, never as a limit on frame sizes.
    Input {
        declared: Option<DeclaredSize>,
    },
    /// Fan-out of one blob; the planner makes these free aliases.
    Split,
    Convolution(ConvSpec),
    Deconvolution(ConvSpec),
    InnerProduct {
        out: usize,
        weights: Vec<f32>,
        bias: Vec<f32>,
        act: Activation,
    },
    Activation(Activation),
    BinaryOp {
        kind: BinaryKind,
        scalar: Option<f32>,
    },
    Eltwise {
        kind: EltwiseKind,
        coeffs: Vec<f32>,
    },
    Concat {
        axis: i32,
    },
    Crop(CropSpec),
    GlobalPool {
        max: bool,
    },
    /// Per-channel scale; without stored data the second input holds the scales.
    Scale {
        scale: Option<Vec<f32>>,
        bias: Option<Vec<f32>>,
    },
    PixelShuffle {
        factor: usize,
        channel_major: bool,
    },
    Interp {
        mode: InterpMode,
        scale_h: f32,
        scale_w: f32,
        out_h: usize,
        out_w: usize,
        align_corner: bool,
    },
    MemoryData(Tensor),
    Identity,
}

/// The width, height and channels an `Input` layer names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeclaredSize {
    pub w: usize,
    pub h: usize,
    pub c: usize,
}

/// One layer after loading.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub kind: String,
    pub op: Op,
    pub inputs: Vec<usize>,
    pub outputs: Vec<usize>,
}

/// A validated model graph. Blobs are numbered; each has exactly one producer before its users.
#[derive(Debug, Clone)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub blob_names: Vec<String>,
    pub input: usize,
    pub output: usize,
}

impl Graph {
    /// The size the `Input` layer declares, if it declares one.
    pub fn declared_input(&self) -> Option<DeclaredSize> {
        self.nodes.iter().find_map(|n| match n.op {
            Op::Input { declared } => declared,
            _ => None,
        })
    }

    /// Loads `NAME.param` and its weights from `bin_path`.
    pub fn load(param_path: &Path, bin_path: &Path) -> Result<Graph, LoadError> {
        let err = |path: &Path, location, kind| LoadError {
            path: path.to_path_buf(),
            location,
            kind,
        };
        let text =
            std::fs::read(param_path).map_err(|e| err(param_path, Location::File, e.into()))?;
        let text = String::from_utf8(text).map_err(|e| {
            err(
                param_path,
                Location::Byte(e.utf8_error().valid_up_to() as u64),
                LoadErrorKind::Syntax("not UTF-8 text".into()),
            )
        })?;
        let bin = std::fs::read(bin_path).map_err(|e| err(bin_path, Location::File, e.into()))?;
        Self::from_parts(&text, &bin).map_err(|(which, location, kind)| {
            let path = if which == FileKind::Param {
                param_path
            } else {
                bin_path
            };
            err(path, location, kind)
        })
    }

    /// Builds a graph from the text of a `.param` file and the bytes of its `.bin`.
    pub fn from_parts(
        param_text: &str,
        bin: &[u8],
    ) -> Result<Graph, (FileKind, Location, LoadErrorKind)> {
        let file = param::parse(param_text)
            .map_err(|(line, k)| (FileKind::Param, Location::Line(line), k))?;
        let mut reader = WeightReader::new(bin);
        let mut blob_ids: HashMap<String, usize> = HashMap::new();
        let mut blob_names = Vec::new();
        let mut consumed = Vec::new();
        let mut nodes = Vec::with_capacity(file.layers.len());
        let mut input = None;

        for decl in &file.layers {
            let at_line = |k| (FileKind::Param, Location::Line(decl.line), k);
            let inputs = decl
                .inputs
                .iter()
                .map(|b| {
                    blob_ids.get(b).copied().ok_or_else(|| {
                        at_line(LoadErrorKind::DanglingBlob {
                            layer: decl.name.clone(),
                            blob: b.clone(),
                        })
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            for &i in &inputs {
                consumed[i] = true;
            }
            let mut outputs = Vec::with_capacity(decl.outputs.len());
            for b in &decl.outputs {
                if blob_ids.contains_key(b) {
                    return Err(at_line(LoadErrorKind::DuplicateBlob(b.clone())));
                }
                blob_ids.insert(b.clone(), blob_names.len());
                outputs.push(blob_names.len());
                blob_names.push(b.clone());
                consumed.push(false);
            }
            let offset = reader.offset();
            let op = build_op(decl, &mut reader).map_err(|k| match k {
                LoadErrorKind::Truncated { .. } | LoadErrorKind::UnsupportedEncoding { .. } => {
                    (FileKind::Bin, Location::Byte(offset), k)
                }
                k => at_line(k),
            })?;
            check_arity(decl, &op).map_err(at_line)?;
            if matches!(op, Op::Input { .. }) && input.is_none() {
                input = Some(outputs[0]);
            }
            nodes.push(Node {
                name: decl.name.clone(),
                kind: decl.kind.clone(),
                op,
                inputs,
                outputs,
            });
        }
        if reader.remaining() != 0 {
            return Err((
                FileKind::Bin,
                Location::Byte(reader.offset()),
                LoadErrorKind::TrailingBytes(reader.remaining()),
            ));
        }
        if blob_names.len() != file.blob_count {
            return Err((
                FileKind::Param,
                Location::Line(2),
                LoadErrorKind::CountMismatch {
                    what: "blobs",
                    declared: file.blob_count,
                    found: blob_names.len(),
                },
            ));
        }
        let input = input.ok_or((FileKind::Param, Location::File, LoadErrorKind::NoInput))?;
        // The output is the last blob nobody reads, as in the reference tools' `extract` of the
        // final layer's top.
        let output = (0..blob_names.len()).rev().find(|&b| !consumed[b]).ok_or((
            FileKind::Param,
            Location::File,
            LoadErrorKind::NoOutput,
        ))?;
        Ok(Graph {
            nodes,
            blob_names,
            input,
            output,
        })
    }
}

/// Which of the two files an error belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Param,
    Bin,
}

fn check_arity(decl: &LayerDecl, op: &Op) -> Result<(), LoadErrorKind> {
    let (ni, no) = (decl.inputs.len(), decl.outputs.len());
    let ok = match op {
        Op::Input { .. } | Op::MemoryData(_) => ni == 0 && no == 1,
        Op::Split => ni == 1 && no >= 1,
        Op::BinaryOp {
            scalar: Some(_), ..
        } => ni == 1 && no == 1,
        Op::BinaryOp { .. } => ni == 2 && no == 1,
        Op::Eltwise { .. } | Op::Concat { .. } => ni >= 1 && no == 1,
        Op::Crop(CropSpec::Offsets { .. }) => (ni == 1 || ni == 2) && no == 1,
        Op::Scale { scale: None, .. } => ni == 2 && no == 1,
        _ => ni == 1 && no == 1,
    };
    if ok {
        Ok(())
    } else {
        Err(LoadErrorKind::Shape {
            layer: decl.name.clone(),
            reason: format!("{} cannot take {ni} inputs and {no} outputs", decl.kind),
        })
    }
}

/// Typed access to one layer's parameters, with range checks that name the key.
struct Params<'a> {
    decl: &'a LayerDecl,
}

impl Params<'_> {
    fn bad(&self, key: i32, reason: impl Into<String>) -> LoadErrorKind {
        LoadErrorKind::BadParam {
            layer: self.decl.name.clone(),
            key,
            reason: reason.into(),
        }
    }

    fn int(&self, key: i32, default: i32) -> Result<i32, LoadErrorKind> {
        match self.decl.params.get(&key) {
            None => Ok(default),
            Some(ParamValue::Int(v)) => Ok(*v),
            Some(ParamValue::Float(v)) if v.fract() == 0.0 && v.abs() < 1e9 => Ok(*v as i32),
            Some(other) => Err(self.bad(key, format!("expected an integer, found {other:?}"))),
        }
    }

    fn int_in(&self, key: i32, default: i32, min: i32, max: i32) -> Result<i32, LoadErrorKind> {
        let v = self.int(key, default)?;
        if v < min || v > max {
            return Err(self.bad(key, format!("{v} is outside {min}..={max}")));
        }
        Ok(v)
    }

    fn float(&self, key: i32, default: f32) -> Result<f32, LoadErrorKind> {
        match self.decl.params.get(&key) {
            None => Ok(default),
            Some(ParamValue::Float(v)) => Ok(*v),
            Some(ParamValue::Int(v)) => Ok(*v as f32),
            Some(other) => Err(self.bad(key, format!("expected a number, found {other:?}"))),
        }
    }

    fn floats(&self, key: i32) -> Result<Vec<f32>, LoadErrorKind> {
        match self.decl.params.get(&key) {
            None => Ok(Vec::new()),
            Some(ParamValue::FloatArray(v)) => Ok(v.clone()),
            Some(ParamValue::IntArray(v)) => Ok(v.iter().map(|&x| x as f32).collect()),
            Some(other) => Err(self.bad(key, format!("expected an array, found {other:?}"))),
        }
    }

    fn ints(&self, key: i32) -> Result<Vec<i32>, LoadErrorKind> {
        match self.decl.params.get(&key) {
            None => Ok(Vec::new()),
            Some(ParamValue::IntArray(v)) => Ok(v.clone()),
            Some(other) => {
                Err(self.bad(key, format!("expected an integer array, found {other:?}")))
            }
        }
    }

    /// The activation fused into Convolution, Deconvolution and InnerProduct (`9=type 10=params`).
    fn fused_activation(&self, channels: usize) -> Result<Activation, LoadErrorKind> {
        let kind = self.int(9, 0)?;
        let p = self.floats(10)?;
        let arg = |i: usize, default: f32| p.get(i).copied().unwrap_or(default);
        Ok(match kind {
            0 => Activation::Identity,
            1 => Activation::Relu { slope: 0.0 },
            2 => Activation::Relu { slope: arg(0, 0.0) },
            3 => Activation::Clip {
                min: arg(0, f32::MIN),
                max: arg(1, f32::MAX),
            },
            4 => Activation::Sigmoid,
            5 => Activation::Mish,
            6 => Activation::HardSwish {
                alpha: arg(0, 0.2),
                beta: arg(1, 0.5),
            },
            other => {
                return Err(self.bad(
                    9,
                    format!("unknown activation type {other} (channels {channels})"),
                ))
            }
        })
    }
}

fn positive(p: &Params, key: i32, default: i32, max: i32) -> Result<usize, LoadErrorKind> {
    Ok(p.int_in(key, default, 1, max)? as usize)
}

fn build_op(decl: &LayerDecl, reader: &mut WeightReader) -> Result<Op, LoadErrorKind> {
    let p = Params { decl };
    let name = decl.name.as_str();
    Ok(match decl.kind.as_str() {
        "Input" => {
            let dim = |key| p.int(key, 0).map(|v| v.max(0) as usize);
            let (w, h, c) = (dim(0)?, dim(1)?, dim(2)?);
            Op::Input {
                declared: (w > 0 && h > 0).then_some(DeclaredSize { w, h, c }),
            }
        }
        "Split" => Op::Split,
        "Noop" | "Dropout" => Op::Identity,
        "Convolution" => Op::Convolution(conv_spec(&p, reader, false)?),
        "Deconvolution" => Op::Deconvolution(conv_spec(&p, reader, true)?),
        "InnerProduct" => {
            let out = positive(&p, 0, 0, MAX_CHANNELS)?;
            let bias_term = p.int_in(1, 0, 0, 1)? == 1;
            let size = p.int_in(2, 0, 1, i32::MAX)? as usize;
            if !size.is_multiple_of(out) || size > MAX_WEIGHTS {
                return Err(p.bad(
                    2,
                    format!("weight size {size} is not a multiple of {out} outputs"),
                ));
            }
            if p.int(8, 0)? != 0 {
                return Err(p.bad(8, "int8 quantised layers are not supported"));
            }
            let act = p.fused_activation(out)?;
            let weights = reader.tagged(size, name)?;
            let bias = if bias_term {
                reader.raw_f32(out, name)?
            } else {
                vec![0.0; out]
            };
            Op::InnerProduct {
                out,
                weights,
                bias,
                act,
            }
        }
        "ReLU" => Op::Activation(Activation::Relu {
            slope: p.float(0, 0.0)?,
        }),
        "Sigmoid" => Op::Activation(Activation::Sigmoid),
        "Swish" => Op::Activation(Activation::Swish),
        "TanH" => Op::Activation(Activation::TanH),
        "Mish" => Op::Activation(Activation::Mish),
        "Clip" => Op::Activation(Activation::Clip {
            min: p.float(0, f32::MIN)?,
            max: p.float(1, f32::MAX)?,
        }),
        "HardSwish" => Op::Activation(Activation::HardSwish {
            alpha: p.float(0, 0.2)?,
            beta: p.float(1, 0.5)?,
        }),
        "PReLU" => {
            let n = positive(&p, 0, 1, MAX_CHANNELS)?;
            Op::Activation(Activation::PRelu(reader.raw_f32(n, name)?))
        }
        "BinaryOp" => {
            let kind = match p.int(0, 0)? {
                0 => BinaryKind::Add,
                1 => BinaryKind::Sub,
                2 => BinaryKind::Mul,
                3 => BinaryKind::Div,
                4 => BinaryKind::Max,
                5 => BinaryKind::Min,
                6 => BinaryKind::Pow,
                7 => BinaryKind::RSub,
                8 => BinaryKind::RDiv,
                other => return Err(p.bad(0, format!("unsupported binary operation {other}"))),
            };
            let scalar = if p.int_in(1, 0, 0, 1)? == 1 {
                Some(p.float(2, 0.0)?)
            } else {
                None
            };
            Op::BinaryOp { kind, scalar }
        }
        "Eltwise" => {
            let kind = match p.int(0, 1)? {
                0 => EltwiseKind::Prod,
                1 => EltwiseKind::Sum,
                2 => EltwiseKind::Max,
                other => return Err(p.bad(0, format!("unsupported eltwise operation {other}"))),
            };
            let coeffs = p.floats(1)?;
            if !coeffs.is_empty() && coeffs.len() != decl.inputs.len() {
                return Err(p.bad(
                    1,
                    format!(
                        "{} coefficients for {} inputs",
                        coeffs.len(),
                        decl.inputs.len()
                    ),
                ));
            }
            Op::Eltwise { kind, coeffs }
        }
        "Concat" => Op::Concat {
            axis: p.int_in(0, 0, -3, 2)?,
        },
        "Crop" => {
            let starts = p.ints(9)?;
            if !starts.is_empty() {
                let ends = p.ints(10)?;
                let axes = p.ints(11)?;
                if ends.len() != starts.len() || (!axes.is_empty() && axes.len() != starts.len()) {
                    return Err(p.bad(9, "starts, ends and axes differ in length"));
                }
                if axes.iter().any(|&a| !(-3..=2).contains(&a)) {
                    return Err(p.bad(11, "axis out of range"));
                }
                Op::Crop(CropSpec::Ranges { starts, ends, axes })
            } else {
                let g = |k| p.int_in(k, 0, 0, 1 << 20).map(|v| v as usize);
                Op::Crop(CropSpec::Offsets {
                    w: g(0)?,
                    h: g(1)?,
                    c: g(2)?,
                    out_w: g(3)?,
                    out_h: g(4)?,
                    out_c: g(5)?,
                    w2: g(6)?,
                    h2: g(7)?,
                    c2: g(8)?,
                })
            }
        }
        "Pooling" => {
            let kind = p.int_in(0, 0, 0, 1)?;
            if p.int(4, 0)? != 1 {
                return Err(p.bad(4, "only global pooling (4=1) is supported"));
            }
            Op::GlobalPool { max: kind == 0 }
        }
        "Scale" => {
            let size = p.int(0, 0)?;
            let bias_term = p.int_in(1, 0, 0, 1)? == 1;
            if size == -233 {
                if bias_term {
                    return Err(p.bad(
                        1,
                        "bias with a scale taken from the second input is not supported",
                    ));
                }
                Op::Scale {
                    scale: None,
                    bias: None,
                }
            } else {
                let n = p.int_in(0, 0, 1, MAX_CHANNELS)? as usize;
                let scale = reader.raw_f32(n, name)?;
                let bias = if bias_term {
                    Some(reader.raw_f32(n, name)?)
                } else {
                    None
                };
                Op::Scale {
                    scale: Some(scale),
                    bias,
                }
            }
        }
        "PixelShuffle" => Op::PixelShuffle {
            factor: positive(&p, 0, 1, 16)?,
            channel_major: p.int_in(1, 0, 0, 1)? == 1,
        },
        "Interp" => {
            let mode = match p.int(0, 0)? {
                1 => InterpMode::Nearest,
                2 => InterpMode::Bilinear,
                3 => InterpMode::Bicubic,
                other => return Err(p.bad(0, format!("unsupported resize type {other}"))),
            };
            let scale_h = p.float(1, 1.0)?;
            let scale_w = p.float(2, 1.0)?;
            for (k, s) in [(1, scale_h), (2, scale_w)] {
                if !(s.is_finite() && s > 0.0 && s <= 64.0) {
                    return Err(p.bad(k, format!("scale {s} is outside (0, 64]")));
                }
            }
            if p.int(5, 0)? != 0 {
                return Err(p.bad(5, "dynamic target size is not supported"));
            }
            Op::Interp {
                mode,
                scale_h,
                scale_w,
                out_h: p.int_in(3, 0, 0, 1 << 16)? as usize,
                out_w: p.int_in(4, 0, 0, 1 << 16)? as usize,
                align_corner: p.int_in(6, 0, 0, 1)? == 1,
            }
        }
        "MemoryData" => {
            let w = p.int_in(0, 0, 0, 1 << 16)? as usize;
            let h = p.int_in(1, 0, 0, 1 << 16)? as usize;
            let c = p.int_in(2, 0, 0, 1 << 16)? as usize;
            if p.int(11, 0)? != 0 {
                return Err(p.bad(11, "4-D constants are not supported"));
            }
            let (dims, h, w, c) = match (w, h, c) {
                (w, 0, 0) if w > 0 => (1u8, 1, 1, w),
                (w, h, 0) if w > 0 && h > 0 => (2, h, w, 1),
                (w, h, c) if w > 0 && h > 0 && c > 0 => (3, h, w, c),
                _ => return Err(p.bad(0, format!("bad constant shape w={w} h={h} c={c}"))),
            };
            if h * w * c > MAX_WEIGHTS {
                return Err(p.bad(0, "constant is too large"));
            }
            // Stored planar (CHW) in the file.
            let chw = reader.raw_f32(h * w * c, name)?;
            let mut t = Tensor::from_chw(c, h, w, &chw);
            t.dims = dims;
            Op::MemoryData(t)
        }
        other => return Err(LoadErrorKind::UnknownLayer(other.to_string())),
    })
}

fn conv_spec(
    p: &Params,
    reader: &mut WeightReader,
    deconv: bool,
) -> Result<ConvSpec, LoadErrorKind> {
    let out_c = positive(p, 0, 0, MAX_CHANNELS)?;
    let kw = positive(p, 1, 0, MAX_KERNEL)?;
    let kh = positive(p, 11, kw as i32, MAX_KERNEL)?;
    let dil_w = positive(p, 2, 1, MAX_KERNEL)?;
    let dil_h = positive(p, 12, dil_w as i32, MAX_KERNEL)?;
    let stride_w = positive(p, 3, 1, MAX_KERNEL)?;
    let stride_h = positive(p, 13, stride_w as i32, MAX_KERNEL)?;
    let pad_left = p.int(4, 0)?;
    if pad_left < 0 {
        return Err(p.bad(4, "automatic (negative) padding modes are not supported"));
    }
    let pad_of = |k, d: i32| p.int_in(k, d, 0, 4096).map(|v| v as usize);
    let left = pad_of(4, 0)?;
    let top = pad_of(14, left as i32)?;
    let pad = Padding {
        left,
        top,
        right: pad_of(15, left as i32)?,
        bottom: pad_of(16, top as i32)?,
    };
    if p.float(18, 0.0)? != 0.0 && !deconv {
        return Err(p.bad(18, "non-zero pad value is not supported"));
    }
    let bias_term = p.int_in(5, 0, 0, 1)? == 1;
    let size = p.int_in(6, 0, 1, i32::MAX)? as usize;
    if p.int(8, 0)? != 0 {
        return Err(p.bad(8, "int8 quantised layers are not supported"));
    }
    if p.int(7, 1)? != 1 {
        return Err(p.bad(7, "grouped convolution is not supported"));
    }
    if !deconv && p.int(19, 0)? != 0 {
        return Err(p.bad(19, "dynamic weights are not supported"));
    }
    let (out_pad_right, out_pad_bottom) = if deconv {
        if p.int(20, 0)? != 0 || p.int(21, 0)? != 0 {
            return Err(p.bad(20, "fixed deconvolution output size is not supported"));
        }
        let r = pad_of(18, 0)?;
        (r, pad_of(19, r as i32)?)
    } else {
        (0, 0)
    };
    let per_in = out_c * kh * kw;
    if !size.is_multiple_of(per_in) || size > MAX_WEIGHTS {
        return Err(p.bad(
            6,
            format!("weight size {size} is not a multiple of {out_c}x{kh}x{kw}"),
        ));
    }
    let in_c = size / per_in;
    let act = p.fused_activation(out_c)?;
    let name = p.decl.name.as_str();
    let weights = reader.tagged(size, name)?;
    let bias = if bias_term {
        reader.raw_f32(out_c, name)?
    } else {
        vec![0.0; out_c]
    };
    Ok(ConvSpec {
        out_c,
        in_c,
        kh,
        kw,
        stride_h,
        stride_w,
        dil_h,
        dil_w,
        pad,
        out_pad_right,
        out_pad_bottom,
        weights,
        bias,
        act,
    })
}
