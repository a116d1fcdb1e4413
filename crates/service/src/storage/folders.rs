//! Folders on this machine, or a mount every machine shares (NFS, say): uploads in one,
//! results and their work directories in the other. Each object is its own file, so workers
//! read and write in place and the segment locks of `vsr-media` work across machines that
//! share the mount.

use std::path::{Path, PathBuf};

use super::{local as io, partial_path, Key, Object, Storage, StorageError};

#[derive(Debug)]
pub struct Folders {
    /// Uploads (`UPLOAD_FOLDER`).
    uploads: PathBuf,
    /// Results and work directories (`PROCESSED_FOLDER`).
    results: PathBuf,
}

impl Folders {
    pub fn new(uploads: PathBuf, results: PathBuf) -> Folders {
        Folders { uploads, results }
    }

    fn path(&self, object: &Object) -> PathBuf {
        match object {
            Object::Upload(k) => self.uploads.join(k.as_str()),
            Object::Result(k) => self.results.join(k.as_str()),
            Object::Work { dir, file, .. } => self.results.join(dir).join(file),
        }
    }
}

/// Copies `from` to `to` through a temporary sibling of `to`, so `to` is whole or absent.
async fn copy_whole(from: &Path, to: &Path) -> Result<u64, StorageError> {
    if let Some(parent) = to.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(io("creating", parent))?;
    }
    let partial = partial_path(to);
    let copied = tokio::fs::copy(from, &partial)
        .await
        .map_err(io("copying", from));
    let renamed = match copied {
        Ok(bytes) => tokio::fs::rename(&partial, to)
            .await
            .map(|()| bytes)
            .map_err(io("renaming", to)),
        Err(e) => Err(e),
    };
    if renamed.is_err() {
        let _ = tokio::fs::remove_file(&partial).await;
    }
    renamed
}

#[async_trait::async_trait]
impl Storage for Folders {
    fn path_of(&self, object: &Object) -> Option<PathBuf> {
        Some(self.path(object))
    }

    fn in_place(&self) -> bool {
        true
    }

    async fn put(&self, object: &Object, from: &Path) -> Result<u64, StorageError> {
        let path = self.path(object);
        if path == from {
            return Ok(tokio::fs::metadata(from)
                .await
                .map_err(io("reading", from))?
                .len());
        }
        copy_whole(from, &path).await
    }

    async fn get(&self, object: &Object, to: &Path) -> Result<bool, StorageError> {
        let path = self.path(object);
        if !tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(false);
        }
        if path != to {
            copy_whole(&path, to).await?;
        }
        Ok(true)
    }

    async fn delete(&self, object: &Object) -> Result<(), StorageError> {
        let path = self.path(object);
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io("removing", &path)(e))
            }
            _ => {}
        }
        // A work directory goes with its last file.
        if let (Object::Work { .. }, Some(dir)) = (object, path.parent()) {
            let _ = tokio::fs::remove_dir(dir).await;
        }
        Ok(())
    }

    async fn work_of(&self, result: &Key) -> Result<Vec<Object>, StorageError> {
        let mut found = Vec::new();
        for dir in vsr_media::video::segment::work_dirs(&self.results.join(result.as_str())) {
            let dir_name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if let (Some(d), Ok(file)) = (&dir_name, entry.file_name().into_string()) {
                    found.push(Object::Work {
                        result: result.clone(),
                        dir: d.clone(),
                        file,
                    });
                }
            }
        }
        Ok(found)
    }

    async fn stored_before(
        &self,
        before: std::time::SystemTime,
    ) -> Result<Vec<Object>, StorageError> {
        let old = |entry: &std::fs::DirEntry| {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < before)
        };
        let files = |dir: &Path| -> Vec<std::fs::DirEntry> {
            std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .collect()
        };
        let name = |entry: &std::fs::DirEntry| entry.file_name().to_string_lossy().into_owned();
        let mut found = Vec::new();
        for entry in files(&self.uploads) {
            if let Some(key) = Key::parse(&name(&entry)).filter(|_| old(&entry)) {
                found.push(Object::Upload(key));
            }
        }
        for entry in files(&self.results) {
            let entry_name = name(&entry);
            if let Some(key) = Key::parse(&entry_name).filter(|_| old(&entry)) {
                found.push(Object::Result(key));
                continue;
            }
            let work_of =
                vsr_media::video::segment::work_dir_output(&entry_name).and_then(Key::parse);
            let Some(result) = work_of else { continue };
            for file in files(&entry.path()).iter().filter(|f| old(f)) {
                found.push(Object::Work {
                    result: result.clone(),
                    dir: entry_name.clone(),
                    file: name(file),
                });
            }
        }
        Ok(found)
    }

    fn describe(&self) -> String {
        format!(
            "folders {} and {}",
            self.uploads.display(),
            self.results.display()
        )
    }
}
