//! The dedicated writer: a bounded queue in front of one thread that chains, writes, syncs,
//! checkpoints and rotates.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use mcp_enterprise_core::clock::Clock;
use serde_json::{Map, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::canonical::Members;
use crate::chain::{ChainHead, CheckpointSigner, seal_into};
use crate::error::AuditError;
use crate::file::{FileSink, Recovery, Rotation};
use crate::time::{rfc3339_millis, uuid_v7};

/// When the trail file is forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FsyncPolicy {
    /// `fsync` after every record, before the next one is written.
    EveryRecord,
    /// `fsync` at most this long after a record was written.
    Interval(Duration),
    /// Leave it to the operating system (still synced on rotation and shutdown).
    Os,
}

/// What happens to a request when the record queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum QueueFullPolicy {
    /// The request waits for room: no record is ever lost.
    #[default]
    Backpressure,
    /// The request is refused with `503` (and counted): no unrecorded call gets through.
    FailClosed,
}

/// A destination besides the trail file: gets every sealed record.
pub trait AuditSink: Send + fmt::Debug + 'static {
    /// One sealed record and its line (canonical JSON and `\n`). Errors are counted and logged;
    /// the trail file is the record of truth and is not held back by another sink.
    fn write(&mut self, record: &Value, line: &[u8]) -> io::Result<()>;
    /// Pushes buffered records out.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes every record as a `tracing` event (target `mcp_enterprise::audit`, level INFO).
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingSink;

impl AuditSink for TracingSink {
    fn write(&mut self, _record: &Value, line: &[u8]) -> io::Result<()> {
        let text = String::from_utf8_lossy(line);
        tracing::info!(target: "mcp_enterprise::audit", record = %text.trim_end(), "audit record");
        Ok(())
    }
}

/// Counters of the trail.
#[derive(Debug, Default)]
pub struct AuditStats {
    written: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    checkpoints: AtomicU64,
    queued: AtomicU64,
    fsync: mcp_enterprise_core::stats::Histogram,
}

impl AuditStats {
    /// Call records written (and synced per policy) to every sink.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Write attempts that failed (each is retried; the record is not dropped).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Requests refused because the queue was full or the writer failing (fail-closed policy).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Checkpoints written.
    pub fn checkpoints(&self) -> u64 {
        self.checkpoints.load(Ordering::Relaxed)
    }

    /// Records queued and not yet written.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// How long each `fsync` of the trail file took.
    pub fn fsync_durations(&self) -> &mcp_enterprise_core::stats::Histogram {
        &self.fsync
    }

    pub(crate) fn refuse(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }
}

struct Queued {
    record: Members<'static>,
    _permit: Option<OwnedSemaphorePermit>,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Queued>,
    closing: bool,
    /// How the writer waits on `ready`: a record wakes it only when it waits for the first one,
    /// or while it gathers once the queue holds `wake_at` records; otherwise the writer finds the
    /// record when it looks next, and the request path makes no wake-up system call.
    wait: Wait,
}

/// What the writer is doing, as far as the request path needs to know.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Writing: it looks at the queue again when done.
    #[default]
    Busy,
    /// Nothing queued: the next record wakes it.
    Idle,
    /// Records queued, gathered until the batch is due (the next sync, at most [`GATHER`]).
    Gathering,
}

/// Longest a record waits in the queue for others to be written with it (one write, and with
/// [`FsyncPolicy::Interval`] one sync, per batch).
const GATHER: Duration = Duration::from_millis(10);

/// What the layer and the writer thread share.
pub(crate) struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) stats: AuditStats,
    pub(crate) failing: AtomicBool,
    pub(crate) closed: AtomicBool,
    /// Queued records that wake a gathering writer early (half the capacity, at most a batch).
    wake_at: usize,
    /// Emptied records the writer hands back: the request path builds the next ones in their
    /// buffers instead of allocating (and the writer thread freeing) two per record.
    spare: Mutex<Vec<Members<'static>>>,
    /// Spare records kept while records flow: one batch's worth (the queue's capacity, at most
    /// [`BATCH`]), so a record costs no allocation however many a batch gathers.
    spare_limit: usize,
}

/// Emptied records kept for reuse while the writer is idle, at most (while records flow, up to
/// [`Shared::spare_limit`]: the records of one batch, which the queue held a moment before).
const SPARE: usize = 256;
/// Largest record buffers kept for reuse (bytes); a larger record's are freed.
const SPARE_BYTES: usize = 4096;

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").field("stats", &self.stats).finish_non_exhaustive()
    }
}

impl Shared {
    /// An empty record to build, in the buffers of one already written when there is one.
    pub(crate) fn record(&self) -> Members<'static> {
        self.spare.lock().unwrap_or_else(PoisonError::into_inner).pop().unwrap_or_else(Members::new)
    }

    /// Spare records held now.
    #[cfg(test)]
    pub(crate) fn spare_len(&self) -> usize {
        self.spare.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Hands a record to the writer; the permit reserved its place in the queue.
    pub(crate) fn push(&self, record: Members<'static>, permit: Option<OwnedSemaphorePermit>) {
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        q.items.push_back(Queued { record, _permit: permit });
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        let wake = match q.wait {
            Wait::Busy => false,
            Wait::Idle => true,
            Wait::Gathering => q.items.len() >= self.wake_at,
        };
        drop(q);
        if wake {
            self.ready.notify_one();
        }
    }
}

/// Writer settings.
#[derive(Debug, Clone)]
pub(crate) struct WriterSettings {
    pub(crate) dir: Option<PathBuf>,
    pub(crate) rotation: Rotation,
    pub(crate) fsync: FsyncPolicy,
    pub(crate) checkpoint_every: u64,
    pub(crate) checkpoint_interval: Duration,
    pub(crate) capacity: usize,
}

/// The running trail: owns the writer thread. Dropping it drains the queue, writes the closing
/// checkpoint and waits for the thread.
pub struct AuditTrail {
    pub(crate) shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    public_key: Option<String>,
    first_file: Option<PathBuf>,
}

impl fmt::Debug for AuditTrail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditTrail").field("stats", &self.shared.stats).finish_non_exhaustive()
    }
}

impl AuditTrail {
    pub(crate) fn start(
        settings: WriterSettings,
        signer: Option<CheckpointSigner>,
        mut extra: Vec<Box<dyn AuditSink>>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AuditError> {
        if settings.capacity == 0 {
            return Err(AuditError::Config("the queue capacity must be at least 1".into()));
        }
        let now = clock.now();
        let (head, file, recovery) = match &settings.dir {
            Some(dir) => {
                let recovery = FileSink::recover(dir)?;
                let file = FileSink::create(dir, settings.rotation, recovery.head.seq + 1, now)?;
                (recovery.head.clone(), Some(file), Some(recovery))
            }
            None => (ChainHead::genesis(), None, None),
        };
        let first_file = file.as_ref().map(FileSink::path);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            permits: Arc::new(Semaphore::new(settings.capacity)),
            stats: AuditStats::default(),
            failing: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            wake_at: (settings.capacity / 2).clamp(1, BATCH),
            spare: Mutex::new(Vec::new()),
            spare_limit: settings.capacity.clamp(1, BATCH),
        });
        let public_key = signer.as_ref().map(CheckpointSigner::public_key);
        let mut writer = Writer {
            shared: shared.clone(),
            head,
            file,
            sinks: std::mem::take(&mut extra),
            signer,
            settings,
            clock,
            unsealed: 0,
            last_checkpoint: now,
            last_sync: now,
            last_write: std::time::Instant::now(),
            dirty: false,
            calls_in_file: 0,
            line: Vec::new(),
        };
        // the first record says where this run picks up the chain; written before serving
        let start = writer.start_record(recovery.as_ref());
        writer.write_with_retry(start).map_err(|e| AuditError::Writer(e.to_string()))?;
        writer.checkpoint("start");
        writer.sync();
        let thread = std::thread::Builder::new()
            .name("mcpe-audit-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| AuditError::Writer(e.to_string()))?;
        Ok(Self { shared, thread: Some(thread), public_key, first_file })
    }

    /// The counters.
    pub fn stats(&self) -> &AuditStats {
        &self.shared.stats
    }

    /// The checkpoint public key (base64url), when checkpoints are signed.
    pub fn public_key(&self) -> Option<&str> {
        self.public_key.as_deref()
    }

    /// The file this run started writing.
    pub fn first_file(&self) -> Option<&std::path::Path> {
        self.first_file.as_deref()
    }

    /// Drains the queue, writes the closing checkpoint and stops the writer.
    pub fn shutdown(mut self) {
        self.close();
    }

    fn close(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        {
            let mut q = self.shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
            q.closing = true;
        }
        self.shared.ready.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for AuditTrail {
    fn drop(&mut self) {
        self.close();
    }
}

struct Writer {
    shared: Arc<Shared>,
    head: ChainHead,
    file: Option<FileSink>,
    sinks: Vec<Box<dyn AuditSink>>,
    signer: Option<CheckpointSigner>,
    settings: WriterSettings,
    clock: Arc<dyn Clock>,
    unsealed: u64,
    last_checkpoint: Duration,
    last_sync: Duration,
    /// When the last batch was written (real time: gathering is not a clock of the trail's).
    last_write: std::time::Instant,
    dirty: bool,
    calls_in_file: u64,
    /// The sealed lines of a batch, kept from one batch to the next (up to [`LINE_KEEP`] bytes):
    /// a fresh buffer per batch is fresh pages from the allocator, faulted in and zeroed by the
    /// kernel for every batch.
    line: Vec<u8>,
}

/// Largest batch buffer kept for the next batch (bytes); a larger one is freed after its write.
const LINE_KEEP: usize = 1024 * 1024;

/// Most records taken from the queue at once.
const BATCH: usize = 4096;

impl Writer {
    fn run(mut self) {
        loop {
            let (batch, closing, sync_due) = self.next_batch();
            if self.settings.fsync == FsyncPolicy::EveryRecord {
                // each record on disk before the next is written
                for item in batch {
                    let Queued { record, _permit } = item;
                    if !self.commit(vec![record], 1) {
                        return;
                    }
                    self.sync();
                    self.maintain();
                }
            } else {
                // one write for what arrived together; records past a checkpoint or rotation
                // threshold are sealed right after
                let mut items = batch.into_iter();
                while items.len() > 0 {
                    let room = self.settings.checkpoint_every.saturating_sub(self.unsealed).max(1);
                    let take = usize::try_from(room).unwrap_or(usize::MAX).min(items.len());
                    let mut records = Vec::with_capacity(take);
                    // the chunk's permits as one, released at once (one lock of the semaphore)
                    // once the records are written
                    let mut permits: Option<OwnedSemaphorePermit> = None;
                    for Queued { record, _permit } in items.by_ref().take(take) {
                        records.push(record);
                        match (&mut permits, _permit) {
                            (Some(all), Some(one)) => all.merge(one),
                            (all @ None, one) => *all = one,
                            (Some(_), None) => {}
                        }
                    }
                    let n = records.len() as u64;
                    if !self.commit(records, n) {
                        return;
                    }
                    drop(permits);
                    self.maintain();
                }
            }
            if sync_due && self.dirty {
                // gathered up to the sync: written and synced together
                self.sync();
            }
            self.maintain();
            if closing {
                self.checkpoint("close");
                self.sync();
                for sink in &mut self.sinks {
                    let _ = sink.flush();
                }
                return;
            }
        }
    }

    /// Writes queued call records; false when the writer must stop (closing on a dead disk).
    fn commit(&mut self, records: Vec<Members<'static>>, n: u64) -> bool {
        if self.write_batch(records).is_err() {
            // only when closing with a dead disk: nothing more can be done, and it is said
            tracing::error!("audit writer stopped with unwritten records");
            return false;
        }
        self.shared.stats.written.fetch_add(n, Ordering::Relaxed);
        self.shared.stats.queued.fetch_sub(n, Ordering::Relaxed);
        true
    }

    /// Waits for records (or for a timer: sync, checkpoint), lets them gather until the batch is
    /// due, and takes what is queued. Also says whether the batch was gathered up to the interval
    /// sync (then it is written and synced together).
    fn next_batch(&mut self) -> (Vec<Queued>, bool, bool) {
        let mut q = self.shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let mut idle = false;
        while q.items.is_empty() && !q.closing {
            let wait = self.next_deadline();
            q.wait = Wait::Idle;
            let (guard, timeout) = self.shared.ready.wait_timeout(q, wait).unwrap_or_else(PoisonError::into_inner);
            q = guard;
            q.wait = Wait::Busy;
            if timeout.timed_out() {
                idle = q.items.is_empty();
                break;
            }
        }
        let mut sync_due = false;
        if !q.items.is_empty() && !q.closing && q.items.len() < self.shared.wake_at {
            let (wait, at_sync) = self.gather();
            sync_due = at_sync;
            if !wait.is_zero() {
                q.wait = Wait::Gathering;
                let (guard, timeout) = self.shared.ready.wait_timeout(q, wait).unwrap_or_else(PoisonError::into_inner);
                q = guard;
                q.wait = Wait::Busy;
                // woken early (a full queue, closing): the sync keeps its own time
                sync_due &= timeout.timed_out();
            }
        }
        let n = q.items.len().min(BATCH);
        let batch = (q.items.drain(..n).collect(), q.closing && q.items.is_empty(), sync_due);
        drop(q);
        if idle {
            // nothing came for a while: the spare records of a busy spell go back to the allocator
            let surplus = {
                let mut spare = self.shared.spare.lock().unwrap_or_else(PoisonError::into_inner);
                let keep = spare.len().min(SPARE);
                let surplus = spare.split_off(keep);
                if !surplus.is_empty() {
                    spare.shrink_to_fit();
                }
                surplus
            };
            drop(surplus);
        }
        self.last_write = std::time::Instant::now();
        batch
    }

    /// How long queued records may still gather: until the interval sync is due (when the
    /// policy has one), at most [`GATHER`] after the last write (zero: the batch is due now); and
    /// whether the wait ends at the sync.
    fn gather(&self) -> (Duration, bool) {
        let written = GATHER.saturating_sub(self.last_write.elapsed());
        match self.settings.fsync {
            FsyncPolicy::EveryRecord => (Duration::ZERO, false),
            FsyncPolicy::Os => (written, false),
            FsyncPolicy::Interval(every) => {
                let sync = (self.last_sync + every).saturating_sub(self.clock.now());
                if sync <= written { (sync, true) } else { (written, false) }
            }
        }
    }

    fn next_deadline(&self) -> Duration {
        let now = self.clock.now();
        let mut wait = Duration::from_secs(1);
        if self.dirty
            && let FsyncPolicy::Interval(every) = self.settings.fsync
        {
            wait = wait.min((self.last_sync + every).saturating_sub(now));
        }
        if self.unsealed > 0 {
            wait = wait.min((self.last_checkpoint + self.settings.checkpoint_interval).saturating_sub(now));
        }
        wait.max(Duration::from_millis(1))
    }

    /// Timers and thresholds: interval sync, checkpoints, rotation.
    fn maintain(&mut self) {
        let now = self.clock.now();
        if self.dirty
            && let FsyncPolicy::Interval(every) = self.settings.fsync
            && now.saturating_sub(self.last_sync) >= every
        {
            self.sync();
        }
        let due = self.unsealed >= self.settings.checkpoint_every
            || (self.unsealed > 0 && now.saturating_sub(self.last_checkpoint) >= self.settings.checkpoint_interval);
        if due {
            self.checkpoint("periodic");
        }
        // a file is rotated only once it holds calls, never right after its own first record
        if self.calls_in_file > 0 && self.file.as_ref().is_some_and(|f| f.rotation_due(now)) {
            self.rotate(now);
        }
    }

    fn rotate(&mut self, now: Duration) {
        self.checkpoint("rotate");
        self.sync();
        let Some(file) = self.file.as_mut() else { return };
        let previous = file.name().to_owned();
        self.calls_in_file = 0;
        loop {
            match file.rotate(self.head.seq + 1, now) {
                Ok(()) => break,
                Err(error) if self.shared.closed.load(Ordering::SeqCst) => {
                    tracing::error!(%error, "audit trail rotation failed while closing");
                    return;
                }
                Err(error) => {
                    self.shared.stats.failed.fetch_add(1, Ordering::Relaxed);
                    self.shared.failing.store(true, Ordering::SeqCst);
                    tracing::error!(%error, "audit trail rotation failed; retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        let mut record = base("file", self.clock.now());
        record.insert("previous_file".into(), Value::from(previous));
        let _ = self.write_with_retry(record);
    }

    fn start_record(&self, recovery: Option<&Recovery>) -> Map<String, Value> {
        let mut record = base("start", self.clock.now());
        match recovery {
            Some(r) => {
                record.insert("previous_file".into(), r.previous_file.clone().map_or(Value::Null, Value::from));
                let previous = if r.previous_file.is_none() {
                    "none"
                } else if r.clean {
                    "closed"
                } else {
                    "unclean"
                };
                record.insert("previous_run".into(), Value::from(previous));
                if let Some(torn) = &r.torn {
                    tracing::warn!(file = %torn.file, bytes = torn.bytes, "audit trail: torn last line sealed");
                    record.insert(
                        "torn".into(),
                        serde_json::json!({"file": torn.file, "bytes": torn.bytes, "sha256": torn.sha256}),
                    );
                }
                if previous == "unclean" {
                    tracing::warn!(
                        "audit trail: the previous run did not close its trail (crash?); continuing the chain"
                    );
                }
            }
            None => {
                record.insert("previous_file".into(), Value::Null);
                record.insert("previous_run".into(), Value::from("none"));
            }
        }
        record
    }

    fn checkpoint(&mut self, kind: &str) {
        let now = self.clock.now();
        let mut record = base("checkpoint", now);
        record.insert("kind".into(), Value::from(kind));
        record.insert("sealed_records".into(), Value::from(self.unsealed));
        if let Some(signer) = &self.signer {
            record.insert("key_id".into(), Value::from(signer.key_id()));
        }
        if self.write_with_retry(record).is_ok() {
            self.shared.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
            self.unsealed = 0;
            self.last_checkpoint = now;
        }
    }

    /// Chains and writes one record, retrying while the disk refuses (the record is kept, the
    /// queue fills, and the layer's policy decides what requests see). Gives up only when closing.
    fn write_with_retry(&mut self, record: Map<String, Value>) -> io::Result<()> {
        self.write_batch(vec![Members::owned(&record)]).map(|_| ())
    }

    /// Chains `records` and appends them with one write, retrying while the disk refuses (the
    /// records are kept, the queue fills, and the layer's policy decides what requests see).
    /// Gives up only when closing. Returns how many call records were written.
    fn write_batch(&mut self, records: Vec<Members<'static>>) -> io::Result<u64> {
        let mut head = self.head.clone();
        let mut buf = std::mem::take(&mut self.line);
        buf.clear();
        buf.reserve(records.len() * 900);
        let mut sealed = Vec::with_capacity(records.len());
        let mut spent = Vec::with_capacity(records.len());
        for mut record in records {
            let start = buf.len();
            let call = record.raw("type") == Some(br#""mcp""#.as_slice());
            let (next, _) = seal_into(&mut record, &head, self.signer.as_ref(), &mut buf);
            sealed.push((call, start..buf.len()));
            head = next;
            if call && record.capacity() <= SPARE_BYTES {
                record.clear();
                spent.push(record);
            }
        }
        {
            let mut spare = self.shared.spare.lock().unwrap_or_else(PoisonError::into_inner);
            let room = self.shared.spare_limit.saturating_sub(spare.len());
            spare.extend(spent.drain(..).take(room));
        }
        let mut backoff = Duration::from_millis(50);
        loop {
            let written = match self.file.as_mut() {
                Some(file) => file.append(&buf),
                None => Ok(()),
            };
            match written {
                Ok(()) => break,
                Err(error) => {
                    self.shared.stats.failed.fetch_add(1, Ordering::Relaxed);
                    if !self.shared.failing.swap(true, Ordering::SeqCst) {
                        tracing::error!(%error, "audit trail write failed; holding records and retrying");
                    }
                    if self.shared.closed.load(Ordering::SeqCst) && backoff >= Duration::from_secs(2) {
                        return Err(error);
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
        if self.shared.failing.swap(false, Ordering::SeqCst) {
            tracing::warn!("audit trail writable again");
        }
        let mut calls = 0;
        for (call, range) in &sealed {
            if !self.sinks.is_empty() {
                // sinks get the parsed record (the trail itself needs only the line)
                let line = &buf[range.clone()];
                let record: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
                for sink in &mut self.sinks {
                    if let Err(error) = sink.write(&record, line) {
                        self.shared.stats.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%error, ?sink, "audit sink write failed");
                    }
                }
            }
            if *call {
                calls += 1;
            }
        }
        self.unsealed += calls;
        self.calls_in_file += calls;
        self.head = head;
        self.dirty = true;
        if buf.capacity() <= LINE_KEEP {
            self.line = buf;
        }
        Ok(calls)
    }

    fn sync(&mut self) {
        if let Some(file) = self.file.as_mut() {
            let started = std::time::Instant::now();
            if let Err(error) = file.sync() {
                self.shared.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, "audit trail fsync failed");
                return;
            }
            self.shared.stats.fsync.observe(started.elapsed());
        }
        self.last_sync = self.clock.now();
        self.dirty = false;
    }
}

/// The fields every record starts with.
pub(crate) fn base(kind: &str, now: Duration) -> Map<String, Value> {
    let mut record = Map::with_capacity(24);
    record.insert("v".into(), Value::from(1));
    record.insert("type".into(), Value::from(kind));
    record.insert("event_id".into(), Value::from(uuid_v7(now)));
    record.insert("occurred_at".into(), Value::from(rfc3339_millis(now)));
    record
}
