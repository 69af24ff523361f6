//! Money in minor units (cents, won) with an ISO 4217 currency code.

use std::fmt;

use serde::Serialize;

use crate::error::ValidationError;

/// An ISO 4217 alphabetic currency code: three upper-case ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    /// Parses a code such as `"KRW"`.
    ///
    /// # Errors
    /// [`ValidationError`] unless the code is exactly three upper-case ASCII letters.
    pub fn parse(code: &str) -> Result<Self, ValidationError> {
        match code.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Self([a, b, c])),
            _ => Err(ValidationError::new(
                "currency",
                "must be an ISO 4217 code of three upper-case letters",
            )),
        }
    }

    /// The code as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Constructed only from ASCII letters, so always valid UTF-8.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> Self {
        c.as_str().to_owned()
    }
}

/// A non-negative amount in minor units of one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Money {
    amount: i64,
    currency: Currency,
}

impl Money {
    /// # Errors
    /// [`ValidationError`] if `amount` is negative.
    pub fn new(amount: i64, currency: Currency) -> Result<Self, ValidationError> {
        if amount < 0 {
            return Err(ValidationError::new("amount", "must not be negative"));
        }
        Ok(Self { amount, currency })
    }

    /// Zero in `currency`.
    #[must_use]
    pub const fn zero(currency: Currency) -> Self {
        Self {
            amount: 0,
            currency,
        }
    }

    /// Amount in minor units.
    #[must_use]
    pub const fn amount(&self) -> i64 {
        self.amount
    }

    #[must_use]
    pub const fn currency(&self) -> Currency {
        self.currency
    }

    /// `self × factor`, or `None` on overflow.
    #[must_use]
    pub fn checked_mul(self, factor: u32) -> Option<Self> {
        self.amount
            .checked_mul(i64::from(factor))
            .map(|amount| Self { amount, ..self })
    }

    /// `self + other`, or `None` on overflow or when the currencies differ.
    #[must_use]
    pub fn checked_add(self, other: Self) -> Option<Self> {
        if self.currency != other.currency {
            return None;
        }
        self.amount
            .checked_add(other.amount)
            .map(|amount| Self { amount, ..self })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_accepts_three_upper_case_letters_only() {
        assert!(Currency::parse("KRW").is_ok());
        for bad in ["krw", "KR", "KRWX", "K1W", "", "ÄBC"] {
            assert!(Currency::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn money_refuses_negative_amounts_and_mixed_currencies() -> Result<(), ValidationError> {
        let krw = Currency::parse("KRW")?;
        let usd = Currency::parse("USD")?;
        assert!(Money::new(-1, krw).is_err());
        let a = Money::new(5, krw)?;
        assert_eq!(
            a.checked_add(Money::new(7, krw)?).map(|m| m.amount()),
            Some(12)
        );
        assert_eq!(a.checked_add(Money::new(7, usd)?), None);
        assert_eq!(Money::new(i64::MAX, krw)?.checked_mul(2), None);
        Ok(())
    }
}
