use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use async_trait::async_trait;
use domain::user::{HashingUnavailable, Password, PasswordHash, PasswordHasher};
use tokio::sync::Semaphore;

/// argon2id with OWASP's recommended minimum (19 MiB, 2 iterations, 1 lane), run on the
/// blocking pool with at most one hash per core at a time, so logins cannot starve the
/// async runtime or exhaust memory.
#[derive(Clone)]
pub struct Argon2Hasher {
    params: Params,
    permits: Arc<Semaphore>,
    /// A real hash of a random password, verified against when an e-mail is unknown, so that
    /// a failed login takes as long whether or not the account exists.
    dummy: PasswordHash,
    /// How long a hash may wait for a free core before the request is refused.
    queue_timeout: Duration,
}

impl Argon2Hasher {
    pub fn owasp() -> Self {
        // 19 MiB, t=2, p=1 are valid argon2 parameters.
        let params = Params::new(19 * 1024, 2, 1, None).expect("OWASP argon2id parameters are valid");
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let dummy = hash_now(&params, "dummy password that nobody has").unwrap_or_else(|_| PasswordHash(String::new()));
        Self { params, permits: Arc::new(Semaphore::new(cores)), dummy, queue_timeout: Duration::from_secs(10) }
    }

    /// Checks `password` against `hash`, or against a dummy hash when there is none (an
    /// unknown account), so both take the same time. `Err` when no core was free in time: the
    /// password was not checked.
    pub async fn check(&self, password: &Password, hash: Option<&PasswordHash>) -> Result<bool, HashingUnavailable> {
        let params = self.params.clone();
        let password = password.clone();
        let (hash, real) = match hash {
            Some(h) => (h.clone(), true),
            None => (self.dummy.clone(), false),
        };
        let matches = self
            .run(move || {
                argon2::PasswordHash::new(&hash.0)
                    .map(|parsed| argon2(&params).verify_password(password.expose().as_bytes(), &parsed).is_ok())
                    .unwrap_or(false)
            })
            .await?;
        Ok(real && matches)
    }

    /// How long a hash may wait for a free core (10 s unless set).
    pub fn with_queue_timeout(mut self, timeout: Duration) -> Self {
        self.queue_timeout = timeout;
        self
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, HashingUnavailable> {
        let permit = tokio::time::timeout(self.queue_timeout, Arc::clone(&self.permits).acquire_owned())
            .await
            .map_err(|_| HashingUnavailable)?
            .map_err(|_| HashingUnavailable)?;
        let result = tokio::task::spawn_blocking(work).await.map_err(|_| HashingUnavailable);
        drop(permit);
        result
    }
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn hash_now(params: &Params, password: &str) -> Result<PasswordHash, HashingUnavailable> {
    let salt = SaltString::generate(&mut OsRng);
    argon2(params).hash_password(password.as_bytes(), &salt).map(|h| PasswordHash(h.to_string())).map_err(|_| HashingUnavailable)
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashingUnavailable> {
        let params = self.params.clone();
        let password = password.clone();
        self.run(move || hash_now(&params, password.expose())).await?
    }

    async fn verify(&self, password: &Password, hash: &PasswordHash) -> bool {
        self.check(password, Some(hash)).await.unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify_only_the_right_password() {
        let hasher = Argon2Hasher::owasp();
        let pw: Password = "correct horse".parse().expect("valid");
        let hash = hasher.hash(&pw).await.expect("hashes");
        assert!(hash.0.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{}", hash.0);
        assert!(hasher.verify(&pw, &hash).await);
        assert!(!hasher.verify(&"wrong horse".parse().expect("valid"), &hash).await);
        assert!(!hasher.verify(&pw, &PasswordHash("garbage".into())).await);
        assert_eq!(hasher.check(&pw, None).await, Ok(false), "an unknown account never matches");
    }

    #[tokio::test]
    async fn a_saturated_pool_refuses_instead_of_answering_false() {
        let hasher = Argon2Hasher::owasp().with_queue_timeout(Duration::from_millis(50));
        let held: Vec<_> = (0..hasher.permits.available_permits()).map(|_| Arc::clone(&hasher.permits).try_acquire_owned()).collect();
        assert!(held.iter().all(Result::is_ok));
        let pw: Password = "correct horse".parse().expect("valid");
        assert_eq!(hasher.check(&pw, None).await, Err(HashingUnavailable));
    }
}
