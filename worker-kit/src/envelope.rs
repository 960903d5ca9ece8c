use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use store::LogEvent;

/// Aggregate types whose events are part of the public contract (Kafka topics, webhooks).
/// Claims, sessions, invoice books and customers' current-cart pointers are internal
/// bookkeeping (sessions hold token hashes) and are not published; a guest cart's token hash
/// is redacted from `cart.created`.
pub const PUBLIC_TYPES: &[&str] = &["user", "product", "stock", "order", "payment", "cart", "promotion", "tenant_settings"];

/// Fields of event payloads that are never published.
pub const REDACTED: &[&str] = &["password_hash", "token_hash"];

/// Fields that name a payment method: published masked (brand and last four digits at most,
/// [`domain::payment::masked_method`]); the full token never leaves the payment context.
pub const MASKED: &[&str] = &["payment_method", "method"];

/// What the relay publishes for one event: key, JSON value and CloudEvents headers.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The aggregate id (without tenant prefix): one aggregate, one partition, in order.
    pub key: String,
    /// The JSON envelope, see `worker-kit/contract/envelope.schema.json`.
    pub value: String,
    pub id: String,
    pub event_type: String,
    pub subject: String,
    pub time: String,
    pub position: i64,
    pub sequence: i64,
    pub correlation_id: Option<String>,
    /// The trace context of the write (when tracing was on), for the `traceparent` header.
    pub traceparent: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    version: &'a str,
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    sequence: i64,
    position: i64,
    tenant: &'a str,
    occurred_at: &'a str,
    metadata: Value,
    data: Value,
}

/// What the contract shows of a stored payload: the event's fields (stored payloads are
/// externally tagged, `{"price_changed": {...}}`, or `"published"` for events without fields),
/// without secrets (even hashed) and with payment methods masked.
pub fn public_data(payload: &Value) -> Value {
    let mut data = match payload {
        Value::Object(map) if map.len() == 1 => map.values().next().cloned().unwrap_or(Value::Null),
        Value::String(_) => json!({}),
        other => other.clone(),
    };
    if let Value::Object(fields) = &mut data {
        hide(fields);
    }
    data
}

/// Removes [`REDACTED`] fields and masks [`MASKED`] ones of one JSON object.
fn hide(fields: &mut serde_json::Map<String, Value>) {
    for secret in REDACTED {
        fields.remove(*secret);
    }
    for field in MASKED {
        if let Some(Value::String(raw)) = fields.get_mut(*field) {
            *raw = domain::payment::masked_method(raw);
        }
    }
}

/// [`hide`] at every depth of `value` (an aggregate's state keeps its secrets in nested places).
pub fn hide_everywhere(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            hide(fields);
            fields.values_mut().for_each(hide_everywhere);
        }
        Value::Array(items) => items.iter_mut().for_each(hide_everywhere),
        _ => {}
    }
}

impl Envelope {
    pub fn from_event(e: &LogEvent) -> Result<Self, String> {
        let domain::StreamId { tenant, key: aggregate_id } =
            domain::StreamId::parse(&e.aggregate_id).map_err(|err| format!("{}: {err}", e.aggregate_id))?;
        let data = public_data(&e.payload);
        let id = format!("{}/{}/{}", e.aggregate_type, e.aggregate_id, e.sequence);
        let event_type = format!("{}.{}", e.aggregate_type, e.event_type);
        let time = e.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let pick = |k: &str| e.metadata.get(k).and_then(Value::as_str).map(str::to_owned);
        let mut metadata = json!({
            "correlation_id": pick("correlation_id"),
            "causation_id": pick("causation_id"),
            "user_id": pick("user_id"),
        });
        if let Some(traceparent) = pick("traceparent") {
            metadata["traceparent"] = Value::String(traceparent);
        }
        let value = serde_json::to_string(&Body {
            id: &id,
            event_type: &event_type,
            version: &e.event_version,
            aggregate_type: &e.aggregate_type,
            aggregate_id,
            sequence: e.sequence,
            position: e.cursor.position,
            tenant,
            occurred_at: &time,
            metadata,
            data,
        })
        .map_err(|err| err.to_string())?;
        Ok(Self {
            key: aggregate_id.to_owned(),
            value,
            subject: aggregate_id.to_owned(),
            id,
            event_type,
            time,
            position: e.cursor.position,
            sequence: e.sequence,
            correlation_id: pick("correlation_id"),
            traceparent: pick("traceparent"),
        })
    }

    /// The event a published envelope carries, in the stored form and the current shape of its
    /// type (hashes the relay strips stay absent; the log's transaction id is not published and
    /// reads as 0).
    pub fn parse(value: &[u8]) -> Result<LogEvent, String> {
        let v: Value = serde_json::from_slice(value).map_err(|e| format!("not JSON: {e}"))?;
        let text = |k: &str| v[k].as_str().map(str::to_owned).ok_or_else(|| format!("envelope without {k}"));
        let number = |k: &str| v[k].as_i64().ok_or_else(|| format!("envelope without {k}"));
        let aggregate_type = text("aggregate_type")?;
        let full_type = text("type")?;
        let event_type = full_type
            .strip_prefix(&format!("{aggregate_type}."))
            .ok_or_else(|| format!("type {full_type} is not of aggregate {aggregate_type}"))?
            .to_owned();
        let tenant = text("tenant")?;
        // Stored payloads are externally tagged; an event without fields is just its name.
        let payload = match &v["data"] {
            Value::Object(fields) if fields.is_empty() => Value::String(event_type.clone()),
            data => json!({ event_type.clone(): data }),
        };
        let mut metadata = v["metadata"].clone();
        if let Value::Object(m) = &mut metadata {
            m.retain(|_, v| !v.is_null());
            m.insert("tenant".into(), Value::String(tenant.clone()));
        }
        let recorded_at = chrono::DateTime::parse_from_rfc3339(&text("occurred_at")?)
            .map_err(|e| format!("occurred_at: {e}"))?
            .with_timezone(&chrono::Utc);
        Ok(LogEvent {
            cursor: store::LogCursor { transaction_id: 0, position: number("position")? },
            aggregate_id: format!("{tenant}:{}", text("aggregate_id")?),
            aggregate_type,
            sequence: number("sequence")?,
            event_type,
            event_version: text("version")?,
            payload,
            metadata,
            recorded_at,
        }
        // A message published before the shape of its type changed reads as the current shape.
        .upcast())
    }

    /// CloudEvents (Kafka binding) attributes, position and sequence, and W3C trace context.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ce_specversion", "1.0".to_owned()),
            ("ce_id", self.id.clone()),
            ("ce_type", self.event_type.clone()),
            ("ce_source", "shop".to_owned()),
            ("ce_subject", self.subject.clone()),
            ("ce_time", self.time.clone()),
            ("content-type", "application/json".to_owned()),
            ("shop_position", self.position.to_string()),
            ("shop_sequence", self.sequence.to_string()),
            ("traceparent", self.traceparent()),
        ]
    }

    /// The write's own trace context when it was traced; otherwise `00-<trace id>-<span
    /// id>-01` where the trace is the request's correlation id (a UUID) and the span is derived
    /// from the event id, so one order can still be followed across services.
    fn traceparent(&self) -> String {
        if let Some(tp) = self.traceparent.as_deref().filter(|tp| store::trace::parse(tp).is_some()) {
            return tp.to_owned();
        }
        let trace = self
            .correlation_id
            .as_deref()
            .map(|c| c.replace('-', ""))
            .filter(|c| c.len() == 32 && c.bytes().all(|b| b.is_ascii_hexdigit()))
            .unwrap_or_else(|| hex::encode(&Sha256::digest(self.id.as_bytes())[..16]));
        let span = hex::encode(&Sha256::digest(self.id.as_bytes())[16..24]);
        format!("00-{trace}-{span}-01")
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use store::LogCursor;

    use super::*;

    fn event(payload: Value) -> LogEvent {
        LogEvent {
            cursor: LogCursor { transaction_id: 0, position: 42 },
            aggregate_type: "product".into(),
            aggregate_id: "acme:0193".into(),
            sequence: 3,
            event_type: "price_changed".into(),
            event_version: "1".into(),
            payload,
            metadata: json!({"correlation_id": "01931b2c-0000-7000-8000-000000000001", "tenant": "acme"}),
            recorded_at: Utc::now(),
        }
    }

    #[test]
    fn the_envelope_carries_the_contract_fields() {
        let e = Envelope::from_event(&event(json!({"price_changed": {"price": {"amount": 1}}}))).expect("publishable");
        let v: Value = serde_json::from_str(&e.value).expect("json");
        assert_eq!(v["id"], "product/acme:0193/3");
        assert_eq!(v["type"], "product.price_changed");
        assert_eq!((v["tenant"].as_str(), v["aggregate_id"].as_str(), v["position"].as_i64()), (Some("acme"), Some("0193"), Some(42)));
        assert_eq!(v["data"], json!({"price": {"amount": 1}}));
        assert_eq!(e.key, "0193");
        let tp = e.headers().into_iter().find(|(k, _)| *k == "traceparent").expect("traceparent").1;
        assert!(tp.starts_with("00-01931b2c000070008000000000000001-") && tp.ends_with("-01") && tp.len() == 55, "{tp}");
    }

    #[test]
    fn password_and_token_hashes_are_not_published() {
        let mut e = event(json!({"password_changed": {"password_hash": "$argon2id$secret"}}));
        e.aggregate_type = "user".into();
        e.event_type = "password_changed".into();
        let published = Envelope::from_event(&e).expect("publishable");
        assert!(!published.value.contains("argon2"), "{}", published.value);
    }

    #[test]
    fn payment_methods_are_published_masked() {
        let mut e = event(json!({"placed": {"payment_method": "visa_4242", "customer": "c"}}));
        e.aggregate_type = "order".into();
        let v: Value = serde_json::from_str(&Envelope::from_event(&e).expect("publishable").value).expect("json");
        assert_eq!(v["data"]["payment_method"], "visa ••••4242");
        let mut e = event(json!({"authorisation_requested": {"method": "tok_approve"}}));
        e.aggregate_type = "payment".into();
        let envelope = Envelope::from_event(&e).expect("publishable");
        assert!(!envelope.value.contains("tok_approve"), "{}", envelope.value);
    }

    #[test]
    fn a_published_envelope_reads_back_as_the_stored_event() {
        for (name, payload) in [("price_changed", json!({"price_changed": {"price": {"amount": 1}}})), ("published", json!("published"))] {
            let mut stored = event(payload);
            stored.event_type = name.into();
            let published = Envelope::from_event(&stored).expect("publishable");
            let read = Envelope::parse(published.value.as_bytes()).expect("parsable");
            assert_eq!(read.payload, stored.payload);
            assert_eq!((read.aggregate_id.as_str(), read.sequence, read.cursor.position), ("acme:0193", 3, 42));
            assert_eq!((read.aggregate_type.as_str(), read.event_type.as_str()), ("product", stored.event_type.as_str()));
            assert_eq!(read.metadata["tenant"], "acme");
            assert_eq!(read.recorded_at.timestamp_millis(), stored.recorded_at.timestamp_millis());
        }
        assert!(Envelope::parse(b"{}").is_err());
        assert!(Envelope::parse(b"nope").is_err());
    }

    #[test]
    fn events_without_fields_have_empty_data() {
        let e = Envelope::from_event(&event(json!("published"))).expect("publishable");
        let v: Value = serde_json::from_str(&e.value).expect("json");
        assert_eq!(v["data"], json!({}));
    }
}
