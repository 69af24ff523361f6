//! `ordership token`: prints development tokens, signed with the development key.

use std::io::Write as _;

use anyhow::Context as _;
use ordership_http::auth::Scope;

use crate::cli::{AuthArgs, TokenArgs};
use crate::wiring::auth::dev_key;

/// Scopes written as `orders courier` or `orders,courier`.
fn parse_scopes(text: &str) -> anyhow::Result<Vec<Scope>> {
    text.split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(|s| {
            Scope::parse(s).with_context(|| {
                format!("unknown scope {s:?}: the scopes are orders, courier and admin")
            })
        })
        .collect()
}

/// # Errors
/// An unknown scope, or a key that cannot be read or made.
pub fn run(auth: &AuthArgs, args: &TokenArgs) -> anyhow::Result<()> {
    let scopes = parse_scopes(&args.scope)?;
    let (key, path) = dev_key(auth)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.count {
        None => writeln!(out, "{}", key.mint(&args.customer, &scopes, args.ttl)?)?,
        Some(n) => {
            for i in 0..n {
                let subject = format!("{}-{i}", args.customer);
                writeln!(out, "{}", key.mint(&subject, &scopes, args.ttl)?)?;
            }
        }
    }
    out.flush()?;
    tracing::info!(key = %path.display(), subject = %args.customer, count = args.count, scope = %args.scope, "development token");
    Ok(())
}
