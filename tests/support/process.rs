//! Child processes that never outlive their test.

use std::io;
use std::process::{Child, ExitStatus};

/// Owns a child process; kills (SIGKILL) and reaps it when dropped — at the end of the test, on an
/// early return and while unwinding from a panic.
///
/// Peers started through [`Peers::node_command`](crate::peers::Peers::node_command) also exit by
/// themselves when the test process disappears without unwinding (e.g. SIGKILL).
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
}

impl ChildGuard {
    /// Takes ownership of `child`; `name` is used in diagnostics.
    pub fn new(name: impl Into<String>, child: Child) -> Self {
        Self { name: name.into(), child: Some(child) }
    }

    /// The name given to [`ChildGuard::new`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id, while the guard still owns the child.
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Some(status)` once the child has exited, `None` while it runs.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(child) => child.try_wait(),
            None => Err(io::Error::other(format!("{} was already stopped", self.name))),
        }
    }

    /// Kills the child and waits for it; returns its exit status.
    pub fn stop(mut self) -> io::Result<ExitStatus> {
        let mut child =
            self.child.take().ok_or_else(|| io::Error::other(format!("{} was already stopped", self.name)))?;
        kill_and_reap(&mut child)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Nothing useful can be done with an error here: the process is gone or not ours.
            let _ = kill_and_reap(&mut child);
        }
    }
}

fn kill_and_reap(child: &mut Child) -> io::Result<ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    match child.kill() {
        Ok(()) => {}
        // Exited between try_wait and kill.
        Err(err) if err.kind() == io::ErrorKind::InvalidInput => {}
        Err(err) => return Err(err),
    }
    child.wait()
}
