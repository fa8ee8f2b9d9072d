//! The admin listener (default `127.0.0.1:9901`, never the public one): metrics, health,
//! readiness, reload, explain and the snapshot summary.
//!
//! | route | answer |
//! |---|---|
//! | `GET /metrics` | Prometheus text format |
//! | `GET /healthz` | 200 while the process serves |
//! | `GET /readyz` | 200 once a snapshot with real data serves, else 503 |
//! | `POST /-/reload` | JSON outcome; bearer token required if `admin.reload_token` is set |
//! | `GET /-/explain?ip=&host=&path=&method=` | JSON: how the client IP resolves, the data and rule that decide |
//! | `GET /-/snapshot` | JSON: generation, sources with build date and age, sizes |

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cli::{explain_value, format_epoch};
use crate::metrics::Metrics;
use crate::reload::{unix_now, Reloader, Trigger};

type AdminResponse = Response<Full<Bytes>>;

/// Serves the admin API until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    reloader: Arc<Reloader>,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let reloader = reloader.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let reloader = reloader.clone();
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(route(req, &reloader, &metrics).await) }
            });
            let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            b.http1().timer(TokioTimer::new()).header_read_timeout(std::time::Duration::from_secs(10));
            let _ = b.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

async fn route(req: Request<Incoming>, reloader: &Reloader, metrics: &Metrics) -> AdminResponse {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => Response::builder()
            .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
            .body(Full::new(Bytes::from(metrics.render())))
            .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "error")),
        (&Method::GET, "/healthz") => plain(StatusCode::OK, "ok"),
        (&Method::GET, "/readyz") => {
            let s = reloader.current().load();
            if s.generation >= 1 {
                plain(StatusCode::OK, "ready")
            } else {
                plain(StatusCode::SERVICE_UNAVAILABLE, "no data loaded yet")
            }
        }
        (&Method::POST, "/-/reload") => {
            if !authorized(&req, reloader) {
                return json_response(StatusCode::UNAUTHORIZED, json!({"error": "a valid bearer token is required"}));
            }
            let outcome = reloader.reload(Trigger::Admin).await;
            let status = match outcome.result {
                "ok" | "unchanged" => StatusCode::OK,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            json_response(status, serde_json::to_value(&outcome).unwrap_or(Value::Null))
        }
        (&Method::GET, "/-/explain") => explain(&req, reloader),
        (&Method::GET, "/-/snapshot") => snapshot_summary(reloader),
        (_, "/metrics" | "/healthz" | "/readyz" | "/-/reload" | "/-/explain" | "/-/snapshot") => {
            plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => plain(StatusCode::NOT_FOUND, "not found"),
    }
}

fn authorized(req: &Request<Incoming>, reloader: &Reloader) -> bool {
    let snapshot = reloader.current().load();
    let Some(token) = snapshot.config.admin.reload_token.as_deref() else {
        return true;
    };
    // The auth scheme is case-insensitive (RFC 9110 section 11.1); the token is not.
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token);
    // Constant-time comparison: the token must not leak through timing.
    given.is_some_and(|g| {
        g.len() == token.len() && g.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    })
}

fn explain(req: &Request<Incoming>, reloader: &Reloader) -> AdminResponse {
    let q = query(req.uri().query().unwrap_or(""));
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let Some(ip) = get("ip") else {
        return json_response(StatusCode::BAD_REQUEST, json!({"error": "query parameter ip is required"}));
    };
    let snapshot = reloader.current().load();
    match explain_value(
        &snapshot,
        ip,
        get("host"),
        get("path").unwrap_or("/"),
        get("method").unwrap_or("GET"),
        get("peer"),
        get("xff"),
    ) {
        Ok(v) => json_response(StatusCode::OK, v),
        Err(e) => json_response(StatusCode::BAD_REQUEST, json!({"error": e})),
    }
}

fn snapshot_summary(reloader: &Reloader) -> AdminResponse {
    let s = reloader.current().load();
    let now = unix_now();
    let sources: Vec<Value> = s
        .provenance
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "kind": p.kind,
                "origin": p.origin,
                "schema": p.schema,
                "database_type": p.database_type,
                "build_epoch": p.build_epoch,
                "built": p.build_epoch.map(format_epoch),
                "age_days": p.build_epoch.map(|b| now.saturating_sub(b) as f64 / 86_400.0),
                "networks_v4": p.networks_v4,
                "networks_v6": p.networks_v6,
                "bytes": p.bytes,
                "sha256": p.sha256,
            })
        })
        .collect();
    let loaded = s.loaded_at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    json_response(
        StatusCode::OK,
        json!({
            "generation": s.generation,
            "loaded": format_epoch(loaded),
            "compile_ms": s.compile_time.as_secs_f64() * 1000.0,
            "fingerprint": s.fingerprint(),
            "table": s.table.stats(),
            "sources": sources,
            "rules": s.config.policy.rules.len(),
        }),
    )
}

/// Decodes `a=b&c=d` with percent-decoding; bad escapes are kept literally.
fn query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn plain(status: StatusCode, body: &'static str) -> AdminResponse {
    let mut r = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn json_response(status: StatusCode, v: Value) -> AdminResponse {
    let mut r = Response::new(Full::new(Bytes::from(format!("{v}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    r
}

/// Parses an address for explain; same strictness as everywhere.
pub fn parse_ip(s: &str) -> Result<IpAddr, String> {
    crate::cli::parse_ip(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = query("ip=1.2.3.4&path=%2Fsign%20up&host=a.b&bad=%zz&plus=a+b");
        assert_eq!(q[0], ("ip".into(), "1.2.3.4".into()));
        assert_eq!(q[1].1, "/sign up");
        assert_eq!(q[3].1, "%zz");
        assert_eq!(q[4].1, "a b");
        assert_eq!(query("v=%4"), vec![("v".into(), "%4".into())]);
    }
}
