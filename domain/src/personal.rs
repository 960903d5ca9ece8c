//! Which fields of which events are personal data, whose they are, and what they read as once
//! their owner is erased. The store seals these fields with the owner's data key before it
//! appends an event and opens them as it reads one (`store::personal`); deleting the key
//! erases them everywhere the event went. The topic contract marks the same fields.
//!
//! Pointers are JSON pointers into the stored payload, which is externally tagged
//! (`/registered/email`). Ids stay in clear: they are how erasure finds what to blank.

use serde_json::{json, Value};

/// Whose data a field is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The stream's own key (a user's events: the user id).
    Stream,
    /// The user id at this pointer of the payload (an order's customer).
    Field(&'static str),
}

/// One personal field of an event type.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub pointer: &'static str,
    /// What the field reads as once its owner is erased: a value its type accepts, so every
    /// reader (aggregates, projections, history) still reads the event.
    pub erased: fn() -> Value,
}

/// The personal fields of one event type and whose they are.
#[derive(Debug, Clone, Copy)]
pub struct Personal {
    pub aggregate_type: &'static str,
    pub event_type: &'static str,
    pub owner: Owner,
    pub fields: &'static [Field],
}

/// What an erased e-mail address reads as: a valid address in the reserved `.invalid` domain,
/// so nothing is ever sent to it.
pub const ERASED_EMAIL: &str = "erased@erased.invalid";
/// What an erased name or line of an address reads as.
pub const ERASED_TEXT: &str = "[erased]";

fn erased_email() -> Value {
    json!(ERASED_EMAIL)
}

fn erased_text() -> Value {
    json!(ERASED_TEXT)
}

fn erased_none() -> Value {
    Value::Null
}

macro_rules! fields {
    ($($pointer:literal => $erased:ident),* $(,)?) => {
        &[$(Field { pointer: $pointer, erased: $erased }),*]
    };
}

/// Every event type that carries personal data. The country of a shipping address stays in
/// clear: tax was charged by it, and a shop keeps its tax records.
pub const PERSONAL: &[Personal] = &[
    Personal {
        aggregate_type: "user",
        event_type: "registered",
        owner: Owner::Stream,
        fields: fields!["/registered/email" => erased_email, "/registered/name" => erased_text],
    },
    Personal {
        aggregate_type: "user",
        event_type: "profile_changed",
        owner: Owner::Stream,
        fields: fields!["/profile_changed/name" => erased_text],
    },
    Personal {
        aggregate_type: "user",
        event_type: "phone_changed",
        owner: Owner::Stream,
        fields: fields!["/phone_changed/phone" => erased_none],
    },
    Personal {
        aggregate_type: "order",
        event_type: "placed",
        owner: Owner::Field("/placed/customer"),
        fields: fields![
            "/placed/shipping_address/name" => erased_text,
            "/placed/shipping_address/line1" => erased_text,
            "/placed/shipping_address/line2" => erased_none,
            "/placed/shipping_address/city" => erased_text,
            "/placed/shipping_address/region" => erased_none,
            "/placed/shipping_address/postal_code" => erased_text,
        ],
    },
    Personal {
        aggregate_type: "email_claim",
        event_type: "claimed",
        owner: Owner::Field("/claimed/owner"),
        fields: fields!["/claimed/key" => erased_email],
    },
];

/// The personal fields of `event_type` of `aggregate_type`, if it has any.
pub fn of(aggregate_type: &str, event_type: &str) -> Option<&'static Personal> {
    PERSONAL.iter().find(|p| p.aggregate_type == aggregate_type && p.event_type == event_type)
}

impl Personal {
    /// The owner's user id: the stream's key, or the id at the owner's pointer.
    pub fn owner_of<'a>(&self, stream_key: &'a str, payload: &'a Value) -> Option<&'a str> {
        match self.owner {
            Owner::Stream => Some(stream_key),
            Owner::Field(pointer) => payload.pointer(pointer)?.as_str(),
        }
    }

    /// The field at `pointer` (after the event type's tag, as a published message's `data` has
    /// it: `/shipping_address/name`), if it is personal.
    pub fn field_in_data(&self, data_pointer: &str) -> Option<&'static Field> {
        self.fields
            .iter()
            .find(|f| f.pointer.strip_prefix('/').and_then(|p| p.split_once('/')).map(|(_, rest)| rest) == data_pointer.strip_prefix('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every erased value reads back as its field's type, so an erased event still loads.
    #[test]
    fn erased_events_still_deserialise() {
        use crate::claim::{ClaimEvent, EmailKind};
        use crate::user::UserEvent;
        let mut samples = vec![
            (
                "user",
                json!({"registered": {"tenant": "acme", "user_id": "0190b0e0-0000-7000-8000-000000000001", "email": "ada@example.com", "name": "Ada", "password_hash": "$argon2id$x", "roles": ["customer"]}}),
            ),
            ("user", json!({"profile_changed": {"name": "Ada"}})),
            ("user", json!({"phone_changed": {"phone": "+4915112345678"}})),
            (
                "email_claim",
                json!({"claimed": {"tenant": "acme", "key": "ada@example.com", "owner": "0190b0e0-0000-7000-8000-000000000001"}}),
            ),
        ];
        for (aggregate_type, payload) in samples.iter_mut() {
            let event_type = payload.as_object().and_then(|o| o.keys().next().cloned()).expect("tagged");
            let personal = of(aggregate_type, &event_type).expect("personal");
            for f in personal.fields {
                *payload.pointer_mut(f.pointer).expect("field present") = (f.erased)();
            }
            let ok = match *aggregate_type {
                "user" => serde_json::from_value::<UserEvent>(payload.clone()).is_ok(),
                _ => serde_json::from_value::<ClaimEvent<EmailKind>>(payload.clone()).is_ok(),
            };
            assert!(ok, "{payload}");
        }
        let address = json!({"name": "Ada", "line1": "Main St 1", "line2": "Flat 2", "city": "Berlin", "region": null, "postal_code": "10115", "country": "DE"});
        let mut placed = json!({"placed": {"shipping_address": address}});
        for f in of("order", "placed").expect("personal").fields {
            *placed.pointer_mut(f.pointer).expect("field present") = (f.erased)();
        }
        let erased: crate::order::ShippingAddress = serde_json::from_value(placed["placed"]["shipping_address"].clone()).expect("reads");
        assert_eq!(String::from(erased.country), "DE", "the country stays");
        assert!(of("order", "placed").expect("personal").field_in_data("/shipping_address/line1").is_some());
        assert!(of("order", "placed").expect("personal").field_in_data("/shipping_address/country").is_none());
    }
}
