//! Group commit for single-event appends. Commands running at the same moment hand their event
//! to a few workers; each worker inserts everything waiting in one statement and one commit.
//! `ON CONFLICT DO NOTHING` keeps the commands independent: a row whose (type, id, sequence) is
//! taken is simply not inserted, and only its command gets [`StoreError::Conflict`]. A single
//! row is all of its command, so no command is ever half-written. Nothing waits for a batch to
//! fill: a worker takes what is queued when it becomes free. Rows go in key order, so batches
//! of two processes never deadlock on each other's keys.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};

use crate::backend::{insert_rows, Row};
use crate::{Db, NewEvent, StoreError, StreamAppend};

/// Most rows in one statement.
const MAX_BATCH: usize = 256;

struct Request {
    row: Row,
    /// The position, or `None` when the key was taken.
    reply: oneshot::Sender<Result<Option<i64>, StoreError>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Batcher {
    tx: mpsc::Sender<Request>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request").field("aggregate_id", &self.row.aggregate_id).finish()
    }
}

fn closed() -> StoreError {
    StoreError::Database(sqlx::Error::PoolClosed)
}

impl Batcher {
    /// Starts `workers` workers on the current runtime; they stop when the last clone of the
    /// batcher is dropped.
    pub fn start(db: Db, workers: usize) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..workers.max(1) {
            tokio::spawn(work(db.clone(), Arc::clone(&rx)));
        }
        Self { tx }
    }

    pub async fn append(&self, append: &StreamAppend, event: &NewEvent) -> Result<i64, StoreError> {
        let (reply, answer) = oneshot::channel();
        let row = Row::new(append, append.expected_version + 1, event);
        self.tx.send(Request { row, reply }).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())??.ok_or(StoreError::Conflict)
    }
}

async fn work(db: Db, rx: Arc<Mutex<mpsc::Receiver<Request>>>) {
    loop {
        let batch = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            batch
        };
        // In key order: two processes' batches that touch the same streams then take their
        // locks in the same order, and cannot deadlock each other.
        let mut rows: Vec<Row> = batch.iter().map(|r| r.row.clone()).collect();
        rows.sort_by(|a, b| (&a.aggregate_type, &a.aggregate_id, a.sequence).cmp(&(&b.aggregate_type, &b.aggregate_id, b.sequence)));
        match insert_rows(&db, &rows, true).await {
            Ok(mut positions) => {
                for r in batch {
                    // Two requests for one key in one batch: the first in line got the row.
                    let position = positions.remove(&r.row.key());
                    let _ = r.reply.send(Ok(position));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, rows = rows.len(), "batched append failed");
                for r in batch {
                    let _ = r.reply.send(Err(replicate(&e)));
                }
            }
        }
    }
}

/// The same failure for every command of a failed batch.
fn replicate(e: &StoreError) -> StoreError {
    match e {
        StoreError::Conflict => StoreError::Conflict,
        StoreError::Database(sqlx::Error::PoolTimedOut) => StoreError::Database(sqlx::Error::PoolTimedOut),
        StoreError::Database(sqlx::Error::Io(io)) => StoreError::Database(sqlx::Error::Io(std::io::Error::new(io.kind(), io.to_string()))),
        // The server went away (a restart ends every connection): still "unavailable" for each
        // waiter, so each is answered 503 and may retry, not 500.
        other if other.is_unavailable() => {
            StoreError::Database(sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, other.to_string())))
        }
        other => StoreError::Database(sqlx::Error::Protocol(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::replicate;
    use crate::error::tests::database_error;
    use crate::StoreError;

    #[test]
    fn a_server_going_away_stays_unavailable_for_every_waiter() {
        let terminated = StoreError::Database(database_error("57P01", "terminating connection due to administrator command"));
        assert!(terminated.is_unavailable());
        let copy = replicate(&terminated);
        assert!(copy.is_unavailable(), "{copy}");
        assert!(copy.to_string().contains("terminating connection"), "{copy}");
        let wrong = StoreError::Database(database_error("42P01", "relation does not exist"));
        assert!(!replicate(&wrong).is_unavailable());
        assert!(matches!(replicate(&StoreError::Conflict), StoreError::Conflict));
    }
}
