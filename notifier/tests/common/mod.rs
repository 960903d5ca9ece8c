//! What the notifier's test files share.

use std::time::{Duration, Instant};

use notifier::{Notifier, NotifyError};
use projections::Runner;
use testkit::TestStore;
use worker_kit::{Driver, Outcome, ReadDb};

/// Runs the users view and the notifier until the notifier has passed the whole log (or
/// crashed).
pub async fn drive(t: &TestStore, db: &ReadDb, runner: &Runner, n: &Driver<Notifier>) -> Result<(), NotifyError> {
    let head = t.store.head_position().await.expect("head");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        runner.catch_up().await.expect("users view");
        match n.try_process_next().await {
            Ok(Outcome::Idle) => {
                let mut conn = db.pool.acquire().await.expect("conn");
                let at = worker_kit::read_checkpoint(&mut conn, notifier::NAME).await.expect("checkpoint").map_or(0, |(c, _)| c.position);
                if at >= head {
                    return Ok(());
                }
            }
            Ok(_) | Err(NotifyError::NotYet(_)) => {}
            Err(e) => return Err(e),
        }
        assert!(Instant::now() < deadline, "the notifier did not pass the log");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
