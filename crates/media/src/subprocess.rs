//! The one wrapper through which VSR runs other programs: it captures what the program prints,
//! bounds how long it may run, and turns failure into an error that carries the program's own
//! words.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum SubprocessError {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: String,
        status: String,
        stderr: String,
    },
    #[error("{program} did not finish within {seconds} s and was killed")]
    TimedOut { program: String, seconds: u64 },
}

/// Runs `cmd` to completion; a non-zero exit is an error with the tail of its stderr.
/// FFmpeg for the decode and encode stages of a job, at a lower CPU priority: it then fills
/// the moments the model's threads wait, instead of pre-empting one of them and stalling the
/// others at the next layer boundary. (`nice` execs FFmpeg, so the child's pid is FFmpeg's.)
pub fn pipeline_ffmpeg() -> Command {
    let mut cmd = Command::new("nice");
    cmd.args(["-n", "10", "ffmpeg"]);
    cmd
}

pub fn run(cmd: &mut Command) -> Result<Output, SubprocessError> {
    run_with_timeout(cmd, Duration::MAX)
}

/// Like [`run`], but kills the program if it runs longer than `limit`: hostile input must not
/// hang us.
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Result<Output, SubprocessError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let spawn_err = |source| SubprocessError::Spawn {
        program: program.clone(),
        source,
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    // Drain both pipes on threads so a chatty program cannot block on a full pipe.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(spawn_err)? {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(SubprocessError::TimedOut {
                program,
                seconds: limit.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let out = Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = text.lines().rev().take(8).collect();
        return Err(SubprocessError::Failed {
            program,
            status: out.status.to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(out)
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// The last lines a long-running child printed on stderr, kept for error messages. Lines the
/// `consume` callback claims (returns `true` for) are not kept.
#[derive(Clone, Default)]
pub struct StderrTail {
    lines: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<String>>>,
    /// The thread reading the lines, until [`StderrTail::wait_closed`] joins it.
    reader: std::sync::Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl StderrTail {
    const KEEP: usize = 20;

    /// Reads `stderr` on a thread until it closes.
    pub fn capture(
        stderr: impl Read + Send + 'static,
        mut consume: impl FnMut(&str) -> bool + Send + 'static,
    ) -> Self {
        let tail = StderrTail::default();
        let lines = tail.lines.clone();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if consume(&line) {
                    continue;
                }
                let mut l = lines.lock().unwrap_or_else(|e| e.into_inner());
                l.push_back(line);
                if l.len() > Self::KEEP {
                    l.pop_front();
                }
            }
        });
        *tail.reader.lock().unwrap_or_else(|e| e.into_inner()) = Some(reader);
        tail
    }

    /// Waits until every line is read: call it once the child has exited (its stderr then
    /// closes), so that what `consume` counts is complete.
    pub fn wait_closed(&self) {
        let reader = self.reader.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(reader) = reader {
            let _ = reader.join();
        }
    }

    /// The last `n` lines joined with " / ".
    pub fn last(&self, n: usize) -> String {
        let l = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let skip = l.len().saturating_sub(n);
        l.iter()
            .skip(skip)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" / ")
    }
}
