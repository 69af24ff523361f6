//! What is sold: products, by their stock keeping unit. Orders name them in their lines; waiting
//! rooms gate them.

use serde::Serialize;

use crate::error::ValidationError;

/// A stock keeping unit: 1–64 characters of letters, digits, `-`, `_` or `.`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Sku(String);

impl Sku {
    /// # Errors
    /// [`ValidationError`] unless 1–64 characters of `[A-Za-z0-9._-]`.
    pub fn parse(sku: &str) -> Result<Self, ValidationError> {
        let ok = (1..=64).contains(&sku.len())
            && sku
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
            Ok(Self(sku.to_owned()))
        } else {
            Err(ValidationError::new(
                "sku",
                "must be 1 to 64 letters, digits, '-', '_' or '.'",
            ))
        }
    }
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
