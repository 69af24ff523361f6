//! Who is calling: bearer JWTs (RFC 6750 / RFC 7519) verified with asymmetric keys, and what
//! their scopes allow.
//!
//! A token carries `iss`, `aud`, `exp`, `sub` and a space-separated `scope` claim. Scopes are
//! the roles of a shop: `orders` (a customer: places and manages their own orders, `sub` is the
//! customer id), `courier` (reads and moves deliveries) and `admin` (everyone's orders and every
//! delivery). Handlers take a [`Caller`]; a request without a valid token never reaches them
//! (401), and a caller without the scope an operation needs gets 403.

mod dev;
pub(crate) mod ed25519;
mod keys;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use ordership_application::OrderAccess;
use ordership_domain::CustomerId;
use serde::Deserialize;

pub(crate) use dev::new_key_pem;
pub use dev::{DEV_AUDIENCE, DEV_ISSUER, DevKey, DevKeyError};
pub use keys::{KeyError, KeyRing};

use crate::problem::{ApiError, NO_TOKEN};

/// A role a token can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// A customer: their own orders.
    Orders,
    /// A courier: deliveries.
    Courier,
    /// An operator: everything.
    Admin,
}

impl Scope {
    pub const ALL: [Self; 3] = [Self::Orders, Self::Courier, Self::Admin];

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Orders => "orders",
            Self::Courier => "courier",
            Self::Admin => "admin",
        }
    }

    /// The scope of this name; scopes of other systems in a token are `None` and ignored.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// The claims ordership reads (`iss`, `aud` and `exp` are checked by the verifier).
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    scope: String,
    /// A NumericDate: seconds, possibly with a fraction.
    exp: f64,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    subject: String,
    scopes: Vec<Scope>,
}

impl Caller {
    #[must_use]
    pub fn subject(&self) -> &str {
        &self.subject
    }

    #[must_use]
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// The customer placing an order: the token's subject, with the `orders` scope.
    pub(crate) fn customer(&self) -> Result<CustomerId, ApiError> {
        if !self.has(Scope::Orders) {
            return Err(ApiError::Forbidden(
                "placing an order needs a customer's token (scope orders)",
            ));
        }
        self.customer_id()
    }

    fn customer_id(&self) -> Result<CustomerId, ApiError> {
        CustomerId::parse(&self.subject).map_err(|_| {
            ApiError::Unauthenticated("the token's subject is not a valid customer id")
        })
    }

    /// Whose orders this caller may read and cancel: everyone's for `admin`, their own for
    /// `orders`.
    pub(crate) fn order_access(&self) -> Result<OrderAccess, ApiError> {
        if self.has(Scope::Admin) {
            Ok(OrderAccess::All)
        } else if self.has(Scope::Orders) {
            Ok(OrderAccess::Own(self.customer_id()?))
        } else {
            Err(ApiError::Forbidden(
                "orders need a customer's token (scope orders) or an operator's (scope admin)",
            ))
        }
    }

    /// Operator actions (configuring waiting rooms).
    pub(crate) fn admin(&self) -> Result<(), ApiError> {
        if self.has(Scope::Admin) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "this needs an operator's token (scope admin)",
            ))
        }
    }

    /// Deliveries are read and moved by couriers and operators.
    pub(crate) fn courier(&self) -> Result<(), ApiError> {
        if self.has(Scope::Courier) || self.has(Scope::Admin) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "deliveries need a courier's token (scope courier) or an operator's (scope admin)",
            ))
        }
    }
}

/// Verifies bearer tokens: the signature with a key of the [`KeyRing`] (chosen by the token's
/// `kid`), then `exp`, `iss` and `aud`.
pub struct Authenticator {
    keys: KeyRing,
    issuer: String,
    audience: String,
    verified: Verified,
}

/// Tokens verified lately, by digest: a client that sends the same token again (a buyer polling
/// a waiting room) is not verified again until its entry is a minute old, so a key withdrawn
/// from the key set stops being honoured within a minute. Expiry is checked on every use.
#[derive(Debug, Default)]
struct Verified(Mutex<HashMap<[u8; 32], (Caller, u64, Instant)>>);

impl Verified {
    /// How long a verification is trusted.
    const MAX_AGE: Duration = Duration::from_secs(60);
    /// Bounded: when full, it starts again empty.
    const MAX_ENTRIES: usize = 65_536;

    fn digest(token: &str) -> [u8; 32] {
        use sha2::Digest as _;
        sha2::Sha256::digest(token.as_bytes()).into()
    }

    fn get(&self, digest: &[u8; 32], now_s: u64) -> Option<Caller> {
        let entries = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (caller, exp, at) = entries.get(digest)?;
        (at.elapsed() < Self::MAX_AGE && now_s < exp.saturating_add(LEEWAY_S))
            .then(|| caller.clone())
    }

    fn put(&self, digest: [u8; 32], caller: &Caller, exp: u64) {
        let mut entries = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= Self::MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(digest, (caller.clone(), exp, Instant::now()));
    }
}

/// Clock skew tolerated on `exp`, in seconds.
const LEEWAY_S: u64 = 30;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("keys", &self.keys)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    #[must_use]
    pub fn new(keys: KeyRing, issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            keys,
            issuer: issuer.into(),
            audience: audience.into(),
            verified: Verified::default(),
        }
    }

    /// The caller a bearer token stands for.
    ///
    /// # Errors
    /// [`ApiError::Unauthenticated`] with a reason safe to show the client.
    pub async fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let digest = Verified::digest(token);
        if let Some(caller) = self.verified.get(&digest, unix_now()) {
            return Ok(caller);
        }
        let invalid = || ApiError::Unauthenticated("the bearer token is not valid here");
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        let key = self
            .keys
            .find(header.kid.as_deref(), header.alg)
            .await
            .ok_or(ApiError::Unauthenticated(
                "the bearer token is signed with a key this service does not know",
            ))?;
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.leeway = LEEWAY_S;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| match e
            .kind()
        {
            ErrorKind::ExpiredSignature => {
                ApiError::Unauthenticated("the bearer token has expired")
            }
            ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => {
                ApiError::Unauthenticated("the bearer token was issued by or for someone else")
            }
            _ => invalid(),
        })?;
        if data.claims.sub.is_empty() {
            return Err(invalid());
        }
        let caller = Caller {
            subject: data.claims.sub,
            scopes: data
                .claims
                .scope
                .split_ascii_whitespace()
                .filter_map(Scope::parse)
                .collect(),
        };
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a time in seconds; saturating"
        )]
        self.verified
            .put(digest, &caller, data.claims.exp.max(0.0) as u64);
        Ok(caller)
    }
}

/// Algorithms ordership accepts: asymmetric only, so a service holds no key that can sign.
pub(crate) const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::EdDSA,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let authenticator = parts
            .extensions
            .get::<Arc<Authenticator>>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("no authenticator is configured".into()))?;
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(ApiError::Unauthenticated(NO_TOKEN))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthenticated(
                "the Authorization header must be `Bearer <token>`",
            ))?;
        authenticator.verify(token).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verified_token_is_remembered_until_it_expires_and_no_other_token_is() {
        let verified = Verified::default();
        let caller = Caller {
            subject: "c-1".into(),
            scopes: vec![Scope::Orders],
        };
        let digest = Verified::digest("token-1");
        verified.put(digest, &caller, 1_000);
        assert_eq!(verified.get(&digest, 1_000), Some(caller));
        assert_eq!(
            verified.get(&digest, 1_000 + LEEWAY_S),
            None,
            "expired, past the leeway"
        );
        assert_eq!(verified.get(&Verified::digest("token-2"), 0), None);
    }
}
