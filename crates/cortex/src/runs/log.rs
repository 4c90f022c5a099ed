//! A run's event log in memory, shared by every viewer on this node: frames from seq 1, and a
//! watch of the last seq. A viewer keeps only its position; a slow viewer reads from the log at
//! its own pace and never slows the run or the others.

use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use crate::pipeline::Frame;

pub struct EventLog {
    frames: RwLock<Vec<Arc<Frame>>>,
    last: watch::Sender<u64>,
}

impl Default for EventLog {
    fn default() -> Self {
        Self {
            frames: RwLock::new(Vec::new()),
            last: watch::channel(0).0,
        }
    }
}

impl EventLog {
    /// Append frames in order; a frame that is not the next seq is ignored (already there, or
    /// after a gap the caller must fill first).
    pub fn extend(&self, frames: impl IntoIterator<Item = Frame>) {
        let Ok(mut log) = self.frames.write() else {
            return;
        };
        let mut last = log.len() as u64;
        for f in frames {
            if f.seq == last + 1 {
                last = f.seq;
                log.push(Arc::new(f));
            }
        }
        drop(log);
        self.last.send_if_modified(|v| {
            let changed = *v != last;
            *v = last;
            changed
        });
    }

    /// The last seq in the log.
    pub fn last_seq(&self) -> u64 {
        *self.last.borrow()
    }

    /// Frames after `after`, at most `max`.
    pub fn after(&self, after: u64, max: usize) -> Vec<Arc<Frame>> {
        let Ok(log) = self.frames.read() else {
            return Vec::new();
        };
        let start = (after as usize).min(log.len());
        log[start..(start + max).min(log.len())].to_vec()
    }

    /// Whether the log holds the run's final status.
    pub fn is_done(&self) -> bool {
        self.frames
            .read()
            .ok()
            .and_then(|l| l.last().map(|f| f.is_final()))
            .unwrap_or(false)
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.last.subscribe()
    }
}
