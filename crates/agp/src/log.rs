//! Append-only JSONL event log (profiles, accepted and discarded prompts).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use crate::error::AgpError;

pub struct EventLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl EventLog {
    /// Open `path` for appending, first cutting it to `keep_len` bytes: what a checkpoint
    /// recorded, so events of an interrupted batch are not logged twice.
    pub fn open(path: &Path, keep_len: u64) -> Result<Self, AgpError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| AgpError::io(path, e))?;
        file.set_len(keep_len.min(file.metadata().map_err(|e| AgpError::io(path, e))?.len()))
            .map_err(|e| AgpError::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&self, event: &impl Serialize) -> Result<(), AgpError> {
        let mut line = serde_json::to_string(event)
            .map_err(|e| AgpError::io(&self.path, std::io::Error::other(e)))?;
        line.push('\n');
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        f.write_all(line.as_bytes())
            .map_err(|e| AgpError::io(&self.path, e))
    }

    /// Bytes written so far (flushed: writes go straight to the file).
    pub fn len(&self) -> Result<u64, AgpError> {
        let f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        Ok(f.metadata().map_err(|e| AgpError::io(&self.path, e))?.len())
    }

    pub fn is_empty(&self) -> Result<bool, AgpError> {
        Ok(self.len()? == 0)
    }
}
