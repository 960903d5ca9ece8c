use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use domain::user::Role;
use domain::{Email, Name, Phone};
use serde::Deserialize;
use sqlx::{Any, Row as _, Transaction};
use store::LogEvent;

use crate::projection::{rows_per_statement, values};
use crate::{split_stream_id, Projection, ProjectionError};

/// Users for `/users/me` and the admin list. Password hashes and reset tokens stay out.
pub struct Users;

fn roles_text(roles: &BTreeSet<Role>) -> String {
    roles.iter().map(Role::to_string).collect::<Vec<_>>().join(",")
}

/// The user events this read model needs, in the stored shape. Password and reset events are
/// skipped by type before parsing: the hashes they carry are not published to Kafka, and a
/// Kafka-fed projection must read the same events without them.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum UserFact {
    Registered { email: Email, name: Name, roles: BTreeSet<Role> },
    ProfileChanged { name: Name },
    RoleGranted { role: Role },
    RoleRevoked { role: Role },
    Deactivated,
    Erased,
    MarketingEmailsSet { allowed: bool },
    PhoneChanged { phone: Option<Phone> },
    SmsSet { allowed: bool },
}

const SKIPPED: &[&str] = &["password_changed", "password_reset_requested", "password_reset_completed"];

/// What a batch does to one user.
#[derive(Default)]
struct Change {
    /// Set when registered in this batch: (email, registered_at).
    registered: Option<(String, String)>,
    name: Option<String>,
    /// The full role set when known (registered in this batch)…
    roles: Option<BTreeSet<Role>>,
    /// …or the grants (true) and revocations (false) to apply to the stored set.
    role_changes: Vec<(Role, bool)>,
    deactivated: bool,
    /// Erased in this batch: the row keeps ids, roles and dates, its personal data reads as
    /// erased (as the user's events do once the key is gone, so a rebuild gives the same row).
    erased: bool,
    /// Whether the user takes marketing mail, when it changed in this batch.
    marketing: Option<bool>,
    /// The phone number (or none), when it changed in this batch.
    phone: Option<Option<String>>,
    /// Whether order news go by SMS, when it changed in this batch.
    sms: Option<bool>,
    version: i64,
}

#[async_trait]
impl Projection for Users {
    fn name(&self) -> &'static str {
        "users"
    }

    fn handles(&self, aggregate_type: &str) -> bool {
        aggregate_type == "user"
    }

    fn table(&self) -> &'static str {
        "rm_users"
    }

    async fn apply(&self, tx: &mut Transaction<'static, Any>, table: &str, events: &[&LogEvent]) -> Result<(), ProjectionError> {
        let mut changes: BTreeMap<(&str, &str), Change> = BTreeMap::new();
        for e in events {
            let change = changes.entry(split_stream_id(&e.aggregate_id)?).or_default();
            if SKIPPED.contains(&e.event_type.as_str()) {
                change.version = e.sequence;
                continue;
            }
            match crate::projection::payload(e)? {
                UserFact::Registered { email, name, roles } => {
                    *change = Change {
                        // Milliseconds: what the log and the topics both carry, so a
                        // Kafka-fed row and a rebuilt one agree.
                        registered: Some((email.to_string(), e.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, false))),
                        name: Some(name.to_string()),
                        roles: Some(roles),
                        ..Change::default()
                    };
                }
                UserFact::ProfileChanged { name } => change.name = Some(name.to_string()),
                UserFact::RoleGranted { role } | UserFact::RoleRevoked { role } => {
                    let granted = e.event_type == "role_granted";
                    match &mut change.roles {
                        Some(roles) if granted => {
                            roles.insert(role);
                        }
                        Some(roles) => {
                            roles.remove(&role);
                        }
                        None => change.role_changes.push((role, granted)),
                    }
                }
                UserFact::Deactivated => change.deactivated = true,
                UserFact::Erased => {
                    change.erased = true;
                    change.deactivated = true;
                    change.name = Some(domain::personal::ERASED_TEXT.to_owned());
                    change.phone = Some(None);
                    change.sms = Some(false);
                    if let Some((email, _)) = &mut change.registered {
                        *email = domain::personal::ERASED_EMAIL.to_owned();
                    }
                }
                UserFact::MarketingEmailsSet { allowed } => change.marketing = Some(allowed),
                UserFact::PhoneChanged { phone } => {
                    change.phone = Some(phone.map(String::from));
                    change.sms = Some(false);
                }
                UserFact::SmsSet { allowed } => change.sms = Some(allowed),
            }
            change.version = e.sequence;
        }
        let (registered, changed): (Vec<_>, Vec<_>) = changes.into_iter().partition(|(_, c)| c.registered.is_some());
        for chunk in registered.chunks(rows_per_statement(11)) {
            let sql = format!(
                "INSERT INTO {table} (tenant, user_id, email, name, roles, active, registered_at, version, marketing_emails, phone, sms) \
                 VALUES {} ON CONFLICT (tenant, user_id) DO UPDATE SET email = excluded.email, name = excluded.name, \
                 roles = excluded.roles, active = excluded.active, registered_at = excluded.registered_at, version = excluded.version, \
                 marketing_emails = excluded.marketing_emails, phone = excluded.phone, sms = excluded.sms",
                values(chunk.len(), 11)
            );
            let mut query = sqlx::query(&sql);
            for ((tenant, id), c) in chunk {
                let (email, registered_at) = c.registered.clone().unwrap_or_default();
                query = query
                    .bind(*tenant)
                    .bind(*id)
                    .bind(email)
                    .bind(c.name.clone().unwrap_or_default())
                    .bind(roles_text(&c.roles.clone().unwrap_or_default()))
                    .bind(i64::from(!c.deactivated))
                    .bind(registered_at)
                    .bind(c.version)
                    .bind(i64::from(c.marketing.unwrap_or(true)))
                    .bind(c.phone.clone().flatten())
                    .bind(i64::from(c.sms.unwrap_or(false)));
            }
            query.execute(&mut **tx).await?;
        }
        for ((tenant, id), mut c) in changed {
            if !c.role_changes.is_empty() {
                let row = sqlx::query(&format!("SELECT roles FROM {table} WHERE tenant = $1 AND user_id = $2"))
                    .bind(tenant)
                    .bind(id)
                    .fetch_optional(&mut **tx)
                    .await?;
                let stored: String = row.map(|r| r.try_get(0)).transpose()?.unwrap_or_default();
                let mut roles: BTreeSet<Role> = stored.split(',').filter_map(|r| r.parse().ok()).collect();
                for (role, granted) in c.role_changes.drain(..) {
                    if granted {
                        roles.insert(role);
                    } else {
                        roles.remove(&role);
                    }
                }
                c.roles = Some(roles);
            }
            let mut sets = vec!["version = $1".to_owned()];
            let mut values: Vec<String> = Vec::new();
            if let Some(name) = c.name {
                values.push(name);
                sets.push(format!("name = ${}", 3 + values.len()));
            }
            if let Some(roles) = &c.roles {
                values.push(roles_text(roles));
                sets.push(format!("roles = ${}", 3 + values.len()));
            }
            if c.deactivated {
                sets.push("active = 0".to_owned());
            }
            if c.erased {
                sets.push(format!("email = '{}'", domain::personal::ERASED_EMAIL));
            }
            if let Some(allowed) = c.marketing {
                sets.push(format!("marketing_emails = {}", i64::from(allowed)));
            }
            if let Some(allowed) = c.sms {
                sets.push(format!("sms = {}", i64::from(allowed)));
            }
            let mut values: Vec<Option<String>> = values.into_iter().map(Some).collect();
            if let Some(phone) = c.phone {
                values.push(phone);
                sets.push(format!("phone = ${}", 3 + values.len()));
            }
            let sql = format!("UPDATE {table} SET {} WHERE tenant = $2 AND user_id = $3", sets.join(", "));
            let mut query = sqlx::query(&sql).bind(c.version).bind(tenant).bind(id);
            for v in values {
                query = query.bind(v);
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }
}
