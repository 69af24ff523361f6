//! The waiting room's tokens, signed: an admission token (room, buyer, token id, expiry) and a
//! queue pass (room, buyer, ticket). JWTs, each kind with an audience of its own, so neither is
//! accepted as the other, nor as a bearer token of the API. Admissions are signed with one
//! Ed25519 key every instance shares (anything holding the public key can check them). Queue
//! passes are only ever read back by the services themselves, and every join answers with one,
//! so they carry an HMAC-SHA256 (HS256) under a secret derived from that same key: signing one
//! costs a hash, not the quarter of a join's CPU an Ed25519 signature took.

use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ordership_domain::CustomerId;
use ordership_domain::ports::{Admission, BoxError, QueuePass, TokenError, WaitingRoomTokens};
use ordership_domain::waiting_room::{RoomId, Ticket};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::auth::DevKeyError;
use crate::auth::ed25519::Ed25519Key;

const ISSUER: &str = "ordership-waiting-room";
const ADMISSION: &str = "ordership-admission";
const QUEUE: &str = "ordership-queue";

#[derive(Serialize, Deserialize)]
struct AdmissionClaims {
    iss: String,
    aud: String,
    sub: String,
    room: String,
    jti: String,
    /// Seconds since 1970 with the admission's milliseconds (a JWT NumericDate may have a
    /// fraction), so the token expires exactly when the answer's `expires_at` says.
    exp: f64,
}

#[derive(Serialize, Deserialize)]
struct QueueClaims {
    iss: String,
    aud: String,
    sub: String,
    room: String,
    ticket: u64,
}

/// Signs and checks waiting-room tokens with an Ed25519 key (and queue passes with a secret
/// derived from it).
pub struct SignedTokens {
    key: Ed25519Key,
    pass_signing: EncodingKey,
    pass_checking: DecodingKey,
}

/// The queue passes' HMAC secret: a hash of the admission key's PEM under a label of its own, so
/// every instance with the key derives the same secret and nothing else needs configuring.
fn pass_secret(pem: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(b"ordership queue pass v1\0");
    hash.update(pem);
    hash.finalize().into()
}

impl std::fmt::Debug for SignedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedTokens")
            .field("kid", &self.key.kid())
            .finish_non_exhaustive()
    }
}

impl SignedTokens {
    /// From an Ed25519 private key in PEM (PKCS#8, `-----BEGIN PRIVATE KEY-----`); `None` for
    /// anything else.
    #[must_use]
    pub fn from_pem(pem: &[u8]) -> Option<Self> {
        let secret = pass_secret(pem);
        Ed25519Key::from_pem(pem).map(|key| Self {
            key,
            pass_signing: EncodingKey::from_secret(&secret),
            pass_checking: DecodingKey::from_secret(&secret),
        })
    }

    /// With a fresh key of its own: tokens only this value honours (one process, tests).
    #[must_use]
    pub fn generate() -> Self {
        // A PEM we have just written always parses.
        Self::from_pem(crate::auth::new_key_pem().as_bytes()).unwrap_or_else(|| unreachable!())
    }

    /// From an Ed25519 private key file in PEM; development mode uses the development key file.
    ///
    /// # Errors
    /// The file cannot be read or holds something else.
    pub fn from_pem_file(path: &Path) -> Result<Self, DevKeyError> {
        let pem = std::fs::read(path).map_err(|source| DevKeyError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_pem(&pem).ok_or_else(|| DevKeyError::NotAKey {
            path: path.to_owned(),
        })
    }

    fn sign(&self, claims: &impl Serialize) -> Result<String, BoxError> {
        Ok(self.key.sign(claims)?)
    }

    /// The token's claims if it is ours and of this audience (expiry is judged by the caller).
    fn check<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        audience: &str,
    ) -> Result<T, TokenError> {
        let (algorithm, key) = if audience == QUEUE {
            (Algorithm::HS256, &self.pass_checking)
        } else {
            (Algorithm::EdDSA, self.key.verifying())
        };
        let mut validation = Validation::new(algorithm);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[audience]);
        jsonwebtoken::decode::<T>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|_| TokenError::Invalid)
    }
}

fn parts(room: &str, buyer: &str) -> Result<(RoomId, CustomerId), TokenError> {
    Ok((
        RoomId::parse(room).map_err(|_| TokenError::Invalid)?,
        CustomerId::parse(buyer).map_err(|_| TokenError::Invalid)?,
    ))
}

impl WaitingRoomTokens for SignedTokens {
    fn sign_admission(&self, admission: &Admission) -> Result<String, BoxError> {
        self.sign(&AdmissionClaims {
            iss: ISSUER.into(),
            aud: ADMISSION.into(),
            sub: admission.buyer.as_str().into(),
            room: admission.room.as_str().into(),
            jti: admission.id.clone(),
            exp: admission.expires_at.timestamp_millis() as f64 / 1000.0,
        })
    }

    fn verify_admission(&self, token: &str, now: DateTime<Utc>) -> Result<Admission, TokenError> {
        let claims: AdmissionClaims = self.check(token, ADMISSION)?;
        let (room, buyer) = parts(&claims.room, &claims.sub)?;
        let expires_at = Utc
            .timestamp_millis_opt((claims.exp * 1000.0).round() as i64)
            .single()
            .ok_or(TokenError::Invalid)?;
        if now >= expires_at {
            return Err(TokenError::Expired);
        }
        Ok(Admission {
            room,
            buyer,
            id: claims.jti,
            expires_at,
        })
    }

    fn sign_queue_pass(&self, pass: &QueuePass) -> Result<String, BoxError> {
        let claims = QueueClaims {
            iss: ISSUER.into(),
            aud: QUEUE.into(),
            sub: pass.buyer.as_str().into(),
            room: pass.room.as_str().into(),
            ticket: pass.ticket.0,
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.pass_signing,
        )?)
    }

    fn verify_queue_pass(&self, token: &str) -> Result<QueuePass, TokenError> {
        let claims: QueueClaims = self.check(token, QUEUE)?;
        let (room, buyer) = parts(&claims.room, &claims.sub)?;
        Ok(QueuePass {
            room,
            buyer,
            ticket: Ticket(claims.ticket),
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::auth::{DevKey, Scope};

    /// Waiting-room tokens signed with a development key, and that key.
    fn keys() -> (SignedTokens, DevKey) {
        let dir = std::env::temp_dir().join(format!(
            "ordership-admission-{}-{}",
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        ));
        let path = dir.join("key.pem");
        let dev = DevKey::load_or_create(&path).expect("key");
        let tokens = SignedTokens::from_pem_file(&path).expect("admission key");
        std::fs::remove_dir_all(&dir).expect("clean up");
        (tokens, dev)
    }

    fn key() -> SignedTokens {
        keys().0
    }

    fn admission(expires_at: DateTime<Utc>) -> Admission {
        Admission {
            room: RoomId::parse("sale").expect("room"),
            buyer: CustomerId::parse("c-42").expect("buyer"),
            id: "adm-1".into(),
            expires_at,
        }
    }

    #[test]
    fn an_admission_verifies_until_it_expires() {
        let tokens = key();
        let now = Utc::now();
        let issued = admission(now + Duration::minutes(5));
        let token = tokens.sign_admission(&issued).expect("sign");
        let read = tokens.verify_admission(&token, now).expect("valid");
        assert_eq!(read.id, "adm-1");
        assert_eq!(read.buyer, issued.buyer);
        assert_eq!(read.room, issued.room);
        assert_eq!(
            tokens.verify_admission(&token, now + Duration::minutes(5)),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn an_admission_expires_at_the_millisecond_it_was_announced_for() {
        let tokens = key();
        // Half a second past a whole second: a token with whole seconds would expire 500 ms early.
        let expires_at = Utc
            .timestamp_millis_opt(1_796_000_000_500)
            .single()
            .expect("a time");
        let token = tokens.sign_admission(&admission(expires_at)).expect("sign");
        let read = tokens
            .verify_admission(&token, expires_at - Duration::milliseconds(1))
            .expect("valid until its last millisecond");
        assert_eq!(read.expires_at, expires_at);
        assert_eq!(
            tokens.verify_admission(&token, expires_at),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn tokens_of_another_kind_or_key_are_refused() {
        let ((tokens, same_key), other) = (keys(), key());
        let now = Utc::now();
        let admission_token = tokens
            .sign_admission(&admission(now + Duration::minutes(5)))
            .expect("sign");
        let pass = QueuePass {
            room: RoomId::parse("sale").expect("room"),
            buyer: CustomerId::parse("c-42").expect("buyer"),
            ticket: Ticket(17),
        };
        let pass_token = tokens.sign_queue_pass(&pass).expect("sign");
        assert_eq!(tokens.verify_queue_pass(&pass_token), Ok(pass));
        assert_eq!(
            tokens.verify_admission(&pass_token, now),
            Err(TokenError::Invalid),
            "a queue pass is no admission"
        );
        assert_eq!(
            tokens.verify_queue_pass(&admission_token),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            other.verify_admission(&admission_token, now),
            Err(TokenError::Invalid),
            "another key"
        );
        assert_eq!(
            other.verify_queue_pass(&pass_token),
            Err(TokenError::Invalid),
            "another key's pass secret"
        );
        // A bearer token of the very same key is not an admission (issuer and audience differ).
        let bearer = same_key
            .mint("c-42", &[Scope::Orders], std::time::Duration::from_secs(60))
            .expect("bearer");
        assert_eq!(
            tokens.verify_admission(&bearer, now),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            tokens.verify_admission("garbage", now),
            Err(TokenError::Invalid)
        );
    }
}
