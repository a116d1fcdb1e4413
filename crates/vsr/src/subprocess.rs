//! The one wrapper through which VSR runs other programs: it says what it runs, captures what
//! the program prints, and turns failure into an error that carries the program's own words.

use std::process::{Command, Output};

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
}

/// Runs `cmd` to completion; a non-zero exit is an error with the tail of its stderr.
pub fn run(cmd: &mut Command) -> Result<Output, SubprocessError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().map_err(|source| SubprocessError::Spawn {
        program: program.clone(),
        source,
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
        return Err(SubprocessError::Failed {
            program,
            status: out.status.to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(out)
}
