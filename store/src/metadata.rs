use serde::{Deserialize, Serialize};

/// Who asked for a change and why; stored with every event of the write.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub tenant: Option<String>,
    /// The authenticated user, if any.
    pub user_id: Option<String>,
    /// Shared by every event that one client request led to, across services.
    pub correlation_id: Option<String>,
    /// The event or request that directly caused this write.
    pub causation_id: Option<String>,
    pub idempotency_key: Option<String>,
    pub client_addr: Option<String>,
    /// W3C trace context of the span that wrote the event (when tracing is on), so that its
    /// consumers continue the same trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}
