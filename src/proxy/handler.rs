//! The per-request flow: client IP → one snapshot load → lookup → verdict → block, or
//! rewrite headers and forward.
//!
//! The snapshot guard is held only while the verdict is computed; what forwarding needs is
//! copied out into a [`Plan`] before the first `.await`, so a reload never waits on a slow
//! request and no request sees half an update.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::authority;
use super::forward::{Target, UpstreamError};
use super::headers;
use super::respond::{self, Body, Failure};
use super::routing;
use super::ProxyContext;
use crate::client_ip::{self, Decision};
use crate::config::{ListenerConfig, TagKind, UpstreamProtocol};
use crate::geo::Answer;
use crate::policy::{self, Action, RequestFacts};
use crate::snapshot::Snapshot;

/// What one connection knows about its client side.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The TCP peer.
    pub tcp_peer: IpAddr,
    /// The peer for client-IP purposes: the TCP peer, or the PROXY header's source.
    pub peer: IpAddr,
    /// Index of the listener in the configuration.
    pub listener: usize,
    /// Request-head framing as seen on the wire (HTTP/1).
    pub framing: Arc<super::sniff::Framing>,
}

/// What to do with a request, decided under the snapshot guard.
pub(super) enum Plan {
    Respond(Response<Body>),
    /// Forward: the request's headers are already rewritten.
    Forward(Forward),
}

pub(super) struct Forward {
    pub(super) target: Target,
    /// The client sent `TE: trailers` (removed with the hop-by-hop headers, and said again
    /// to the upstream).
    te_trailers: bool,
    pub(super) upstream: Arc<str>,
    pub(super) connect_timeout: Duration,
    pub(super) response_timeout: Duration,
}

/// Fields for the access log line, gathered while deciding.
#[derive(Default)]
pub(super) struct LogLine {
    client: Option<IpAddr>,
    country: Option<String>,
    subdivision: Option<String>,
    asn: Option<u32>,
    as_org: Option<crate::geo::SharedStr>,
    rule: Option<String>,
    action: &'static str,
    /// Why a request was refused before policy (a bounded `rejected` reason).
    reason: Option<&'static str>,
    dry_run: bool,
    upstream: Option<Arc<str>>,
    sample: f64,
    enabled: bool,
}

impl LogLine {
    /// The client's request body broke while it was sent upstream: a client error.
    pub(super) fn client_body_failed(&mut self) {
        self.action = "bad_request";
        self.reason = Some("bad_request_body");
    }
}

/// Serves one request. Never fails: every error becomes a response.
pub async fn handle(
    ctx: Arc<ProxyContext>,
    conn: Arc<ConnInfo>,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let mut log = LogLine::default();
    let conflicting = req.version() <= http::Version::HTTP_11 && conn.framing.next_request_is_conflicting();
    let upgrade = is_upgrade(&req).then(|| req.headers().get(header::UPGRADE).cloned()).flatten();
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let plan = {
        let snapshot = ctx.current.load();
        decide(&ctx, &snapshot, &conn, &mut req, conflicting, upgrade, &mut log)
    };
    let fwd = match plan {
        Plan::Respond(resp) => return Ok(finish(&ctx, &log, started, resp)),
        Plan::Forward(f) => f,
    };

    let sent = Instant::now();
    let result = ctx.upstreams.send(&fwd.target, req, fwd.te_trailers, fwd.connect_timeout, fwd.response_timeout).await;
    ctx.metrics.upstream_duration.with_label_values(&[&fwd.upstream]).observe(sent.elapsed().as_secs_f64());
    let mut resp = match result {
        Ok(r) => r,
        Err(UpstreamError::ClientBody) => {
            // The client's body broke, not the upstream: a client error, not an upstream one.
            ctx.metrics.rejected.with_label_values(&["bad_request_body"]).inc();
            log.client_body_failed();
            return Ok(finish(&ctx, &log, started, respond::failure(Failure::BadRequest)));
        }
        Err(e) => {
            ctx.metrics.upstream_errors.with_label_values(&[&fwd.upstream, e.as_str()]).inc();
            tracing::warn!(upstream = %fwd.upstream, kind = e.as_str(), "upstream request failed");
            return Ok(finish(&ctx, &log, started, respond::failure(e.failure())));
        }
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                if let (Ok(client), Ok(upstream)) = (client_upgrade.await, upstream_upgrade.await) {
                    let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(upstream)).await;
                }
            });
            let resp = resp.map(Body::Upstream);
            return Ok(finish(&ctx, &log, started, resp));
        }
    }
    // RFC 9112 §6.3: a response with Transfer-Encoding is framed by it, whatever its
    // Content-Length says; an intermediary must drop the Content-Length before forwarding.
    // hyper's client has decoded the body by its chunks, and a stale length left in place would
    // have hyper's server cut the body short (or close mid-body) towards the client.
    if resp.headers().contains_key(http::header::TRANSFER_ENCODING) {
        resp.headers_mut().remove(http::header::CONTENT_LENGTH);
    }
    headers::strip_hop_by_hop(resp.headers_mut(), None);
    Ok(finish(&ctx, &log, started, resp.map(Body::Upstream)))
}

/// Refuses a request before policy: counted by reason, logged, answered 400. On HTTP/1 the
/// connection is closed after the answer: after a smuggling shape the framing of whatever
/// follows cannot be trusted, and a client sending ambiguous requests gets no second try on
/// the same connection.
fn refuse(ctx: &ProxyContext, log: &mut LogLine, reason: &'static str, version: http::Version) -> Plan {
    ctx.metrics.rejected.with_label_values(&[reason]).inc();
    log.action = "bad_request";
    log.reason = Some(reason);
    let mut resp = respond::failure(Failure::BadRequest);
    if version <= http::Version::HTTP_11 {
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Plan::Respond(resp)
}

pub(super) fn decide<B>(
    ctx: &ProxyContext,
    s: &Snapshot,
    conn: &ConnInfo,
    req: &mut Request<B>,
    conflicting: bool,
    upgrade: Option<HeaderValue>,
    log: &mut LogLine,
) -> Plan {
    let cfg = &s.config;
    log.enabled = cfg.access_log.enabled;
    log.sample = cfg.access_log.sample;
    if let Some(reason) = if conflicting { Some("smuggling_cl_te") } else { smuggling_shape(req) } {
        return refuse(ctx, log, reason, req.version());
    }
    let fallback;
    let listener = match cfg.listeners.get(conn.listener) {
        Some(l) => l,
        None => {
            fallback = ListenerConfig::new("", std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
            &fallback
        }
    };
    let ip_cfg = &listener.client_ip;
    if let Err(refusal) = policy::screen(req.uri().path(), listener.encoded_delimiters) {
        return refuse(ctx, log, refusal.as_str(), req.version());
    }
    let host = match authority::decide(req, listener.default_host.as_deref()) {
        Ok(h) => h,
        Err(e) => return refuse(ctx, log, e.as_str(), req.version()),
    };
    let res = client_ip::resolve(ip_cfg, conn.peer, req.headers());
    ctx.metrics.client_ip.with_label_values(&[client_ip::source_label(&ip_cfg.source), res.outcome.as_str()]).inc();
    let raw_path = req.uri().path();
    let answer: Option<Answer<'_>> = match client_ip::effective_ip(&res, conn.peer, ip_cfg) {
        Decision::Lookup(ip) => {
            log.client = Some(ip);
            Some(s.table.lookup(ip))
        }
        Decision::Block => {
            log.action = "unresolved_block";
            ctx.metrics.requests.with_label_values(&["unresolved_block", "", "unknown"]).inc();
            return Plan::Respond(respond::failure(Failure::Unresolved));
        }
        Decision::Allow => None,
    };
    if let (Some(a), true) = (answer, log.enabled) {
        log.country = a.geo.country.map(|c| c.to_string());
        log.subdivision = a.geo.subdivision.as_deref().map(str::to_owned);
        log.asn = a.geo.asn;
        log.as_org = a.geo.as_org.clone();
    }
    // The router reads the same host and the same strict path as the policy, so no request is
    // judged for one upstream and sent to another.
    let upstream_index = routing::choose(cfg, Some(host.name()), &policy::normalize_path(raw_path));
    let Some(upstream) = cfg.upstreams.get(upstream_index) else {
        return Plan::Respond(respond::failure(Failure::Internal));
    };
    let tags_cfg = &cfg.policy.tag_headers;
    // An unresolved client let through (`on_unresolved = "allow"`) still goes through the
    // policy, with no answer: `unknown` rules and rules without geo criteria see it.
    let facts = RequestFacts { host: Some(host.name()), path: raw_path, method: req.method() };
    let verdict = s.policy.decide(&facts, answer.as_ref());
    for rule in s.policy.dry_run_matches(verdict.dry_run) {
        let would = s.policy.rule_action(rule).map_or("none", |a| a.name());
        ctx.metrics.dry_run.with_label_values(&[s.policy.rule_name(rule).unwrap_or(""), would]).inc();
        log.dry_run = true;
    }
    let rule_name = verdict.rule.and_then(|r| s.policy.rule_name(r)).unwrap_or("");
    if log.enabled {
        log.rule = verdict.rule.and_then(|r| s.policy.rule_name(r)).map(str::to_owned);
    }
    let bucket = answer.as_ref().map_or("unknown", |a| s.country_bucket(a));
    let forwarded_as = |action: &'static str| if answer.is_some() { action } else { "unresolved_allow" };
    match &verdict.action {
        Action::Block(block) => {
            log.action = "block";
            ctx.metrics.requests.with_label_values(&["block", rule_name, bucket]).inc();
            let block = s.policy.block_response(*block);
            if respond::is_grpc(req.headers()) {
                return Plan::Respond(respond::grpc_blocked(block, verdict.rule.map(|_| rule_name)));
            }
            return Plan::Respond(respond::blocked(
                block,
                req.headers().get(header::ACCEPT),
                verdict.rule.map(|_| rule_name),
            ));
        }
        Action::Allow => {
            log.action = forwarded_as("allow");
            ctx.metrics.requests.with_label_values(&[log.action, rule_name, bucket]).inc();
        }
        Action::Tag(_) => {
            log.action = forwarded_as("tag");
            ctx.metrics.requests.with_label_values(&[log.action, rule_name, bucket]).inc();
        }
    }
    log.upstream = Some(upstream.name.clone());

    // Rewrite headers: strip first, then add geogate's own, so nothing the client sent can
    // remove or impersonate them.
    // Only an HTTP/2 upstream is told (an HTTP/1.1 one never sees `TE`): no header lookup
    // on the common path.
    let te_trailers = upstream.protocol != UpstreamProtocol::Http1 && headers::accepts_trailers(req.headers());
    let chain = client_ip::validated_chain(ip_cfg, req.headers(), &res);
    let address = headers::ClientAddress { client: log.client, chain: &chain, peer: conn.peer };
    let peer_trusted = client_ip::is_trusted(ip_cfg, conn.peer);
    let h = req.headers_mut();
    headers::strip_hop_by_hop(h, upgrade);
    headers::strip_tag_lookalikes(
        h,
        &[&tags_cfg.country, &tags_cfg.subdivision, &tags_cfg.restricted, &tags_cfg.rule, &tags_cfg.asn],
    );
    headers::rewrite_client_address(h, &address, &ip_cfg.source, &listener.client_headers, host.value(), peer_trusted);
    // The host judged is the host forwarded: it replaces whatever Host lines came in (there
    // is at most one; when it already reads the same, it stays as it is).
    if h.get(header::HOST) != Some(host.value()) {
        h.insert(header::HOST, host.value().clone());
    }
    if let Action::Tag(kinds) = &verdict.action {
        let geo = answer.map(|a| a.geo);
        for kind in kinds.iter() {
            let (name, value) = match kind {
                TagKind::Country => (&tags_cfg.country, geo.and_then(|g| g.country).and_then(headers::country_value)),
                TagKind::Subdivision => (
                    &tags_cfg.subdivision,
                    geo.and_then(|g| g.subdivision.as_deref()).and_then(|v| HeaderValue::from_str(v).ok()),
                ),
                TagKind::Restricted => (&tags_cfg.restricted, verdict.rule.map(|_| HeaderValue::from_static("true"))),
                TagKind::Rule => (&tags_cfg.rule, verdict.rule.and_then(|_| HeaderValue::from_str(rule_name).ok())),
                TagKind::Asn => (&tags_cfg.asn, geo.and_then(|g| g.asn).map(HeaderValue::from)),
            };
            if let Some(v) = value {
                h.insert(name.clone(), v);
            }
        }
    }
    let tls = s.upstream_tls.get(upstream_index).cloned().flatten();
    Plan::Forward(Forward {
        target: Target { base: upstream.url.clone(), protocol: upstream.protocol, tls },
        te_trailers,
        upstream: upstream.name.clone(),
        connect_timeout: cfg.limits.upstream_connect_timeout,
        response_timeout: cfg.limits.upstream_response_timeout,
    })
}

/// Request-smuggling shapes refused before anything is forwarded (HTTP/1 only; HTTP/2
/// forbids these headers and the h2 layer rejects them).
fn smuggling_shape<B>(req: &Request<B>) -> Option<&'static str> {
    let h = req.headers();
    let te: Vec<&HeaderValue> = h.get_all(header::TRANSFER_ENCODING).iter().collect();
    let cl: Vec<&HeaderValue> = h.get_all(header::CONTENT_LENGTH).iter().collect();
    if !te.is_empty() {
        if !cl.is_empty() {
            return Some("smuggling_cl_te");
        }
        let only_chunked = te.len() == 1 && te[0].to_str().is_ok_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
        if !only_chunked {
            return Some("smuggling_te");
        }
    }
    if cl.len() > 1 && cl.iter().any(|v| *v != cl[0]) {
        return Some("smuggling_cl");
    }
    None
}

fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == http::Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Records duration and the access log line, and hands the response back.
fn finish(ctx: &ProxyContext, log: &LogLine, started: Instant, resp: Response<Body>) -> Response<Body> {
    record(ctx, log, started, resp.status());
    resp
}

/// Records a request's duration and its access log line, once its response status is known.
pub(super) fn record(ctx: &ProxyContext, log: &LogLine, started: Instant, status: StatusCode) {
    let elapsed = started.elapsed();
    let action = if log.action.is_empty() { "error" } else { log.action };
    ctx.metrics.request_duration.with_label_values(&[action]).observe(elapsed.as_secs_f64());
    let always = action != "allow" && action != "tag";
    if log.enabled && (always || sampled(log.sample)) {
        tracing::info!(
            target: "geogate::access",
            client_ip = log.client.map(|c| c.to_string()).as_deref().unwrap_or("-"),
            country = log.country.as_deref().unwrap_or("-"),
            subdivision = log.subdivision.as_deref().unwrap_or("-"),
            asn = log.asn.unwrap_or(0),
            as_org = log.as_org.as_deref().unwrap_or("-"),
            rule = log.rule.as_deref().unwrap_or("-"),
            action,
            reason = log.reason.unwrap_or("-"),
            dry_run = log.dry_run,
            status = status.as_u16(),
            upstream = log.upstream.as_deref().unwrap_or("-"),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
        );
    }
}

/// Cheap per-thread sampling without a random-number dependency.
fn sampled(rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    if rate <= 0.0 {
        return false;
    }
    thread_local!(static STATE: std::cell::Cell<u64> = const { std::cell::Cell::new(0x853c_49e6_748f_ea9b) });
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64 <= rate
    })
}
