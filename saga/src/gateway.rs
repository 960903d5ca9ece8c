//! A payment provider reached over HTTP (`SHOP_PAYMENT_GATEWAY=http`): the shape of every
//! card provider's API (Stripe, Adyen, …) reduced to four calls, so a provider's sandbox, an
//! adapter in front of one, or several saga processes sharing one simulated provider (the
//! consumer-group test) all plug in the same way.
//!
//! # The protocol
//! `POST <base>/v1/{authorise|capture|void|refund}` with a JSON body and:
//! - `Authorization: Bearer <SHOP_PAYMENT_GATEWAY_KEY>` (never logged);
//! - `Idempotency-Key: <order>:<step>:<id>`: a provider that sees a key again answers what it
//!   answered the first time and moves no money twice;
//! - `User-Agent: shop/<version> (pid <pid>)`: which process asked, for the provider's logs.
//!
//! | call        | body                                    | `200` answer             |
//! |-------------|-----------------------------------------|--------------------------|
//! | `authorise` | `{"amount": {"amount", "currency"}, "method"}` | `{"reference": "…"}` |
//! | `capture`   | `{"amount": …, "reference"}`            | `{}`                     |
//! | `void`      | `{"reference"}`                         | `{}`                     |
//! | `refund`    | `{"amount": …, "reference"}`            | `{}`                     |
//!
//! `402 {"code": "card_declined"}` is a decline (asking again gives the same); `504`, or no
//! answer in time, is a timeout (an authorisation is then voided under the same key); any
//! other answer, or none, leaves the call to be retried later under the same key. The saga bounds
//! every call by its own timeout (`SagaConfig::gateway_timeout`).

use std::time::Duration;

use async_trait::async_trait;
use domain::payment::{GatewayError, PaymentGateway};
use domain::Money;
use serde::{Deserialize, Serialize};

/// The body of a call (the fields each call sends are in the table above).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GatewayRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// The body of an answer: `reference` for an authorisation, `code` for a decline.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GatewayAnswer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// A provider behind `base` (`https://…`; `http://` for one on this host or a private network
/// the operator chose).
pub struct HttpGateway {
    client: reqwest::Client,
    base: String,
    key: String,
    agent: String,
}

impl std::fmt::Debug for HttpGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpGateway").field("base", &self.base).finish_non_exhaustive()
    }
}

impl HttpGateway {
    /// `base` must be an `http(s)` URL without credentials, query or fragment; `key` must not
    /// be empty.
    pub fn new(base: &str, key: &str, timeout: Duration) -> Result<Self, String> {
        let url = worker_kit::service::service_url("payment gateway", base)?;
        if key.trim().is_empty() {
            return Err("payment gateway key: SHOP_PAYMENT_GATEWAY_KEY is empty".to_owned());
        }
        Ok(Self {
            client: worker_kit::service::service_client("payment gateway", timeout)?,
            base: url.as_str().trim_end_matches('/').to_owned(),
            key: key.to_owned(),
            agent: worker_kit::service::user_agent(),
        })
    }

    async fn call(&self, operation: &str, key: &str, body: GatewayRequest) -> Result<GatewayAnswer, GatewayError> {
        let answer = self
            .client
            .post(format!("{}/v1/{operation}", self.base))
            .bearer_auth(&self.key)
            .header("idempotency-key", key)
            .header(reqwest::header::USER_AGENT, &self.agent)
            .json(&body)
            .send()
            .await
            .map_err(
                |e| if e.is_timeout() { GatewayError::Timeout } else { GatewayError::Unavailable(worker_kit::service::without_url(e)) },
            )?;
        let status = answer.status();
        let body: GatewayAnswer = answer.json().await.unwrap_or_default();
        match status.as_u16() {
            200 => Ok(body),
            402 => Err(GatewayError::Declined(body.code.unwrap_or_else(|| "declined".to_owned()))),
            // The provider (or a proxy before it) gave up waiting: the outcome is unknown.
            504 => Err(GatewayError::Timeout),
            other => Err(GatewayError::Unavailable(format!("{operation} answered {other}"))),
        }
    }
}

#[async_trait]
impl PaymentGateway for HttpGateway {
    async fn authorise(&self, key: &str, amount: Money, method: &str) -> Result<String, GatewayError> {
        let request = GatewayRequest { amount: Some(amount), method: Some(method.to_owned()), reference: None };
        let answer = self.call("authorise", key, request).await?;
        answer
            .reference
            .filter(|r| !r.is_empty())
            .ok_or_else(|| GatewayError::Unavailable("authorise answered without a reference".to_owned()))
    }

    async fn capture(&self, key: &str, reference: &str, amount: Money) -> Result<(), GatewayError> {
        let request = GatewayRequest { amount: Some(amount), reference: Some(reference.to_owned()), method: None };
        self.call("capture", key, request).await.map(|_| ())
    }

    async fn void(&self, key: &str, reference: &str) -> Result<(), GatewayError> {
        self.call("void", key, GatewayRequest { reference: Some(reference.to_owned()), ..GatewayRequest::default() }).await.map(|_| ())
    }

    async fn refund(&self, key: &str, reference: &str, amount: Money) -> Result<(), GatewayError> {
        let request = GatewayRequest { amount: Some(amount), reference: Some(reference.to_owned()), method: None };
        self.call("refund", key, request).await.map(|_| ())
    }
}
