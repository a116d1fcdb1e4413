//! The transport that carries upscaled frames into the encoder with their exact timestamps: a
//! live Matroska stream (unknown segment size) with one uncompressed RGB video track and a
//! 1 ns timestamp scale, so any source time base converts without rounding loss.

use std::io::{self, Write};

/// Pixel layouts FFmpeg reads from an uncompressed Matroska track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawFormat {
    /// 8 bits per channel (`rgb24`).
    Rgb24,
    /// 16 bits per channel, little-endian (`rgb48le`), for sources above 8 bits.
    Rgb48,
}

impl RawFormat {
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            RawFormat::Rgb24 => 3,
            RawFormat::Rgb48 => 6,
        }
    }

    pub fn ffmpeg_name(self) -> &'static str {
        match self {
            RawFormat::Rgb24 => "rgb24",
            RawFormat::Rgb48 => "rgb48le",
        }
    }

    fn fourcc(self) -> [u8; 4] {
        match self {
            RawFormat::Rgb24 => *b"RGB\x18",
            RawFormat::Rgb48 => *b"RGB\x30",
        }
    }
}

/// Writes frames as a Matroska stream FFmpeg can read from a pipe.
pub struct MkvWriter<W: Write> {
    out: W,
    frame_bytes: usize,
}

impl<W: Write> MkvWriter<W> {
    /// Writes the headers for a `width x height` track of `format` frames, each shown for
    /// `frame_ns` unless the next one comes sooner. The duration matters for the last frame
    /// alone: an MP4 muxer ends its edit list with it, and a zero would cut that frame.
    pub fn start(
        mut out: W,
        width: u32,
        height: u32,
        format: RawFormat,
        frame_ns: u64,
    ) -> io::Result<Self> {
        let ebml_header = [
            element(&[0x42, 0x86], &uint(1)),    // EBMLVersion
            element(&[0x42, 0xF7], &uint(1)),    // EBMLReadVersion
            element(&[0x42, 0xF2], &uint(4)),    // EBMLMaxIDLength
            element(&[0x42, 0xF3], &uint(8)),    // EBMLMaxSizeLength
            element(&[0x42, 0x82], b"matroska"), // DocType
            element(&[0x42, 0x87], &uint(4)),    // DocTypeVersion
            element(&[0x42, 0x85], &uint(2)),    // DocTypeReadVersion
        ]
        .concat();
        out.write_all(&element(&[0x1A, 0x45, 0xDF, 0xA3], &ebml_header))?;
        // Segment of unknown size: the stream ends when the pipe closes.
        out.write_all(&[
            0x18, 0x53, 0x80, 0x67, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        ])?;
        let info = [
            element(&[0x2A, 0xD7, 0xB1], &uint(1)), // TimestampScale: 1 ns
            element(&[0x4D, 0x80], b"vsr"),         // MuxingApp
            element(&[0x57, 0x41], b"vsr"),         // WritingApp
        ]
        .concat();
        out.write_all(&element(&[0x15, 0x49, 0xA9, 0x66], &info))?;
        let video = [
            element(&[0xB0], &uint(width as u64)),          // PixelWidth
            element(&[0xBA], &uint(height as u64)),         // PixelHeight
            element(&[0x2E, 0xB5, 0x24], &format.fourcc()), // ColourSpace
        ]
        .concat();
        let track = [
            element(&[0xD7], &uint(1)),                           // TrackNumber
            element(&[0x73, 0xC5], &uint(1)),                     // TrackUID
            element(&[0x83], &uint(1)),                           // TrackType: video
            element(&[0x86], b"V_UNCOMPRESSED"),                  // CodecID
            element(&[0x23, 0xE3, 0x83], &uint(frame_ns.max(1))), // DefaultDuration
            element(&[0xE0], &video),
        ]
        .concat();
        out.write_all(&element(
            &[0x16, 0x54, 0xAE, 0x6B],
            &element(&[0xAE], &track),
        ))?;
        let frame_bytes = width as usize * height as usize * format.bytes_per_pixel();
        Ok(MkvWriter { out, frame_bytes })
    }

    /// Writes one frame shown at `pts_ns` nanoseconds (one cluster per frame, so any
    /// timestamp fits without relative offsets).
    pub fn frame(&mut self, pts_ns: u64, data: &[u8]) -> io::Result<()> {
        if data.len() != self.frame_bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "frame size does not match the track",
            ));
        }
        let timestamp = element(&[0xE7], &uint(pts_ns));
        // SimpleBlock: track 1, relative timestamp 0, keyframe.
        let block_header = [0x81, 0x00, 0x00, 0x80];
        let block_len = (block_header.len() + data.len()) as u64;
        let cluster_len = timestamp.len() as u64 + 1 + 8 + block_len;
        self.out.write_all(&[0x1F, 0x43, 0xB6, 0x75])?;
        self.out.write_all(&size8(cluster_len))?;
        self.out.write_all(&timestamp)?;
        self.out.write_all(&[0xA3])?;
        self.out.write_all(&size8(block_len))?;
        self.out.write_all(&block_header)?;
        self.out.write_all(data)
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

fn element(id: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = id.to_vec();
    v.extend(size8(body.len() as u64));
    v.extend(body);
    v
}

/// An EBML size in its 8-byte form (marker 0x01 then 56 bits).
fn size8(n: u64) -> [u8; 8] {
    let mut b = n.to_be_bytes();
    b[0] = 0x01;
    b
}

/// An unsigned integer in as few bytes as it needs (at least one).
fn uint(n: u64) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let skip = (n.leading_zeros() / 8).min(7) as usize;
    bytes[skip..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_sizes() {
        assert_eq!(uint(0), vec![0]);
        assert_eq!(uint(1), vec![1]);
        assert_eq!(uint(0x1234), vec![0x12, 0x34]);
        assert_eq!(size8(5), [1, 0, 0, 0, 0, 0, 0, 5]);
    }
}
