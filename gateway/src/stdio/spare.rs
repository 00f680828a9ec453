//! Spare children: processes started ahead of need, so a session that needs a child does not
//! wait for one to start (for a `node` or `python` server, hundreds of milliseconds of loading,
//! more than some clients give a call for its first message).
//!
//! - A spare is spawned exactly as a session's child (same command, cleared environment, own
//!   process group) and nothing is written to it until a session takes it: it holds no client's
//!   data, and a spare taken by one principal's session was never another's.
//! - At most `spare_children` are kept, and never more than leave room in `max_sessions` for the
//!   sessions open: spares plus sessions stay within the bound.
//! - Spares are started when the bridge is first served and whenever a session needs a child
//!   (after it took one, or found none). A spare that exited before it was taken is discarded
//!   (not counted as a crash: no session had it) and not replaced by that take, so a server that
//!   exits without input is never restarted in a loop.
//! - Ending the bridge (shutdown, drop) kills the spares' process groups like every child's.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::Inner;
use super::child::{Child, Event};
use super::session::STREAM_QUEUE;

/// A started child nothing has been written to, with the receiver of its events.
pub(crate) struct Spare {
    child: Arc<Child>,
    events: mpsc::Receiver<Event>,
}

impl Inner {
    /// Starts spares until `spare_children` are kept or the sessions leave no room. Needs a
    /// tokio runtime (does nothing without one). Processes are started outside the locks (a
    /// request of the route never waits for a `fork`); one that finds no room left when it is
    /// ready (a concurrent fill took it) is killed.
    pub(crate) fn fill_spares(&self) {
        if self.limits.spare_children == 0 || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let room = |sessions: usize, spares: &mut Vec<Spare>| {
            spares.retain(|s| !s.child.has_exited());
            let room = self.limits.max_sessions.saturating_sub(sessions + spares.len());
            self.limits.spare_children.saturating_sub(spares.len()).min(room)
        };
        // sessions, then spares: the order every path takes both locks in
        let wanted = {
            let sessions = self.sessions();
            room(sessions.len(), &mut self.spares())
        };
        for _ in 0..wanted {
            let (child, events) = match self.start_child() {
                Ok(started) => started,
                Err(e) => {
                    // a session's own start reports it (at warn) when it tries
                    tracing::debug!(route = %self.route, program = %self.command.program, error = %e, "a spare stdio server cannot be started");
                    return;
                }
            };
            let sessions = self.sessions();
            let mut spares = self.spares();
            if room(sessions.len(), &mut spares) == 0 {
                // dropped: its process group is killed
                return;
            }
            tracing::debug!(route = %self.route, pid = child.pid(), "spare stdio server started");
            spares.push(Spare { child, events });
        }
    }

    /// Starts the route's command as a new child; with the receiver of its events.
    pub(crate) fn start_child(&self) -> std::io::Result<(Arc<Child>, mpsc::Receiver<Event>)> {
        let (tx, events) = mpsc::channel::<Event>(STREAM_QUEUE);
        let child = Child::spawn(&self.command, self.route.clone(), self.limits.max_line_bytes, tx)?;
        Ok((Arc::new(child), events))
    }

    /// A running spare and its events, if one is kept; the ones that exited are discarded.
    /// Spares are started in its place, unless one was found exited (a server that exits
    /// without input is not restarted in a loop; the next take tries again).
    pub(crate) fn take_spare(&self) -> Option<(Arc<Child>, mpsc::Receiver<Event>)> {
        let mut exited = false;
        let taken = {
            let mut spares = self.spares();
            let mut taken = None;
            // the oldest first: it has had the longest to load
            while !spares.is_empty() {
                let spare = spares.remove(0);
                if spare.child.has_exited() {
                    tracing::debug!(route = %self.route, pid = spare.child.pid(), "a spare stdio server exited before it was needed; discarded");
                    exited = true;
                    continue;
                }
                taken = Some((spare.child, spare.events));
                break;
            }
            taken
        };
        if !exited {
            self.fill_spares();
        }
        taken
    }

    /// Removes every spare, killing it; the children, to wait for their exit.
    pub(crate) fn drain_spares(&self) -> Vec<Arc<Child>> {
        let spares: Vec<Spare> = self.spares().drain(..).collect();
        spares
            .into_iter()
            .map(|s| {
                s.child.kill();
                s.child
            })
            .collect()
    }

    /// The process ids of the spares.
    pub(crate) fn spare_pids(&self) -> Vec<i32> {
        self.spares().iter().filter(|s| !s.child.has_exited()).map(|s| s.child.pid()).collect()
    }

    fn spares(&self) -> std::sync::MutexGuard<'_, Vec<Spare>> {
        self.spares.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
