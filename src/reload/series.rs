//! The metric series a snapshot's configuration names, created at 0 when it is installed.
//!
//! A counter that appears only with its first event reads as "no data" on a dashboard, keeps
//! an alert's ratio empty, and its first event is lost to `rate()`. So every series whose
//! label values are known from the configuration exists from the first scrape:
//!
//! | family | label values created |
//! |---|---|
//! | `geogate_requests_total` | each enforced rule's action and name, and the default action with rule `""`, times every country bucket (the countries the policy names, `other`, `unknown`); `unresolved_block` / `unresolved_allow` with country `unknown` where a listener's `on_unresolved` can produce them |
//! | `geogate_dry_run_matches_total` | each dry-run rule with its would-be action |
//! | `geogate_upstream_duration_seconds`, `geogate_upstream_errors_total` | each upstream; times each failure kind for the errors |
//! | `geogate_client_ip_resolutions_total` | each listener's source times the outcomes that source can end in |
//! | `geogate_reloads_total` | every trigger times every result |
//!
//! The request series number (enforced rules + 1) x (named countries + 2): the same bound
//! traffic could reach, reached at once. A series created once stays after a reload drops
//! its rule or upstream, as a counted one always has. Runs off the request path, with the
//! snapshot gauges.

use crate::client_ip::{self, Outcome};
use crate::config::OnUnresolved;
use crate::metrics::{self, Metrics, UPSTREAM_ERROR_KINDS};
use crate::policy::Action;
use crate::snapshot::Snapshot;

use super::{Trigger, RESULTS};

/// Creates at 0 every series `s` makes known (existing series keep their counts).
pub fn zero_known(m: &Metrics, s: &Snapshot) {
    let buckets: Vec<&str> = s.metric_countries.iter().map(|c| c.as_str()).chain(["other", "unknown"]).collect();
    let policy = &s.policy;
    let enforced = (0..policy.rule_count())
        .filter(|&i| !policy.is_dry_run(i))
        .filter_map(|i| Some((policy.rule_action(i)?, policy.rule_name(i)?)))
        .chain([(policy.default_action(), "")]);
    let unresolved = |mode| s.config.listeners.iter().any(|l| l.client_ip.on_unresolved == mode);
    let (unresolved_block, unresolved_allow) = (unresolved(OnUnresolved::Block), unresolved(OnUnresolved::Allow));
    for (action, rule) in enforced {
        for bucket in &buckets {
            metrics::zero(&m.requests, &[action.name(), rule, bucket]);
        }
        // An unresolved client let through is counted under the rule that decided it.
        if unresolved_allow && !matches!(action, Action::Block(_)) {
            metrics::zero(&m.requests, &["unresolved_allow", rule, "unknown"]);
        }
    }
    if unresolved_block {
        metrics::zero(&m.requests, &["unresolved_block", "", "unknown"]);
    }
    for i in (0..policy.rule_count()).filter(|&i| policy.is_dry_run(i)) {
        if let (Some(rule), Some(action)) = (policy.rule_name(i), policy.rule_action(i)) {
            metrics::zero(&m.dry_run, &[rule, action.name()]);
        }
    }
    for upstream in &s.config.upstreams {
        metrics::zero(&m.upstream_duration, &[&upstream.name]);
        for kind in UPSTREAM_ERROR_KINDS {
            metrics::zero(&m.upstream_errors, &[&upstream.name, kind]);
        }
    }
    for listener in &s.config.listeners {
        let source = &listener.client_ip.source;
        for outcome in Outcome::labels_for(source) {
            metrics::zero(&m.client_ip, &[client_ip::source_label(source), outcome]);
        }
    }
    for trigger in Trigger::ALL {
        for result in RESULTS {
            metrics::zero(&m.reloads, &[trigger.as_str(), result]);
        }
    }
}
