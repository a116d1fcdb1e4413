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

/// Held for as long as this process writes the output; dropped, the output is free and its
/// lock file is gone.
pub struct OutputLock {
    /// Open for as long as the lock is held: the lock is the open file's.
    _file: std::fs::File,
    path: PathBuf,
}

impl Drop for OutputLock {
    /// The file goes while the lock is still held: a run that opened it meanwhile finds, once
    /// it has the lock, that the name no longer leads to its file, and starts over.
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The output's full name with symbolic links resolved as far as its folders exist, and `.`
/// and `..` taken out after that: two spellings of one file meet on one lock, even before
/// the run makes its folder.
fn identity(output: &Path) -> PathBuf {
    let absolute = std::path::absolute(output).unwrap_or_else(|_| output.to_path_buf());
    let (Some(folder), Some(name)) = (absolute.parent(), absolute.file_name()) else {
        return absolute;
    };
    // The deepest folder that exists, resolved; the rest of the way by its names.
    let mut existing = folder;
    let mut rest = Vec::new();
    let mut resolved = loop {
        if let Ok(real) = std::fs::canonicalize(existing) {
            break real;
        }
        match (existing.parent(), existing.components().next_back()) {
            (Some(parent), Some(last)) => {
                rest.push(last);
                existing = parent;
            }
            _ => return absolute,
        }
    };
    for part in rest.into_iter().rev() {
        match part {
            std::path::Component::ParentDir => {
                resolved.pop();
            }
            std::path::Component::Normal(name) => resolved.push(name),
            _ => {}
        }
    }
    resolved.join(name)
}

/// Where lock files are made, in order, each with the user that must own it: the cache
/// folder's `locks`, else (a read-only home, say) a folder of this user's own in the system's
/// temporary folder, which others can write into.
fn lock_folders(cache_dir: &Path) -> [(PathBuf, Option<u32>); 2] {
    // SAFETY: getuid has no preconditions and cannot fail.
    let user = unsafe { libc::getuid() };
    [
        (cache_dir.join("locks"), None),
        (
            std::env::temp_dir().join(format!("vsr-locks-{user}")),
            Some(user),
        ),
    ]
}

/// Makes `folder` if missing (mode 0700); with an `owner`, only a folder of that user's that
/// nobody else can write into is used, so another user can neither plant lock files nor hold
/// this user's.
fn usable_folder(folder: &Path, owner: Option<u32>) -> bool {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let made = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(folder);
    match (made, owner) {
        (Err(_), _) => false,
        (Ok(()), None) => true,
        (Ok(()), Some(user)) => std::fs::symlink_metadata(folder)
            .is_ok_and(|m| m.is_dir() && m.uid() == user && m.mode() & 0o022 == 0),
    }
}

/// Takes `output`'s lock in the first folder of [`lock_folders`] where a lock file can be
/// made, or says which process holds it. `None` where no folder takes one: the run goes on
/// unguarded (the caller says so) rather than not at all.
pub fn lock_output(cache_dir: &Path, output: &Path) -> anyhow::Result<Option<OutputLock>> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let name: String = Sha256::digest(identity(output).as_os_str().as_encoded_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    for (folder, owner) in lock_folders(cache_dir) {
        if !usable_folder(&folder, owner) {
            continue;
        }
        let path = folder.join(format!("{name}.lock"));
        // A few tries: the file may go between our opening it and our lock (its holder
        // finished), and then the name leads to no file or another one.
        for _ in 0..3 {
            let opened = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path);
            let Ok(mut file) = opened else {
                break;
            };
            match file.try_lock() {
                Ok(()) => {
                    let same = match (file.metadata(), std::fs::symlink_metadata(&path)) {
                        (Ok(ours), Ok(named)) => ours.ino() == named.ino(),
                        _ => false,
                    };
                    if !same {
                        continue;
                    }
                    // Who holds it, for the message below; the lock itself is what counts.
                    let _ = file
                        .set_len(0)
                        .and_then(|()| file.rewind())
                        .and_then(|()| write!(file, "{}", std::process::id()));
                    return Ok(Some(OutputLock { _file: file, path }));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    let holder = match holder.trim() {
                        "" => String::new(),
                        pid => format!(" (process {pid})"),
                    };
                    anyhow::bail!(
                        "{}: another vsr upscale{holder} is writing this output; wait for it \
                         to finish or choose another output name [{}]",
                        output.display(),
                        Code::OutputInUse
                    );
                }
                Err(std::fs::TryLockError::Error(_)) => break,
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One holder per output, whatever the spelling (a folder not made yet, reached through a
    /// link, included); another output is free; a dropped lock frees its output and leaves no
    /// file behind.
    #[test]
    fn one_holder_per_output() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let out = dir.path().join("out.mp4");
        let held = lock_output(&cache, &out).unwrap();
        assert!(held.is_some());
        let files = || std::fs::read_dir(cache.join("locks")).unwrap().count();
        assert_eq!(files(), 1);
        let again = dir.path().join(".").join("out.mp4");
        let refused = lock_output(&cache, &again).err().unwrap().to_string();
        assert!(refused.contains("[output_in_use]"), "{refused}");
        assert!(
            refused.contains(&format!("process {}", std::process::id())),
            "{refused}"
        );
        let other = lock_output(&cache, &dir.path().join("other.mp4")).unwrap();
        drop(held);
        drop(other);
        assert_eq!(files(), 0);
        assert!(lock_output(&cache, &out).unwrap().is_some());

        // A folder that does not exist yet, reached through a link: the same output once the
        // folder is made.
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        let early = dir.path().join("link/new/../new/out.mp4");
        let held = lock_output(&cache, &early).unwrap();
        std::fs::create_dir(real.join("new")).unwrap();
        assert!(lock_output(&cache, &real.join("new/out.mp4")).is_err());
        drop(held);

        // A cache folder that cannot hold locks (a file in its way): this user's own folder in
        // the temporary folder takes them instead, and still keeps a second run out.
        let blocked = dir.path().join("blocked");
        std::fs::write(&blocked, b"").unwrap();
        let held = lock_output(&blocked, &out).unwrap();
        assert!(held.is_some());
        assert!(lock_output(&blocked, &out).is_err());
    }
}
