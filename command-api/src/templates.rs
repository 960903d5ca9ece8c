//! Message templates: built-in text files (`notifier/templates/<name>.txt`, kept with the
//! notifier; the command API renders `password_reset` from here too), each overridable
//! per tenant by `<template dir>/<tenant>/<name>.txt`. The first line is the subject, the
//! rest the body; both are minijinja templates over the notification's context.

use std::path::PathBuf;

/// Every template the notifier sends, with its built-in text.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("password_reset", include_str!("../../notifier/templates/password_reset.txt")),
    ("welcome", include_str!("../../notifier/templates/welcome.txt")),
    ("order_confirmed", include_str!("../../notifier/templates/order_confirmed.txt")),
    ("order_shipped", include_str!("../../notifier/templates/order_shipped.txt")),
    ("order_cancelled", include_str!("../../notifier/templates/order_cancelled.txt")),
    ("refund_issued", include_str!("../../notifier/templates/refund_issued.txt")),
    ("low_stock", include_str!("../../notifier/templates/low_stock.txt")),
    ("new_product", include_str!("../../notifier/templates/new_product.txt")),
];

#[derive(Debug, Clone, Default)]
pub struct Templates {
    /// Where per-tenant overrides live (`SHOP_TEMPLATE_DIR`).
    pub dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("no template named {0}")]
    Unknown(String),
    #[error("template {name}: {source}")]
    Render { name: String, source: minijinja::Error },
    #[error("template {name} of tenant {tenant} is unreadable: {source}")]
    Io { name: String, tenant: String, source: std::io::Error },
}

impl Templates {
    /// The template's text for `tenant`: its override if there is one, else the built-in.
    fn source(&self, tenant: &str, name: &str) -> Result<String, TemplateError> {
        let built_in = BUILT_IN.iter().find(|(n, _)| *n == name).map(|(_, t)| *t).ok_or_else(|| TemplateError::Unknown(name.into()))?;
        if let Some(dir) = &self.dir {
            // Tenant ids are lowercase letters, digits and `-`: safe as a directory name.
            let path = dir.join(tenant).join(format!("{name}.txt"));
            match std::fs::read_to_string(&path) {
                Ok(text) => return Ok(text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(TemplateError::Io { name: name.into(), tenant: tenant.into(), source }),
            }
        }
        Ok(built_in.to_owned())
    }

    /// Subject and body of template `name` for `tenant` over `context`.
    pub fn render(&self, tenant: &str, name: &str, context: &serde_json::Value) -> Result<(String, String), TemplateError> {
        let source = self.source(tenant, name)?;
        let env = minijinja::Environment::new();
        let text = env.render_str(&source, context).map_err(|source| TemplateError::Render { name: name.into(), source })?;
        let (subject, body) = text.split_once('\n').unwrap_or((text.as_str(), ""));
        Ok((subject.trim().to_owned(), body.trim_start_matches('\n').to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_is_the_subject_and_a_tenant_may_override() {
        let ctx = serde_json::json!({"user": {"name": "Ada", "email": "ada@example.com"}});
        let (subject, body) = Templates::default().render("acme", "welcome", &ctx).expect("renders");
        assert_eq!(subject, "Welcome to shop, Ada");
        assert!(body.contains("ada@example.com"), "{body}");

        let dir = std::env::temp_dir().join(format!("shop-templates-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("acme")).expect("dir");
        std::fs::write(dir.join("acme/welcome.txt"), "Hi {{ user.name }} from ACME\nACME body").expect("write");
        let templates = Templates { dir: Some(dir.clone()) };
        assert_eq!(templates.render("acme", "welcome", &ctx).expect("renders").0, "Hi Ada from ACME");
        assert_eq!(templates.render("globex", "welcome", &ctx).expect("renders").0, "Welcome to shop, Ada", "others keep the built-in");
        let _ = std::fs::remove_dir_all(dir);
        assert!(matches!(Templates::default().render("acme", "nope", &ctx), Err(TemplateError::Unknown(_))));
    }
}
