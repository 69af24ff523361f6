//! The API reference page: Scalar, served from the binary itself. The bundle is vendored
//! (`assets/scalar/`, version pinned, licence beside it), so `/docs` works on a laptop on a plane
//! and inside a network without egress: the page loads nothing but this server's own URLs, and a
//! Content-Security-Policy holds it to that.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The vendored `@scalar/api-reference` version; its URL changes with it, so it can be cached for good.
pub const SCALAR_VERSION: &str = "1.72.1";
const SCALAR_PATH: &str = "/docs/scalar-1.72.1.js";
const SCALAR_JS: &[u8] = include_bytes!("../assets/scalar/standalone.js");
const INIT_PATH: &str = "/docs/init.js";

/// Only this server: scripts, styles (Scalar injects its own), data and its OpenAPI document.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

const PAGE_HEAD: &str = concat!(
    "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
    "<meta name=\"generator\" content=\"@scalar/api-reference 1.72.1\">\n",
    "<title>ordership API reference</title>\n</head>\n<body>\n<div id=\"app\"></div>\n",
    "<script id=\"openapi\" type=\"application/json\">"
);
const PAGE_TAIL: &str = concat!(
    "</script>\n<script src=\"/docs/scalar-1.72.1.js\"></script>\n",
    "<script src=\"/docs/init.js\"></script>\n</body>\n</html>\n"
);

/// Mounts the reference on the document embedded in the page; no fonts from the network, no proxy.
/// (Not on an element with id `api-reference`: the bundle mounts one of those by itself, with its
/// defaults, web fonts included.)
const INIT: &str = "Scalar.createApiReference('#app', { \
    content: JSON.parse(document.getElementById('openapi').textContent), \
    withDefaultFonts: false, defaultOpenAllTags: true, telemetry: false });\n";

/// The page with `openapi_json` embedded as data (not script: the policy allows no inline script).
fn page_html(openapi_json: &str) -> String {
    // `<\/` is the same JSON string and cannot close the element early.
    let data = openapi_json.replace("</", "<\\/");
    format!("{PAGE_HEAD}{data}{PAGE_TAIL}")
}

pub(crate) fn routes(openapi_json: &str) -> Router {
    let page_html: Arc<str> = page_html(openapi_json).into();
    Router::new()
        .route(
            "/docs",
            get(move || {
                let html = Arc::clone(&page_html);
                async move { with_headers(html.to_string(), "text/html; charset=utf-8", "no-cache") }
            }),
        )
        .route(SCALAR_PATH, get(bundle))
        .route(INIT_PATH, get(init))
}

fn with_headers(
    body: impl IntoResponse,
    content_type: &'static str,
    cache: &'static str,
) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

async fn init() -> Response {
    with_headers(INIT, "text/javascript; charset=utf-8", "no-cache")
}

async fn bundle() -> Response {
    with_headers(
        SCALAR_JS,
        "text/javascript; charset=utf-8",
        "public, max-age=31536000, immutable",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_the_vendored_bundle_and_embeds_the_document_safely() {
        assert_eq!(SCALAR_PATH, format!("/docs/scalar-{SCALAR_VERSION}.js"));
        let page = page_html(r#"{"info":{"description":"</script><script>alert(1)</script>"}}"#);
        assert!(page.contains(SCALAR_PATH) && page.contains(INIT_PATH));
        assert!(
            !page.contains("http"),
            "the page loads nothing from elsewhere"
        );
        assert_eq!(
            page.matches("</script>").count(),
            3,
            "the embedded document cannot close its element"
        );
        assert!(
            SCALAR_JS.len() > 1_000_000,
            "the whole standalone bundle is embedded"
        );
    }
}
