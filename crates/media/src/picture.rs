//! Still images in and out, as people have them: PNG (8 and 16 bits per channel), JPEG and
//! WebP, read and written by the `image` crate. Reading applies the EXIF orientation (so a
//! phone's portrait photo stays upright) and keeps the ICC profile, which goes into the
//! output. An alpha channel is kept: the model upscales the colour, and the alpha is resized
//! beside it (Lanczos-3), as the reference tools resize theirs.

use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageEncoder, ImageReader};
use vsr_runtime::Tensor;

use crate::image::ImageError;

/// Largest image accepted, per side: a corrupt or hostile header must not make us allocate
/// gigabytes.
const MAX_SIDE: u32 = 16384;
/// Largest decoded image, in bytes.
const MAX_DECODED: u64 = 2 << 30;
/// JPEG quality of results: high, since the point of upscaling is detail.
const JPEG_QUALITY: u8 = 95;

/// The file formats read and written, by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Png,
    Jpeg,
    Webp,
}

impl Format {
    /// The format a file name's extension names, if it is one of ours.
    pub fn of_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "png" => Some(Format::Png),
            "jpg" | "jpeg" => Some(Format::Jpeg),
            "webp" => Some(Format::Webp),
            _ => None,
        }
    }

    /// The extension a file of this format is written with.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Jpeg => "jpg",
            Format::Webp => "webp",
        }
    }

    /// The media type of a file of this format.
    pub fn mime(self) -> &'static str {
        match self {
            Format::Png => "image/png",
            Format::Jpeg => "image/jpeg",
            Format::Webp => "image/webp",
        }
    }

    /// Whether the format keeps an alpha channel.
    pub fn has_alpha(self) -> bool {
        !matches!(self, Format::Jpeg)
    }
}

/// A decoded image, upright.
#[derive(Debug, Clone)]
pub struct Picture {
    /// Colour, `h x w x 3`, 0..1: what the models take and give.
    pub color: Tensor,
    /// Opacity, one value per pixel (0..1), when the image has an alpha channel.
    pub alpha: Option<Tensor>,
    /// 16 when the source has more than 8 bits per channel (PNG keeps them), else 8.
    pub bits: u8,
    /// The source's colour profile, carried to the output.
    pub icc: Option<Vec<u8>>,
    /// The format the source's content was in (whatever its file was called).
    pub format: Format,
}

impl Picture {
    pub fn width(&self) -> usize {
        self.color.w
    }

    pub fn height(&self) -> usize {
        self.color.h
    }

    /// The picture with `color` (the model's output) as its colour and its alpha resized to
    /// match.
    pub fn with_color(&self, color: Tensor) -> Picture {
        let alpha = self
            .alpha
            .as_ref()
            .map(|a| crate::resample::lanczos3(a, color.w, color.h));
        Picture {
            color,
            alpha,
            bits: self.bits,
            icc: self.icc.clone(),
            format: self.format,
        }
    }
}

/// Reads a PNG, JPEG or WebP file (by its content, whatever its name).
pub fn read(path: &Path) -> Result<Picture, ImageError> {
    let err = |reason: String| ImageError::Decode {
        path: path.display().to_string(),
        reason,
    };
    let mut reader = ImageReader::open(path)
        .map_err(|e| err(e.to_string()))?
        .with_guessed_format()
        .map_err(|e| err(e.to_string()))?;
    let format = match reader.format() {
        Some(image::ImageFormat::Png) => Format::Png,
        Some(image::ImageFormat::Jpeg) => Format::Jpeg,
        Some(image::ImageFormat::WebP) => Format::Webp,
        _ => return Err(err("not a PNG, JPEG or WebP image".into())),
    };
    if is_animated(path, format).map_err(|e| err(e.to_string()))? {
        return Err(ImageError::Animated {
            path: path.display().to_string(),
        });
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODED);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| err(e.to_string()))?;
    let icc = decoder.icc_profile().ok().flatten();
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| err(e.to_string()))?;
    img.apply_orientation(orientation);
    let bits = if img.color().bytes_per_pixel() / img.color().channel_count() > 1 {
        16
    } else {
        8
    };
    let has_alpha = img.color().has_alpha();
    let rgba = img.into_rgba32f();
    let (w, h) = (rgba.width() as usize, rgba.height() as usize);
    let mut color = Vec::with_capacity(w * h * 3);
    let mut alpha = Vec::with_capacity(if has_alpha { w * h } else { 0 });
    for p in rgba.pixels() {
        color.extend_from_slice(&p.0[..3]);
        if has_alpha {
            alpha.push(p.0[3]);
        }
    }
    Ok(Picture {
        color: Tensor::from_vec(h, w, 3, color),
        alpha: has_alpha.then(|| Tensor::from_vec(h, w, 1, alpha)),
        bits,
        icc,
        format,
    })
}

/// Whether `path` (of `format`) is an animation: an APNG or an animated WebP, whose decoders
/// would give its first frame as if it were the whole picture.
fn is_animated(path: &Path, format: Format) -> image::ImageResult<bool> {
    let file =
        || -> image::ImageResult<_> { Ok(std::io::BufReader::new(std::fs::File::open(path)?)) };
    match format {
        Format::Png => image::codecs::png::PngDecoder::new(file()?)?.is_apng(),
        Format::Webp => Ok(image::codecs::webp::WebPDecoder::new(file()?)?.has_animation()),
        Format::Jpeg => Ok(false),
    }
}

/// Writes the picture in the format `path`'s extension names: 16 bits per channel in PNG when
/// the source had them, 8 otherwise; alpha where the format keeps it (not JPEG). The file is
/// written beside `path` and renamed into place, so a failed write leaves no half image.
pub fn write(path: &Path, picture: &Picture) -> Result<(), ImageError> {
    let err = |reason: String| ImageError::Encode {
        path: path.display().to_string(),
        reason,
    };
    let format = Format::of_path(path)
        .ok_or_else(|| err("the name must end in .png, .jpg, .jpeg or .webp".into()))?;
    let alpha = picture.alpha.as_ref().filter(|_| format.has_alpha());
    let (w, h) = (picture.width(), picture.height());
    let channels = if alpha.is_some() { 4 } else { 3 };
    let wide = picture.bits > 8 && format == Format::Png;
    // Rounded to nearest and clamped, as the reference tools do (`v * max + 0.5`, truncated).
    let samples = (0..w * h).flat_map(|i| {
        let rgb = &picture.color.data[i * 3..i * 3 + 3];
        let a = alpha.map(|a| a.data[i]);
        rgb.iter().copied().chain(a)
    });
    let quantise = |v: f32, max: f32| (v * max + 0.5).clamp(0.0, max);
    let bytes: Vec<u8> = if wide {
        samples
            .flat_map(|v| (quantise(v, 65535.0) as u16).to_ne_bytes())
            .collect()
    } else {
        samples.map(|v| quantise(v, 255.0) as u8).collect()
    };
    use image::ExtendedColorType as C;
    let color = match (channels, wide) {
        (4, true) => C::Rgba16,
        (_, true) => C::Rgb16,
        (4, false) => C::Rgba8,
        _ => C::Rgb8,
    };
    let partial = path.with_file_name(format!(
        ".{}.partial",
        path.file_name()
            .map_or("image".into(), |n| n.to_string_lossy())
    ));
    let written = (|| -> Result<(), String> {
        let file = std::fs::File::create(&partial).map_err(|e| e.to_string())?;
        let out = std::io::BufWriter::new(file);
        let (w, h) = (w as u32, h as u32);
        let icc = picture.icc.clone();
        let result = match format {
            Format::Png => encode(
                image::codecs::png::PngEncoder::new(out),
                icc,
                &bytes,
                w,
                h,
                color,
            ),
            Format::Jpeg => encode(
                image::codecs::jpeg::JpegEncoder::new_with_quality(out, JPEG_QUALITY),
                icc,
                &bytes,
                w,
                h,
                color,
            ),
            Format::Webp => encode(
                image::codecs::webp::WebPEncoder::new_lossless(out),
                icc,
                &bytes,
                w,
                h,
                color,
            ),
        };
        result.map_err(|e| e.to_string())?;
        std::fs::rename(&partial, path).map_err(|e| e.to_string())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written.map_err(err)
}

/// Encodes with the ICC profile when the encoder takes one.
fn encode(
    mut encoder: impl ImageEncoder,
    icc: Option<Vec<u8>>,
    bytes: &[u8],
    w: u32,
    h: u32,
    color: image::ExtendedColorType,
) -> image::ImageResult<()> {
    if let Some(icc) = icc {
        // A format without profiles writes none; the pixels are the same.
        let _ = encoder.set_icc_profile(icc);
    }
    encoder.write_image(bytes, w, h, color)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> image::RgbaImage {
        image::RgbaImage::from_fn(w, h, |x, y| {
            image::Rgba([
                (x * 7) as u8,
                (y * 11) as u8,
                ((x + y) * 3) as u8,
                (x * 13 % 256) as u8,
            ])
        })
    }

    /// Every format round-trips its pixels (lossless ones exactly), alpha where it has one.
    #[test]
    fn formats_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.png");
        gradient(23, 17).save(&src).unwrap();
        let picture = read(&src).unwrap();
        assert_eq!(
            (picture.width(), picture.height(), picture.bits),
            (23, 17, 8)
        );
        assert!(picture.alpha.is_some());
        for name in ["a.png", "a.webp", "a.jpg"] {
            let out = dir.path().join(name);
            write(&out, &picture).unwrap();
            let back = read(&out).unwrap();
            assert_eq!((back.width(), back.height()), (23, 17), "{name}");
            let worst = picture
                .color
                .data
                .iter()
                .zip(&back.color.data)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            if name == "a.jpg" {
                assert!(back.alpha.is_none());
                assert!(worst < 0.2, "{name}: {worst}");
            } else {
                assert_eq!(
                    back.alpha.as_ref().unwrap().data,
                    picture.alpha.as_ref().unwrap().data
                );
                assert!(worst < 1e-6, "{name}: {worst}");
            }
        }
    }

    /// 16 bits per channel survive a PNG round trip; EXIF orientation is applied.
    #[test]
    fn sixteen_bits_kept_and_orientation_applied() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("deep.png");
        let deep = image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(9, 5, |x, y| {
            image::Rgb([(x * 7001) as u16, (y * 13001) as u16, 12345])
        });
        deep.save(&src).unwrap();
        let picture = read(&src).unwrap();
        assert_eq!(picture.bits, 16);
        let out = dir.path().join("out.png");
        write(&out, &picture).unwrap();
        let back = image::open(&out).unwrap().into_rgb16();
        assert_eq!(back.as_raw(), deep.as_raw());
        // A JPEG whose EXIF says "rotate 90": read upright, so its sides swap.
        let photo = dir.path().join("photo.jpg");
        image::RgbImage::from_pixel(8, 4, image::Rgb([200, 10, 10]))
            .save(&photo)
            .unwrap();
        let jpeg = std::fs::read(&photo).unwrap();
        let tiff: &[u8] = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0\0\0\0\0";
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(tiff);
        let mut rotated = jpeg[..2].to_vec();
        rotated.extend_from_slice(&[0xff, 0xe1]);
        rotated.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
        rotated.extend_from_slice(&app1);
        rotated.extend_from_slice(&jpeg[2..]);
        std::fs::write(&photo, rotated).unwrap();
        let upright = read(&photo).unwrap();
        assert_eq!((upright.width(), upright.height()), (4, 8));
        assert!(read(&dir.path().join("missing.png")).is_err());
        std::fs::write(dir.path().join("bad.jpg"), b"\xff\xd8\xff\xe0 not really").unwrap();
        assert!(read(&dir.path().join("bad.jpg")).is_err());
    }
}
