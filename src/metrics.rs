//! The process's own Prometheus registry and typed metric handles.
//!
//! Names follow `geogate_<area>_<thing>[_total|_seconds|_bytes]`. Every label comes from a
//! bounded set: actions, rule names from the config, country buckets (the countries the
//! policy names, plus `other` and `unknown`), upstream names, fixed outcome kinds. Never an
//! IP, never a raw path.
//!
//! Every series a dashboard or alert reads exists from the first scrape, at 0, for each label
//! value known before traffic (Prometheus's advice: a series that appears only with its first
//! event reads as "no data", and `rate()` misses that first event). The proxy creates its
//! fixed sets once (`ProxyContext::new`); each installed snapshot creates the sets its
//! configuration names (`reload::series`), both through [`zero`].

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// All metric handles, registered in one owned [`Registry`].
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests by enforced action (`allow`, `block`, `tag`, `unresolved_block`...), rule and country bucket.
    pub requests: IntCounterVec,
    /// Dry-run rules that matched, by rule and would-be action (`dry_run_block`, ...).
    pub dry_run: IntCounterVec,
    /// Time from request head to response head, by action.
    pub request_duration: HistogramVec,
    /// Upstream response time by upstream.
    pub upstream_duration: HistogramVec,
    /// Upstream failures by upstream and kind (`connect`, `timeout`, `protocol`).
    pub upstream_errors: IntCounterVec,
    /// Client-IP resolutions by source (`peer`, `x-forwarded-for`, ...) and outcome.
    pub client_ip: IntCounterVec,
    /// Rejected connections and requests by reason (`max_connections`, `proxy_protocol`, `smuggling`...).
    pub rejected: IntCounterVec,
    /// Connections currently open on the public listeners.
    pub open_connections: IntGauge,
    /// Reloads by trigger (`startup`, `watch`, `signal`, `admin`, `remote`, `interval`) and
    /// result (`ok`, `unchanged`, `failed`, `refused`).
    pub reloads: IntCounterVec,
    /// Time to compile a snapshot.
    pub reload_duration: Histogram,
    /// Generation of the snapshot serving requests.
    pub snapshot_generation: IntGauge,
    /// Unix time the serving snapshot was loaded.
    pub snapshot_loaded: IntGauge,
    /// Networks loaded, by family (`ipv4`, `ipv6`).
    pub networks: IntGaugeVec,
    /// Ranges in the table after merging, by family.
    pub ranges: IntGaugeVec,
    /// Heap bytes of the lookup table.
    pub table_bytes: IntGauge,
    pub reload_cache_bytes: IntGauge,
    /// Build time (Unix seconds) of each database, by source name.
    pub database_build: IntGaugeVec,
    /// Remote-source download attempts by source and result (`ok`, `not_modified`, `auth`,
    /// `quota`, `capped`, `checksum`, `corrupt`, `http_error`, `io_error`).
    pub source_downloads: IntCounterVec,
    /// Failed download attempts in a row, by source (0 once one succeeds).
    pub source_download_failures: IntGaugeVec,
    /// notAfter (Unix seconds) of each TLS listener's certificates, by listener and
    /// certificate (its first name).
    pub tls_cert_expiry: IntGaugeVec,
    /// Failed TLS handshakes by reason (`timeout`, `protocol_version`, ... see
    /// `tls::HandshakeFailure`).
    pub tls_handshake_failures: IntCounterVec,
}

/// Upstream failure kinds, the `kind` label of `geogate_upstream_errors_total`. The proxy's
/// `UpstreamError::as_str` names each one; a test there keeps the two in step.
pub const UPSTREAM_ERROR_KINDS: [&str; 4] = ["connect", "timeout", "protocol", "tls"];

const DURATION_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0,
];

// === impl Metrics ===

impl Metrics {
    /// Creates and registers every metric (and the process collector on Linux).
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, prometheus::Error> {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let histogram_vec = |name: &str, help: &str, labels: &[&str]| -> Result<HistogramVec, prometheus::Error> {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(DURATION_BUCKETS.to_vec()), labels)?;
            registry.register(Box::new(h.clone()))?;
            Ok(h)
        };
        let reload_duration = Histogram::with_opts(
            HistogramOpts::new("geogate_reload_duration_seconds", "Time to load sources and compile a snapshot.")
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0]),
        )?;
        registry.register(Box::new(reload_duration.clone()))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        Ok(Self {
            requests: counter(
                "geogate_requests_total",
                "Requests by enforced action, deciding rule and country bucket.",
                &["action", "rule", "country"],
            )?,
            dry_run: counter(
                "geogate_dry_run_matches_total",
                "Dry-run rules that matched: would-be verdicts, not enforced.",
                &["rule", "action"],
            )?,
            request_duration: histogram_vec(
                "geogate_request_duration_seconds",
                "Time from request head received to response head sent.",
                &["action"],
            )?,
            upstream_duration: histogram_vec(
                "geogate_upstream_duration_seconds",
                "Upstream response time (request sent to response head).",
                &["upstream"],
            )?,
            upstream_errors: counter(
                "geogate_upstream_errors_total",
                "Upstream failures by upstream and kind.",
                &["upstream", "kind"],
            )?,
            client_ip: counter(
                "geogate_client_ip_resolutions_total",
                "Client-IP resolutions by configured source and outcome.",
                &["source", "outcome"],
            )?,
            rejected: counter(
                "geogate_rejected_total",
                "Connections and requests refused before policy, by reason.",
                &["reason"],
            )?,
            open_connections: gauge("geogate_open_connections", "Connections open on the public listeners.")?,
            reloads: counter(
                "geogate_reloads_total",
                "Reload attempts by trigger and result.",
                &["trigger", "result"],
            )?,
            reload_duration,
            snapshot_generation: gauge("geogate_snapshot_generation", "Generation of the snapshot serving requests.")?,
            snapshot_loaded: gauge(
                "geogate_snapshot_loaded_timestamp_seconds",
                "Unix time the serving snapshot was compiled.",
            )?,
            networks: gauge_vec("geogate_table_networks", "Networks loaded from all sources, by family.", &["family"])?,
            ranges: gauge_vec(
                "geogate_table_ranges",
                "Ranges in the lookup table after merging, by family.",
                &["family"],
            )?,
            table_bytes: gauge("geogate_table_bytes", "Heap bytes held by the lookup table.")?,
            reload_cache_bytes: gauge(
                "geogate_reload_cache_bytes",
                "Heap bytes of the compiled database ranges kept for reloads whose databases did not change.",
            )?,
            database_build: gauge_vec(
                "geogate_database_build_timestamp_seconds",
                "Build time of each loaded database (from its metadata), by source.",
                &["source"],
            )?,
            source_downloads: counter(
                "geogate_source_downloads_total",
                "Remote-source download attempts by source and result; the cache serves on failure.",
                &["source", "result"],
            )?,
            source_download_failures: gauge_vec(
                "geogate_source_download_failures",
                "Failed download attempts in a row, by remote source (0 after a success).",
                &["source"],
            )?,
            tls_cert_expiry: gauge_vec(
                "geogate_tls_certificate_expiry_timestamp_seconds",
                "Expiry (notAfter) of each TLS listener's certificates, in Unix seconds.",
                &["listener", "certificate"],
            )?,
            tls_handshake_failures: counter(
                "geogate_tls_handshake_failures_total",
                "TLS handshakes that failed, by reason.",
                &["reason"],
            )?,
            registry,
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if encoder.encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Creates the series `labels` of a counter or histogram family at 0, if it does not exist
/// yet (an existing series keeps its value). Cheap, but takes the family's lock: call it
/// when a snapshot is installed, never per request.
pub fn zero<T: prometheus::core::MetricVecBuilder>(family: &prometheus::core::MetricVec<T>, labels: &[&str]) {
    // Only a wrong label count can fail, and that is a programming error caught by tests.
    let _ = family.get_metric_with_label_values(labels);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_creates_a_series_at_zero_and_keeps_a_counted_one() {
        let m = Metrics::new().unwrap();
        m.rejected.with_label_values(&["counted"]).inc();
        zero(&m.rejected, &["counted"]);
        zero(&m.rejected, &["fresh"]);
        zero(&m.upstream_duration, &["api"]);
        zero(&m.rejected, &["too", "many"]);
        let text = m.render();
        assert!(text.contains("geogate_rejected_total{reason=\"counted\"} 1\n"), "{text}");
        assert!(text.contains("geogate_rejected_total{reason=\"fresh\"} 0\n"), "{text}");
        assert!(text.contains("geogate_upstream_duration_seconds_count{upstream=\"api\"} 0\n"), "{text}");
        assert!(!text.contains("too"), "{text}");
    }

    #[test]
    fn every_metric_is_exported_with_the_geogate_prefix() {
        let m = Metrics::new().unwrap();
        m.requests.with_label_values(&["block", "r", "RU"]).inc();
        m.dry_run.with_label_values(&["r", "block"]).inc();
        m.request_duration.with_label_values(&["block"]).observe(0.001);
        m.upstream_duration.with_label_values(&["api"]).observe(0.001);
        m.upstream_errors.with_label_values(&["api", "connect"]).inc();
        m.client_ip.with_label_values(&["peer", "peer"]).inc();
        m.rejected.with_label_values(&["max_connections"]).inc();
        m.reloads.with_label_values(&["startup", "ok"]).inc();
        m.networks.with_label_values(&["ipv4"]).set(1);
        m.ranges.with_label_values(&["ipv4"]).set(1);
        m.database_build.with_label_values(&["geoip"]).set(1);
        m.source_downloads.with_label_values(&["geoip", "ok"]).inc();
        m.source_download_failures.with_label_values(&["geoip"]).set(0);
        let text = m.render();
        for name in [
            "geogate_requests_total",
            "geogate_dry_run_matches_total",
            "geogate_request_duration_seconds_bucket",
            "geogate_upstream_duration_seconds_bucket",
            "geogate_upstream_errors_total",
            "geogate_client_ip_resolutions_total",
            "geogate_rejected_total",
            "geogate_open_connections",
            "geogate_reloads_total",
            "geogate_reload_duration_seconds_bucket",
            "geogate_snapshot_generation",
            "geogate_snapshot_loaded_timestamp_seconds",
            "geogate_table_networks",
            "geogate_table_ranges",
            "geogate_table_bytes",
            "geogate_reload_cache_bytes",
            "geogate_database_build_timestamp_seconds",
            "geogate_source_downloads_total",
            "geogate_source_download_failures",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
