//! One `vsr upscale` per output at a time. Two runs writing the same file would share its
//! work directory: with the same settings both assemble the output and the first to finish
//! removes the segments under the other; with other settings (or `--no-resume`) each removes
//! the other's work as it starts. The second run is refused instead, before its models load.
//!
//! The lock lives in the cache folder, not beside the output: a run killed outright leaves
//! its lock file behind, and nothing but results may be left beside an output. The OS drops
//! the lock itself when the process dies, so a leftover file never blocks a later run. The
//! service does not take it: a worker taking over a task whose lease lapsed must not be
//! stopped by the stuck worker it replaces.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use vsr_media::code::Code;

/// Held for as long as this process writes the output; dropped, the output is free.
pub struct OutputLock {
    _file: std::fs::File,
}

/// The output's full name with symbolic links resolved in its folder: two spellings of one
/// file must meet on one lock.
fn identity(output: &Path) -> PathBuf {
    let absolute = std::path::absolute(output).unwrap_or_else(|_| output.to_path_buf());
    match (absolute.parent(), absolute.file_name()) {
        (Some(folder), Some(name)) => std::fs::canonicalize(folder)
            .map(|f| f.join(name))
            .unwrap_or(absolute),
        _ => absolute,
    }
}

/// Takes `output`'s lock under `locks` (a folder, made if missing), or says which process
/// holds it.
pub fn lock_output(locks: &Path, output: &Path) -> anyhow::Result<OutputLock> {
    let name: String = Sha256::digest(identity(output).as_os_str().as_encoded_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    let path = locks.join(format!("{name}.lock"));
    let io_error = |e: std::io::Error| {
        anyhow::anyhow!(
            "{}: cannot take the output's lock: {e} [{}]",
            path.display(),
            Code::IoError
        )
    };
    std::fs::create_dir_all(locks).map_err(io_error)?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_error)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => String::new(),
                pid => format!(" (process {pid})"),
            };
            anyhow::bail!(
                "{}: another vsr upscale{holder} is writing this output; wait for it to \
                 finish or choose another output name [{}]",
                output.display(),
                Code::OutputInUse
            );
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io_error(e)),
    }
    // Who holds it, for the message above; the lock itself is what counts.
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| write!(file, "{}", std::process::id()));
    Ok(OutputLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One holder per output, whatever the spelling; another output is free; a dropped lock
    /// frees its output.
    #[test]
    fn one_holder_per_output() {
        let dir = tempfile::tempdir().unwrap();
        let locks = dir.path().join("locks");
        let out = dir.path().join("out.mp4");
        let held = lock_output(&locks, &out).unwrap();
        let again = dir.path().join(".").join("out.mp4");
        let refused = lock_output(&locks, &again).err().unwrap().to_string();
        assert!(refused.contains("[output_in_use]"), "{refused}");
        assert!(
            refused.contains(&format!("process {}", std::process::id())),
            "{refused}"
        );
        let other = lock_output(&locks, &dir.path().join("other.mp4")).unwrap();
        drop(held);
        lock_output(&locks, &out).unwrap();
        drop(other);
    }
}
