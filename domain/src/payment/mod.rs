//! A payment for one order: authorisation, capture, void and refunds. The gateway is called
//! by the saga between commands (`services.rs`), never while this aggregate is held; the
//! aggregate records what was asked and what the gateway answered.

mod aggregate;
mod commands;
mod error;
mod events;
mod services;

pub use aggregate::*;
pub use commands::*;
pub use error::*;
pub use events::*;
pub use services::*;

/// What may be shown of a payment method outside the payment context (read models, topics,
/// webhooks): at most its brand (a leading run of letters) and its last four characters when
/// they are digits: `visa_4242` is `visa ••••4242`, `tok_approve` is `tok`. Masking a masked
/// value changes nothing.
pub fn masked_method(raw: &str) -> String {
    let brand: String = raw.chars().take_while(char::is_ascii_alphabetic).collect();
    let brand = if brand.len() <= 16 { brand } else { String::new() };
    let tail: Vec<char> = raw.chars().rev().take(4).collect();
    let last4 = (tail.len() == 4 && tail.iter().all(char::is_ascii_digit)).then(|| tail.iter().rev().collect::<String>());
    match (brand.is_empty(), last4) {
        (false, Some(d)) => format!("{brand} ••••{d}"),
        (true, Some(d)) => format!("••••{d}"),
        (false, None) => brand,
        (true, None) => "••••".to_owned(),
    }
}

#[cfg(test)]
mod mask_tests {
    use super::masked_method;

    #[test]
    fn only_a_brand_and_four_digits_remain() {
        assert_eq!(masked_method("visa_4242"), "visa ••••4242");
        assert_eq!(masked_method("tok_approve"), "tok");
        assert_eq!(masked_method("12345678901"), "••••8901");
        assert_eq!(masked_method("_x"), "••••");
        for raw in ["visa_4242", "tok_approve", "12345678901", "_x"] {
            assert_eq!(masked_method(&masked_method(raw)), masked_method(raw), "idempotent: {raw}");
        }
    }
}
