//! The fans' web app at `/` and the admin page at `/admin/`: static files built into the binary (rust-embed,
//! embedded in debug builds too), so a running `concert-api` needs nothing from disk or from the network to
//! serve them. The pages call only the public API.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use concert_core::ErrorCode;
use rust_embed::Embed;

use crate::error::ApiError;
use crate::state::AppState;

/// Everything under `api/web/`: `app/` (the fans' app), `admin/` (the admin page), `shared/` (client, styles).
#[derive(Embed)]
#[folder = "web/"]
struct WebFiles;

/// The pages may load only from this origin: no CDN, no web fonts, no third-party anything. Inline `style`
/// attributes are allowed (a few small ones); scripts must be files of ours.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
     script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The routes of the two pages and their assets.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(fans_app))
        .route("/admin", get(|| async { Redirect::permanent("/admin/") }))
        .route("/admin/", get(admin_page))
        .route("/assets/{*path}", get(asset))
}

/// The fans' app.
#[utoipa::path(get, path = "/", tag = "web app",
    responses((status = 200, description = "the fans' web app", content_type = "text/html")))]
pub async fn fans_app(headers: HeaderMap) -> Response {
    serve("app/index.html", &headers)
}

/// The admin page (it asks for the admin token and calls the admin API with it).
#[utoipa::path(get, path = "/admin/", tag = "web app",
    responses((status = 200, description = "the admin page", content_type = "text/html")))]
pub async fn admin_page(headers: HeaderMap) -> Response {
    serve("admin/index.html", &headers)
}

/// A script, stylesheet or image of the pages.
async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

fn serve(path: &str, request: &HeaderMap) -> Response {
    let Some(file) = WebFiles::get(path) else {
        return ApiError::new(ErrorCode::NotFound, "no such file").into_response();
    };
    // The files change only with the binary: revalidate every time, answer 304 when unchanged.
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..16]));
    let unchanged = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, content_type(path))],
            file.data.into_owned(),
        )
            .into_response()
    };
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    response
}

/// The media type by file extension; the embedded set is small and known.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_file_has_a_known_content_type() {
        for path in WebFiles::iter() {
            assert_ne!(
                content_type(&path),
                "application/octet-stream",
                "{path} would be served without a proper content type"
            );
        }
    }

    #[test]
    fn the_pages_load_nothing_from_outside() {
        for path in WebFiles::iter() {
            let file = WebFiles::get(&path).expect("listed files exist");
            let text = String::from_utf8_lossy(&file.data);
            for outside in ["http://", "https://", "//fonts.", "@import url("] {
                assert!(
                    !text.contains(outside),
                    "{path} refers to something outside the binary ({outside})"
                );
            }
        }
    }
}
