//! Errors of the model itself (validation and refused transitions).

use std::fmt;

/// A value that did not pass its constructor's checks. `field` names the offending input in the
/// caller's vocabulary (`lines[0].quantity`), so a driving adapter can point at it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    #[must_use]
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error, its field nested under `prefix` (`address` + `city` → `address.city`).
    #[must_use]
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = if self.field.is_empty() {
            prefix.to_owned()
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }
}

/// Every validation problem of one input, not just the first.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for e in &self.0 {
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ValidationErrors {
    /// Records the error of `result`, if any, and returns its value.
    pub fn check<T>(&mut self, result: Result<T, ValidationError>) -> Option<T> {
        result.map_err(|e| self.0.push(e)).ok()
    }

    /// `Ok(value)` if nothing was recorded.
    ///
    /// # Errors
    /// `self` if any error was recorded.
    pub fn finish<T>(self, value: impl FnOnce() -> Option<T>) -> Result<T, Self> {
        if self.0.is_empty()
            && let Some(v) = value()
        {
            return Ok(v);
        }
        Err(self)
    }
}

/// A command that the aggregate's current state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} when {state}")]
pub struct InvalidTransition {
    pub action: &'static str,
    pub state: &'static str,
}

impl InvalidTransition {
    /// The check every aggregate's command starts with: `action` may happen in `state` only if
    /// `allowed`.
    pub(crate) const fn unless(
        allowed: bool,
        action: &'static str,
        state: &'static str,
    ) -> Result<(), Self> {
        if allowed {
            Ok(())
        } else {
            Err(Self { action, state })
        }
    }
}
