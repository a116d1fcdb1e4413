//! One `vsr upscale` per output at a time. Two runs writing the same file would share its
//! work directory: with the same settings both assemble the output and the first to finish
//! removes the segments under the other; with other settings (or `--no-resume`) each removes
//! the other's work as it starts. The second run is refused instead, before its models load.
//!
//! The lock lives in the cache folder (or, where that cannot hold one, in a folder of the
//! user's in the system's temporary folder), not beside the output: a run killed outright leaves
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

/// Where lock files are made, in order: the cache folder's `locks`, else (a read-only home,
/// say) a folder of this user's in the system's temporary folder.
fn lock_folders(cache_dir: &Path) -> [PathBuf; 2] {
    use std::os::unix::fs::MetadataExt;
    let user = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
    [
        cache_dir.join("locks"),
        std::env::temp_dir().join(format!("vsr-locks-{user}")),
    ]
}

/// Takes `output`'s lock in the first folder of [`lock_folders`] where a lock file can be
/// made, or says which process holds it. `None` where no folder takes one: the run goes on
/// unguarded (the caller says so) rather than not at all.
pub fn lock_output(cache_dir: &Path, output: &Path) -> anyhow::Result<Option<OutputLock>> {
    let name: String = Sha256::digest(identity(output).as_os_str().as_encoded_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    for folder in lock_folders(cache_dir) {
        let opened = std::fs::create_dir_all(&folder).and_then(|()| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(folder.join(format!("{name}.lock")))
        });
        let Ok(mut file) = opened else {
            continue;
        };
        match file.try_lock() {
            Ok(()) => {
                // Who holds it, for the message below; the lock itself is what counts.
                let _ = file
                    .set_len(0)
                    .and_then(|()| file.rewind())
                    .and_then(|()| write!(file, "{}", std::process::id()));
                return Ok(Some(OutputLock { _file: file }));
            }
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
            Err(std::fs::TryLockError::Error(_)) => continue,
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One holder per output, whatever the spelling; another output is free; a dropped lock
    /// frees its output.
    #[test]
    fn one_holder_per_output() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let out = dir.path().join("out.mp4");
        let held = lock_output(&cache, &out).unwrap();
        assert!(held.is_some());
        assert!(cache.join("locks").is_dir());
        let again = dir.path().join(".").join("out.mp4");
        let refused = lock_output(&cache, &again).err().unwrap().to_string();
        assert!(refused.contains("[output_in_use]"), "{refused}");
        assert!(
            refused.contains(&format!("process {}", std::process::id())),
            "{refused}"
        );
        let other = lock_output(&cache, &dir.path().join("other.mp4")).unwrap();
        drop(held);
        assert!(lock_output(&cache, &out).unwrap().is_some());
        drop(other);
        // A cache folder that cannot hold locks (a file in its way): the temporary folder
        // takes them instead, and still keeps a second run out.
        let blocked = dir.path().join("blocked");
        std::fs::write(&blocked, b"").unwrap();
        let held = lock_output(&blocked, &out).unwrap();
        assert!(held.is_some());
        assert!(lock_output(&blocked, &out).is_err());
    }
}
