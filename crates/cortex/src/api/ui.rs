//! The developer portal: static files committed under `assets/portal`, embedded in the binary
//! with rust-embed (a debug build reads them from disk, so an edit shows on reload), served at
//! `/` and `/ui/{path}` with a strict Content-Security-Policy. The portal talks only to the
//! public API; nothing here knows about its pages.
//!
//! Caching: every file carries an `ETag` (its SHA-256) and `no-cache`, so a browser revalidates
//! with a `304` and an upgrade is seen at once; the vendored library, versioned in its name, is
//! `immutable`. Text is sent gzipped when the client accepts it, compressed once per content.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{LazyLock, Mutex};

use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::Embed;

use super::ApiError;

#[derive(Embed)]
#[folder = "assets/portal"]
struct Assets;

/// Scripts, styles, images and requests from this origin only; no inline code, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; manifest-src 'self'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Files smaller than this go as they are: gzip would not pay for its header.
const GZIP_MIN_BYTES: usize = 512;

/// `GET /`: the portal's single page.
pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /ui/{path}`: the portal's scripts, styles and images.
pub async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

fn serve(path: &str, request: &HeaderMap) -> Response {
    let Some(file) = Assets::get(path) else {
        return ApiError::NotFound("Not found".into()).into_response();
    };
    let hash = file.metadata.sha256_hash();
    let etag = format!("\"{}\"", hex::encode(&hash[..16]));
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let mut response = if request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let compressible = mime.type_() == mime_guess::mime::TEXT
            || matches!(mime.subtype().as_str(), "javascript" | "json" | "svg");
        let gzip = compressible && file.data.len() >= GZIP_MIN_BYTES && accepts_gzip(request);
        let mut response = if gzip {
            let mut r = Response::new(Body::from(gzipped(hash, &file.data)));
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            r
        } else {
            Response::new(Body::from(file.data.into_owned()))
        };
        let content_type = match mime.subtype().as_str() {
            "javascript" => "text/javascript; charset=utf-8".to_owned(),
            _ if mime.type_() == mime_guess::mime::TEXT => format!("{mime}; charset=utf-8"),
            _ => mime.to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&content_type) {
            response.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        response
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if path.starts_with("vendor/") {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }),
    );
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    response
}

fn accepts_gzip(request: &HeaderMap) -> bool {
    request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

/// The gzip of a file, compressed once per content hash (a debug build's edited file is a new hash).
fn gzipped(hash: [u8; 32], data: &[u8]) -> Vec<u8> {
    static CACHE: LazyLock<Mutex<HashMap<[u8; 32], Vec<u8>>>> = LazyLock::new(Default::default);
    if let Some(hit) = CACHE.lock().ok().and_then(|c| c.get(&hash).cloned()) {
        return hit;
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let compressed = match encoder.write_all(data).and_then(|()| encoder.finish()) {
        Ok(bytes) => bytes,
        Err(_) => return data.to_vec(),
    };
    if let Ok(mut cache) = CACHE.lock() {
        cache.insert(hash, compressed.clone());
    }
    compressed
}

/// Every embedded file's path, for tests and the benchmark.
pub fn files() -> Vec<String> {
    Assets::iter().map(|p| p.into_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_accepted_unless_refused() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, deflate, br"),
        );
        assert!(accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br, gzip;q=0"),
        );
        assert!(!accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("GZIP;q=0.5"),
        );
        assert!(accepts_gzip(&h));
    }

    #[test]
    fn the_portal_is_embedded() {
        let files = files();
        for f in [
            "index.html",
            "app.js",
            "app.css",
            "lib/api.js",
            "vendor/htm-preact-3.1.1.mjs",
        ] {
            assert!(files.iter().any(|p| p == f), "{f} missing from {files:?}");
        }
    }
}
