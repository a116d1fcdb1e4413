//! The `.bin` weight file: blobs back to back in layer order, with no index.
//!
//! Weight matrices start with a 4-byte tag saying how the values are stored; biases, slopes and
//! constants are raw fp32. fp16 values are widened to f32 once here, so the executor only ever
//! sees f32.

use crate::error::LoadErrorKind;

const TAG_FP16: u32 = 0x0130_6B47;
const TAG_FP32: u32 = 0x0000_0000;
/// Written by some converters for plain fp32 data.
const TAG_FP32_ALT: u32 = 0x0002_C056;

/// Reads blobs from the bytes of a `.bin` file, tracking the offset for error messages.
pub struct WeightReader<'a> {
    data: &'a [u8],
    offset: usize,
}

impl<'a> WeightReader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, offset: 0 }
    }

    pub fn offset(&self) -> u64 {
        self.offset as u64
    }

    pub fn remaining(&self) -> u64 {
        (self.data.len() - self.offset) as u64
    }

    fn take(&mut self, bytes: usize, layer: &str) -> Result<&'a [u8], LoadErrorKind> {
        if bytes > self.data.len() - self.offset {
            return Err(LoadErrorKind::Truncated {
                layer: layer.to_string(),
                needed: bytes as u64,
                available: self.remaining(),
            });
        }
        let s = &self.data[self.offset..self.offset + bytes];
        self.offset += bytes;
        Ok(s)
    }

    /// Reads `count` raw fp32 values (biases, slopes, constants).
    pub fn raw_f32(&mut self, count: usize, layer: &str) -> Result<Vec<f32>, LoadErrorKind> {
        let bytes = count.checked_mul(4).ok_or_else(|| too_big(layer))?;
        let s = self.take(bytes, layer)?;
        Ok(s.chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    /// Reads `count` tagged weight values (fp16 or fp32), widened to f32.
    pub fn tagged(&mut self, count: usize, layer: &str) -> Result<Vec<f32>, LoadErrorKind> {
        let t = self.take(4, layer)?;
        let tag = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
        match tag {
            TAG_FP16 => {
                // fp16 payloads are padded to a multiple of 4 bytes.
                let bytes = count.checked_mul(2).ok_or_else(|| too_big(layer))?;
                let padded = bytes.div_ceil(4) * 4;
                let s = self.take(padded, layer)?;
                Ok(s[..bytes]
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect())
            }
            TAG_FP32 | TAG_FP32_ALT => self.raw_f32(count, layer),
            other => {
                self.offset -= 4;
                Err(LoadErrorKind::UnsupportedEncoding {
                    layer: layer.to_string(),
                    tag: other,
                })
            }
        }
    }
}

fn too_big(layer: &str) -> LoadErrorKind {
    LoadErrorKind::Truncated {
        layer: layer.to_string(),
        needed: u64::MAX,
        available: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fp16_with_padding_and_fp32() {
        let mut bytes = TAG_FP16.to_le_bytes().to_vec();
        for v in [1.0f32, -2.0, 0.5] {
            bytes.extend(half::f16::from_f32(v).to_le_bytes());
        }
        bytes.extend([0, 0]); // padding to 4 bytes
        bytes.extend(TAG_FP32.to_le_bytes());
        bytes.extend(3.0f32.to_le_bytes());
        let mut r = WeightReader::new(&bytes);
        assert_eq!(r.tagged(3, "l").unwrap(), vec![1.0, -2.0, 0.5]);
        assert_eq!(r.tagged(1, "l").unwrap(), vec![3.0]);
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn truncated_and_unknown_tags_are_errors() {
        let bytes = TAG_FP16.to_le_bytes();
        assert!(matches!(
            WeightReader::new(&bytes).tagged(2, "l"),
            Err(LoadErrorKind::Truncated { .. })
        ));
        let bytes = 0xdead_beefu32.to_le_bytes();
        assert!(matches!(
            WeightReader::new(&bytes).tagged(1, "l"),
            Err(LoadErrorKind::UnsupportedEncoding {
                tag: 0xdead_beef,
                ..
            })
        ));
    }
}
