//! `vsr probe INPUT`: what a video is and whether VSR accepts it, before any work starts.

use std::path::PathBuf;

use clap::Args;

use vsr_media::video::{probe, Limits};

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Video file
    pub input: PathBuf,
    /// Print JSON (on refusal: `{"error": {"code", "message"}}`, exit status 2)
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &ProbeArgs) -> anyhow::Result<()> {
    match probe(&args.input, &Limits::default()) {
        Ok(info) if args.json => println!("{}", serde_json::to_string_pretty(&info)?),
        Ok(info) => {
            let v = &info.video;
            println!(
                "{}: {} in {}",
                args.input.display(),
                v.codec,
                info.container
            );
            println!(
                "  {}x{} {} ({}-bit), rotation {} deg",
                v.width, v.height, v.pix_fmt, v.bit_depth, v.rotation
            );
            let approx = if v.frames_exact { "" } else { "~" };
            println!(
                "  {:.3} fps, {approx}{} frames, {:.2} s",
                v.fps, v.frames, info.duration_s
            );
            println!(
                "  {} audio, {} subtitle stream(s), {} cover picture(s), {} attachment(s), {} bytes",
                info.audio_streams,
                info.subtitle_codecs.len(),
                info.cover_art.len(),
                info.attachments,
                info.size_bytes
            );
        }
        Err(e) if args.json => {
            println!(
                "{}",
                serde_json::json!({ "error": { "code": e.code(), "message": e.to_string() } })
            );
            std::process::exit(2);
        }
        Err(e) => anyhow::bail!("{} [{}]", e, e.code()),
    }
    Ok(())
}
