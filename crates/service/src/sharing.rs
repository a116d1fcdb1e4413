//! Segments of one task shared by workers on machines that share no folder (media in an
//! object store): a segment is held by a row of the task database under a lease, renewed
//! while the worker works on it, so a worker that vanishes loses it once the lease lapses. A
//! finished segment goes to the object store before its claim is let go as done; a worker
//! waiting for another's segment then fetches it from there. On one machine (several workers
//! sharing its folders) a file lock comes first, as `vsr-media`'s [`LocalLocks`] takes it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use vsr_media::video::segment::{Claim, LocalLocks, Sharing, WorkDir};
use vsr_media::video::PipelineError;

use crate::files::Files;
use crate::store::{now_ms, StoreError, Task, TaskStore, WorkerId};

/// How often a waiting worker asks whether another's segment is free.
const POLL: Duration = Duration::from_millis(250);

/// Claims in the task database for the segments of `task`, held by `worker`.
pub struct StoredSharing {
    parts: Arc<Parts>,
    /// Renews the leases of the segments this worker holds; stopped when dropped.
    renewer: tokio::task::JoinHandle<()>,
}

/// What a claim needs after the job that made it is gone.
struct Parts {
    store: Arc<dyn TaskStore>,
    files: Arc<Files>,
    task: Task,
    worker: WorkerId,
    lease: Duration,
    runtime: tokio::runtime::Handle,
    /// The job's cancel flag: a waiting worker stops waiting when it is set.
    cancel: Arc<AtomicBool>,
}

impl StoredSharing {
    /// Sharing for `task`, on `runtime` (the pipeline's threads are not the runtime's).
    pub fn new(
        store: Arc<dyn TaskStore>,
        files: Arc<Files>,
        task: Task,
        worker: WorkerId,
        lease: Duration,
        cancel: Arc<AtomicBool>,
        runtime: tokio::runtime::Handle,
    ) -> StoredSharing {
        let renewer = runtime.spawn({
            let (store, id) = (store.clone(), task.id.clone());
            async move {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    let now = now_ms();
                    let until = now + lease.as_millis() as i64;
                    if let Err(e) = store.renew_segments(&id, worker, now, until).await {
                        tracing::warn!(error = %e, "cannot renew the segment leases");
                    }
                }
            }
        });
        StoredSharing {
            parts: Arc::new(Parts {
                store,
                files,
                task,
                worker,
                lease,
                runtime,
                cancel,
            }),
            renewer,
        }
    }
}

impl Drop for StoredSharing {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

impl Parts {
    /// Runs a store call from a pipeline thread, again and again while the database does not
    /// answer, until the job is stopped (the task's own progress reports stop it if the
    /// task went to another worker meanwhile): an outage pauses the job, never fails it.
    fn patiently<T, F, Fut>(&self, what: &str, call: F) -> Result<T, PipelineError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        loop {
            match self.runtime.block_on(call()) {
                Ok(v) => return Ok(v),
                Err(e) if e.is_unavailable() => {
                    if self.cancel.load(Ordering::Relaxed) {
                        return Err(PipelineError::Cancelled);
                    }
                    tracing::warn!(error = %e, what, "the task store does not answer; retrying");
                    std::thread::sleep(POLL * 4);
                }
                Err(e) => return Err(PipelineError::Io(std::io::Error::other(e.to_string()))),
            }
        }
    }
}

/// A segment held in the database; dropped, it is stored (when finished) and let go.
struct StoredClaim {
    parts: Arc<Parts>,
    work: PathBuf,
    record: PathBuf,
    index: usize,
}

impl Drop for StoredClaim {
    fn drop(&mut self) {
        let p = &self.parts;
        let finished = self.record.exists();
        p.runtime.block_on(async {
            let stored = finished
                && match p.files.save_segment(&p.task, &self.work, self.index).await {
                    Ok(()) => true,
                    Err(e) => {
                        // Let go as not done: whoever needs it redoes it.
                        tracing::warn!(segment = self.index, error = %e, "cannot store a finished segment");
                        false
                    }
                };
            let released = p
                .store
                .release_segment(&p.task.id, self.index as i64, p.worker, stored)
                .await;
            if let Err(e) = released {
                // Its lease lapses in a moment and frees it.
                tracing::warn!(segment = self.index, error = %e, "cannot let a segment go");
            }
        });
    }
}

impl Sharing for StoredSharing {
    fn try_claim(&self, work: &WorkDir, index: usize) -> Result<Option<Claim>, PipelineError> {
        let Some(local) = LocalLocks.try_claim(work, index)? else {
            return Ok(None);
        };
        let p = &self.parts;
        let claimed = p.patiently("claiming a segment", || {
            let now = now_ms();
            p.store.claim_segment(
                &p.task.id,
                index as i64,
                p.worker,
                now,
                now + p.lease.as_millis() as i64,
            )
        })?;
        if !claimed {
            return Ok(None);
        }
        let stored = StoredClaim {
            parts: p.clone(),
            work: work.path().to_path_buf(),
            record: work.record_file(index),
            index,
        };
        // The database's claim goes first: stored and let go while the file lock still holds.
        Ok(Some(Claim::new((stored, local))))
    }

    fn wait_unclaimed(&self, work: &WorkDir, index: usize) -> Result<(), PipelineError> {
        LocalLocks.wait_unclaimed(work, index)?;
        let p = &self.parts;
        while p.patiently("looking at a segment", || {
            p.store.segment_held(&p.task.id, index as i64, now_ms())
        })? {
            if p.cancel.load(Ordering::Relaxed) {
                return Err(PipelineError::Cancelled);
            }
            std::thread::sleep(POLL);
        }
        if work.done(index).is_none() {
            let fetched = p
                .runtime
                .block_on(p.files.fetch_segment(&p.task, work.path(), index));
            if let Err(e) = fetched {
                tracing::warn!(segment = index, error = %e, "cannot fetch another worker's segment");
            }
        }
        if work.done(index).is_none() {
            // Recorded as done but not stored whole (or not fetched): free it to be redone.
            p.patiently("freeing a segment", || {
                p.store.reopen_segment(&p.task.id, index as i64)
            })?;
        }
        Ok(())
    }
}
