//! Where an order goes.

use std::fmt;

use serde::Serialize;

use crate::error::{ValidationError, ValidationErrors};

/// An ISO 3166-1 alpha-2 country code: two upper-case ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(into = "String")]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// # Errors
    /// [`ValidationError`] unless `code` is two upper-case ASCII letters.
    pub fn parse(code: &str) -> Result<Self, ValidationError> {
        match code.as_bytes() {
            &[a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => Ok(Self([a, b])),
            _ => Err(ValidationError::new(
                "country",
                "must be an ISO 3166-1 alpha-2 code of two upper-case letters",
            )),
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<CountryCode> for String {
    fn from(c: CountryCode) -> Self {
        c.as_str().to_owned()
    }
}

/// Free text of a bounded length with no control characters, trimmed.
pub(crate) fn text(field: &str, value: &str, max: usize) -> Result<String, ValidationError> {
    // The limit counts what was sent, white space included, as a JSON schema's maxLength does.
    let sent = value.chars().count();
    let value = value.trim();
    if value.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if sent > max {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ValidationError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(value.to_owned())
}

/// A validated shipping address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShippingAddress {
    recipient: String,
    line1: String,
    city: String,
    postal_code: String,
    country: CountryCode,
}

impl ShippingAddress {
    /// # Errors
    /// Every field that is empty, too long, or (country) not an ISO code.
    pub fn new(
        recipient: &str,
        line1: &str,
        city: &str,
        postal_code: &str,
        country: &str,
    ) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let recipient = errors.check(text("recipient", recipient, 200));
        let line1 = errors.check(text("line1", line1, 200));
        let city = errors.check(text("city", city, 100));
        let postal_code = errors.check(text("postal_code", postal_code, 20));
        let country = errors.check(CountryCode::parse(country));
        errors.finish(|| {
            Some(Self {
                recipient: recipient?,
                line1: line1?,
                city: city?,
                postal_code: postal_code?,
                country: country?,
            })
        })
    }

    #[must_use]
    pub fn recipient(&self) -> &str {
        &self.recipient
    }
    #[must_use]
    pub fn line1(&self) -> &str {
        &self.line1
    }
    #[must_use]
    pub fn city(&self) -> &str {
        &self.city
    }
    #[must_use]
    pub fn postal_code(&self) -> &str {
        &self.postal_code
    }
    #[must_use]
    pub const fn country(&self) -> CountryCode {
        self.country
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_reports_every_bad_field_at_once() {
        let Err(errors) = ShippingAddress::new("", "1 Main St", " ", "04524", "kr") else {
            panic!("an invalid address was accepted");
        };
        let fields: Vec<_> = errors.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["recipient", "city", "country"]);
    }

    #[test]
    fn an_address_is_trimmed() -> Result<(), ValidationErrors> {
        let a = ShippingAddress::new(" Kim ", "1 Sejong-daero", "Seoul", "04524", "KR")?;
        assert_eq!(a.recipient(), "Kim");
        assert_eq!(a.country().as_str(), "KR");
        Ok(())
    }
}
