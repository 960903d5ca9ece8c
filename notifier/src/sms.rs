//! Text messages: the [`SmsSender`] trait and its two senders.
//!
//! - [`OutboxSms`] (embedded mode): each message is a JSON file in `<SHOP_DATA_DIR>/outbox/sms/`.
//! - [`HttpSms`] (`SHOP_SMS_URL`): an HTTP API shaped like Twilio's Messages API. One
//!   `POST <SHOP_SMS_URL>` per message, form-encoded `To`, `From` and `Body`, basic auth with
//!   `SHOP_SMS_ACCOUNT` and `SHOP_SMS_TOKEN`, and an `Idempotency-Key` (the delivery's id) for
//!   providers that recognise a repeated request. A `2xx` answer is sent; `429`, `5xx` or no
//!   answer in time is tried again later; any other answer is a refusal (a number the provider
//!   will not text), which is final.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

/// At most this many characters go in one message (two concatenated SMS segments' worth of
/// plain text); a template that could render longer is refused at start.
pub const MAX_LENGTH: usize = 320;

/// One text message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sms {
    /// The delivery's id: the same message has the same id, however often it is tried.
    pub id: String,
    /// E.164.
    pub to: String,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmsError {
    /// Worth trying again later (rate limited, the provider failing, no answer).
    #[error("{0}")]
    Transient(String),
    /// The provider will not send this message; trying again changes nothing.
    #[error("refused: {0}")]
    Refused(String),
}

#[async_trait]
pub trait SmsSender: Send + Sync {
    async fn send(&self, sms: &Sms) -> Result<(), SmsError>;

    /// How the start-up log names it.
    fn describe(&self) -> String;
}

/// Where embedded mode writes text messages.
pub fn default_outbox(data_dir: &std::path::Path) -> PathBuf {
    mailer::default_outbox(data_dir).join("sms")
}

/// Writes each message as a JSON file (`{"id", "to", "body"}`) into a directory.
pub struct OutboxSms {
    dir: PathBuf,
}

impl OutboxSms {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }
}

#[async_trait]
impl SmsSender for OutboxSms {
    async fn send(&self, sms: &Sms) -> Result<(), SmsError> {
        let io = |e: std::io::Error| SmsError::Transient(format!("sms outbox {}: {e}", self.dir.display()));
        let text = serde_json::json!({"id": sms.id, "to": sms.to, "body": sms.body}).to_string();
        let name = format!("{}.json", uuid::Uuid::now_v7());
        mailer::write_outbox_file(&self.dir, &name, text.as_bytes()).await.map_err(io)?;
        tracing::info!(file = %name, delivery = %sms.id, "sms written to outbox");
        Ok(())
    }

    fn describe(&self) -> String {
        format!("outbox {}", self.dir.display())
    }
}

/// The provider's settings (`SHOP_SMS_URL`, `SHOP_SMS_ACCOUNT`, `SHOP_SMS_TOKEN`,
/// `SHOP_SMS_FROM`).
#[derive(Clone)]
pub struct HttpSmsConfig {
    /// The Messages endpoint, e.g. `https://api.twilio.com/2010-04-01/Accounts/<sid>/Messages.json`.
    pub url: String,
    pub account: String,
    pub token: String,
    /// The sender: an E.164 number or an alphanumeric sender id the provider knows.
    pub from: String,
    pub timeout: Duration,
}

impl std::fmt::Debug for HttpSmsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSmsConfig").field("url", &self.url).field("from", &self.from).finish_non_exhaustive()
    }
}

/// Sends through a Twilio-shaped Messages API.
pub struct HttpSms {
    client: reqwest::Client,
    url: reqwest::Url,
    account: String,
    token: String,
    from: String,
    agent: String,
}

impl HttpSms {
    /// Checks the settings: an `http(s)` URL without credentials, query or fragment, and an
    /// account, token and sender that are not empty.
    pub fn new(config: HttpSmsConfig) -> Result<Self, String> {
        let url = worker_kit::service::service_url("SMS provider", &config.url)?;
        for (setting, value) in [("SHOP_SMS_ACCOUNT", &config.account), ("SHOP_SMS_TOKEN", &config.token), ("SHOP_SMS_FROM", &config.from)]
        {
            if value.trim().is_empty() {
                return Err(format!("SMS provider: {setting} is needed with SHOP_SMS_URL"));
            }
        }
        Ok(Self {
            client: worker_kit::service::service_client("SMS provider", config.timeout)?,
            url,
            account: config.account,
            token: config.token,
            from: config.from,
            agent: worker_kit::service::user_agent(),
        })
    }
}

#[async_trait]
impl SmsSender for HttpSms {
    async fn send(&self, sms: &Sms) -> Result<(), SmsError> {
        let answer = self
            .client
            .post(self.url.clone())
            .basic_auth(&self.account, Some(&self.token))
            .header("idempotency-key", &sms.id)
            .header(reqwest::header::USER_AGENT, &self.agent)
            .form(&[("To", sms.to.as_str()), ("From", self.from.as_str()), ("Body", sms.body.as_str())])
            .send()
            .await
            .map_err(|e| SmsError::Transient(worker_kit::service::without_url(e)))?;
        let status = answer.status();
        if status.is_success() {
            tracing::info!(delivery = %sms.id, "sms sent");
            return Ok(());
        }
        // The provider's own words, bounded: a refusal says why (an unknown number, say).
        let said: String = answer.text().await.unwrap_or_default().chars().take(200).collect();
        let error = format!("the provider answered {}: {}", status.as_u16(), said.trim());
        if status.as_u16() == 429 || status.is_server_error() {
            Err(SmsError::Transient(error))
        } else {
            Err(SmsError::Refused(error))
        }
    }

    fn describe(&self) -> String {
        format!("http {}", self.url)
    }
}
