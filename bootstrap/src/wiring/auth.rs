//! Keys, as the flags describe them: how the API verifies bearer tokens, and the key that signs
//! the waiting rooms' tokens.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use ordership_domain::ports::WaitingRoomTokens;
use ordership_http::auth::{Authenticator, DevKey, KeyRing};
use ordership_http::waiting_room::SignedTokens;

use super::Role;
use crate::cli::{AuthArgs, CommonArgs};

/// The development key the flags name, and where it is kept.
///
/// # Errors
/// The key file cannot be read or made.
pub fn dev_key(auth: &AuthArgs) -> anyhow::Result<(DevKey, PathBuf)> {
    let path = auth
        .dev_key_file
        .clone()
        .unwrap_or_else(DevKey::default_path);
    let key = DevKey::load_or_create(&path)?;
    Ok((key, path))
}

/// Whether a production key verifies tokens (else the development key does).
const fn production(auth: &AuthArgs) -> bool {
    auth.jwt_public_key.is_some() || auth.jwks_url.is_some()
}

/// How the API verifies tokens: a production key when one is configured; else the development
/// key, which `ordership all` uses by default and a separate service only with --dev-auth.
pub(super) async fn authenticator(
    auth: &AuthArgs,
    role: Role,
) -> anyhow::Result<Arc<Authenticator>> {
    if production(auth) && auth.dev_auth {
        bail!("--dev-auth and a production key (--jwt-public-key / --jwks-url) exclude each other");
    }
    if !production(auth) {
        if !auth.dev_auth && role != Role::All {
            bail!(
                "a service running as its own process needs the key its callers' tokens are \
                 verified with: --jwks-url or --jwt-public-key, with --jwt-issuer; or --dev-auth \
                 on a development machine"
            );
        }
        let (key, path) = dev_key(auth)?;
        tracing::warn!(
            key = %path.display(),
            "DEVELOPMENT tokens: anyone who can read this key file can mint any token; \
             mint one with `ordership token --customer c-42 [--scope orders|courier|admin]`"
        );
        return Ok(Arc::new(key.authenticator()));
    }
    let issuer = auth
        .jwt_issuer
        .clone()
        .context("--jwt-issuer (ORDERSHIP_JWT_ISSUER) is needed with a production key")?;
    let keys = match (&auth.jwt_public_key, &auth.jwks_url) {
        (Some(_), Some(_)) => bail!("give --jwt-public-key or --jwks-url, not both"),
        (Some(path), None) => KeyRing::from_pem_file(path)?,
        (None, Some(url)) if url.starts_with("http://") || url.starts_with("https://") => {
            KeyRing::from_jwks_url(url).await?
        }
        (None, Some(path)) => KeyRing::from_jwks_file(path.trim_start_matches("file://"))?,
        (None, None) => bail!("no production key: give --jwt-public-key or --jwks-url"),
    };
    tracing::info!(
        issuer,
        audience = auth.jwt_audience,
        "verifying tokens with {keys:?}"
    );
    Ok(Arc::new(Authenticator::new(
        keys,
        issuer,
        &auth.jwt_audience,
    )))
}

/// The key of the waiting rooms' queue and admission tokens: the configured one, or in
/// development mode the development key, so that every process on the machine honours what
/// another issued.
pub(super) fn waiting_room_tokens(args: &CommonArgs) -> anyhow::Result<Arc<dyn WaitingRoomTokens>> {
    Ok(match &args.admission_key {
        Some(path) => Arc::new(SignedTokens::from_pem_file(path)?),
        None if !production(&args.auth) => {
            Arc::new(SignedTokens::from_pem_file(&dev_key(&args.auth)?.1)?)
        }
        None => bail!(
            "the order service signs waiting-room tokens with a key every instance shares: \
             --admission-key (ORDERSHIP_ADMISSION_KEY), an Ed25519 private key in PEM"
        ),
    })
}
