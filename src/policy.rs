//! Rules to verdict: pure, allocation-free per request (but for odd paths), compiled once per
//! snapshot from the checked [`PolicyConfig`].
//!
//! # Semantics
//! - Rules are evaluated in order. The first matching rule that is **not** `dry_run` decides.
//!   A matching `dry_run` rule is recorded in [`Verdict::dry_run`] (its would-be verdict is
//!   that rule's action) and evaluation continues. No match: the default action.
//! - A rule matches when the client matches **any** of its geo criteria (a rule with none
//!   matches every client) **and** the request matches **every** request criterion given.
//! - Geo criteria, against the table's [`Answer`]:
//!   - `countries` match `geo.country` only: where the address is. Not `represented_country`
//!     (rare: embassies, military bases) and not `registered_country`, which has its own
//!     criterion, `registered_countries`. A database without `country` never matches them.
//!   - `subdivisions` match `geo.subdivision` (full code such as `UA-43`, any case).
//!   - `lists` match when the address is in the named list (a [`crate::geo::ListSet`] bit).
//!   - `anonymous_proxy` / `satellite_provider` match the flags when set to true.
//!   - `unknown` matches an address with no geo data (`answer.geo` empty) and an unresolved
//!     client (`answer == None`). An unresolved client matches **only** `unknown` and rules
//!     with no geo criteria: it is in no country and no list.
//! - Request criteria:
//!   - `hosts`: exact or `*.suffix` (which needs at least one more label: `*.example.com`
//!     matches `a.example.com`, not `example.com`), ASCII case-insensitive, port and trailing
//!     dot ignored. A request with no host never matches a rule with `hosts`.
//!   - `methods`: compared ASCII case-insensitively (`post` is POST: some servers accept it,
//!     so it must not dodge a block). `GET` does not imply `HEAD`.
//!   - `paths`: a plain pattern is a segment prefix (`/signup` matches `/signup` and
//!     `/signup/x`, not `/signupx` or `/signups`); a pattern with `*` is a glob where `*`
//!     matches within one segment, matched the same way against the whole path or a leading
//!     run of whole segments (`/api/*/accounts` matches `/api/v1/accounts/42`). Patterns are
//!     normalised like paths. How the request path is read depends on the rule's
//!     `path_match` (see [`path`]'s module doc for the readings):
//!     - `framework` (the default for `block` and `tag`): the rule matches if **any** reading
//!       a common framework may route by matches, ASCII case-insensitively (`/SignUp`,
//!       `/signup.json`, `/signup.`, `/ｓｉｇｎｕｐ`);
//!     - `strict` (the default for `allow`): only if **every** reading matches, byte for
//!       byte, so an allow rule never covers a path some upstream routes elsewhere.
//! - Over-matching is the failure mode chosen for block and tag rules: they should rather
//!   catch an odd request too many than let a disguised one through. Allow rules err the
//!   other way.
//!
//! # Cost
//! `decide` walks the rules once; each test is a few byte comparisons over short, pre-lowered
//! patterns. It allocates only when the path is not already clean (see [`normalize_path`]),
//! and only once per request, on first need.

use std::fmt;

use http::Method;

use crate::config::{
    ActionConfig, BlockResponse, GeoView, PathMatch, PolicyConfig, TagHeaders, TagKind, MAX_DRY_RUN_RULES,
};
use crate::geo::{subdivision_matches, Answer, CountryCode, GeoRecord, ListSet, EMPTY_RECORD, MAX_LISTS};

mod path;
mod pattern;

pub use path::{normalize_path, screen, EncodedDelimiters, PathReadings, PathRefusal};

use pattern::{bare_host, HostPattern, PathPattern};

/// A compiled policy.
#[derive(Clone, Debug)]
pub struct Policy {
    rules: Vec<Rule>,
    default: Action,
    default_block: BlockResponse,
    /// Rule overrides; `BlockId(k)` is `overrides[k - 1]`, `BlockId(0)` the default.
    overrides: Vec<BlockResponse>,
    tag_headers: TagHeaders,
    list_names: Vec<String>,
    /// Every source's name in configuration order (for views that name one).
    source_names: Vec<String>,
    /// Rule index of each dry-run rule, in order: bit `i` of a [`DryRunSet`].
    dry_run_rules: Vec<usize>,
}

/// What `decide` needs to know about a request.
#[derive(Clone, Copy, Debug)]
pub struct RequestFacts<'a> {
    /// `Host` header or URI authority, port allowed.
    pub host: Option<&'a str>,
    /// The request path, raw; a query string is allowed and ignored.
    pub path: &'a str,
    pub method: &'a Method,
}

/// The decision for one request. Small and `Copy`: safe to keep after the snapshot is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub action: Action,
    /// The deciding rule (`None` = the default action). Name: [`Policy::rule_name`].
    pub rule: Option<usize>,
    /// Which geo criterion of the deciding rule matched.
    pub criterion: Option<Criterion>,
    /// Dry-run rules that matched before the decision. See [`Policy::dry_run_matches`].
    pub dry_run: DryRunSet,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Allow,
    /// Answer with [`Policy::block_response`] of this id.
    Block(BlockId),
    /// Forward, adding these tag headers.
    Tag(TagSet),
}

/// Index of a block response within its policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockId(u16);

/// A set of [`TagKind`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TagSet(u8);

/// Dry-run rules that matched: bit `i` is the `i`-th dry-run rule in rule order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DryRunSet(u64);

/// Why a rule's geo part matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Criterion {
    /// The rule has no geo criteria.
    Anyone,
    Country(CountryCode),
    /// Index into the rule's subdivisions (see [`Policy::describe`]).
    Subdivision(u16),
    RegisteredCountry(CountryCode),
    /// List id.
    List(u8),
    /// The AS number matched.
    Asn(u32),
    /// Index into the rule's organisation globs.
    AsOrg(u16),
    AnonymousProxy,
    SatelliteProvider,
    Unknown,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("rule `{rule}`: no list named `{list}`")]
    UnknownList { rule: String, list: String },
    #[error("{0} lists; at most {MAX_LISTS} are supported")]
    TooManyLists(usize),
    #[error("{0} dry-run rules; at most {MAX_DRY_RUN_RULES} are supported")]
    TooManyDryRunRules(usize),
    #[error("{0} block responses; at most 65535 are supported")]
    TooManyBlockResponses(usize),
    #[error("rule `{rule}`: no database source named `{source_name}` for its view")]
    UnknownSource { rule: String, source_name: String },
}

/// The whole evaluation of one request, for `geogate explain` and the admin endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub verdict: Verdict,
    /// The path as matched.
    pub normalized_path: String,
    pub steps: Vec<Step>,
    /// The verdict in words, e.g. `block by rule[1] "block-ru" (country=RU)`.
    pub summary: String,
}

/// What one rule said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub rule: usize,
    pub name: String,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// This rule decided, on this criterion (e.g. `country=RU`).
    Decided(String),
    /// A dry-run rule matched; evaluation went on.
    DryRunMatched(String),
    NoGeoMatch,
    HostMismatch,
    PathMismatch,
    MethodMismatch,
    /// A rule above already decided.
    NotReached,
}

#[derive(Clone, Debug)]
struct Rule {
    name: Box<str>,
    action: Action,
    dry_run: Option<u8>,
    geo: GeoMatch,
    hosts: Vec<HostPattern>,
    paths: Vec<PathPattern>,
    path_match: PathMatch,
    methods: Vec<Method>,
}

#[derive(Clone, Debug, Default)]
struct GeoMatch {
    countries: Vec<CountryCode>,
    subdivisions: Vec<Box<str>>,
    registered: Vec<CountryCode>,
    asns: Vec<u32>,
    /// Lower-case globs.
    as_orgs: Vec<Box<str>>,
    lists: ListSet,
    anonymous_proxy: bool,
    satellite_provider: bool,
    unknown: bool,
    view: View,
}

/// A rule's [`GeoView`] with the source name resolved to its index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum View {
    #[default]
    Layered,
    Any,
    All,
    Source(u16),
}

/// Why the request part of a rule failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Miss {
    Host,
    Path,
    Method,
}

/// Compiles a policy. `list_names` are the list sources in list-id order
/// (`Config::list_names()`). A rule whose view names a source fails here: use
/// [`compile_for`].
pub fn compile(cfg: &PolicyConfig, list_names: &[String]) -> Result<Policy, PolicyError> {
    compile_for(cfg, list_names, &[])
}

/// [`compile`] with every source's name in configuration order, so that views can name them.
pub fn compile_for(cfg: &PolicyConfig, list_names: &[String], source_names: &[String]) -> Result<Policy, PolicyError> {
    if list_names.len() > MAX_LISTS {
        return Err(PolicyError::TooManyLists(list_names.len()));
    }
    let mut overrides = Vec::new();
    let mut dry_run_rules = Vec::new();
    let mut rules = Vec::with_capacity(cfg.rules.len());
    for (i, r) in cfg.rules.iter().enumerate() {
        let action = match (&r.action, &r.block) {
            (ActionConfig::Block, Some(b)) => {
                overrides.push(b.clone());
                let id =
                    u16::try_from(overrides.len()).map_err(|_| PolicyError::TooManyBlockResponses(overrides.len()))?;
                Action::Block(BlockId(id))
            }
            (a, _) => Action::from_config(a),
        };
        let dry_run = if r.dry_run {
            let ordinal = dry_run_rules.len();
            if ordinal >= MAX_DRY_RUN_RULES {
                return Err(PolicyError::TooManyDryRunRules(ordinal + 1));
            }
            dry_run_rules.push(i);
            u8::try_from(ordinal).ok()
        } else {
            None
        };
        let mut lists = ListSet::EMPTY;
        for name in &r.matcher.lists {
            let id = list_names
                .iter()
                .position(|n| n == name)
                .ok_or_else(|| PolicyError::UnknownList { rule: r.name.clone(), list: name.clone() })?;
            lists = lists.with(id);
        }
        let m = &r.matcher;
        let view = match &m.view {
            GeoView::Layered => View::Layered,
            GeoView::Any => View::Any,
            GeoView::All => View::All,
            GeoView::Source(name) => source_names
                .iter()
                .position(|n| n == name)
                .and_then(|i| u16::try_from(i).ok())
                .map(View::Source)
                .ok_or_else(|| PolicyError::UnknownSource { rule: r.name.clone(), source_name: name.clone() })?,
        };
        rules.push(Rule {
            name: r.name.as_str().into(),
            action,
            dry_run,
            geo: GeoMatch {
                countries: m.countries.clone(),
                // Codes upper-case; names as written (they compare case-insensitively).
                subdivisions: m
                    .subdivisions
                    .iter()
                    .map(|s| if s.contains(':') { s.as_str().into() } else { s.to_ascii_uppercase().into() })
                    .collect(),
                registered: m.registered_countries.clone(),
                asns: m.asns.clone(),
                as_orgs: m.as_orgs.iter().map(|g| g.to_lowercase().into()).collect(),
                view,
                lists,
                anonymous_proxy: m.anonymous_proxy,
                satellite_provider: m.satellite_provider,
                unknown: m.unknown,
            },
            hosts: m.hosts.iter().map(|h| HostPattern::new(h)).collect(),
            paths: m.paths.iter().map(|p| PathPattern::new(p)).collect(),
            path_match: m.path_match.unwrap_or(match r.action {
                ActionConfig::Allow => PathMatch::Strict,
                ActionConfig::Block | ActionConfig::Tag(_) => PathMatch::Framework,
            }),
            methods: m.methods.clone(),
        });
    }
    Ok(Policy {
        rules,
        default: Action::from_config(&cfg.default_action),
        default_block: cfg.block.clone(),
        overrides,
        tag_headers: cfg.tag_headers.clone(),
        list_names: list_names.to_vec(),
        source_names: source_names.to_vec(),
        dry_run_rules,
    })
}

// === impl Policy ===

impl Policy {
    /// Decides one request. `answer == None`: the client IP could not be resolved.
    pub fn decide(&self, req: &RequestFacts<'_>, answer: Option<&Answer>) -> Verdict {
        let host = req.host.map(bare_host);
        let mut path: Option<PathReadings<'_>> = None;
        let mut dry_run = DryRunSet::default();
        for (i, rule) in self.rules.iter().enumerate() {
            let Some(criterion) = rule.geo.matches(answer) else {
                continue;
            };
            if rule.request_miss(host, req, &mut path).is_some() {
                continue;
            }
            match rule.dry_run {
                Some(bit) => dry_run = dry_run.with(bit),
                None => return Verdict { action: rule.action, rule: Some(i), criterion: Some(criterion), dry_run },
            }
        }
        Verdict { action: self.default, rule: None, criterion: None, dry_run }
    }

    /// `decide`, with every rule's outcome spelled out. Allocates; not for the request path.
    pub fn explain(&self, req: &RequestFacts<'_>, answer: Option<&Answer>) -> Explanation {
        let verdict = self.decide(req, answer);
        let host = req.host.map(bare_host);
        let mut path = None;
        let mut steps = Vec::with_capacity(self.rules.len());
        let mut decided = false;
        for (i, rule) in self.rules.iter().enumerate() {
            let outcome = if decided {
                Outcome::NotReached
            } else {
                match rule.geo.matches(answer) {
                    None => Outcome::NoGeoMatch,
                    Some(c) => match rule.request_miss(host, req, &mut path) {
                        Some(Miss::Host) => Outcome::HostMismatch,
                        Some(Miss::Path) => Outcome::PathMismatch,
                        Some(Miss::Method) => Outcome::MethodMismatch,
                        None if rule.dry_run.is_some() => Outcome::DryRunMatched(self.describe(i, c)),
                        None => {
                            decided = true;
                            Outcome::Decided(self.describe(i, c))
                        }
                    },
                }
            };
            steps.push(Step { rule: i, name: rule.name.to_string(), outcome });
        }
        let summary = match (verdict.rule, verdict.criterion) {
            (Some(i), Some(c)) => {
                let view = match self.rule_view(i).as_str() {
                    "layered" => String::new(),
                    v => format!(", view {v}"),
                };
                format!(
                    "{} by rule[{i}] \"{}\" ({}{view})",
                    verdict.action.name(),
                    self.rule_name(i).unwrap_or(""),
                    self.describe(i, c)
                )
            }
            _ => format!("{} by the default action", verdict.action.name()),
        };
        Explanation { verdict, normalized_path: normalize_path(req.path).into_owned(), steps, summary }
    }

    /// A criterion in words: `country=RU`, `subdivision=UA-43`, `list=partners`, `anyone`, ...
    pub fn describe(&self, rule: usize, criterion: Criterion) -> String {
        match criterion {
            Criterion::Anyone => "anyone".to_owned(),
            Criterion::Country(c) => format!("country={c}"),
            Criterion::RegisteredCountry(c) => format!("registered_country={c}"),
            Criterion::Subdivision(i) => {
                let sub =
                    self.rules.get(rule).and_then(|r| r.geo.subdivisions.get(usize::from(i))).map_or("?", |s| &**s);
                format!("subdivision={sub}")
            }
            Criterion::Asn(n) => format!("asn=AS{n}"),
            Criterion::AsOrg(i) => {
                let glob = self.rules.get(rule).and_then(|r| r.geo.as_orgs.get(usize::from(i))).map_or("?", |s| &**s);
                format!("as_org={glob}")
            }
            Criterion::List(id) => {
                format!("list={}", self.list_name(usize::from(id)).unwrap_or("?"))
            }
            Criterion::AnonymousProxy => "anonymous_proxy".to_owned(),
            Criterion::SatelliteProvider => "satellite_provider".to_owned(),
            Criterion::Unknown => "unknown".to_owned(),
        }
    }

    /// Whose answer rule `rule` tests: `layered`, `any`, `all` or `source:NAME`.
    pub fn rule_view(&self, rule: usize) -> String {
        match self.rules.get(rule).map(|r| r.geo.view) {
            None | Some(View::Layered) => "layered".to_owned(),
            Some(View::Any) => "any".to_owned(),
            Some(View::All) => "all".to_owned(),
            Some(View::Source(i)) => {
                format!("source:{}", self.source_names.get(usize::from(i)).map_or("?", |s| s.as_str()))
            }
        }
    }

    pub fn rule_name(&self, rule: usize) -> Option<&str> {
        self.rules.get(rule).map(|r| &*r.name)
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// The action a rule takes (or would take, for a dry-run rule).
    pub fn rule_action(&self, rule: usize) -> Option<Action> {
        self.rules.get(rule).map(|r| r.action)
    }

    pub fn is_dry_run(&self, rule: usize) -> bool {
        self.rules.get(rule).is_some_and(|r| r.dry_run.is_some())
    }

    /// Rule indices of the dry-run rules in `set`, in rule order; the first is the would-be
    /// verdict of the first dry-run rule.
    pub fn dry_run_matches(&self, set: DryRunSet) -> impl Iterator<Item = usize> + '_ {
        self.dry_run_rules.iter().enumerate().filter(move |(bit, _)| set.contains(*bit)).map(|(_, &rule)| rule)
    }

    pub fn default_action(&self) -> Action {
        self.default
    }

    pub fn block_response(&self, id: BlockId) -> &BlockResponse {
        match usize::from(id.0).checked_sub(1) {
            Some(k) => self.overrides.get(k).unwrap_or(&self.default_block),
            None => &self.default_block,
        }
    }

    pub fn tag_headers(&self) -> &TagHeaders {
        &self.tag_headers
    }

    pub fn list_name(&self, id: usize) -> Option<&str> {
        self.list_names.get(id).map(String::as_str)
    }
}

// === impl Rule ===

impl Rule {
    /// The first request criterion that fails; the path is normalised on first need.
    fn request_miss<'r>(
        &self,
        host: Option<&str>,
        req: &RequestFacts<'r>,
        path: &mut Option<PathReadings<'r>>,
    ) -> Option<Miss> {
        if !self.methods.is_empty()
            && !self.methods.iter().any(|m| m.as_str().eq_ignore_ascii_case(req.method.as_str()))
        {
            return Some(Miss::Method);
        }
        if !self.hosts.is_empty() {
            let Some(host) = host else {
                return Some(Miss::Host);
            };
            if !self.hosts.iter().any(|h| h.matches(host)) {
                return Some(Miss::Host);
            }
        }
        if !self.paths.is_empty() {
            let p = path.get_or_insert_with(|| PathReadings::new(req.path));
            if !self.paths.iter().any(|pat| pat.matches_readings(p, self.path_match)) {
                return Some(Miss::Path);
            }
        }
        None
    }
}

// === impl GeoMatch ===

impl GeoMatch {
    fn is_empty(&self) -> bool {
        self.countries.is_empty()
            && self.subdivisions.is_empty()
            && self.registered.is_empty()
            && self.asns.is_empty()
            && self.as_orgs.is_empty()
            && self.lists.is_empty()
            && !self.anonymous_proxy
            && !self.satellite_provider
            && !self.unknown
    }

    /// The criterion that matched, if any. Lists first: they are the most deliberate data.
    fn matches(&self, answer: Option<&Answer>) -> Option<Criterion> {
        if self.is_empty() {
            return Some(Criterion::Anyone);
        }
        let Some(a) = answer else {
            return self.unknown.then_some(Criterion::Unknown);
        };
        let hits = a.lists.0 & self.lists.0;
        if hits != 0 {
            // Lowest id first; trailing_zeros of a non-zero u64 is below 64.
            return u8::try_from(hits.trailing_zeros()).ok().map(Criterion::List);
        }
        match self.view {
            View::Layered => self.matches_record(a.geo),
            View::Source(source) => self.matches_record(a.view_of(source)),
            View::Any if a.views.is_empty() => self.matches_record(&EMPTY_RECORD),
            View::Any => a.views.iter().find_map(|v| self.matches_record(v.geo)),
            View::All if a.views.is_empty() => self.matches_record(&EMPTY_RECORD),
            View::All => {
                let mut first = None;
                for v in a.views.iter() {
                    let c = self.matches_record(v.geo)?;
                    first.get_or_insert(c);
                }
                first
            }
        }
    }

    /// The geo criterion (other than lists) that `g` matches, if any.
    fn matches_record(&self, g: &GeoRecord) -> Option<Criterion> {
        if let Some(c) = g.country.filter(|c| self.countries.contains(c)) {
            return Some(Criterion::Country(c));
        }
        if let Some(sub) = &g.subdivision {
            if let Some(i) = self.subdivisions.iter().position(|s| subdivision_matches(s, sub)) {
                return u16::try_from(i).ok().map(Criterion::Subdivision);
            }
        }
        if let Some(n) = g.asn.filter(|n| self.asns.contains(n)) {
            return Some(Criterion::Asn(n));
        }
        if let Some(org) = &g.as_org {
            if let Some(i) = self.as_orgs.iter().position(|glob| pattern::glob_matches_ignore_case(glob, org)) {
                return u16::try_from(i).ok().map(Criterion::AsOrg);
            }
        }
        if let Some(c) = g.registered_country.filter(|c| self.registered.contains(c)) {
            return Some(Criterion::RegisteredCountry(c));
        }
        if self.anonymous_proxy && g.anonymous_proxy {
            return Some(Criterion::AnonymousProxy);
        }
        if self.satellite_provider && g.satellite_provider {
            return Some(Criterion::SatelliteProvider);
        }
        if self.unknown && g.is_empty() {
            return Some(Criterion::Unknown);
        }
        None
    }
}

// === impl Action ===

impl Action {
    fn from_config(a: &ActionConfig) -> Self {
        match a {
            ActionConfig::Allow => Self::Allow,
            ActionConfig::Block => Self::Block(BlockId(0)),
            ActionConfig::Tag(kinds) => Self::Tag(kinds.iter().copied().collect()),
        }
    }

    /// `allow`, `block` or `tag`: a bounded metric label.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Block(_) => "block",
            Self::Tag(_) => "tag",
        }
    }

    pub fn is_block(&self) -> bool {
        matches!(self, Self::Block(_))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// === impl TagSet ===

impl TagSet {
    pub const EMPTY: Self = Self(0);

    fn bit(kind: TagKind) -> u8 {
        match kind {
            TagKind::Country => 1,
            TagKind::Subdivision => 2,
            TagKind::Restricted => 4,
            TagKind::Rule => 8,
            TagKind::Asn => 16,
        }
    }

    pub fn with(self, kind: TagKind) -> Self {
        Self(self.0 | Self::bit(kind))
    }

    pub fn contains(self, kind: TagKind) -> bool {
        self.0 & Self::bit(kind) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// In a fixed order: country, subdivision, restricted, rule, asn.
    pub fn iter(self) -> impl Iterator<Item = TagKind> {
        [TagKind::Country, TagKind::Subdivision, TagKind::Restricted, TagKind::Rule, TagKind::Asn]
            .into_iter()
            .filter(move |k| self.contains(*k))
    }
}

impl FromIterator<TagKind> for TagSet {
    fn from_iter<I: IntoIterator<Item = TagKind>>(iter: I) -> Self {
        iter.into_iter().fold(Self::EMPTY, Self::with)
    }
}

// === impl DryRunSet ===

impl DryRunSet {
    fn with(self, bit: u8) -> Self {
        Self(self.0 | 1u64.checked_shl(u32::from(bit)).unwrap_or(0))
    }

    fn contains(self, bit: usize) -> bool {
        bit < 64 && self.0 & (1u64 << bit) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }
}

// === impl Explanation ===

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "verdict: {}", self.summary)?;
        writeln!(f, "path as matched: {}", self.normalized_path)?;
        for s in &self.steps {
            let what = match &s.outcome {
                Outcome::Decided(c) => format!("matched ({c}): decides"),
                Outcome::DryRunMatched(c) => format!("matched ({c}): dry run, continuing"),
                Outcome::NoGeoMatch => "no: client matches none of its geo criteria".to_owned(),
                Outcome::HostMismatch => "no: host".to_owned(),
                Outcome::PathMismatch => "no: path".to_owned(),
                Outcome::MethodMismatch => "no: method".to_owned(),
                Outcome::NotReached => "not reached".to_owned(),
            };
            writeln!(f, "  rule[{}] {}: {what}", s.rule, s.name)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
