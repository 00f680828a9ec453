//! One child process: spawned with a cleared environment in a process group of its own, its
//! stdin fed from a bounded queue, its stdout read as newline-delimited JSON (each line capped),
//! its stderr logged at debug level with the route's name. When it exits, its whole process group
//! is killed (an `npx` wrapper's grandchildren included) and it is reaped.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

use super::StdioCommand;

/// How many lines may wait for the child's stdin.
const STDIN_QUEUE: usize = 256;
/// The longest stderr line logged (longer ones are cut).
const MAX_STDERR_LINE: usize = 4096;

/// What a child's reader reports.
#[derive(Debug)]
pub(crate) enum Event {
    /// A JSON-RPC message (a JSON object) from its stdout.
    Message(Value),
    /// It exited (its process group is killed and it is reaped).
    Exited(String),
}

/// A running child.
#[derive(Debug)]
pub(crate) struct Child {
    stdin: mpsc::Sender<Bytes>,
    pgid: i32,
    exited: Arc<AtomicBool>,
}

impl Child {
    /// Starts `command`; every message and its exit are sent to `events`.
    pub(crate) fn spawn(
        command: &StdioCommand,
        route: Arc<str>,
        max_line: usize,
        events: mpsc::Sender<Event>,
    ) -> io::Result<Self> {
        let mut cmd = Command::new(&command.program);
        cmd.args(&command.args).env_clear();
        for name in &command.inherit_env {
            if let Some(value) = std::env::var_os(name) {
                cmd.env(name, value);
            }
        }
        cmd.envs(command.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if let Some(cwd) = &command.cwd {
            cmd.current_dir(cwd);
        }
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn()?;
        let pid = child.id().and_then(|p| i32::try_from(p).ok()).ok_or_else(|| io::Error::other("no pid"))?;
        let (stdin_tx, mut stdin_rx) = mpsc::channel::<Bytes>(STDIN_QUEUE);
        let mut stdin = child.stdin.take().ok_or_else(|| io::Error::other("no stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| io::Error::other("no stdout"))?;
        let stderr = child.stderr.take().ok_or_else(|| io::Error::other("no stderr"))?;
        tokio::spawn(async move {
            while let Some(line) = stdin_rx.recv().await {
                if stdin.write_all(&line).await.is_err()
                    || stdin.write_all(b"\n").await.is_err()
                    || stdin.flush().await.is_err()
                {
                    break;
                }
            }
        });
        let reader_route = route.clone();
        let reader_events = events.clone();
        let reader = tokio::spawn(async move {
            let mut stdout = BufReader::new(stdout);
            loop {
                match read_line(&mut stdout, max_line).await {
                    Ok(Line::Eof) | Err(_) => break,
                    Ok(Line::TooLong(n)) => {
                        tracing::warn!(route = %reader_route, pid, bytes = n, max = max_line, "stdio child wrote a line longer than the limit; dropped");
                    }
                    Ok(Line::Text(line)) => {
                        let trimmed = line.trim_ascii();
                        if trimmed.is_empty() {
                            continue;
                        }
                        match serde_json::from_slice::<Value>(trimmed) {
                            Ok(value @ Value::Object(_)) => {
                                if reader_events.send(Event::Message(value)).await.is_err() {
                                    break;
                                }
                            }
                            _ => tracing::warn!(
                                route = %reader_route,
                                pid,
                                bytes = trimmed.len(),
                                "stdio child wrote a line that is not a JSON-RPC message; dropped"
                            ),
                        }
                    }
                }
            }
        });
        let stderr_route = route.clone();
        tokio::spawn(async move {
            let mut stderr = BufReader::new(stderr);
            loop {
                match read_line(&mut stderr, MAX_STDERR_LINE).await {
                    Ok(Line::Eof) | Err(_) => break,
                    Ok(Line::TooLong(n)) => {
                        tracing::debug!(route = %stderr_route, pid, bytes = n, "stdio child stderr: (long line cut)")
                    }
                    Ok(Line::Text(line)) => {
                        let text = String::from_utf8_lossy(line.trim_ascii_end());
                        tracing::debug!(route = %stderr_route, pid, "stdio child stderr: {text}");
                    }
                }
            }
        });
        let exited = Arc::new(AtomicBool::new(false));
        let exit_flag = exited.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            exit_flag.store(true, Ordering::SeqCst);
            // the group may outlive its leader (an npx wrapper's node): end it too
            kill_group(pid);
            // what it wrote before exiting is delivered before the exit
            let _ = tokio::time::timeout(std::time::Duration::from_millis(500), reader).await;
            let status = match status {
                Ok(s) => s.to_string(),
                Err(e) => e.to_string(),
            };
            let _ = events.send(Event::Exited(status)).await;
        });
        Ok(Self { stdin: stdin_tx, pgid: pid, exited })
    }

    /// Queues one line for its stdin (waits while the queue is full); `false` when it is gone.
    pub(crate) async fn write(&self, line: Bytes) -> bool {
        self.stdin.send(line).await.is_ok()
    }

    /// Its process id (its group's id).
    pub(crate) fn pid(&self) -> i32 {
        self.pgid
    }

    /// Whether it has exited and been reaped.
    pub(crate) fn has_exited(&self) -> bool {
        self.exited.load(Ordering::SeqCst)
    }

    /// Kills its process group (it is reaped by its exit task).
    pub(crate) fn kill(&self) {
        if !self.exited.load(Ordering::SeqCst) {
            kill_group(self.pgid);
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

fn kill_group(pgid: i32) {
    // a group already gone fails with ESRCH: nothing to do
    if let Some(pid) = rustix::process::Pid::from_raw(pgid) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

enum Line {
    Text(Vec<u8>),
    TooLong(usize),
    Eof,
}

/// One line of at most `max` bytes (a longer one is skipped to its end, never held whole).
async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R, max: usize) -> io::Result<Line> {
    let mut line = Vec::new();
    let mut seen = 0usize;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(if seen == 0 {
                Line::Eof
            } else if seen > max {
                Line::TooLong(seen)
            } else {
                Line::Text(line)
            });
        }
        let (chunk, done) = match memchr(buf) {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        seen += chunk.len();
        if seen <= max {
            line.extend_from_slice(chunk);
        } else {
            line = Vec::new();
        }
        let consumed = done.unwrap_or(buf.len());
        reader.consume(consumed);
        if done.is_some() {
            return Ok(if seen > max { Line::TooLong(seen) } else { Line::Text(line) });
        }
    }
}

fn memchr(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|b| *b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_capped_and_long_ones_skipped() {
        let input: &[u8] = b"{\"a\":1}\nxxxxxxxxxxxxxxxxxxxx\n\n{\"b\":2}";
        let mut r = BufReader::with_capacity(4, input);
        assert!(matches!(read_line(&mut r, 10).await.expect("read"), Line::Text(l) if l == b"{\"a\":1}"));
        assert!(matches!(read_line(&mut r, 10).await.expect("read"), Line::TooLong(20)));
        assert!(matches!(read_line(&mut r, 10).await.expect("read"), Line::Text(l) if l.is_empty()));
        assert!(matches!(read_line(&mut r, 10).await.expect("read"), Line::Text(l) if l == b"{\"b\":2}"));
        assert!(matches!(read_line(&mut r, 10).await.expect("read"), Line::Eof));
    }
}
