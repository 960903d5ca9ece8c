use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::InvalidValue;

/// Declares a string newtype that can only be built through `FromStr` (its parser), with serde
/// going through the same parser so a stored or received value is always valid. Its JSON Schema
/// is a string described by its doc comment; a `#[schemars(extend(...))]` among its attributes
/// adds what the parser asks of it (a pattern, lengths) where JSON Schema can say it.
macro_rules! parsed_string {
    ($(#[$attr:meta])* $name:ident) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
        $(#[$attr])*
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> Self {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

parsed_string!(
    /// An e-mail address, normalised (trimmed, lower-cased) so that one mailbox has one claim.
    #[schemars(extend("pattern" = r"^[^\s@]{1,64}@[^\s@.]+(\.[^\s@.]+)+$", "maxLength" = 254))]
    Email
);
parsed_string!(
    /// A stock-keeping unit: upper-case letters, digits, `-`, `_` and `.`, 1 to 64 characters.
    #[schemars(extend("pattern" = "^[A-Z0-9._-]{1,64}$"))]
    Sku
);
parsed_string!(
    /// A category path such as `electronics/phones`: lower-case segments joined by `/`.
    #[schemars(extend("pattern" = "^[a-z0-9-]{1,64}(/[a-z0-9-]{1,64}){0,7}$"))]
    CategoryPath
);
parsed_string!(
    /// A non-empty, trimmed line of text of at most 200 characters (names, titles).
    #[schemars(extend(
        "minLength" = 1,
        "maxLength" = 200,
        "pattern" = r"^[^\s\u0000-\u001f\u007f-\u009f]([^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f])?$",
    ))]
    Name
);
parsed_string!(
    /// Free text of at most 10,000 characters (may be empty).
    #[schemars(extend("maxLength" = 10_000))]
    Description
);
parsed_string!(
    /// A discount code as shoppers type it: 3 to 32 letters, digits, `-` or `_`, upper-cased
    /// (`summer-10` is read as `SUMMER-10`), so one code is one promotion per tenant.
    #[schemars(extend("pattern" = "^[A-Z0-9_-]{3,32}$"))]
    PromotionCode
);
parsed_string!(
    /// A phone number in E.164 form: `+`, a country code that does not start with 0, and at
    /// most 15 digits in all (`+4915112345678`). Spaces, `-`, `.` and `(`/`)` as people type
    /// them are dropped; nothing else is guessed (no national numbers without `+`).
    #[schemars(extend("pattern" = r"^\+[1-9][0-9]{6,14}$"))]
    Phone
);
parsed_string!(
    /// An ISO 3166-1 alpha-2 country code such as `DE`, upper-cased (`de` is read as `DE`).
    #[schemars(extend("pattern" = "^[A-Z]{2}$"))]
    CountryCode
);

impl FromStr for CountryCode {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let code = s.trim().to_ascii_uppercase();
        if code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(code))
        } else {
            Err(InvalidValue::new("country", "must be an iso 3166-1 alpha-2 code such as DE"))
        }
    }
}

impl FromStr for Email {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let e = s.trim().to_lowercase();
        let bad = || InvalidValue::new("email", "not a valid e-mail address");
        if e.len() > 254 || e.chars().any(char::is_whitespace) {
            return Err(bad());
        }
        let (local, domain) = e.split_once('@').ok_or_else(bad)?;
        let domain_ok =
            domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.') && !domain.contains("..") && !domain.contains('@');
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(bad());
        }
        Ok(Self(e))
    }
}

impl FromStr for Phone {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidValue::new("phone", "must be an E.164 number such as +4915112345678");
        let rest = s.trim().strip_prefix('+').ok_or_else(bad)?;
        let mut digits = String::with_capacity(15);
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(bad()),
            }
        }
        // The shortest numbers in use have 7 digits with their country code (+290 xxxx).
        if !(7..=15).contains(&digits.len()) || digits.starts_with('0') {
            return Err(bad());
        }
        Ok(Self(format!("+{digits}")))
    }
}

impl Phone {
    /// The number with all but its country-code start and last two digits hidden
    /// (`+49*********78`), for lists an operator reads.
    pub fn masked(&self) -> String {
        mask_phone(&self.0)
    }
}

/// `+49*********78`: the first two digits and the last two of a phone number, the rest as `*`
/// (also for stored text that is not a valid number any more).
pub fn mask_phone(number: &str) -> String {
    let chars: Vec<char> = number.chars().collect();
    let keep_start = if number.starts_with('+') { 3 } else { 2 };
    chars.iter().enumerate().map(|(i, c)| if i < keep_start || i + 2 >= chars.len() { *c } else { '*' }).collect()
}

impl FromStr for Sku {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let sku = s.trim().to_ascii_uppercase();
        let ok =
            !sku.is_empty() && sku.len() <= 64 && sku.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"-_.".contains(&b));
        if ok {
            Ok(Self(sku))
        } else {
            Err(InvalidValue::new("sku", "must be 1-64 letters, digits, '-', '_' or '.'"))
        }
    }
}

impl FromStr for PromotionCode {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let code = s.trim().to_ascii_uppercase();
        let ok = (3..=32).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"-_".contains(&b));
        if ok {
            Ok(Self(code))
        } else {
            Err(InvalidValue::new("code", "must be 3-32 letters, digits, '-' or '_'"))
        }
    }
}

impl CategoryPath {
    /// The path and each of its ancestors, most general first: `a`, `a/b`, `a/b/c`.
    pub fn ancestors_and_self(&self) -> impl Iterator<Item = &str> {
        self.0.match_indices('/').map(|(i, _)| &self.0[..i]).chain(std::iter::once(self.0.as_str()))
    }
}

impl FromStr for CategoryPath {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let path = s.trim().trim_matches('/').to_lowercase();
        let segment_ok = |seg: &str| {
            !seg.is_empty() && seg.len() <= 64 && seg.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if path.split('/').count() <= 8 && path.split('/').all(segment_ok) {
            Ok(Self(path))
        } else {
            Err(InvalidValue::new("category", "must be '/'-separated segments of lowercase letters, digits or '-'"))
        }
    }
}

impl FromStr for Name {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            Err(InvalidValue::new("name", "must be 1-200 characters of text"))
        } else {
            Ok(Self(name.to_owned()))
        }
    }
}

impl FromStr for Description {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.chars().count() > 10_000 {
            Err(InvalidValue::new("description", "must be at most 10000 characters"))
        } else {
            Ok(Self(s.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised() {
        assert_eq!(" Ada@Example.COM ".parse::<Email>().map(|e| e.to_string()), Ok("ada@example.com".into()));
    }

    #[test]
    fn malformed_emails_are_rejected() {
        for bad in ["", "ada", "ada@", "@example.com", "ada@example", "a da@example.com", "a@b@c.com"] {
            assert!(bad.parse::<Email>().is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn phones_are_e164() {
        assert_eq!("+49 151 1234-5678".parse::<Phone>().map(|p| p.to_string()), Ok("+4915112345678".into()));
        assert_eq!("+1 (415) 555.0100".parse::<Phone>().map(|p| p.to_string()), Ok("+14155550100".into()));
        for bad in ["", "+", "015112345678", "+0151123456", "+49 151 x", "+1234567890123456", "+123456", "++4915112345678", "+49\n151"] {
            assert!(bad.parse::<Phone>().is_err(), "{bad:?} should be rejected");
        }
        let phone: Phone = "+4915112345678".parse().expect("valid");
        assert_eq!(phone.masked(), "+49*********78");
        assert_eq!(mask_phone("12"), "12");
    }

    #[test]
    fn skus_are_upper_cased_and_restricted() {
        assert_eq!("ab-1".parse::<Sku>().map(|s| s.to_string()), Ok("AB-1".into()));
        assert!("AB 1".parse::<Sku>().is_err());
        assert!("AB:1".parse::<Sku>().is_err());
    }

    #[test]
    fn category_paths_know_their_ancestors() {
        let p: CategoryPath = "/Electronics/phones/".parse().expect("valid");
        assert_eq!(p.as_str(), "electronics/phones");
        assert_eq!(p.ancestors_and_self().collect::<Vec<_>>(), ["electronics", "electronics/phones"]);
        assert!("a//b".parse::<CategoryPath>().is_err());
    }

    #[test]
    fn names_are_trimmed_and_non_empty() {
        assert_eq!("  Ada ".parse::<Name>().map(|n| n.to_string()), Ok("Ada".into()));
        assert!("   ".parse::<Name>().is_err());
    }

    #[test]
    fn stored_values_are_parsed_again_on_the_way_in() {
        assert!(serde_json::from_str::<Sku>("\"bad sku\"").is_err());
    }

    #[test]
    fn country_codes_are_two_letters_upper_cased() {
        assert_eq!("de".parse::<CountryCode>().map(String::from), Ok("DE".to_owned()));
        assert!("Germany".parse::<CountryCode>().is_err());
        assert!("D1".parse::<CountryCode>().is_err());
        assert!(serde_json::from_str::<CountryCode>("\"DEU\"").is_err(), "a stored or received value is parsed too");
    }
}
