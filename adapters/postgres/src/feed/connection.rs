//! The replication connection's credentials and TLS, taken from the same database URL (and the
//! same `PG*` environment variables) as the pool's, so that both connections are secured alike:
//! `sslmode`, `sslrootcert` (the CA), `sslcert` and `sslkey` (a client certificate).

use std::path::PathBuf;

use pgwire_replication::{SslMode, TlsConfig};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

/// The query parameters (and their aliases, as sqlx reads them) naming the TLS files.
const ROOT_CERT: &[&str] = &["sslrootcert", "ssl-root-cert", "ssl-ca"];
const CLIENT_CERT: &[&str] = &["sslcert", "ssl-cert"];
const CLIENT_KEY: &[&str] = &["sslkey", "ssl-key"];

/// The password in `database_url`, if it has one.
pub(super) fn password(database_url: &str) -> Option<String> {
    let url = url::Url::parse(database_url).ok()?;
    let escaped = url.password()?;
    Some(
        percent_encoding::percent_decode_str(escaped)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// The TLS the pool uses (`options` knows the mode, from the URL or `PGSSLMODE`), with the
/// files named in `database_url` or else in `PGSSLROOTCERT`, `PGSSLCERT` and `PGSSLKEY`.
pub(super) fn tls(options: &PgConnectOptions, database_url: &str, host: &str) -> TlsConfig {
    let url = url::Url::parse(database_url).ok();
    let file = |names: &[&str], env: &str| -> Option<PathBuf> {
        url.as_ref()
            .and_then(|url| {
                url.query_pairs()
                    .find(|(key, _)| names.contains(&key.as_ref()))
                    .map(|(_, value)| PathBuf::from(value.into_owned()))
            })
            .or_else(|| std::env::var_os(env).map(PathBuf::from))
    };
    let mode = match options.get_ssl_mode() {
        PgSslMode::Disable => SslMode::Disable,
        // `allow` tries without TLS first; the replication client can only try with it first.
        PgSslMode::Allow | PgSslMode::Prefer => SslMode::Prefer,
        PgSslMode::Require => SslMode::Require,
        PgSslMode::VerifyCa => SslMode::VerifyCa,
        PgSslMode::VerifyFull => SslMode::VerifyFull,
    };
    let mut tls = TlsConfig {
        mode,
        ca_pem_path: file(ROOT_CERT, "PGSSLROOTCERT"),
        client_cert_pem_path: file(CLIENT_CERT, "PGSSLCERT"),
        client_key_pem_path: file(CLIENT_KEY, "PGSSLKEY"),
        ..TlsConfig::default()
    };
    // A server addressed by IP is checked against the IP in its certificate.
    if host.parse::<std::net::IpAddr>().is_ok() {
        tls.sni_hostname = Some(host.to_owned());
    }
    tls
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replication_connection_is_secured_like_the_pool() {
        let url = "postgres://relay:s%40cret@db.example:5432/app?sslmode=verify-full&sslrootcert=/etc/ca.pem&sslcert=/etc/client.pem&sslkey=/etc/client.key";
        let options: PgConnectOptions = url.parse().expect("a URL");
        let tls = tls(&options, url, "db.example");
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.ca_pem_path, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(
            tls.client_cert_pem_path,
            Some(PathBuf::from("/etc/client.pem"))
        );
        assert_eq!(
            tls.client_key_pem_path,
            Some(PathBuf::from("/etc/client.key"))
        );
        assert_eq!(tls.sni_hostname, None);
        assert_eq!(password(url).as_deref(), Some("s@cret"));

        let plain = "postgres://postgres@127.0.0.1/app?sslmode=disable";
        let tls = super::tls(&plain.parse().expect("a URL"), plain, "127.0.0.1");
        assert_eq!(tls.mode, SslMode::Disable);
        assert_eq!(tls.sni_hostname.as_deref(), Some("127.0.0.1"));
        assert_eq!(password(plain), None);
    }
}
