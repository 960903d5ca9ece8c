use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::Money;

/// Why a gateway call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The provider said no (card declined, capture refused); asking again gives the same.
    #[error("declined: {0}")]
    Declined(String),
    /// No answer in time. For an authorisation the saga gives up and voids under the same
    /// idempotency key, in case the provider did authorise.
    #[error("the payment provider did not answer in time")]
    Timeout,
    /// The provider could not be reached; the call is retried later with the same key.
    #[error("payment provider unavailable: {0}")]
    Unavailable(String),
}

/// A payment provider. Every call carries an idempotency key: a provider that sees a key again
/// answers what it answered the first time and moves no money twice.
///
/// This is the one place to plug in a real provider (Stripe, Adyen, …): implement the four
/// calls against its API, passing `key` as its idempotency key, and hand it to the saga.
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    /// Holds `amount` on the payment method; returns the provider's reference.
    async fn authorise(&self, key: &str, amount: Money, method: &str) -> Result<String, GatewayError>;
    async fn capture(&self, key: &str, reference: &str, amount: Money) -> Result<(), GatewayError>;
    /// Releases an authorisation (or nothing, if there was none under `reference`).
    async fn void(&self, key: &str, reference: &str) -> Result<(), GatewayError>;
    async fn refund(&self, key: &str, reference: &str, amount: Money) -> Result<(), GatewayError>;
}

/// The simulated provider of embedded mode and tests. Its test payment methods:
///
/// | method             | authorise          | capture  |
/// |--------------------|--------------------|----------|
/// | `tok_approve`      | approved           | captured |
/// | `tok_decline`      | declined           | —        |
/// | `tok_capture_fail` | approved           | declined |
/// | `tok_timeout`      | times out          | —        |
///
/// Any other method is declined. It keeps every answer by idempotency key, as a real provider
/// does, and counts the money it moved, so tests can check that nothing was charged twice.
#[derive(Debug, Default)]
pub struct SimulatedGateway {
    state: Mutex<Ledger>,
}

#[derive(Debug, Default)]
struct Ledger {
    answers: HashMap<String, Result<String, GatewayError>>,
    /// Authorisations approved, captures made, voids, refunds: each counted once per key.
    authorised: u64,
    captured: u64,
    voided: u64,
    refunded: u64,
    calls: u64,
}

/// What the simulated provider has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LedgerTotals {
    pub authorised: u64,
    pub captured: u64,
    pub voided: u64,
    pub refunded: u64,
    /// Every call, including repeats of a key.
    pub calls: u64,
}

impl SimulatedGateway {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn totals(&self) -> LedgerTotals {
        let l = self.state.lock().unwrap_or_else(|p| p.into_inner());
        LedgerTotals { authorised: l.authorised, captured: l.captured, voided: l.voided, refunded: l.refunded, calls: l.calls }
    }

    /// Answers `key` once with `decide`, and the same answer for every repeat.
    fn once(&self, key: &str, decide: impl FnOnce(&mut Ledger) -> Result<String, GatewayError>) -> Result<String, GatewayError> {
        let mut l = self.state.lock().unwrap_or_else(|p| p.into_inner());
        l.calls += 1;
        if let Some(answer) = l.answers.get(key) {
            return answer.clone();
        }
        let answer = decide(&mut l);
        l.answers.insert(key.to_owned(), answer.clone());
        answer
    }
}

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    async fn authorise(&self, key: &str, _amount: Money, method: &str) -> Result<String, GatewayError> {
        self.once(key, |l| match method {
            "tok_approve" | "tok_capture_fail" => {
                l.authorised += 1;
                Ok(format!("sim_{}_{key}", method.trim_start_matches("tok_")))
            }
            "tok_timeout" => Err(GatewayError::Timeout),
            "tok_decline" => Err(GatewayError::Declined("card_declined".to_owned())),
            _ => Err(GatewayError::Declined("unknown_payment_method".to_owned())),
        })
    }

    async fn capture(&self, key: &str, reference: &str, _amount: Money) -> Result<(), GatewayError> {
        self.once(key, |l| {
            if reference.starts_with("sim_capture_fail_") {
                return Err(GatewayError::Declined("capture_refused".to_owned()));
            }
            l.captured += 1;
            Ok(String::new())
        })
        .map(|_| ())
    }

    async fn void(&self, key: &str, _reference: &str) -> Result<(), GatewayError> {
        self.once(key, |l| {
            l.voided += 1;
            Ok(String::new())
        })
        .map(|_| ())
    }

    async fn refund(&self, key: &str, _reference: &str, _amount: Money) -> Result<(), GatewayError> {
        self.once(key, |l| {
            l.refunded += 1;
            Ok(String::new())
        })
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur(n: i64) -> Money {
        Money::new(n, "EUR".parse().expect("valid"))
    }

    #[tokio::test]
    async fn a_repeated_key_gets_the_first_answer_and_moves_no_money_twice() {
        let g = SimulatedGateway::new();
        let a = g.authorise("p1:authorise", eur(100), "tok_approve").await;
        let b = g.authorise("p1:authorise", eur(100), "tok_approve").await;
        assert_eq!(a, b);
        assert!(a.is_ok());
        assert_eq!(g.totals().authorised, 1);
        assert_eq!(g.totals().calls, 2);
    }

    #[tokio::test]
    async fn the_test_methods_behave_as_documented() {
        let g = SimulatedGateway::new();
        assert_eq!(g.authorise("d", eur(1), "tok_decline").await, Err(GatewayError::Declined("card_declined".into())));
        assert_eq!(g.authorise("t", eur(1), "tok_timeout").await, Err(GatewayError::Timeout));
        let r = g.authorise("c", eur(1), "tok_capture_fail").await.expect("approved");
        assert!(matches!(g.capture("c:capture", &r, eur(1)).await, Err(GatewayError::Declined(_))));
        let r = g.authorise("a", eur(1), "tok_approve").await.expect("approved");
        assert_eq!(g.capture("a:capture", &r, eur(1)).await, Ok(()));
        assert!(matches!(g.authorise("x", eur(1), "4242424242424242").await, Err(GatewayError::Declined(_))));
    }
}
