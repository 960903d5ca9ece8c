//! Message templates: built-in text files (`mailer/templates/<name>.txt`), each overridable
//! per tenant by `<template dir>/<tenant>/<name>.txt`. The first line is the subject, the
//! rest the body; both are minijinja templates over the notification's context. Every
//! template, built-in or override, is read and compiled once when [`Templates::load`] runs
//! (at start): a broken override stops the start instead of failing its first mail.
//!
//! Push templates (`mailer/templates/push/<name>.txt`) are like mail's: the first line is the
//! notification's title, the rest its text.
//!
//! SMS templates (`mailer/templates/sms/<name>.txt`, overridden by
//! `<template dir>/<tenant>/sms/<name>.txt`) are the message's text alone, without a subject
//! line. [`Templates::check_length`] renders each, built-in and every override, over the
//! longest context its messages can have: a template that could render longer than an SMS
//! stops the start instead of sending a cut message.

use std::path::Path;

/// Every template the notifier sends, with its built-in text.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("password_reset", include_str!("../templates/password_reset.txt")),
    ("welcome", include_str!("../templates/welcome.txt")),
    ("order_confirmed", include_str!("../templates/order_confirmed.txt")),
    ("order_shipped", include_str!("../templates/order_shipped.txt")),
    ("order_cancelled", include_str!("../templates/order_cancelled.txt")),
    ("refund_issued", include_str!("../templates/refund_issued.txt")),
    ("low_stock", include_str!("../templates/low_stock.txt")),
    ("new_product", include_str!("../templates/new_product.txt")),
    ("cart_reminder", include_str!("../templates/cart_reminder.txt")),
    ("sms/order_shipped", include_str!("../templates/sms/order_shipped.txt")),
    ("sms/order_cancelled", include_str!("../templates/sms/order_cancelled.txt")),
    ("push/order_confirmed", include_str!("../templates/push/order_confirmed.txt")),
    ("push/order_shipped", include_str!("../templates/push/order_shipped.txt")),
    ("push/order_cancelled", include_str!("../templates/push/order_cancelled.txt")),
];

/// Every template, compiled: built-ins under their name, overrides as `<tenant>/<name>`.
#[derive(Debug, Clone)]
pub struct Templates {
    env: minijinja::Environment<'static>,
    /// Tenants with at least one override.
    tenants: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("no template named {0}")]
    Unknown(String),
    #[error("template {name}: {source}")]
    Render { name: String, source: minijinja::Error },
    #[error("template {name} of tenant {tenant} is unreadable: {source}")]
    Io { name: String, tenant: String, source: std::io::Error },
    #[error("template {name}{}: renders up to {length} characters, more than the {max} a message takes", .tenant.as_deref().map(|t| format!(" of tenant {t}")).unwrap_or_default())]
    TooLong { name: String, tenant: Option<String>, length: usize, max: usize },
}

impl Default for Templates {
    /// The built-in templates only.
    fn default() -> Self {
        Self::load(None).expect("the built-in templates compile (a unit test renders each)")
    }
}

impl Templates {
    /// The built-in templates and every override found under `dir` (`<dir>/<tenant>/<name>.txt`
    /// for a built-in `name`), compiled.
    pub fn load(dir: Option<&Path>) -> Result<Self, TemplateError> {
        let mut env = minijinja::Environment::new();
        let compile = |env: &mut minijinja::Environment<'static>, key: String, text: String| {
            env.add_template_owned(key.clone(), text).map_err(|source| TemplateError::Render { name: key, source })
        };
        for (name, text) in BUILT_IN {
            compile(&mut env, (*name).to_owned(), (*text).to_owned())?;
        }
        let tenants = match dir.map(std::fs::read_dir) {
            None => Vec::new(),
            Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Some(Err(source)) => return Err(TemplateError::Io { name: "*".into(), tenant: "*".into(), source }),
            Some(Ok(entries)) => entries.filter_map(Result::ok).filter(|e| e.path().is_dir()).collect(),
        };
        let mut overridden = Vec::new();
        for tenant_dir in tenants {
            let tenant = tenant_dir.file_name().to_string_lossy().into_owned();
            overridden.push(tenant.clone());
            for (name, _) in BUILT_IN {
                let path = tenant_dir.path().join(format!("{name}.txt"));
                match std::fs::read_to_string(&path) {
                    Ok(text) => compile(&mut env, format!("{tenant}/{name}"), text)?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => return Err(TemplateError::Io { name: (*name).into(), tenant, source }),
                }
            }
        }
        overridden.sort();
        Ok(Self { env, tenants: overridden })
    }

    fn template(&self, tenant: &str, name: &str) -> Result<minijinja::Template<'_, '_>, TemplateError> {
        match self.env.get_template(&format!("{tenant}/{name}")) {
            Ok(t) => Ok(t),
            Err(_) => self.env.get_template(name).map_err(|_| TemplateError::Unknown(name.into())),
        }
    }

    /// The whole text of template `name` (an SMS: no subject line) for `tenant` over
    /// `context`, trimmed.
    pub fn render_text(&self, tenant: &str, name: &str, context: &serde_json::Value) -> Result<String, TemplateError> {
        let text = self.template(tenant, name)?.render(context).map_err(|source| TemplateError::Render { name: name.into(), source })?;
        Ok(text.trim().to_owned())
    }

    /// Fails unless template `name`, built-in and every tenant's override, renders at most
    /// `max` characters over `longest` (the longest context its messages can have).
    pub fn check_length(&self, name: &str, longest: &serde_json::Value, max: usize) -> Result<(), TemplateError> {
        let tenants = std::iter::once(None).chain(self.tenants.iter().map(|t| Some(t.as_str())));
        for tenant in tenants {
            // Without a tenant, the built-in: no tenant directory is named "".
            let length = self.render_text(tenant.unwrap_or(""), name, longest)?.chars().count();
            if length > max {
                return Err(TemplateError::TooLong { name: name.into(), tenant: tenant.map(str::to_owned), length, max });
            }
        }
        Ok(())
    }

    /// Subject and body of template `name` for `tenant` over `context`: the tenant's override
    /// if there is one, else the built-in.
    pub fn render(&self, tenant: &str, name: &str, context: &serde_json::Value) -> Result<(String, String), TemplateError> {
        let template = self.template(tenant, name)?;
        let render =
            |context: &serde_json::Value| template.render(context).map_err(|source| TemplateError::Render { name: name.into(), source });
        let text = render(context)?;
        let body = text.split_once('\n').map_or("", |(_, body)| body);
        // The subject sees only values the shop chose (order numbers, amounts, SKUs): a name
        // someone typed at registration must not become the subject of a mail that goes to an
        // address they typed too.
        let subject_text = render(&subject_context(context))?;
        let subject = subject_text.split_once('\n').map_or(subject_text.as_str(), |(s, _)| s);
        Ok((subject.trim().to_owned(), body.trim_start_matches('\n').to_owned()))
    }
}

/// Values a subject may show: (object, field) pairs that the shop itself generates.
const SUBJECT_FIELDS: [(&str, &str); 4] = [("order", "short_id"), ("refund", "amount"), ("stock", "sku"), ("stock", "available")];

/// `context` with every value outside [`SUBJECT_FIELDS`] blanked (the shape stays, so a
/// tenant's subject that names `user.name` renders it empty rather than failing).
fn subject_context(context: &serde_json::Value) -> serde_json::Value {
    fn blank(object: &str, value: &serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => serde_json::Value::Object(
                map.iter()
                    .map(|(field, v)| {
                        let keep = SUBJECT_FIELDS.contains(&(object, field.as_str()));
                        let v = if keep {
                            v.clone()
                        } else if object.is_empty() {
                            blank(field, v)
                        } else {
                            blank("-", v)
                        };
                        (field.clone(), v)
                    })
                    .collect(),
            ),
            _ => serde_json::Value::String(String::new()),
        }
    }
    blank("", context)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_is_the_subject_and_a_tenant_may_override() {
        let ctx = serde_json::json!({"user": {"name": "Ada", "email": "ada@example.com"}});
        let (subject, body) = Templates::default().render("acme", "welcome", &ctx).expect("renders");
        assert_eq!(subject, "Welcome to shop");
        assert!(body.contains("ada@example.com"), "{body}");

        let dir = std::env::temp_dir().join(format!("shop-templates-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("acme")).expect("dir");
        std::fs::write(dir.join("acme/welcome.txt"), "Hi {{ user.name }} from ACME\nACME body").expect("write");
        let templates = Templates::load(Some(&dir)).expect("overrides compile");
        assert_eq!(templates.render("acme", "welcome", &ctx).expect("renders").0, "Hi  from ACME", "no user text in subjects");
        assert_eq!(templates.render("globex", "welcome", &ctx).expect("renders").0, "Welcome to shop", "others keep the built-in");
        let _ = std::fs::remove_dir_all(dir);
        assert!(matches!(Templates::default().render("acme", "nope", &ctx), Err(TemplateError::Unknown(_))));
    }

    #[test]
    fn subjects_show_only_values_the_shop_chose() {
        let ctx = serde_json::json!({
            "user": {"name": "Your account is locked, see evil.example", "email": "ada@example.com"},
            "order": {"short_id": "AB12CD", "lines": [{"name": "x"}]},
        });
        for name in ["welcome", "password_reset"] {
            let (subject, _) = Templates::default().render("default", name, &ctx).expect("renders");
            assert!(!subject.contains("evil"), "{name}: {subject}");
        }
        let (subject, _) = Templates::default().render("default", "order_confirmed", &ctx).expect("renders");
        assert_eq!(subject, "Your order AB12CD is confirmed");
    }

    #[test]
    fn a_broken_override_fails_at_load() {
        let dir = std::env::temp_dir().join(format!("shop-templates-broken-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("acme")).expect("dir");
        std::fs::write(dir.join("acme/welcome.txt"), "Hi {{ user.name \nbody").expect("write");
        let loaded = Templates::load(Some(&dir));
        let _ = std::fs::remove_dir_all(dir);
        assert!(matches!(loaded, Err(TemplateError::Render { .. })), "{loaded:?}");
    }

    #[test]
    fn a_text_that_could_be_too_long_is_found_at_start_in_any_tenant() {
        let longest = serde_json::json!({"order": {"short_id": "ABCDEFGH"}, "reason": "r".repeat(60)});
        let templates = Templates::default();
        assert!(templates.check_length("sms/order_cancelled", &longest, 320).is_ok());
        assert!(templates.render_text("acme", "sms/order_cancelled", &longest).expect("renders").starts_with("shop: your order ABCDEFGH"));

        let dir = std::env::temp_dir().join(format!("shop-templates-sms-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("acme/sms")).expect("dir");
        std::fs::write(
            dir.join("acme/sms/order_cancelled.txt"),
            "{{ reason }} {{ reason }} {{ reason }} {{ reason }} {{ reason }} {{ reason }}",
        )
        .expect("write");
        let templates = Templates::load(Some(&dir)).expect("compiles");
        let _ = std::fs::remove_dir_all(dir);
        let err = templates.check_length("sms/order_cancelled", &longest, 320).expect_err("six reasons are too long");
        assert!(matches!(&err, TemplateError::TooLong { tenant: Some(t), length: 365, .. } if t == "acme"), "{err}");
    }

    #[test]
    fn every_built_in_template_compiles() {
        assert!(Templates::load(None).is_ok());
    }
}
