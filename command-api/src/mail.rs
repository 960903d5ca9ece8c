//! Outgoing mail the command API must send itself: a password-reset token exists only in the
//! request that made it (events keep its hash), so no later consumer could send it.

use std::path::PathBuf;

use async_trait::async_trait;

/// One plain-text message.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, mail: Mail) -> std::io::Result<()>;
}

/// Writes each message as an `.eml` file into a directory (embedded mode's outbox).
pub struct OutboxMailer {
    dir: PathBuf,
}

impl OutboxMailer {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }
}

#[async_trait]
impl Mailer for OutboxMailer {
    async fn send(&self, mail: Mail) -> std::io::Result<()> {
        tokio::fs::create_dir_all(&self.dir).await?;
        let name = format!("{}.eml", uuid::Uuid::now_v7());
        let text = format!(
            "To: {}\r\nFrom: shop <no-reply@shop.invalid>\r\nSubject: {}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}\r\n",
            mail.to, mail.subject, mail.body
        );
        // Write then rename, so a reader never sees half a message.
        let tmp = self.dir.join(format!(".{name}.tmp"));
        tokio::fs::write(&tmp, text).await?;
        tokio::fs::rename(&tmp, self.dir.join(&name)).await?;
        tracing::info!(file = %name, subject = %mail.subject, "mail written to outbox");
        Ok(())
    }
}
