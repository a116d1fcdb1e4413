//! A task's files as this machine sees them: the [`Storage`] every machine shares, and the
//! local files FFmpeg and the models work on. With folders the two are the same files; with
//! an object store the local ones are copies, fetched when needed and dropped when the task
//! is done with here.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vsr_media::video::segment;

use crate::config::ServiceConfig;
use crate::storage::{Key, Object, Storage, StorageError};
use crate::store::Task;

pub struct Files {
    pub storage: Arc<dyn Storage>,
    /// Work files this process has stored already (so each goes up once).
    sent: std::sync::Mutex<HashSet<PathBuf>>,
    /// This machine's folder for uploads (their copies, with an object store).
    uploads: PathBuf,
    /// This machine's folder for results and work directories.
    results: PathBuf,
}

impl Files {
    pub fn new(storage: Arc<dyn Storage>, config: &ServiceConfig) -> Files {
        Files {
            storage,
            sent: Default::default(),
            uploads: config.upload_folder.clone(),
            results: config.processed_folder.clone(),
        }
    }

    /// Whether the stored files are this machine's own (folders): nothing to fetch or send.
    pub fn in_place(&self) -> bool {
        self.storage.in_place()
    }

    /// The local file of the task's upload.
    pub fn input(&self, task: &Task) -> PathBuf {
        self.upload_file(&task.input_key)
    }

    /// The local file of the upload `key` (where an upload is received).
    pub fn upload_file(&self, key: &Key) -> PathBuf {
        let object = Object::Upload(key.clone());
        self.storage
            .path_of(&object)
            .unwrap_or_else(|| self.uploads.join(key.as_str()))
    }

    /// The local file of the task's result.
    pub fn output(&self, task: &Task) -> PathBuf {
        let object = Object::Result(task.output_key.clone());
        self.storage
            .path_of(&object)
            .unwrap_or_else(|| self.results.join(task.output_key.as_str()))
    }

    /// Stores the upload received at [`Files::input`].
    pub async fn store_input(&self, task: &Task) -> Result<u64, StorageError> {
        let object = Object::Upload(task.input_key.clone());
        self.storage.put(&object, &self.input(task)).await
    }

    /// Stores the result written at [`Files::output`]; its size.
    pub async fn store_output(&self, task: &Task) -> Result<u64, StorageError> {
        let object = Object::Result(task.output_key.clone());
        self.storage.put(&object, &self.output(task)).await
    }

    /// The upload's local file, fetched if this machine has no copy; `None` if it is in no
    /// storage any more.
    pub async fn fetch_input(&self, task: &Task) -> Result<Option<PathBuf>, StorageError> {
        let object = Object::Upload(task.input_key.clone());
        self.fetch(&object, self.input(task)).await
    }

    /// The result's local file, fetched if this machine has no copy; `None` if it is in no
    /// storage (expired, or never made).
    pub async fn fetch_output(&self, task: &Task) -> Result<Option<PathBuf>, StorageError> {
        let object = Object::Result(task.output_key.clone());
        self.fetch(&object, self.output(task)).await
    }

    async fn fetch(
        &self,
        object: &Object,
        local: PathBuf,
    ) -> Result<Option<PathBuf>, StorageError> {
        if tokio::fs::try_exists(&local).await.unwrap_or(false) {
            return Ok(Some(local));
        }
        Ok(self.storage.get(object, &local).await?.then_some(local))
    }

    /// Fetches the work files other machines sent for the task's result (its finished
    /// segments, so this machine resumes where they stopped); how many.
    pub async fn restore_work(&self, task: &Task) -> Result<usize, StorageError> {
        if self.in_place() {
            return Ok(0);
        }
        let mut fetched = 0;
        for object in self.storage.work_of(&task.output_key).await? {
            if let Object::Work { dir, file, .. } = &object {
                let local = self.results.join(dir).join(file);
                if !local.exists() && self.storage.get(&object, &local).await? {
                    self.sent().insert(local);
                    fetched += 1;
                }
            }
        }
        Ok(fetched)
    }

    /// Sends the finished work files of the task's result not stored yet (a segment's file
    /// before its record, so a record is never stored without its segment).
    pub async fn save_work(&self, task: &Task) -> Result<(), StorageError> {
        if self.in_place() {
            return Ok(());
        }
        for dir in segment::work_dirs(&self.output(task)) {
            let dir_name = file_name(&dir);
            let mut finished: Vec<String> = vec![segment::PLAN_FILE.into()];
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(stem) = name.strip_suffix(".json").filter(|s| s.starts_with("seg-")) {
                    finished.push(format!("{stem}.mp4"));
                    finished.push(name);
                }
            }
            for file in finished {
                self.send_work(task, &dir, &dir_name, file).await?;
            }
        }
        Ok(())
    }

    /// Sends segment `index` of the work directory `work` (its file, then its record).
    pub async fn save_segment(
        &self,
        task: &Task,
        work: &Path,
        index: usize,
    ) -> Result<(), StorageError> {
        let dir_name = file_name(work);
        for file in segment::segment_files(index) {
            self.send_work(task, work, &dir_name, file).await?;
        }
        Ok(())
    }

    /// Fetches what another machine stored of segment `index` of the work directory `work`
    /// (its file, then its record, so a record is never here without its file).
    pub async fn fetch_segment(
        &self,
        task: &Task,
        work: &Path,
        index: usize,
    ) -> Result<(), StorageError> {
        let dir = file_name(work);
        for file in segment::segment_files(index) {
            let object = Object::Work {
                result: task.output_key.clone(),
                dir: dir.clone(),
                file: file.clone(),
            };
            let local = work.join(&file);
            if !self.storage.get(&object, &local).await? {
                break;
            }
            // Here from the store: nothing to send back.
            self.sent().insert(local);
        }
        Ok(())
    }

    /// The number of segments in the plan the task's worker stored for its result (fetched
    /// here), if it stored one yet.
    pub async fn stored_plan(&self, task: &Task) -> Result<Option<usize>, StorageError> {
        for object in self.storage.work_of(&task.output_key).await? {
            if let Object::Work { dir, file, .. } = &object {
                if file == segment::PLAN_FILE {
                    let local = self.results.join(dir).join(file);
                    if self.storage.get(&object, &local).await? {
                        return Ok(segment::planned_segments(&local));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Stores the local work file `dir/file` unless this process did already.
    async fn send_work(
        &self,
        task: &Task,
        dir: &Path,
        dir_name: &str,
        file: String,
    ) -> Result<(), StorageError> {
        let local = dir.join(&file);
        if !local.exists() || self.sent().contains(&local) {
            return Ok(());
        }
        let object = Object::Work {
            result: task.output_key.clone(),
            dir: dir_name.to_string(),
            file,
        };
        self.storage.put(&object, &local).await?;
        self.sent().insert(local);
        Ok(())
    }

    fn sent(&self) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes what only an unfinished task needs, wherever it is: the upload and the work
    /// kept for a resume (a task that ended without a result, or is deleted).
    pub async fn remove_working(&self, task: &Task) {
        self.remove(&Object::Upload(task.input_key.clone())).await;
        self.remove_work(task).await;
        let _ = std::fs::remove_file(self.input(task));
    }

    /// Removes the work kept for a resume of the task, wherever it is (a result that is
    /// complete needs it no more).
    pub async fn remove_work(&self, task: &Task) {
        match self.storage.work_of(&task.output_key).await {
            Ok(work) if !self.in_place() => {
                for object in work {
                    self.remove(&object).await;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(task = %task.id, error = %e, "cannot list the task's work files")
            }
        }
        vsr_media::video::pipeline::remove_work(&self.output(task));
    }

    /// Removes every file of the task, wherever it is.
    pub async fn remove_all(&self, task: &Task) {
        self.remove_working(task).await;
        self.remove(&Object::Result(task.output_key.clone())).await;
        let _ = std::fs::remove_file(self.output(task));
    }

    /// Drops this machine's copies of the task's files, when they are copies (a worker done
    /// with a task; the stored files stay).
    pub fn drop_copies(&self, task: &Task) {
        if !self.in_place() {
            let _ = std::fs::remove_file(self.input(task));
            let work = segment::work_dirs(&self.output(task));
            self.sent()
                .retain(|p| !work.iter().any(|w| p.starts_with(w)));
            vsr_media::video::pipeline::remove_work(&self.output(task));
            let _ = std::fs::remove_file(self.output(task));
        }
    }

    async fn remove(&self, object: &Object) {
        if let Err(e) = self.storage.delete(object).await {
            tracing::warn!(object = object.name(), error = %e, "cannot remove a stored file");
        }
    }
}

/// The last part of `path`, as text.
fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}
