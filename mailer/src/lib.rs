//! Outgoing mail: the [`Mailer`] trait with its two senders, and the message [`Templates`].
//!
//! # Layout
//! - `mail.rs`: [`Mail`], [`Mailer`], [`OutboxMailer`] (embedded mode: one `.eml` file per
//!   message) and [`SmtpMailer`] (`SMTP_URL`).
//! - `templates.rs`: [`Templates`], the built-in texts in `mailer/templates/` and the
//!   per-tenant overrides, read and compiled once at start.

mod mail;
mod templates;

pub use mail::*;
pub use templates::*;
