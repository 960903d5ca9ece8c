//! What the notifier's test files share.

use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::user::{Role, User, UserCommand, UserServices};
use domain::{stream_id, UserId};
use store::{Metadata, Repository};

use notifier::{Notifier, NotifyError};
use projections::Runner;
use testkit::{PlainHasher, TestStore};
use worker_kit::{Driver, Outcome, ReadDb};

/// Runs the users view and the notifier until the notifier has passed the whole log (or
/// crashed).
pub async fn drive(t: &TestStore, db: &ReadDb, runner: &Runner, n: &Driver<Notifier>) -> Result<(), NotifyError> {
    drive_with(t, db, Some(runner), n).await
}

// Not every test file keeps the users view behind.
#[allow(dead_code)]
/// Runs the notifier alone, the users view left where it is, until it has passed the whole log.
pub async fn drive_alone(t: &TestStore, db: &ReadDb, n: &Driver<Notifier>) -> Result<(), NotifyError> {
    drive_with(t, db, None, n).await
}

async fn drive_with(t: &TestStore, db: &ReadDb, runner: Option<&Runner>, n: &Driver<Notifier>) -> Result<(), NotifyError> {
    let head = t.store.head_position().await.expect("head");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(runner) = runner {
            runner.catch_up().await.expect("users view");
        }
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

// Not every test file registers users.
#[allow(dead_code)]
/// Customer `n` of tenant `acme` (`user<n>@example.com`), registered, then `commands` run on it.
pub async fn customer(t: &TestStore, n: u128, commands: Vec<UserCommand>) -> UserId {
    let tenant: domain::TenantId = "acme".parse().expect("valid");
    let id = UserId::from_uuid(uuid::Uuid::from_u128(n));
    let register = UserCommand::Register {
        tenant: tenant.clone(),
        user_id: id,
        email: format!("user{n}@example.com").parse().expect("valid"),
        name: format!("User {n}").parse().expect("valid"),
        password: "correct horse".parse().expect("valid"),
        roles: [Role::Customer].into_iter().collect(),
    };
    let users = Repository::<User>::new(t.store.clone(), UserServices { hasher: Arc::new(PlainHasher) });
    for command in std::iter::once(register).chain(commands) {
        users.execute(&stream_id(&tenant, id), command, None, &Metadata::default()).await.expect("user command");
    }
    id
}
