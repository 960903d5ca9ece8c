//! Read models that keep their checkpoint with their data, outside the SQL read-model
//! database: product detail documents (Redis, the checkpoint written by the same Lua script)
//! and product search (tantivy, the checkpoint in the commit payload). One worker loop, one
//! read-your-writes wait and one status report serve both.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use store::{EventStore, LogCursor};
use tokio::sync::watch;

use crate::{Outcome, ProjectionError, ProjectionStatus};

/// A checkpoint and the number of log events processed.
pub type Checkpoint = Option<(LogCursor, i64)>;

/// `transaction:position:events`, the form both stores keep.
pub(crate) fn encode(c: LogCursor, events: i64) -> String {
    format!("{}:{}:{events}", c.transaction_id, c.position)
}

pub(crate) fn decode(s: &str) -> Checkpoint {
    let mut parts = s.split(':').map(|p| p.parse::<i64>().ok());
    Some((LogCursor { transaction_id: parts.next()??, position: parts.next()?? }, parts.next()??))
}

#[async_trait]
pub trait OwnCheckpoint: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn store(&self) -> &EventStore;
    /// Log events read per batch.
    fn batch_size(&self) -> u32;
    /// Where the data says it is.
    async fn checkpoint(&self) -> Result<Checkpoint, ProjectionError>;
    /// Processes the next batch: data and checkpoint are written together, or not at all.
    async fn try_process_next(&self) -> Result<Outcome, ProjectionError>;

    /// Whether the event at `position` has been processed.
    async fn reached(&self, position: i64) -> Result<bool, ProjectionError> {
        match self.store().cursor_of(position).await? {
            Some(target) => Ok(self.checkpoint().await?.is_some_and(|(c, _)| c >= target)),
            None => Ok(position == 0),
        }
    }

    /// Waits up to `timeout` until the event at `position` has been processed.
    async fn wait_for(&self, position: i64, timeout: Duration) -> Result<bool, ProjectionError> {
        crate::poll_until(timeout, || self.reached(position)).await
    }

    /// Whether a replacement is being built (`shop replay`).
    fn rebuilding(&self) -> bool {
        false
    }

    async fn status(&self) -> Result<ProjectionStatus, ProjectionError> {
        let head = self.store().head_position().await?;
        let mut status = crate::runner::status_at(self.store(), head, self.name(), self.checkpoint().await?, None).await?;
        if self.rebuilding() {
            status.state = "rebuilding";
        }
        Ok(status)
    }
}

/// Processes the log into `model` until `stop` turns true, backing off on failures.
pub async fn run<M: OwnCheckpoint + ?Sized>(model: Arc<M>, mut stop: watch::Receiver<bool>) {
    let wake = model.store().appended();
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            return;
        }
        let wait = match model.try_process_next().await {
            Ok(Outcome::Applied(n)) if n >= model.batch_size() as usize => continue,
            Ok(outcome) => {
                backoff = Duration::from_millis(100);
                if outcome == Outcome::Idle {
                    Duration::from_millis(50)
                } else {
                    Duration::from_millis(10)
                }
            }
            Err(e) => {
                tracing::warn!(projection = model.name(), error = %e, "batch failed; retrying");
                let wait = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                wait
            }
        };
        tokio::select! {
            _ = stop.changed() => {}
            _ = wake.notified() => tokio::time::sleep(Duration::from_millis(10)).await,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
