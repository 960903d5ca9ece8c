use std::collections::BTreeSet;

use async_trait::async_trait;
use domain::user::{Role, UserEvent};
use sqlx::{Any, Row as _, Transaction};
use store::LogEvent;

use crate::{split_stream_id, Projection, ProjectionError};

/// Users for `/users/me` and the admin list. Password hashes and reset tokens stay out.
pub struct Users;

fn roles_text(roles: &BTreeSet<Role>) -> String {
    roles.iter().map(Role::to_string).collect::<Vec<_>>().join(",")
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

    fn schema(&self, table: &str, _suffix: &str) -> Vec<String> {
        vec![format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                tenant TEXT NOT NULL,
                user_id TEXT NOT NULL,
                email TEXT NOT NULL,
                name TEXT NOT NULL,
                roles TEXT NOT NULL,
                active BIGINT NOT NULL,
                registered_at TEXT NOT NULL,
                version BIGINT NOT NULL,
                PRIMARY KEY (tenant, user_id)
            )"
        )]
    }

    async fn apply(&self, tx: &mut Transaction<'static, Any>, table: &str, e: &LogEvent) -> Result<(), ProjectionError> {
        let (tenant, id) = split_stream_id(&e.aggregate_id)?;
        let event: UserEvent = serde_json::from_value(e.payload.clone())?;
        let set = |set: &str| format!("UPDATE {table} SET {set}version = $1 WHERE tenant = $2 AND user_id = $3");
        match event {
            UserEvent::Registered { email, name, roles, .. } => {
                sqlx::query(&format!(
                    "INSERT INTO {table} (tenant, user_id, email, name, roles, active, registered_at, version) \
                     VALUES ($1, $2, $3, $4, $5, 1, $6, $7) ON CONFLICT (tenant, user_id) DO NOTHING"
                ))
                .bind(tenant)
                .bind(id)
                .bind(email.as_str())
                .bind(name.as_str())
                .bind(roles_text(&roles))
                .bind(e.recorded_at.to_rfc3339())
                .bind(e.sequence)
                .execute(&mut **tx)
                .await?;
            }
            UserEvent::ProfileChanged { name } => {
                sqlx::query(&set("name = $4, ")).bind(e.sequence).bind(tenant).bind(id).bind(name.as_str()).execute(&mut **tx).await?;
            }
            UserEvent::RoleGranted { role } | UserEvent::RoleRevoked { role } => {
                let row = sqlx::query(&format!("SELECT roles FROM {table} WHERE tenant = $1 AND user_id = $2"))
                    .bind(tenant)
                    .bind(id)
                    .fetch_optional(&mut **tx)
                    .await?;
                let current: String = row.map(|r| r.try_get(0)).transpose()?.unwrap_or_default();
                let mut roles: BTreeSet<Role> = current.split(',').filter_map(|r| r.parse().ok()).collect();
                if matches!(event, UserEvent::RoleGranted { .. }) {
                    roles.insert(role);
                } else {
                    roles.remove(&role);
                }
                sqlx::query(&set("roles = $4, ")).bind(e.sequence).bind(tenant).bind(id).bind(roles_text(&roles)).execute(&mut **tx).await?;
            }
            UserEvent::Deactivated => {
                sqlx::query(&set("active = 0, ")).bind(e.sequence).bind(tenant).bind(id).execute(&mut **tx).await?;
            }
            UserEvent::PasswordChanged { .. } | UserEvent::PasswordResetRequested { .. } | UserEvent::PasswordResetCompleted { .. } => {
                sqlx::query(&set("")).bind(e.sequence).bind(tenant).bind(id).execute(&mut **tx).await?;
            }
        }
        Ok(())
    }
}
