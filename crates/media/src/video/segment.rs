//! Segments: a job is cut at keyframes into pieces of about [`DEFAULT_SECONDS`] of source,
//! each upscaled and encoded into its own file in the job's work directory. A finished piece
//! is durable (written, synced, renamed into place, then recorded), so an interrupted job
//! resumes from its finished pieces, and several workers can share one long video, each
//! holding a lock on the piece it works on (the OS drops it when a worker dies).
//!
//! A segment is a range of presentation timestamps `[start, end)` in the video stream's time
//! base. Its first frame is a keyframe that every frame shown from there on can be decoded
//! from, so a decoder that seeks to it and drops what comes before gets exactly the frames an
//! uninterrupted decode would give, B-frames and open GOPs included.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::{Deserialize, Serialize};

use super::probe::{MediaInfo, ALLOWED_CONTAINERS};
use super::PipelineError;

/// Seconds of source per segment unless a job says otherwise: a crash costs at most this much
/// work, and a segment boundary costs a few frames of pipeline refill.
pub const DEFAULT_SECONDS: f64 = 10.0;

/// What a work directory's files are written with; a directory of another version is not
/// reused. 2: segments of rotated sources bound for Matroska or WebM are turned upright, and
/// records count the damage decoded.
const LAYOUT_VERSION: u32 = 2;

/// One piece of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub index: usize,
    /// The timestamp of its first frame (a keyframe); `None` for the first segment, which
    /// takes everything from the start of the stream.
    pub start: Option<i64>,
    /// Where the next segment starts (exclusive); `None` for the last.
    pub end: Option<i64>,
    /// Frames in the range, as the container's index counts them.
    pub frames: u64,
}

impl Segment {
    /// Whether a frame shown at `pts` lies after this segment.
    pub fn is_past(&self, pts: i64) -> bool {
        self.end.is_some_and(|end| pts >= end)
    }
}

/// How a job is cut: the segments in order, in the stream's time base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub time_base: (i64, i64),
    /// Whether the cuts come from the packet index; a stream without timestamps in its
    /// packets (raw H.264, say) is one segment decoded with a frame limit instead.
    pub indexed: bool,
    pub segments: Vec<Segment>,
}

impl Plan {
    pub fn total_frames(&self) -> u64 {
        self.segments.iter().map(|s| s.frames).sum()
    }

    /// One segment of everything (no index, or segments turned off).
    fn whole(info: &MediaInfo, max_frames: Option<u64>) -> Plan {
        let frames = max_frames.map_or(info.video.frames, |m| m.min(info.video.frames));
        Plan {
            time_base: info.video.time_base,
            indexed: false,
            segments: vec![Segment {
                index: 0,
                start: None,
                end: None,
                frames,
            }],
        }
    }
}

/// Cuts `path`'s video into segments of about `seconds` (`None`: one segment), the first
/// `max_frames` frames only if given. Reads the packet index (no decoding).
pub fn plan(
    path: &Path,
    info: &MediaInfo,
    seconds: Option<f64>,
    max_frames: Option<u64>,
) -> Result<Plan, PipelineError> {
    let Some(seconds) = seconds.filter(|s| s.is_finite() && *s > 0.0) else {
        return Ok(Plan::whole(info, max_frames));
    };
    // A video no longer than one segment is one segment: its packet index is not read
    // (an FFmpeg run of a fifth of a second before the first frame).
    if info.duration_s > 0.0 && info.duration_s <= seconds {
        return Ok(Plan::whole(info, max_frames));
    }
    let abs = std::path::absolute(path).map_err(PipelineError::Io)?;
    let mut child = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-hide_banner", "-protocol_whitelist", "file"])
        .args(["-format_whitelist", ALLOWED_CONTAINERS])
        .args(["-select_streams", &info.video.index.to_string()])
        .args(["-show_entries", "packet=pts,flags", "-of", "csv=p=0"])
        .arg(format!("file:{}", abs.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| PipelineError::Spawn("ffprobe", e))?;
    let (num, den) = info.video.time_base;
    let ticks = ((seconds * den as f64 / num as f64).round() as i64).max(1);
    let mut cutter = Cutter::new(ticks, max_frames);
    let stdout = child.stdout.take().expect("piped");
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(PipelineError::Io)?;
        if line.trim().is_empty() {
            continue; // what some containers print for a packet's side data
        }
        let mut fields = line.trim().split(',');
        let pts = fields.next().and_then(|p| p.parse::<i64>().ok());
        let key = fields.next().is_some_and(|f| f.starts_with('K'));
        match pts {
            Some(pts) => cutter.packet(pts, key),
            None => {
                // No timestamps to cut by.
                let _ = child.kill();
                let _ = child.wait();
                return Ok(Plan::whole(info, max_frames));
            }
        }
    }
    let status = child.wait().map_err(PipelineError::Io)?;
    match cutter.finish() {
        Some(segments) if status.success() => Ok(Plan {
            time_base: info.video.time_base,
            indexed: true,
            segments,
        }),
        _ => Ok(Plan::whole(info, max_frames)),
    }
}

/// Chooses cuts while the packets go by in decode order, and counts each segment's frames.
struct Cutter {
    ticks: i64,
    cuts: Vec<i64>,
    counts: Vec<u64>,
    /// The largest timestamp so far: a keyframe is a cut only if nothing before it in decode
    /// order is shown after it.
    max_pts: Option<i64>,
    first_pts: Option<i64>,
    /// The `max_frames` smallest timestamps (a max-heap), when the job is limited.
    smallest: Option<(usize, std::collections::BinaryHeap<i64>)>,
}

impl Cutter {
    fn new(ticks: i64, max_frames: Option<u64>) -> Cutter {
        Cutter {
            ticks,
            cuts: Vec::new(),
            counts: vec![0],
            max_pts: None,
            first_pts: None,
            smallest: max_frames.map(|m| (m as usize, Default::default())),
        }
    }

    fn packet(&mut self, pts: i64, key: bool) {
        let last_cut = self.cuts.last().copied().or(self.first_pts);
        if key
            && self.max_pts.is_some_and(|m| pts > m)
            && last_cut.is_some_and(|c| pts - c >= self.ticks)
        {
            self.cuts.push(pts);
            self.counts.push(0);
        }
        self.first_pts.get_or_insert(pts);
        self.max_pts = Some(self.max_pts.map_or(pts, |m| m.max(pts)));
        let segment = self.cuts.partition_point(|&c| c <= pts);
        self.counts[segment] += 1;
        if let Some((limit, heap)) = &mut self.smallest {
            heap.push(pts);
            if heap.len() > *limit {
                heap.pop();
            }
        }
    }

    /// The segments, or `None` if there were no packets.
    fn finish(self) -> Option<Vec<Segment>> {
        self.first_pts?;
        let mut segments: Vec<Segment> = (0..self.counts.len())
            .map(|i| Segment {
                index: i,
                start: i.checked_sub(1).map(|c| self.cuts[c]),
                end: self.cuts.get(i).copied(),
                frames: self.counts[i],
            })
            .collect();
        if let Some((limit, heap)) = self.smallest {
            if heap.len() == limit && limit > 0 {
                // Frames shown at or after the limit's last one are not part of the job.
                let cap = heap.peek().copied().expect("not empty") + 1;
                segments.retain(|s| s.start.is_none_or(|start| start < cap));
                let before: u64 = segments.iter().rev().skip(1).map(|s| s.frames).sum();
                let last = segments.last_mut().expect("the first segment stays");
                last.end = Some(last.end.map_or(cap, |e| e.min(cap)));
                last.frames = limit as u64 - before;
            }
        }
        Some(segments)
    }
}

/// Where a segment's file and record are, and what the record says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Done {
    pub frames: u64,
    /// The file's size: a file cut short by a crash or a full disk does not match.
    pub bytes: u64,
    /// How many times FFmpeg reported the source damaged while decoding the segment
    /// ([`super::decode::Decoder::damage_reports`]): kept with the segment, so that the job's
    /// warning counts the segments an earlier run or another worker did too.
    #[serde(default)]
    pub damage: u64,
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    version: u32,
    key: String,
    plan: Plan,
}

/// A job's work directory: its plan, its finished segments and their records. It sits beside
/// the output (same filesystem, so the disk check covers it), named from the output and the
/// job's key: a job of another input, model or settings has another key and never sees it.
pub struct WorkDir {
    path: PathBuf,
    pub plan: Plan,
    /// Segments this process knows are whole (it recorded them, or FFmpeg counted their
    /// frames once already): [`WorkDir::done`] still checks their size, but does not run
    /// FFmpeg over them again (a fifth of a second each as the output is assembled).
    known_whole: std::sync::Mutex<HashSet<usize>>,
}

/// Holds a segment for the worker working on it; dropped, the segment is free again.
pub struct Claim(#[allow(dead_code)] Box<dyn Send>);

impl Claim {
    /// A claim that holds as long as `guard` lives.
    pub fn new(guard: impl Send + 'static) -> Claim {
        Claim(Box::new(guard))
    }
}

/// How the workers of one job share its segments: each is held by one worker while it is
/// worked on, and the others wait for it or take it over when its worker dies.
/// [`LocalLocks`] (file locks in the work directory) serves wherever every worker sees the
/// same directory; workers on machines that share no folder use the service's, which keeps
/// the claims in the task database and the finished segments in object storage.
pub trait Sharing: Sync {
    /// Holds segment `index` of `work` for this worker, unless another holds it.
    fn try_claim(&self, work: &WorkDir, index: usize) -> Result<Option<Claim>, PipelineError>;

    /// Waits until no other worker holds segment `index`; what it finished is then in `work`
    /// (checked with [`WorkDir::done`]).
    fn wait_unclaimed(&self, work: &WorkDir, index: usize) -> Result<(), PipelineError>;
}

/// Claims as file locks in the work directory, which the OS drops when a worker dies.
pub struct LocalLocks;

impl Sharing for LocalLocks {
    fn try_claim(&self, work: &WorkDir, index: usize) -> Result<Option<Claim>, PipelineError> {
        let file = work.lock_file(index)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Claim::new(file))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(PipelineError::Io(e)),
        }
    }

    fn wait_unclaimed(&self, work: &WorkDir, index: usize) -> Result<(), PipelineError> {
        let file = work.lock_file(index)?;
        file.lock().map_err(PipelineError::Io)
    }
}

impl WorkDir {
    /// The directory for `output` and `key`.
    pub fn path_for(output: &Path, key: &str) -> PathBuf {
        output.with_file_name(format!("{}{}", prefix(output), &key[..key.len().min(16)]))
    }

    /// Opens the work directory for `key`, making it with `plan()` if it is new or unusable,
    /// and removing the directories other keys left for the same output. With `resume`
    /// false, an existing one is emptied first.
    pub fn open(
        output: &Path,
        key: &str,
        resume: bool,
        plan: impl FnOnce() -> Result<Plan, PipelineError>,
    ) -> Result<WorkDir, PipelineError> {
        let path = Self::path_for(output, key);
        for other in work_dirs(output) {
            if other.file_name() != path.file_name() {
                tracing::info!(dir = %other.display(), "removing the work of another input or settings");
                let _ = std::fs::remove_dir_all(&other);
            }
        }
        if !resume {
            let _ = std::fs::remove_dir_all(&path);
        }
        if let Some(work) = Self::existing(output, key) {
            return Ok(work);
        }
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).map_err(PipelineError::Io)?;
        let manifest = Manifest {
            version: LAYOUT_VERSION,
            key: key.to_string(),
            plan: plan()?,
        };
        let text = serde_json::to_vec_pretty(&manifest).expect("plain data");
        write_durably(&path.join(PLAN_FILE), &text)?;
        Ok(WorkDir {
            path,
            plan: manifest.plan,
            known_whole: Default::default(),
        })
    }

    /// The work directory for `key` if one with a readable plan of this key exists (what a
    /// worker joining a running job opens).
    pub fn existing(output: &Path, key: &str) -> Option<WorkDir> {
        let path = Self::path_for(output, key);
        let text = std::fs::read(path.join(PLAN_FILE)).ok()?;
        let manifest: Manifest = serde_json::from_slice(&text).ok()?;
        (manifest.version == LAYOUT_VERSION && manifest.key == key).then_some(WorkDir {
            path,
            plan: manifest.plan,
            known_whole: Default::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The finished file of segment `index`.
    pub fn segment_file(&self, index: usize) -> PathBuf {
        let [file, _] = segment_files(index);
        self.path.join(file)
    }

    /// Where segment `index` is written before it is complete.
    pub fn partial_file(&self, index: usize) -> PathBuf {
        self.path.join(format!("seg-{index:06}.partial.mp4"))
    }

    /// The record of segment `index`: written once its file is whole.
    pub fn record_file(&self, index: usize) -> PathBuf {
        let [_, record] = segment_files(index);
        self.path.join(record)
    }

    /// The record of segment `index` if it is finished and its file is whole: the record
    /// exists, the file has the recorded size and FFmpeg counts the recorded frames in it.
    pub fn done(&self, index: usize) -> Option<Done> {
        let record: Done =
            serde_json::from_slice(&std::fs::read(self.record_file(index)).ok()?).ok()?;
        if record.frames == 0 {
            return Some(record);
        }
        let file = self.segment_file(index);
        // FFmpeg runs with the set unlocked: other threads' checks need not wait for it.
        let known = self.known_whole().contains(&index);
        let whole = std::fs::metadata(&file).is_ok_and(|m| m.len() == record.bytes)
            && (known || count_packets(&file) == Some(record.frames));
        if whole {
            self.known_whole().insert(index);
        } else {
            self.known_whole().remove(&index);
            tracing::warn!(
                segment = index,
                "a finished segment's file is damaged; it is redone"
            );
            let _ = std::fs::remove_file(self.record_file(index));
        }
        whole.then_some(record)
    }

    fn known_whole(&self) -> std::sync::MutexGuard<'_, HashSet<usize>> {
        self.known_whole.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_file(&self, index: usize) -> Result<File, PipelineError> {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.path.join(format!("seg-{index:06}.lock")))
            .map_err(PipelineError::Io)
    }

    /// Makes segment `index`'s partial file its finished file, durably, then records it
    /// with its `frames` and the `damage` reported while it was decoded.
    pub fn record(&self, index: usize, frames: u64, damage: u64) -> Result<Done, PipelineError> {
        let done = if frames == 0 {
            let _ = std::fs::remove_file(self.partial_file(index));
            Done {
                frames: 0,
                bytes: 0,
                damage,
            }
        } else {
            let partial = self.partial_file(index);
            let file = File::open(&partial).map_err(PipelineError::Io)?;
            file.sync_all().map_err(PipelineError::Io)?;
            let bytes = file.metadata().map_err(PipelineError::Io)?.len();
            std::fs::rename(&partial, self.segment_file(index)).map_err(PipelineError::Io)?;
            sync_dir(&self.path)?;
            Done {
                frames,
                bytes,
                damage,
            }
        };
        let text = serde_json::to_vec(&done).expect("plain data");
        write_durably(&self.record_file(index), &text)?;
        self.known_whole().insert(index);
        Ok(done)
    }

    /// The damage reports recorded with the finished segments, all together (after the
    /// assembly, which checked every segment, their records are only read).
    pub fn recorded_damage(&self) -> u64 {
        self.plan
            .segments
            .iter()
            .filter_map(|s| self.done(s.index))
            .map(|done| done.damage)
            .sum()
    }

    /// Removes the directory and everything in it.
    pub fn remove(self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `dir/.NAME.vsr-`: what every work directory of `output` starts with.
fn prefix(output: &Path) -> String {
    let name = output
        .file_name()
        .map_or("output".into(), |n| n.to_string_lossy().into_owned());
    format!(".{name}.vsr-")
}

/// The work directories of `output`, whatever their key.
pub fn work_dirs(output: &Path) -> Vec<PathBuf> {
    let prefix = prefix(output);
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// The number of segments in the plan file `plan` (a work directory's `plan.json`), if it is
/// one this version reads.
pub fn planned_segments(plan: &Path) -> Option<usize> {
    let manifest: Manifest = serde_json::from_slice(&std::fs::read(plan).ok()?).ok()?;
    (manifest.version == LAYOUT_VERSION).then_some(manifest.plan.segments.len())
}

/// How a segment's files are named in a work directory: `seg-NNNNNN.mp4`, then its record
/// `seg-NNNNNN.json`.
const SEGMENT_PREFIX: &str = "seg-";
const RECORD_SUFFIX: &str = ".json";

/// The names of segment `index`'s finished file and record in its work directory, in the
/// order they are written.
pub fn segment_files(index: usize) -> [String; 2] {
    [
        format!("{SEGMENT_PREFIX}{index:06}.mp4"),
        format!("{SEGMENT_PREFIX}{index:06}{RECORD_SUFFIX}"),
    ]
}

/// Whether the work directory at `work` holds a finished segment's record: something a run
/// of the same job would resume from.
pub fn has_finished_segments(work: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(work) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        name.starts_with(SEGMENT_PREFIX) && name.ends_with(RECORD_SUFFIX)
    })
}

/// The name of a work directory's plan file.
pub const PLAN_FILE: &str = "plan.json";

/// Whether a work directory of `output` has a segment that is neither finished nor held by
/// anyone: one a worker could help with.
pub fn has_free_segments(output: &Path) -> bool {
    work_dirs(output).into_iter().any(|path| {
        let Ok(text) = std::fs::read(path.join(PLAN_FILE)) else {
            return false;
        };
        let Ok(manifest) = serde_json::from_slice::<Manifest>(&text) else {
            return false;
        };
        let work = WorkDir {
            path,
            plan: manifest.plan,
            known_whole: Default::default(),
        };
        work.plan.segments.iter().any(|s| {
            !work.record_file(s.index).exists()
                && matches!(LocalLocks.try_claim(&work, s.index), Ok(Some(_)))
        })
    })
}

/// Removes every work directory of `output` (a cancelled or deleted job).
pub fn remove_work(output: &Path) {
    for dir in work_dirs(output) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Whether `name` is a work directory's name, and the output name it belongs to.
pub fn work_dir_output(name: &str) -> Option<&str> {
    let rest = name.strip_prefix('.')?;
    let (output, _) = rest.rsplit_once(".vsr-")?;
    Some(output)
}

/// A hash of the file's content: what identifies an input whose name may stay while it
/// changes.
pub fn file_identity(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Video packets FFmpeg reads from one of our segment files; `None` if it cannot read it.
fn count_packets(file: &Path) -> Option<u64> {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-protocol_whitelist", "file"])
        .args(["-format_whitelist", "mov", "-select_streams", "v:0"])
        .args(["-count_packets", "-show_entries", "stream=nb_read_packets"])
        .args(["-of", "csv=p=0"])
        .arg(format!("file:{}", file.display()))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one, never part.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), PipelineError> {
    let temp = path.with_extension("tmp");
    let written = File::create(&temp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&temp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(PipelineError::Io(e));
    }
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn sync_dir(dir: &Path) -> Result<(), PipelineError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(PipelineError::Io)
}

/// The time FFmpeg seeks to for a segment starting at `pts`: whole microseconds at or before
/// it, so the seek lands on its keyframe or an earlier one.
pub fn seek_seconds(pts: i64, (num, den): (i64, i64)) -> f64 {
    let micros = (pts as i128 * num as i128 * 1_000_000).div_euclid(den as i128);
    micros as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(packets: &[(i64, bool)], ticks: i64, max: Option<u64>) -> Vec<Segment> {
        let mut c = Cutter::new(ticks, max);
        for &(pts, key) in packets {
            c.packet(pts, key);
        }
        c.finish().unwrap()
    }

    #[test]
    fn cuts_at_keyframes_that_nothing_earlier_is_shown_after() {
        // Decode order of a B-frame stream: I0 P3 B1 B2 | I6 (open GOP: B4 B5 after it) ...
        let packets = [
            (0, true),
            (3, false),
            (1, false),
            (2, false),
            (6, true),
            (4, false),
            (5, false),
            (9, false),
            (7, false),
            (8, false),
            (10, true),
            (11, false),
        ];
        let s = cut(&packets, 5, None);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!((s[0].start, s[0].end, s[0].frames), (None, Some(6), 6));
        assert_eq!((s[1].start, s[1].end, s[1].frames), (Some(6), None, 6));
        // A keyframe shown before an earlier packet is no cut.
        let s = cut(&[(0, true), (9, false), (6, true), (7, false)], 5, None);
        assert_eq!(s.len(), 1);
        // A frame limit ends the job at the limit's last frame.
        let s = cut(&packets, 5, Some(8));
        assert_eq!(s.len(), 2);
        assert_eq!((s[1].end, s[1].frames), (Some(8), 2));
        let s = cut(&packets, 5, Some(3));
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].end, s[0].frames), (Some(3), 3));
    }

    /// The damage decoded into each segment is kept in its record and summed over the job,
    /// whichever run recorded it; a record from before the count existed reads as none.
    #[test]
    fn damage_is_kept_with_the_segments() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("out.mp4");
        let segment = |index| Segment {
            index,
            start: None,
            end: None,
            frames: 0,
        };
        let plan = || {
            Ok(Plan {
                time_base: (1, 25),
                indexed: true,
                segments: (0..3).map(segment).collect(),
            })
        };
        let work = WorkDir::open(&output, "0123456789abcdef", true, plan).unwrap();
        work.record(0, 0, 2).unwrap();
        work.record(1, 0, 3).unwrap();
        // Another run's work directory, opened again: its records are read from disk.
        drop(work);
        let work = WorkDir::open(&output, "0123456789abcdef", true, plan).unwrap();
        std::fs::write(work.record_file(2), br#"{"frames":0,"bytes":0}"#).unwrap();
        assert_eq!(work.done(2).map(|d| d.damage), Some(0));
        assert_eq!(work.done(1).map(|d| d.damage), Some(3));
        assert_eq!(work.recorded_damage(), 5);
    }

    #[test]
    fn seeks_land_at_or_before_the_frame() {
        assert_eq!(seek_seconds(57600, (1, 12800)), 4.5);
        assert_eq!(seek_seconds(1001, (1, 30000)), 0.033366);
        assert_eq!(seek_seconds(1, (1001, 30000)), 0.033366);
        assert_eq!(work_dir_output(".a.mp4.vsr-0123"), Some("a.mp4"));
        assert_eq!(work_dir_output("a.mp4"), None);
    }
}
