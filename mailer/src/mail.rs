//! One plain-text message and the two ways it leaves: a file in the outbox directory
//! (embedded mode) or SMTP.

use std::path::PathBuf;

use async_trait::async_trait;

/// One plain-text message.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
    /// A stable `Message-ID` (without angle brackets), so that a message sent twice can be
    /// recognised as one; `None` lets the mailer make one up.
    pub message_id: Option<String>,
}

#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, mail: Mail) -> std::io::Result<()>;
}

/// Where embedded mode writes mail: one `.eml` file per message.
pub fn default_outbox(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("outbox")
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
        let name = format!("{}.eml", uuid::Uuid::now_v7());
        let message_id = mail.message_id.clone().unwrap_or_else(|| format!("{}@shop.invalid", uuid::Uuid::now_v7()));
        let text = format!(
            "To: {}\r\nFrom: {FROM}\r\nSubject: {}\r\nMessage-ID: <{message_id}>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}\r\n",
            mail.to, mail.subject, mail.body
        );
        write_outbox_file(&self.dir, &name, text.as_bytes()).await?;
        tracing::info!(file = %name, subject = %mail.subject, "mail written to outbox");
        Ok(())
    }
}

/// Writes `contents` as file `name` of outbox `dir` (made if missing): written then renamed,
/// so a reader never sees half a message; messages are personal data, so the directory and
/// its files are for the owner only.
pub async fn write_outbox_file(dir: &std::path::Path, name: &str, contents: &[u8]) -> std::io::Result<()> {
    tokio::fs::create_dir_all(dir).await?;
    #[cfg(unix)]
    tokio::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).await?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(&tmp).await?;
    tokio::io::AsyncWriteExt::write_all(&mut file, contents).await?;
    tokio::io::AsyncWriteExt::flush(&mut file).await?;
    drop(file);
    tokio::fs::rename(&tmp, dir.join(name)).await
}

/// The sender of every message.
pub const FROM: &str = "shop <no-reply@shop.invalid>";

/// Sends over SMTP. Each message is one SMTP transaction.
pub struct SmtpMailer {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
}

impl SmtpMailer {
    /// `SMTP_URL`: `smtp://[user:password@]host[:port]` (plain, port 25),
    /// `smtp://…?tls=required` (STARTTLS, port 587) or `smtps://…` (TLS from the start, port
    /// 465); certificates are checked against the web's root CAs. An error never repeats the
    /// URL, which may carry a password.
    pub fn new(url: &str) -> Result<Self, String> {
        if !url.starts_with("smtp://") && !url.starts_with("smtps://") {
            return Err("must start with smtp:// or smtps://".to_owned());
        }
        let transport = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(url)
            .map_err(|e| format!("not a usable SMTP URL ({e})"))?
            .timeout(Some(std::time::Duration::from_secs(10)))
            .build();
        Ok(Self { transport })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: Mail) -> std::io::Result<()> {
        use lettre::AsyncTransport;
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        let mut builder = lettre::Message::builder()
            .from(FROM.parse().map_err(|e: lettre::address::AddressError| invalid(e.to_string()))?)
            .to(mail.to.parse().map_err(|e: lettre::address::AddressError| invalid(e.to_string()))?)
            .subject(mail.subject.clone())
            .header(lettre::message::header::ContentType::TEXT_PLAIN);
        if let Some(id) = &mail.message_id {
            builder = builder.message_id(Some(format!("<{id}>")));
        }
        let message = builder.body(mail.body).map_err(|e| invalid(e.to_string()))?;
        self.transport.send(message).await.map_err(|e| std::io::Error::other(e.to_string()))?;
        tracing::info!(subject = %mail.subject, "mail sent over smtp");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::SmtpMailer;

    #[tokio::test]
    async fn smtp_urls_plain_starttls_and_tls_are_taken_and_errors_never_repeat_a_password() {
        for url in
            ["smtp://127.0.0.1:1025", "smtp://user:pw@mail.example.com?tls=required", "smtps://user:pw@email-smtp.eu-west-1.amazonaws.com"]
        {
            assert!(SmtpMailer::new(url).is_ok(), "{url}");
        }
        for url in ["http://user:s3cr3t-pw@mail.example.com", "smtp://user:s3cr3t-pw@mail.example.com?tls=sometimes"] {
            let error = SmtpMailer::new(url).err().unwrap_or_else(|| panic!("{url} is refused"));
            assert!(!error.contains("s3cr3t-pw"), "{error}");
        }
    }
}
