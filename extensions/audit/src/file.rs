//! Append-only JSON Lines files with rotation, and recovery of the chain head on restart.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_lc_rs::digest;
use serde_json::{Map, Value};

use crate::chain::ChainHead;
use crate::error::AuditError;
use crate::time::hex;

/// File names: `audit-<first sequence number, 20 digits>.jsonl`, so name order is chain order.
pub(crate) const PREFIX: &str = "audit-";
pub(crate) const SUFFIX: &str = ".jsonl";

pub(crate) fn file_name(first_seq: u64) -> String {
    format!("{PREFIX}{first_seq:020}{SUFFIX}")
}

/// Whether `name` is a trail file name.
pub fn is_trail_file(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .and_then(|r| r.strip_suffix(SUFFIX))
        .is_some_and(|digits| digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// The trail files in `dir`, in chain order.
pub fn trail_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(is_trail_file))
        .map(|e| e.path())
        .collect();
    files.sort();
    Ok(files)
}

/// A torn last line found at start-up (the process died mid-write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Torn {
    pub(crate) file: String,
    pub(crate) bytes: u64,
    pub(crate) sha256: String,
}

/// What start-up found in the directory.
#[derive(Debug, Clone)]
pub(crate) struct Recovery {
    pub(crate) head: ChainHead,
    pub(crate) previous_file: Option<String>,
    /// The previous run ended with a `close` checkpoint (or there was no previous run).
    pub(crate) clean: bool,
    pub(crate) torn: Option<Torn>,
}

/// The file sink's rotation settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rotation {
    pub(crate) max_bytes: u64,
    pub(crate) max_age: Option<Duration>,
}

/// The open trail file.
#[derive(Debug)]
pub(crate) struct FileSink {
    dir: PathBuf,
    rotation: Rotation,
    file: File,
    name: String,
    len: u64,
    opened_at: Duration,
    /// A write failed: reopen before the next one (the disk may have been replaced or freed).
    broken: bool,
}

impl FileSink {
    /// Reads where the trail in `dir` stands (creating `dir` if needed).
    pub(crate) fn recover(dir: &Path) -> Result<Recovery, AuditError> {
        fs::create_dir_all(dir).map_err(|e| AuditError::io(dir, e))?;
        let files = trail_files(dir).map_err(|e| AuditError::io(dir, e))?;
        let mut torn = None;
        for (i, path) in files.iter().enumerate().rev() {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            let (last_line, torn_bytes) = last_complete_line(path).map_err(|e| AuditError::io(path, e))?;
            if i == files.len() - 1
                && let Some(bytes) = torn_bytes
            {
                torn = Some(Torn { file: name.clone(), bytes: bytes.len() as u64, sha256: sha256_hex(&bytes) });
            }
            let Some(line) = last_line else { continue };
            let record: Map<String, Value> = serde_json::from_slice(&line).map_err(|e| {
                AuditError::io(path, io::Error::new(io::ErrorKind::InvalidData, format!("last record unreadable: {e}")))
            })?;
            let seq = record.get("seq").and_then(Value::as_u64);
            let hash = record.get("hash").and_then(Value::as_str);
            let (Some(seq), Some(hash)) = (seq, hash) else {
                let e = io::Error::new(io::ErrorKind::InvalidData, "last record has no seq/hash");
                return Err(AuditError::io(path, e));
            };
            let clean = record.get("type").and_then(Value::as_str) == Some("checkpoint")
                && record.get("kind").and_then(Value::as_str) == Some("close");
            let previous_file = files.last().and_then(|p| p.file_name()).and_then(|n| n.to_str()).map(str::to_owned);
            return Ok(Recovery {
                head: ChainHead { seq, hash: hash.to_owned() },
                previous_file,
                clean: clean && torn.is_none(),
                torn,
            });
        }
        let previous_file = files.last().and_then(|p| p.file_name()).and_then(|n| n.to_str()).map(str::to_owned);
        let clean = previous_file.is_none();
        Ok(Recovery { head: ChainHead::genesis(), previous_file, clean, torn })
    }

    /// Creates the file whose first record will have sequence number `first_seq`.
    pub(crate) fn create(dir: &Path, rotation: Rotation, first_seq: u64, now: Duration) -> Result<Self, AuditError> {
        let name = file_name(first_seq);
        let path = dir.join(&name);
        let file = open_empty(&path)?;
        // make the new directory entry durable too
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(Self { dir: dir.to_owned(), rotation, file, name, len: 0, opened_at: now, broken: false })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    /// Appends one line; on failure the file is cut back so no partial line stays behind.
    pub(crate) fn append(&mut self, line: &[u8]) -> io::Result<()> {
        if self.broken {
            self.reopen()?;
        }
        match self.file.write_all(line) {
            Ok(()) => {
                self.len += line.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                self.broken = true;
                Err(e)
            }
        }
    }

    /// Opens the file again after a failure; it must still hold exactly what was written.
    fn reopen(&mut self) -> io::Result<()> {
        let path = self.path();
        let file = OpenOptions::new().append(true).create(true).open(&path)?;
        let len = file.metadata()?.len();
        if len != self.len {
            return Err(io::Error::other(format!(
                "{} changed underneath the writer ({len} bytes, {} expected)",
                path.display(),
                self.len
            )));
        }
        self.file = file;
        self.broken = false;
        Ok(())
    }

    pub(crate) fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Whether the file should be rotated before the next record.
    pub(crate) fn rotation_due(&self, now: Duration) -> bool {
        self.len >= self.rotation.max_bytes
            || self.rotation.max_age.is_some_and(|age| now.saturating_sub(self.opened_at) >= age)
    }

    /// Closes this file and opens the next one.
    pub(crate) fn rotate(&mut self, first_seq: u64, now: Duration) -> Result<(), AuditError> {
        if let Err(error) = self.file.sync_all() {
            tracing::error!(%error, file = %self.name, "audit trail: fsync before rotation failed");
        }
        *self = Self::create(&self.dir, self.rotation, first_seq, now)?;
        Ok(())
    }
}

/// Opens a new trail file for appending; an existing file is used only if it is empty.
fn open_empty(path: &Path) -> Result<File, AuditError> {
    let file = OpenOptions::new().append(true).create(true).open(path).map_err(|e| AuditError::io(path, e))?;
    let len = file.metadata().map_err(|e| AuditError::io(path, e))?.len();
    if len != 0 {
        let e = io::Error::new(io::ErrorKind::AlreadyExists, "a trail file with this name already has records");
        return Err(AuditError::io(path, e));
    }
    Ok(file)
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, bytes).as_ref())
}

/// The last newline-terminated line of a file (without its newline), and the bytes after it.
type Tail = (Option<Vec<u8>>, Option<Vec<u8>>);

/// The last newline-terminated line of a file and the bytes after it (a torn line), reading only
/// as much of the tail as needed.
fn last_complete_line(path: &Path) -> io::Result<Tail> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut window = 64 * 1024u64;
    loop {
        let start = len.saturating_sub(window);
        file.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::with_capacity(usize::try_from(len - start).unwrap_or(0));
        file.read_to_end(&mut buf)?;
        let torn_at = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let torn = (torn_at < buf.len()).then(|| buf[torn_at..].to_vec());
        let complete = &buf[..torn_at];
        if complete.is_empty() {
            if start == 0 {
                return Ok((None, torn));
            }
            window = window.saturating_mul(4);
            continue;
        }
        let body = &complete[..complete.len() - 1];
        match body.iter().rposition(|b| *b == b'\n') {
            Some(i) => return Ok((Some(body[i + 1..].to_vec()), torn)),
            None if start == 0 => return Ok((Some(body.to_vec()), torn)),
            None => window = window.saturating_mul(4),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_in_chain_order() {
        assert!(file_name(9) < file_name(10));
        assert!(is_trail_file(&file_name(42)));
        assert!(!is_trail_file("audit-42.jsonl"));
        assert!(!is_trail_file("other.jsonl"));
    }

    #[test]
    fn last_line_and_torn_tail() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("f");
        fs::write(&p, b"{\"a\":1}\n{\"b\":2}\n").expect("w");
        assert_eq!(last_complete_line(&p).expect("r"), (Some(b"{\"b\":2}".to_vec()), None));
        fs::write(&p, b"{\"a\":1}\n{\"b\":2}\n{\"c\"").expect("w");
        assert_eq!(last_complete_line(&p).expect("r"), (Some(b"{\"b\":2}".to_vec()), Some(b"{\"c\"".to_vec())));
        fs::write(&p, b"{\"c\"").expect("w");
        assert_eq!(last_complete_line(&p).expect("r"), (None, Some(b"{\"c\"".to_vec())));
        fs::write(&p, b"").expect("w");
        assert_eq!(last_complete_line(&p).expect("r"), (None, None));
        // a long line beyond the first window
        let long = format!("{{\"x\":\"{}\"}}", "y".repeat(200_000));
        fs::write(&p, format!("{{\"a\":1}}\n{long}\n")).expect("w");
        assert_eq!(last_complete_line(&p).expect("r").0, Some(long.into_bytes()));
    }
}
