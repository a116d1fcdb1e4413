//! Where uploads, results and the segments of unfinished results live, behind the
//! [`Storage`] trait: folders on this machine (the default, or a mount every machine shares)
//! or an S3-compatible object store. Task rows name files by [`Key`], never by a machine's
//! path, so any machine can run any task.
//!
//! Workers and FFmpeg read and write local files. With folders the local file *is* the
//! stored object ([`Storage::path_of`]), so nothing is copied; with an object store each
//! machine keeps copies in its own folders: a worker fetches the upload, sends each finished
//! segment (so another machine resumes where it stopped) and the result, then drops its
//! copies.

mod folders;
mod s3;

use std::path::{Path, PathBuf};

pub use folders::Folders;
pub use s3::{S3Config, S3};

/// A file this server named: `UUID.ext`, nothing more (no folder, no `..`), so a key read
/// from a row can never point outside the storage.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key(String);

impl Key {
    /// The key for a task's file with extension `ext`.
    pub fn new(task: &crate::store::TaskId, ext: &str) -> Key {
        Key(format!("{task}.{ext}"))
    }

    /// The key in `text`, if it is one this server makes.
    pub fn parse(text: &str) -> Option<Key> {
        let (stem, ext) = text.split_once('.')?;
        let ours = crate::store::TaskId::parse(stem).is_some()
            && !ext.is_empty()
            && ext.chars().all(|c| c.is_ascii_alphanumeric());
        ours.then(|| Key(text.to_string()))
    }

    /// The key of a value stored by a version that kept paths: its file name.
    pub fn from_stored(text: &str) -> Option<Key> {
        Key::parse(text).or_else(|| Key::parse(Path::new(text).file_name()?.to_str()?))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The task whose file this is (its name's stem).
    pub fn task(&self) -> Option<crate::store::TaskId> {
        crate::store::TaskId::parse(self.0.split_once('.')?.0)
    }

    /// The file extension (`mp4`, `mkv`).
    pub fn ext(&self) -> &str {
        self.0.split_once('.').map_or("", |(_, e)| e)
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One stored file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// An upload (in `UPLOAD_FOLDER` with folders).
    Upload(Key),
    /// A finished result (in `PROCESSED_FOLDER` with folders).
    Result(Key),
    /// A file of the work directory `dir` of the unfinished result `result`: its plan, a
    /// finished segment or a segment's record.
    Work {
        result: Key,
        dir: String,
        file: String,
    },
}

impl Object {
    /// The object's name in an object store, below the configured prefix.
    pub fn name(&self) -> String {
        match self {
            Object::Upload(k) => format!("uploads/{k}"),
            Object::Result(k) => format!("results/{k}"),
            Object::Work { result, dir, file } => format!("work/{result}/{dir}/{file}"),
        }
    }

    /// The object named `name` (as [`Object::name`] makes it), if it is one of ours.
    pub fn parse(name: &str) -> Option<Object> {
        if let Some(k) = name.strip_prefix("uploads/") {
            return Key::parse(k).map(Object::Upload);
        }
        if let Some(k) = name.strip_prefix("results/") {
            return Key::parse(k).map(Object::Result);
        }
        let (result, _) = name.strip_prefix("work/")?.split_once('/')?;
        Object::work_of(&Key::parse(result)?, name)
    }

    /// The key a task row names for this object to be its: the upload's, or the result's
    /// for the result and its work.
    pub fn owner(&self) -> &Key {
        match self {
            Object::Upload(k) | Object::Result(k) => k,
            Object::Work { result, .. } => result,
        }
    }

    /// The prefix every work file of `result` has.
    fn work_prefix(result: &Key) -> String {
        format!("work/{result}/")
    }

    /// The work file named `name` (as [`Object::name`] makes it) of `result`, if it is one.
    fn work_of(result: &Key, name: &str) -> Option<Object> {
        let rest = name.strip_prefix(&Object::work_prefix(result))?;
        let (dir, file) = rest.split_once('/')?;
        let plain = |s: &str| {
            !s.is_empty() && !s.contains('/') && s != "." && s != ".." && !s.starts_with("..")
        };
        (plain(dir) && plain(file) && dir.starts_with('.')).then(|| Object::Work {
            result: result.clone(),
            dir: dir.to_string(),
            file: file.to_string(),
        })
    }
}

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{action} {object}: {source}")]
    Io {
        action: &'static str,
        object: String,
        source: std::io::Error,
    },
    #[error("object store, {action} {object}: {source}")]
    Remote {
        action: &'static str,
        object: String,
        source: object_store::Error,
    },
    #[error("object store configuration: {0}")]
    Config(String),
}

impl StorageError {
    /// The stable code a client sees for it: a full disk is `insufficient_storage`, another
    /// local file error `io_error`, an object store that fails `storage_unavailable` (worth
    /// a retry).
    pub fn code(&self) -> vsr_media::code::Code {
        use vsr_media::code::Code;
        match self {
            StorageError::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
                Code::InsufficientStorage
            }
            StorageError::Io { .. } => Code::IoError,
            StorageError::Remote { .. } | StorageError::Config(_) => Code::StorageUnavailable,
        }
    }
}

/// Where a task's files are kept.
#[async_trait::async_trait]
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// The object's own file on this machine, when the storage is folders here (read and
    /// written in place, nothing copied); `None` for a remote store.
    fn path_of(&self, object: &Object) -> Option<PathBuf>;

    /// Whether every object is a file here ([`Storage::path_of`] answers for each).
    fn in_place(&self) -> bool;

    /// Stores the local file `from` as `object` (nothing to do when `from` is the object's
    /// own file); its size.
    async fn put(&self, object: &Object, from: &Path) -> Result<u64, StorageError>;

    /// Writes `object` to the local file `to` (atomically: a reader never sees half of it);
    /// false if there is no such object.
    async fn get(&self, object: &Object, to: &Path) -> Result<bool, StorageError>;

    /// Removes `object`; one that is not there is no error.
    async fn delete(&self, object: &Object) -> Result<(), StorageError>;

    /// The work files of `result`.
    async fn work_of(&self, result: &Key) -> Result<Vec<Object>, StorageError>;

    /// Every object last written before `before`: those the sweeper removes when no task
    /// refers to them (left by a crash between storing a file and recording it, or by a
    /// worker still sending segments of a task deleted meanwhile).
    async fn stored_before(
        &self,
        before: std::time::SystemTime,
    ) -> Result<Vec<Object>, StorageError>;

    /// What a status page shows for it (never a password).
    fn describe(&self) -> String;
}

/// The storage `config` names, opened.
pub fn open(
    config: &crate::config::ServiceConfig,
) -> Result<std::sync::Arc<dyn Storage>, StorageError> {
    Ok(match &config.storage {
        None => std::sync::Arc::new(Folders::new(
            config.upload_folder.clone(),
            config.processed_folder.clone(),
        )),
        Some(s3) => std::sync::Arc::new(S3::open(s3)?),
    })
}

/// How an error about the local file `path` becomes a [`StorageError`].
fn local(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StorageError {
    let object = path.display().to_string();
    move |source| StorageError::Io {
        action,
        object,
        source,
    }
}

/// `to`'s temporary sibling, where a download is written before it is renamed into place.
fn partial_path(to: &Path) -> PathBuf {
    let name = to
        .file_name()
        .map_or("object".into(), |n| n.to_string_lossy().into_owned());
    to.with_file_name(format!(".{name}.get-{}", uuid::Uuid::new_v4().simple()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_our_file_names_only() {
        let id = crate::store::TaskId::new();
        let key = Key::new(&id, "mp4");
        assert_eq!(Key::parse(key.as_str()), Some(key.clone()));
        assert_eq!(key.ext(), "mp4");
        assert_eq!(key.task(), Some(id.clone()));
        for bad in ["../x.mp4", "a.mp4", "", "/etc/passwd"] {
            assert_eq!(Key::parse(bad), None, "{bad}");
        }
        assert_eq!(Key::parse(&format!("{id}.mp4/../../x")), None);
        // Rows written by a version that stored paths still name their files.
        assert_eq!(
            Key::from_stored(&format!("/srv/vsr/uploads/{key}")),
            Some(key.clone())
        );
        let work = Object::Work {
            result: key.clone(),
            dir: format!(".{key}.vsr-0123"),
            file: "seg-000001.mp4".into(),
        };
        assert_eq!(Object::work_of(&key, &work.name()), Some(work.clone()));
        for object in [
            Object::Upload(key.clone()),
            Object::Result(key.clone()),
            work,
        ] {
            assert_eq!(Object::parse(&object.name()).as_ref(), Some(&object));
            assert_eq!(object.owner(), &key);
        }
        assert_eq!(Object::parse("uploads/x.mp4"), None);
        assert_eq!(Object::parse(&format!("other/{key}")), None);
        assert_eq!(Object::work_of(&key, &format!("work/{key}/../x")), None);
        assert_eq!(Object::work_of(&key, &format!("work/{key}/.d/../x")), None);
    }
}
