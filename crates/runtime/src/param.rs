//! The `.param` text format: one layer per line with typed `key=value` parameters.
//!
//! This module only tokenises and checks the file's structure; what each key means is decided
//! when the declarations are turned into typed operators (see `graph`).

use std::collections::BTreeMap;

use crate::error::LoadErrorKind;

/// The magic number on the first line of every `.param` file.
pub const MAGIC: &str = "7767517";

/// Caps that keep a hostile file from asking for absurd allocations before we notice.
const MAX_LAYERS: usize = 100_000;
const MAX_BLOBS_PER_LAYER: usize = 4096;
const MAX_ARRAY_LEN: usize = 4096;

/// One parameter value as written in the file. ncnn decides int vs float by the text's form.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Int(i32),
    Float(f32),
    IntArray(Vec<i32>),
    FloatArray(Vec<f32>),
}

/// One layer line of a `.param` file.
#[derive(Debug, Clone)]
pub struct LayerDecl {
    pub kind: String,
    pub name: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub params: BTreeMap<i32, ParamValue>,
    /// 1-based line number, for error messages.
    pub line: usize,
}

/// A parsed `.param` file.
#[derive(Debug, Clone)]
pub struct ParamFile {
    pub layers: Vec<LayerDecl>,
    pub blob_count: usize,
}

/// A parse error and the 1-based line where it happened.
pub type ParseError = (usize, LoadErrorKind);

fn syntax(line: usize, msg: impl Into<String>) -> ParseError {
    (line, LoadErrorKind::Syntax(msg.into()))
}

/// Parses the text of a `.param` file.
pub fn parse(text: &str) -> Result<ParamFile, ParseError> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty());

    let (n, magic) = lines
        .next()
        .ok_or_else(|| (1, LoadErrorKind::BadMagic(String::new())))?;
    if magic != MAGIC {
        return Err((n, LoadErrorKind::BadMagic(magic.chars().take(32).collect())));
    }
    let (n, counts) = lines
        .next()
        .ok_or_else(|| syntax(n + 1, "missing layer and blob counts"))?;
    let mut it = counts.split_whitespace();
    let layer_count = parse_count(it.next(), n, "layer count")?;
    let blob_count = parse_count(it.next(), n, "blob count")?;
    if it.next().is_some() {
        return Err(syntax(
            n,
            "expected exactly two numbers: layer count and blob count",
        ));
    }
    if layer_count > MAX_LAYERS {
        return Err(syntax(
            n,
            format!("{layer_count} layers is more than the {MAX_LAYERS} allowed"),
        ));
    }

    let mut layers = Vec::with_capacity(layer_count);
    for (n, line) in lines {
        if layers.len() == layer_count {
            return Err((
                n,
                LoadErrorKind::CountMismatch {
                    what: "layers",
                    declared: layer_count,
                    found: layers.len() + 1,
                },
            ));
        }
        layers.push(parse_layer(n, line)?);
    }
    if layers.len() != layer_count {
        let last = layers.last().map_or(2, |l| l.line);
        return Err((
            last,
            LoadErrorKind::CountMismatch {
                what: "layers",
                declared: layer_count,
                found: layers.len(),
            },
        ));
    }
    Ok(ParamFile { layers, blob_count })
}

fn parse_count(tok: Option<&str>, line: usize, what: &str) -> Result<usize, ParseError> {
    let tok = tok.ok_or_else(|| syntax(line, format!("missing {what}")))?;
    tok.parse::<usize>().map_err(|_| {
        syntax(
            line,
            format!("{what} {tok:?} is not a non-negative integer"),
        )
    })
}

fn parse_layer(n: usize, line: &str) -> Result<LayerDecl, ParseError> {
    let mut tokens = line.split_whitespace();
    let kind = tokens
        .next()
        .ok_or_else(|| syntax(n, "empty layer line"))?
        .to_string();
    let name = tokens
        .next()
        .ok_or_else(|| syntax(n, "missing layer name"))?
        .to_string();
    let n_in = parse_count(tokens.next(), n, "input count")?;
    let n_out = parse_count(tokens.next(), n, "output count")?;
    if n_in > MAX_BLOBS_PER_LAYER || n_out > MAX_BLOBS_PER_LAYER {
        return Err(syntax(n, "too many inputs or outputs"));
    }
    let mut take_names = |count: usize, what: &str| -> Result<Vec<String>, ParseError> {
        (0..count)
            .map(|i| {
                tokens.next().map(str::to_string).ok_or_else(|| {
                    syntax(
                        n,
                        format!("layer {name:?} lists {count} {what}s but only {i} names follow"),
                    )
                })
            })
            .collect()
    };
    let inputs = take_names(n_in, "input")?;
    let outputs = take_names(n_out, "output")?;

    let mut params = BTreeMap::new();
    for tok in tokens {
        let (key, value) = parse_param(n, tok)?;
        if params.insert(key, value).is_some() {
            return Err(syntax(n, format!("parameter {key} given twice")));
        }
    }
    Ok(LayerDecl {
        kind,
        name,
        inputs,
        outputs,
        params,
        line: n,
    })
}

/// Parses `k=v`; keys at or below -23300 hold arrays written as `count,v1,...,vcount`.
fn parse_param(n: usize, tok: &str) -> Result<(i32, ParamValue), ParseError> {
    let (k, v) = tok
        .split_once('=')
        .ok_or_else(|| syntax(n, format!("expected key=value, found {tok:?}")))?;
    let key: i32 = k
        .parse()
        .map_err(|_| syntax(n, format!("parameter key {k:?} is not an integer")))?;
    if key <= -23300 {
        let id = -(key + 23300);
        let mut parts = v.split(',');
        let count = parse_count(parts.next(), n, "array length")?;
        if count > MAX_ARRAY_LEN {
            return Err(syntax(n, format!("array of {count} values is too long")));
        }
        let items: Vec<&str> = parts.collect();
        if items.len() != count {
            return Err(syntax(
                n,
                format!(
                    "array {key} declares {count} values but has {}",
                    items.len()
                ),
            ));
        }
        let value = if items.iter().any(|s| is_float(s)) {
            ParamValue::FloatArray(
                items
                    .iter()
                    .map(|s| parse_float(n, s))
                    .collect::<Result<_, _>>()?,
            )
        } else {
            ParamValue::IntArray(
                items
                    .iter()
                    .map(|s| parse_int(n, s))
                    .collect::<Result<_, _>>()?,
            )
        };
        Ok((id, value))
    } else if is_float(v) {
        Ok((key, ParamValue::Float(parse_float(n, v)?)))
    } else {
        Ok((key, ParamValue::Int(parse_int(n, v)?)))
    }
}

fn is_float(s: &str) -> bool {
    s.contains(['.', 'e', 'E'])
        || s.eq_ignore_ascii_case("nan")
        || s.to_ascii_lowercase().contains("inf")
}

fn parse_int(n: usize, s: &str) -> Result<i32, ParseError> {
    s.parse()
        .map_err(|_| syntax(n, format!("{s:?} is not an integer")))
}

fn parse_float(n: usize, s: &str) -> Result<f32, ParseError> {
    s.parse()
        .map_err(|_| syntax(n, format!("{s:?} is not a number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_layers_and_arrays() {
        let text = "7767517\n2 2\nInput in 0 1 data\nConvolution c 1 1 data out 0=8 1=3 -23310=1,1.000000e-01 -23309=2,4,-4\n";
        let f = parse(text).unwrap();
        assert_eq!(f.layers.len(), 2);
        let c = &f.layers[1];
        assert_eq!(c.params[&0], ParamValue::Int(8));
        assert_eq!(c.params[&10], ParamValue::FloatArray(vec![0.1]));
        assert_eq!(c.params[&9], ParamValue::IntArray(vec![4, -4]));
        assert_eq!(c.line, 4);
    }

    #[test]
    fn rejects_wrong_magic_and_counts() {
        assert!(matches!(
            parse("1234\n0 0\n"),
            Err((1, LoadErrorKind::BadMagic(_)))
        ));
        assert!(matches!(
            parse("7767517\n2 1\nInput in 0 1 data\n"),
            Err((3, LoadErrorKind::CountMismatch { .. }))
        ));
        assert!(matches!(
            parse("7767517\n1 1\nInput in 0 2 data\n"),
            Err((3, LoadErrorKind::Syntax(_)))
        ));
        assert!(matches!(
            parse("7767517\n1 1\nInput in 0 1 d -23310=3,1,2\n"),
            Err((3, LoadErrorKind::Syntax(_)))
        ));
    }
}
