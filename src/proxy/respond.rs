//! Every response geogate makes itself, in one place: block pages and error statuses.
//!
//! 451 (or the configured status) for a block, with a body negotiated by `Accept`, or for a
//! gRPC call a `grpc-status` (7, PERMISSION_DENIED, unless configured) in a Trailers-Only
//! response; 400, 408,
//! 431 for bad clients; 502/504 for upstream failures; 503 when no snapshot can decide;
//! 500 for anything internal. Each carries a short, clear body and `Cache-Control: no-store`.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Frame, SizeHint};

use super::forward::UpstreamBody;
use crate::config::BlockResponse;

/// Body type of every response geogate sends: a fixed body geogate wrote, or the upstream's
/// body streamed through. An enum rather than a boxed body: no allocation per response.
#[derive(Debug)]
pub enum Body {
    /// A body geogate made itself.
    Fixed(Full<Bytes>),
    /// The upstream's response body.
    Upstream(UpstreamBody),
}

/// Why geogate answered instead of the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Malformed or ambiguous request (e.g. request-smuggling shapes).
    BadRequest,
    /// The upstream could not be reached or broke the protocol.
    BadGateway,
    /// The upstream did not answer in time.
    GatewayTimeout,
    /// No client IP could be determined and the listener blocks in that case.
    Unresolved,
    Internal,
}

/// A fixed body wrapped as [`Body`].
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Body::Fixed(Full::new(bytes.into()))
}

/// An empty [`Body`].
pub fn empty() -> Body {
    full(Bytes::new())
}

/// True when the client prefers HTML: `text/html` listed (with q > 0) and no JSON preference
/// ahead of it. API clients (`*/*`, `application/json`, none) get JSON.
pub fn wants_html(accept: Option<&HeaderValue>) -> bool {
    let Some(accept) = accept.and_then(|a| a.to_str().ok()) else {
        return false;
    };
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q_zero = parts.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=").is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
        });
        if q_zero {
            continue;
        }
        match media.as_str() {
            "text/html" | "application/xhtml+xml" => return true,
            "application/json" | "application/problem+json" => return false,
            _ => {}
        }
    }
    false
}

/// The response for a blocked request.
pub fn blocked(block: &BlockResponse, accept: Option<&HeaderValue>, rule: Option<&str>) -> Response<Body> {
    let html = wants_html(accept);
    let mut builder = Response::builder().header(header::CACHE_CONTROL, "no-store").header(header::VARY, "Accept");
    if let Some(rule) = rule.and_then(|r| HeaderValue::from_str(r).ok()) {
        builder = builder.header("x-geogate-rule", rule);
    }
    if html {
        if let Some(to) = &block.redirect {
            return builder
                .status(block.redirect_status)
                .header(header::LOCATION, to.to_string())
                .body(empty())
                .unwrap_or_else(|_| internal());
        }
        return builder
            .status(block.status)
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .body(full(block.html_body.clone()))
            .unwrap_or_else(|_| internal());
    }
    builder
        .status(block.status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(block.json_body.clone()))
        .unwrap_or_else(|_| internal())
}

/// Whether a request is a gRPC call: `content-type: application/grpc`, alone or with a
/// `+format` or parameters (the gRPC over HTTP/2 spec's `application/grpc[+proto|+json|...]`).
pub fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        let prefix = b"application/grpc";
        v.len() >= prefix.len()
            && v[..prefix.len()].eq_ignore_ascii_case(prefix)
            && matches!(v.get(prefix.len()), None | Some(b'+' | b';'))
    })
}

/// The answer to a blocked gRPC call: a gRPC client reads neither an HTTP status nor a body,
/// only `grpc-status` and `grpc-message`. So: 200, `content-type: application/grpc`, and
/// those two as a Trailers-Only response (one HEADERS frame that ends the stream; the empty
/// body makes hyper set END_STREAM on it).
pub fn grpc_blocked(block: &BlockResponse, rule: Option<&str>) -> Response<Body> {
    let mut builder = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/grpc")
        .header("grpc-status", block.grpc_status.to_string())
        .header("grpc-message", grpc_percent_encode(&block.grpc_message));
    if let Some(rule) = rule.and_then(|r| HeaderValue::from_str(r).ok()) {
        builder = builder.header("x-geogate-rule", rule);
    }
    builder.body(empty()).unwrap_or_else(|_| internal())
}

/// `grpc-message` encoding (gRPC over HTTP/2, "Responses"): the UTF-8 bytes, with every byte
/// outside printable ASCII (0x20..=0x7E) and `%` itself written as `%XX`.
pub fn grpc_percent_encode(message: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The response for a failure (the `rescue` of the request path).
pub fn failure(f: Failure) -> Response<Body> {
    let (status, code, message) = match f {
        Failure::BadRequest => (StatusCode::BAD_REQUEST, "bad_request", "The request is malformed or ambiguous."),
        Failure::BadGateway => (StatusCode::BAD_GATEWAY, "bad_gateway", "The upstream service could not be reached."),
        Failure::GatewayTimeout => {
            (StatusCode::GATEWAY_TIMEOUT, "gateway_timeout", "The upstream service did not answer in time.")
        }
        Failure::Unresolved => {
            (StatusCode::FORBIDDEN, "client_unresolved", "The client address could not be determined.")
        }
        Failure::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "Internal error."),
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(full(format!("{{\"error\":\"{code}\",\"message\":\"{message}\"}}\n")))
        .unwrap_or_else(|_| internal())
}

fn internal() -> Response<Body> {
    let mut r = Response::new(full("internal error\n"));
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    r
}

// === impl Body ===

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Self::Fixed(b) => Pin::new(b).poll_frame(cx).map_err(|never| match never {}),
            Self::Upstream(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Fixed(b) => b.is_end_stream(),
            Self::Upstream(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Fixed(b) => b.size_hint(),
            Self::Upstream(b) => b.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        let h = |s: &str| Some(HeaderValue::from_str(s).unwrap());
        assert!(wants_html(h("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8").as_ref()));
        assert!(!wants_html(h("application/json").as_ref()));
        assert!(!wants_html(h("*/*").as_ref()));
        assert!(!wants_html(None));
        assert!(!wants_html(h("text/html;q=0, application/json").as_ref()));
        assert!(!wants_html(h("application/json, text/html").as_ref()));
    }

    #[test]
    fn grpc_content_types() {
        let h = |v: &str| {
            let mut m = http::HeaderMap::new();
            m.insert(header::CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
            m
        };
        for yes in ["application/grpc", "application/grpc+proto", "Application/GRPC+json", "application/grpc;x=1"] {
            assert!(is_grpc(&h(yes)), "{yes}");
        }
        for no in ["application/grpc-web", "application/grpcx", "application/json", "text/grpc"] {
            assert!(!is_grpc(&h(no)), "{no}");
        }
        assert!(!is_grpc(&http::HeaderMap::new()));
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(grpc_percent_encode("Not here: 100% blocked"), "Not here: 100%25 blocked");
        assert_eq!(grpc_percent_encode("Kraj zablokowany \u{2013} ok"), "Kraj zablokowany %E2%80%93 ok");
        assert_eq!(grpc_percent_encode("a\nb"), "a%0Ab");
    }
}
