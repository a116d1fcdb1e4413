//! PNG in and out, and the conversion between 8-bit RGB and the runtime's 0..1 frames.

use std::path::Path;

use vsr_runtime::Tensor;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {reason}")]
    Decode { path: String, reason: String },
    #[error("{path}: {reason}")]
    Encode { path: String, reason: String },
    /// An animated PNG or WebP: reading it as a picture would keep its first frame only.
    #[error("{path}: an animated image; only still pictures are upscaled as images")]
    Animated { path: String },
}

impl ImageError {
    /// The stable code for this error.
    pub fn code(&self) -> crate::code::Code {
        use crate::code::Code;
        match self {
            ImageError::Decode { .. } => Code::UnreadableMedia,
            ImageError::Encode { .. } => Code::IoError,
            ImageError::Animated { .. } => Code::UnsupportedMediaType,
        }
    }
}

/// An 8-bit RGB image, row-major, 3 bytes per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgb8 {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

/// Largest image accepted, per side: a corrupt header must not make us allocate gigabytes.
const MAX_SIDE: u32 = 16384;

pub fn read_png(path: &Path) -> Result<Rgb8, ImageError> {
    let err = |reason: String| ImageError::Decode {
        path: path.display().to_string(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(|e| err(e.to_string()))?;
    let (w, h) = (reader.info().width, reader.info().height);
    if w > MAX_SIDE || h > MAX_SIDE {
        return Err(err(format!("{w}x{h} is larger than {MAX_SIDE}x{MAX_SIDE}")));
    }
    let mut buf = vec![0; reader.output_buffer_size()];
    let frame = reader
        .next_frame(&mut buf)
        .map_err(|e| err(e.to_string()))?;
    let data = &buf[..frame.buffer_size()];
    let channels = match frame.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => return Err(err("indexed colour was not expanded".into())),
    };
    let pixels = data
        .chunks_exact(channels)
        .flat_map(|p| match channels {
            1 | 2 => [p[0], p[0], p[0]],
            _ => [p[0], p[1], p[2]],
        })
        .collect();
    Ok(Rgb8 {
        width: w as usize,
        height: h as usize,
        pixels,
    })
}

pub fn write_png(path: &Path, img: &Rgb8) -> Result<(), ImageError> {
    let err = |reason: String| ImageError::Encode {
        path: path.display().to_string(),
        reason,
    };
    let file = std::fs::File::create(path).map_err(|e| err(e.to_string()))?;
    encode_png(img, std::io::BufWriter::new(file)).map_err(|e| err(e.to_string()))
}

/// The image as PNG bytes (for the API's previews).
pub fn png_bytes(img: &Rgb8) -> Vec<u8> {
    let mut out = Vec::new();
    encode_png(img, &mut out).expect("encoding to memory cannot fail for a valid image");
    out
}

fn encode_png(img: &Rgb8, out: impl std::io::Write) -> Result<(), png::EncodingError> {
    let mut enc = png::Encoder::new(out, img.width as u32, img.height as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header()?;
    writer.write_image_data(&img.pixels)?;
    writer.finish()
}

impl Rgb8 {
    pub fn to_tensor(&self) -> Tensor {
        Tensor::from_vec(
            self.height,
            self.width,
            3,
            self.pixels.iter().map(|&v| v as f32 / 255.0).collect(),
        )
    }

    /// Rounds to nearest and clamps, as the reference tools do (`v * 255 + 0.5`, truncated).
    pub fn from_tensor(t: &Tensor) -> Rgb8 {
        let pixels = t
            .data
            .iter()
            .map(|&v| (v * 255.0 + 0.5).clamp(0.0, 255.0) as u8)
            .collect();
        Rgb8 {
            width: t.w,
            height: t.h,
            pixels,
        }
    }
}
