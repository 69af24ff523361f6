//! An Ed25519 key pair for signing JWTs, read from PKCS#8 PEM: the private half signs, the public
//! half verifies, and its RFC 7638 thumbprint is the `kid` every token names.

use jsonwebtoken::jwk::{Jwk, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde::Serialize;

pub(crate) struct Ed25519Key {
    signing: EncodingKey,
    verifying: DecodingKey,
    kid: String,
    /// The public half, as a JWK with its `kid`.
    jwk: Jwk,
}

impl Ed25519Key {
    /// `None` unless `pem` is an Ed25519 private key.
    pub(crate) fn from_pem(pem: &[u8]) -> Option<Self> {
        let signing = EncodingKey::from_ed_pem(pem).ok()?;
        let mut jwk = Jwk::from_encoding_key(&signing, Algorithm::EdDSA).ok()?;
        let verifying = DecodingKey::from_jwk(&jwk).ok()?;
        let kid = jwk.thumbprint(ThumbprintHash::SHA256).ok()?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Some(Self {
            signing,
            verifying,
            kid,
            jwk,
        })
    }

    /// A JWT of `claims`, its header naming this key.
    pub(crate) fn sign(&self, claims: &impl Serialize) -> jsonwebtoken::errors::Result<String> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.signing)
    }

    pub(crate) const fn verifying(&self) -> &DecodingKey {
        &self.verifying
    }

    pub(crate) fn kid(&self) -> &str {
        &self.kid
    }

    pub(crate) const fn jwk(&self) -> &Jwk {
        &self.jwk
    }
}
