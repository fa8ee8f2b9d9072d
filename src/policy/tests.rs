// Tests may panic on a broken expectation; that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::borrow::Cow;
use std::path::Path;

use http::Method;
use proptest::prelude::*;

use super::*;
use crate::config::{self, Config, RuleConfig, RuleMatch};
use crate::geo::{GeoRecord, OwnedAnswer};

const BASE: &str = r#"
[[listener]]
name = "public"
address = "0.0.0.0:8080"
[[upstream]]
name = "app"
url = "http://127.0.0.1:3000"
[[source]]
name = "geoip"
type = "mmdb"
path = "geo.mmdb"
[[source]]
name = "partners"
type = "list"
entries = ["203.0.113.0/24"]
[[source]]
name = "crimea"
type = "list"
entries = ["198.51.100.0/24"]
"#;

/// A policy from rules written in TOML, through the real parser.
fn policy(rules: &str) -> Policy {
    let text = format!("{BASE}{rules}");
    let c: Config = config::parse(&text, None).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<String> = c.sources.iter().map(|s| s.name.clone()).collect();
    compile_for(&c.policy, &c.list_names(), &names).unwrap()
}

fn geo(country: &str) -> OwnedAnswer {
    OwnedAnswer::new(GeoRecord { country: CountryCode::parse(country), ..GeoRecord::default() })
}

fn sub(country: &str, subdivision: &str) -> OwnedAnswer {
    let mut a = geo(country);
    a.geo.subdivision = Some(subdivision.into());
    a
}

fn req<'a>(method: &'a Method, path: &'a str) -> RequestFacts<'a> {
    RequestFacts { host: Some("console.example.com"), path, method }
}

fn decide(p: &Policy, method: &Method, path: &str, a: Option<&OwnedAnswer>) -> Verdict {
    p.decide(&req(method, path), a.map(OwnedAnswer::answer).as_ref())
}

fn rule_name(p: &Policy, v: &Verdict) -> Option<String> {
    v.rule.and_then(|i| p.rule_name(i)).map(str::to_owned)
}

/// The scenario of `deploy/examples/geogate.toml`.
const SCENARIO: &str = r#"
[[rule]]
name = "partners"
action = "allow"
lists = ["partners"]
[[rule]]
name = "signup"
action = "block"
countries = ["RU", "BY"]
methods = ["POST"]
paths = ["/signup", "/api/v1/accounts"]
status = 403
[[rule]]
name = "regions"
action = "block"
subdivisions = ["UA-43", "UA-40", "UA-14", "UA-09"]
[[rule]]
name = "tag-ru-by"
action = "tag"
countries = ["RU", "BY"]
"#;

// --- order and actions ---

#[test]
fn first_enforced_match_wins_then_default() {
    let p = policy(SCENARIO);
    let post = Method::POST;
    let get = Method::GET;

    let v = decide(&p, &post, "/signup", Some(&geo("RU")));
    assert_eq!(rule_name(&p, &v).as_deref(), Some("signup"));
    let Action::Block(id) = v.action else { panic!("{v:?}") };
    assert_eq!(p.block_response(id).status.as_u16(), 403, "rule override");
    assert_eq!(v.criterion, Some(Criterion::Country(CountryCode::parse("RU").unwrap())));

    let v = decide(&p, &get, "/signup", Some(&geo("BY")));
    assert_eq!(rule_name(&p, &v).as_deref(), Some("tag-ru-by"));
    assert_eq!(
        v.action,
        Action::Tag(TagSet::from_iter([TagKind::Country, TagKind::Subdivision, TagKind::Restricted, TagKind::Rule]))
    );

    let v = decide(&p, &get, "/", Some(&sub("UA", "UA-43")));
    assert_eq!(rule_name(&p, &v).as_deref(), Some("regions"));
    let Action::Block(id) = v.action else { panic!("{v:?}") };
    assert_eq!(p.block_response(id).status.as_u16(), 451, "policy default block");
    assert_eq!(p.describe(v.rule.unwrap(), v.criterion.unwrap()), "subdivision=UA-43");

    let v = decide(&p, &post, "/signup", Some(&sub("UA", "UA-30")));
    assert_eq!(v.rule, None);
    assert_eq!(v.action, Action::Allow);

    // The partner list beats the country rules below it.
    let mut partner = geo("RU");
    partner.lists = ListSet::EMPTY.with(0);
    let v = decide(&p, &post, "/signup", Some(&partner));
    assert_eq!(rule_name(&p, &v).as_deref(), Some("partners"));
    assert_eq!(v.action, Action::Allow);
    assert_eq!(p.describe(0, v.criterion.unwrap()), "list=partners");
}

#[test]
fn default_actions() {
    let p = policy("[policy]\ndefault = \"block\"\n");
    let v = decide(&p, &Method::GET, "/", Some(&geo("DE")));
    assert_eq!(v.action, Action::Block(BlockId(0)));
    assert_eq!(p.block_response(BlockId(0)).status.as_u16(), 451);
    let p = policy("[policy]\ndefault = \"tag\"\ntag = [\"country\"]\n");
    let v = decide(&p, &Method::GET, "/", Some(&geo("DE")));
    assert_eq!(v.action, Action::Tag(TagSet::EMPTY.with(TagKind::Country)));
    let Action::Tag(t) = v.action else { panic!() };
    assert_eq!(t.iter().collect::<Vec<_>>(), vec![TagKind::Country]);
    let p = policy("");
    assert_eq!(decide(&p, &Method::GET, "/", None).action, Action::Allow);
}

#[test]
fn dry_run_records_and_continues() {
    let p = policy(
        r#"
[[rule]]
name = "would-block-ru"
action = "block"
dry_run = true
countries = ["RU"]
[[rule]]
name = "would-block-all-posts"
action = "block"
dry_run = true
methods = ["POST"]
[[rule]]
name = "tag-ru"
action = "tag"
countries = ["RU"]
tag = ["country"]
"#,
    );
    let v = decide(&p, &Method::POST, "/", Some(&geo("RU")));
    assert_eq!(rule_name(&p, &v).as_deref(), Some("tag-ru"));
    assert_eq!(v.dry_run.len(), 2);
    assert_eq!(p.dry_run_matches(v.dry_run).collect::<Vec<_>>(), vec![0, 1]);
    assert!(p.rule_action(0).is_some_and(|a| a.is_block()));
    assert!(p.is_dry_run(0) && !p.is_dry_run(2));

    let v = decide(&p, &Method::GET, "/", Some(&geo("DE")));
    assert_eq!(v.rule, None);
    assert!(v.dry_run.is_empty());

    let v = decide(&p, &Method::POST, "/", Some(&geo("DE")));
    assert_eq!(p.dry_run_matches(v.dry_run).collect::<Vec<_>>(), vec![1]);
}

#[test]
fn sixty_four_dry_run_rules_fit() {
    let mut rules = String::new();
    for i in 0..64 {
        rules.push_str(&format!("[[rule]]\nname = \"d{i}\"\naction = \"block\"\ndry_run = true\n"));
    }
    let p = policy(&rules);
    let v = decide(&p, &Method::GET, "/", None);
    assert_eq!(v.dry_run.len(), 64);
    assert_eq!(p.dry_run_matches(v.dry_run).last(), Some(63));
}

// --- geo criteria ---

#[test]
fn geo_criteria() {
    let p = policy(
        r#"
[[rule]]
name = "registered"
action = "block"
registered_countries = ["RU"]
[[rule]]
name = "anon"
action = "block"
anonymous_proxy = true
[[rule]]
name = "sat"
action = "block"
satellite_provider = true
[[rule]]
name = "crimea-list"
action = "block"
lists = ["crimea"]
[[rule]]
name = "country"
action = "block"
countries = ["BY"]
"#,
    );
    let name = |a: &OwnedAnswer| rule_name(&p, &decide(&p, &Method::GET, "/", Some(a)));

    let mut a = geo("DE");
    a.geo.registered_country = CountryCode::parse("RU");
    assert_eq!(name(&a).as_deref(), Some("registered"));

    let mut a = geo("DE");
    a.geo.anonymous_proxy = true;
    assert_eq!(name(&a).as_deref(), Some("anon"));

    let mut a = geo("DE");
    a.geo.satellite_provider = true;
    assert_eq!(name(&a).as_deref(), Some("sat"));

    let mut a = geo("DE");
    a.lists = ListSet::EMPTY.with(1);
    assert_eq!(name(&a).as_deref(), Some("crimea-list"));

    // `countries` is where the address is, not whom it represents.
    let mut a = geo("DE");
    a.geo.represented_country = CountryCode::parse("BY");
    assert_eq!(name(&a), None);
    assert_eq!(name(&geo("BY")).as_deref(), Some("country"));
}

#[test]
fn subdivisions_match_any_case() {
    let p = policy("[[rule]]\nname = \"r\"\naction = \"block\"\nsubdivisions = [\"ua-43\"]\n");
    assert!(decide(&p, &Method::GET, "/", Some(&sub("UA", "ua-43"))).action.is_block());
    assert!(decide(&p, &Method::GET, "/", Some(&sub("UA", "UA-43"))).action.is_block());
    assert!(!decide(&p, &Method::GET, "/", Some(&sub("UA", "UA-430"))).action.is_block());
}

#[test]
fn unknown_and_unresolved() {
    let p = policy(
        r#"
[[rule]]
name = "ru"
action = "block"
countries = ["RU"]
[[rule]]
name = "unknown"
action = "tag"
unknown = true
"#,
    );
    // Unresolved client: no country, matches only `unknown`.
    let v = decide(&p, &Method::GET, "/", None);
    assert_eq!(rule_name(&p, &v).as_deref(), Some("unknown"));
    assert_eq!(v.criterion, Some(Criterion::Unknown));
    // Resolved, but no geo data (empty table, or an address in a list only).
    let mut a = OwnedAnswer::default();
    assert_eq!(rule_name(&p, &decide(&p, &Method::GET, "/", Some(&a))).as_deref(), Some("unknown"));
    a.lists = ListSet::EMPTY.with(0);
    assert_eq!(rule_name(&p, &decide(&p, &Method::GET, "/", Some(&a))).as_deref(), Some("unknown"));
    // Known geo: not unknown.
    assert_eq!(decide(&p, &Method::GET, "/", Some(&geo("DE"))).rule, None);

    // A rule with no geo criteria matches an unresolved client too.
    let p = policy("[[rule]]\nname = \"posts\"\naction = \"block\"\nmethods = [\"POST\"]\n");
    let v = decide(&p, &Method::POST, "/", None);
    assert_eq!(v.criterion, Some(Criterion::Anyone));
}

// --- request criteria ---

#[test]
fn hosts() {
    let p = policy(
        "[[rule]]\nname = \"r\"\naction = \"block\"\nhosts = [\"console.example.com\", \"*.api.example.com\"]\n",
    );
    let m = Method::GET;
    let hit = |host: Option<&str>| p.decide(&RequestFacts { host, path: "/", method: &m }, None).action.is_block();
    for yes in [
        "console.example.com",
        "CONSOLE.Example.COM",
        "console.example.com:8443",
        "console.example.com.",
        "v1.api.example.com",
        "a.b.api.example.com:80",
    ] {
        assert!(hit(Some(yes)), "{yes}");
    }
    for no in [
        "example.com",
        "api.example.com",
        "xconsole.example.com",
        "console.example.com.evil",
        "evilapi.example.com",
        "",
    ] {
        assert!(!hit(Some(no)), "{no}");
    }
    assert!(!hit(None), "no host, no match");

    let p = policy("[[rule]]\nname = \"r\"\naction = \"block\"\nhosts = [\"[::1]\"]\n");
    let hit = |host: &str| p.decide(&RequestFacts { host: Some(host), path: "/", method: &m }, None).action.is_block();
    assert!(hit("[::1]:8080") && hit("[::1]"));
}

#[test]
fn methods_case_insensitive() {
    let p = policy("[[rule]]\nname = \"r\"\naction = \"block\"\nmethods = [\"POST\"]\n");
    assert!(decide(&p, &Method::POST, "/", None).action.is_block());
    let lower = Method::from_bytes(b"post").unwrap();
    assert!(decide(&p, &lower, "/", None).action.is_block());
    assert!(!decide(&p, &Method::GET, "/", None).action.is_block());
    assert!(!decide(&p, &Method::PUT, "/", None).action.is_block());
}

#[test]
fn path_prefix_is_segment_aware() {
    let p = policy("[[rule]]\nname = \"r\"\naction = \"block\"\npaths = [\"/signup\", \"/api/\"]\n");
    let hit = |path: &str| decide(&p, &Method::POST, path, None).action.is_block();
    for yes in ["/signup", "/signup/", "/signup/step2", "/api", "/api/v1"] {
        assert!(hit(yes), "{yes}");
    }
    for no in ["/", "/signupx", "/sign", "/apix", "/x/signup"] {
        assert!(!hit(no), "{no}");
    }
}

#[test]
fn path_globs() {
    let p = policy("[[rule]]\nname = \"r\"\naction = \"block\"\npaths = [\"/api/*/accounts\", \"/files/*.php\"]\n");
    let hit = |path: &str| decide(&p, &Method::POST, path, None).action.is_block();
    for yes in [
        "/api/v1/accounts",
        "/api/v2/accounts/",
        "/api/v1/accounts/42",
        "/API/V1/Accounts",
        "/files/x.php",
        "/files/.php",
    ] {
        assert!(hit(yes), "{yes}");
    }
    for no in ["/api/accounts", "/api/v1/x/accounts", "/api/v1/accountsx", "/files/x.phps", "/files/a/b.php"] {
        assert!(!hit(no), "{no}");
    }
}

#[test]
fn normalisation_bypass_attempts_are_caught() {
    let p = policy(SCENARIO);
    for path in [
        "/signup",
        "//signup",
        "/./signup",
        "/x/../signup",
        "/x/y/../../signup",
        "/../signup",
        "/%73ignup",
        "/%2573ignup",
        "/SIGNUP",
        "/SignUp",
        "/signup;jsessionid=x",
        "/signup;/",
        "/signup?x=1",
        "/signup#frag",
        "/signup/",
        "\\signup",
        "/%5csignup",
        "/%2e/signup",
        "/%2e%2e/signup",
        "/api/v1/x/..%2f../../signup",
        "/api/v1//accounts",
        "/api/v1/accounts;a=b",
        "/api/v1/%61ccounts",
        "/api%2Fv1%2Faccounts",
        "signup",
    ] {
        let v = decide(&p, &Method::POST, path, Some(&geo("RU")));
        assert_eq!(rule_name(&p, &v).as_deref(), Some("signup"), "{path:?} dodged the rule ({})", normalize_path(path));
    }
    for path in ["/signupx", "/sign-up", "/%"] {
        let v = decide(&p, &Method::POST, path, Some(&geo("RU")));
        assert_eq!(rule_name(&p, &v).as_deref(), Some("tag-ru-by"), "{path}");
    }
}

// --- normalize_path ---

#[test]
fn normalize_path_cases() {
    for (input, want) in [
        ("/", "/"),
        ("", "/"),
        ("/a/b", "/a/b"),
        ("/A/B", "/A/B"),
        ("/a/b/", "/a/b"),
        ("//a///b", "/a/b"),
        ("/a/./b/.", "/a/b"),
        ("/a/../../b", "/b"),
        ("/a/b/..", "/a"),
        ("/a?x=1", "/a"),
        ("/a?x=/../b", "/a"),
        ("/a#x", "/a"),
        ("/a;p=1/b;q", "/a/b"),
        ("/%61", "/a"),
        ("/%2561", "/a"),
        ("/a%2Fb", "/a/b"),
        ("/a%3Fb", "/a%3Fb"),
        ("/a%23b", "/a%23b"),
        ("/100%", "/100%25"),
        ("/%zz", "/%25zz"),
        ("/%2", "/%252"),
        ("/a\\b", "/a/b"),
        ("*", "/*"),
        ("/caf%C3%A9", "/café"),
        ("/%FF", "/\u{FFFD}"),
    ] {
        assert_eq!(normalize_path(input), want, "{input:?}");
    }
    assert!(matches!(normalize_path("/api/v1/Accounts"), Cow::Borrowed(_)));
    assert!(matches!(normalize_path("/api/v1/accounts?x=1"), Cow::Borrowed(_)));
    assert!(matches!(normalize_path("/"), Cow::Borrowed(_)));
}

/// The case the re-encoding step exists for: a decoded `?` must not be cut as a query on the
/// second pass.
#[test]
fn regression_decoded_question_mark_is_idempotent() {
    let once = normalize_path("/%3F").into_owned();
    assert_eq!(normalize_path(&once), once);
}

/// A naive glob matcher (recursive, segment-bound `*`) to compare the fast one against.
fn naive_glob(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => {
            (0..=s.len()).take_while(|&i| i == 0 || s[i - 1] != b'/').any(|i| naive_glob(rest, &s[i..]))
        }
        Some((c, rest)) => s.first().is_some_and(|d| c.eq_ignore_ascii_case(d)) && naive_glob(rest, &s[1..]),
    }
}

proptest! {
    #[test]
    fn normalize_path_is_idempotent_and_total(raw in "[/a-cA-C.;%?#\\\\2-5eEfF0 ]{0,24}|\\PC{0,16}") {
        let once = normalize_path(&raw).into_owned();
        let twice = normalize_path(&once).into_owned();
        prop_assert_eq!(&once, &twice);
        prop_assert!(once.starts_with('/'));
        prop_assert!(once == "/" || !once.ends_with('/'));
        prop_assert!(!once.contains("//"));
        prop_assert!(!once.contains('?') && !once.contains('#') && !once.contains(';'));
    }

    #[test]
    fn glob_agrees_with_naive(p in "[ab/*]{0,8}", s in "[abAB/]{0,10}") {
        prop_assert_eq!(pattern::glob(p.as_bytes(), s.as_bytes(), true), naive_glob(p.as_bytes(), s.as_bytes()));
    }
}

// --- compile, explain, examples ---

#[test]
fn compile_refuses_unknown_list() {
    let cfg = PolicyConfig {
        rules: vec![RuleConfig {
            name: "r".into(),
            action: ActionConfig::Block,
            dry_run: false,
            matcher: RuleMatch { lists: vec!["nope".into()], ..RuleMatch::default() },
            block: None,
        }],
        ..PolicyConfig::default()
    };
    assert_eq!(
        compile(&cfg, &["partners".into()]).unwrap_err(),
        PolicyError::UnknownList { rule: "r".into(), list: "nope".into() }
    );
    let many: Vec<String> = (0..65).map(|i| format!("l{i}")).collect();
    assert_eq!(compile(&PolicyConfig::default(), &many).unwrap_err(), PolicyError::TooManyLists(65));
}

#[test]
fn explain_spells_out_every_rule() {
    let p = policy(SCENARIO);
    let e = p.explain(&req(&Method::GET, "//X/../Home"), Some(&geo("RU").answer()));
    assert_eq!(e.summary, "tag by rule[3] \"tag-ru-by\" (country=RU)");
    assert_eq!(e.normalized_path, "/Home");
    let outcomes: Vec<&Outcome> = e.steps.iter().map(|s| &s.outcome).collect();
    assert_eq!(
        outcomes,
        vec![
            &Outcome::NoGeoMatch,
            &Outcome::MethodMismatch,
            &Outcome::NoGeoMatch,
            &Outcome::Decided("country=RU".into()),
        ]
    );
    let text = e.to_string();
    assert!(text.contains("rule[1] signup: no: method"), "{text}");

    let e = p.explain(&req(&Method::POST, "/signup"), Some(&geo("RU").answer()));
    assert_eq!(e.steps[2].outcome, Outcome::NotReached);
    let e = p.explain(&req(&Method::GET, "/"), Some(&geo("DE").answer()));
    assert_eq!(e.summary, "allow by the default action");
}

#[test]
fn deploy_example_behaves_as_documented() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples/geogate.toml");
    let c = config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let names = c.list_names();
    let p = compile(&c.policy, &names).unwrap();
    let partners = names.iter().position(|n| n == "partners").unwrap();

    let mut ru_partner = geo("RU");
    ru_partner.lists = ListSet::EMPTY.with(partners);
    let cases: &[(Method, &str, OwnedAnswer, Option<&str>, &str)] = &[
        (Method::POST, "/signup", geo("RU"), Some("block-signup-ru-by"), "block"),
        (Method::POST, "/api/v1/accounts", geo("BY"), Some("block-signup-ru-by"), "block"),
        (Method::GET, "/signup", geo("RU"), Some("tag-ru-by"), "tag"),
        (Method::GET, "/", sub("UA", "UA-14"), Some("block-occupied-regions"), "block"),
        (Method::POST, "/signup", ru_partner.clone(), Some("partners"), "allow"),
        (Method::POST, "/signup", geo("UA"), None, "allow"),
    ];
    for (m, path, a, rule, action) in cases {
        let v = decide(&p, m, path, Some(a));
        assert_eq!(rule_name(&p, &v).as_deref(), *rule, "{m} {path} {a:?}");
        assert_eq!(v.action.name(), *action, "{m} {path} {a:?}");
    }
}

// --- the operator (ASN and organisation), region names and views ---

fn operator(asn: u32, org: &str) -> OwnedAnswer {
    let mut a = geo("DE");
    a.geo.asn = Some(asn);
    a.geo.as_org = Some(org.into());
    a
}

/// An answer whose layered record says `layered` while each source says its own.
fn viewed(layered: &str, views: &[(u16, &str, Option<&str>)]) -> OwnedAnswer {
    let mut a = geo(layered);
    for &(source, country, subdivision) in views {
        a.push_view(
            source,
            GeoRecord {
                country: CountryCode::parse(country),
                subdivision: subdivision.map(Into::into),
                ..GeoRecord::default()
            },
        );
    }
    a
}

#[test]
fn asn_and_organisation_rules() {
    let p = policy(
        r#"
[[rule]]
name = "asn"
action = "block"
asns = [13238, "AS12389"]
[[rule]]
name = "org"
action = "block"
as_orgs = ["*Yandex*", "mail.ru *"]
"#,
    );
    let m = Method::GET;
    for (a, rule, criterion) in [
        (operator(13238, "x"), Some("asn"), "asn=AS13238"),
        (operator(12389, "x"), Some("asn"), "asn=AS12389"),
        (operator(208722, "YANDEX LLC"), Some("org"), "as_org=*yandex*"),
        (operator(47764, "Mail.Ru LLC"), Some("org"), "as_org=mail.ru *"),
    ] {
        let v = decide(&p, &m, "/", Some(&a));
        assert_eq!(rule_name(&p, &v).as_deref(), rule, "{a:?}");
        let (r, c) = (v.rule.unwrap(), v.criterion.unwrap());
        assert_eq!(p.describe(r, c), criterion);
    }
    for a in [operator(15169, "Google LLC"), operator(1, "Mail.Ru"), geo("RU")] {
        assert_eq!(decide(&p, &m, "/", Some(&a)).rule, None, "{a:?}");
    }
}

#[test]
fn organisation_globs() {
    use super::pattern::glob_matches_ignore_case as g;
    assert!(g("*yandex*", "YANDEX LLC"));
    assert!(g("yandex*", "Yandex"));
    assert!(!g("yandex*", "Not Yandex"));
    assert!(g("*llc", "Some LLC"));
    assert!(!g("*llc", "Some LLC Ltd"));
    assert!(g("a*b*c", "aXXbYYc"));
    assert!(!g("a*b*c", "aXXcYYb"));
    assert!(g("*", ""));
    assert!(!g("x", ""));
}

#[test]
fn subdivision_names_match_either_form() {
    let p = policy(
        r#"
[[rule]]
name = "occupied"
action = "block"
subdivisions = ["UA-43", "UA:Crimea", "RU:Crimea", "RU:Republic of Crimea"]
"#,
    );
    let m = Method::GET;
    for (cc, s) in [("UA", "UA-43"), ("UA", "UA:crimea"), ("RU", "RU:Crimea"), ("RU", "RU:republic of crimea")] {
        assert_eq!(rule_name(&p, &decide(&p, &m, "/", Some(&sub(cc, s)))).as_deref(), Some("occupied"), "{s}");
    }
    for (cc, s) in [("RU", "RU:Krasnodar Krai"), ("UA", "UA-40"), ("UA", "UA:Crimean")] {
        assert_eq!(decide(&p, &m, "/", Some(&sub(cc, s))).rule, None, "{s}");
    }
}

#[test]
fn views_choose_whose_answer_is_tested() {
    // BASE's sources: 0 = geoip (a database), 1 and 2 are lists.
    let rules = |view: &str| {
        policy(&format!(
            r#"
[[rule]]
name = "occupied"
action = "block"
countries = ["RU"]
subdivisions = ["UA:Crimea"]
view = "{view}"
"#
        ))
    };
    let m = Method::GET;
    // The layered answer says UA; source 0 alone says RU; a hypothetical source 3 says UA:Crimea.
    let split = viewed("UA", &[(0, "RU", None), (3, "UA", Some("UA:Crimea"))]);
    let agree = viewed("RU", &[(0, "RU", None), (3, "RU", None)]);
    let neither = viewed("DE", &[(0, "DE", None), (3, "UA", Some("UA:Kyiv"))]);
    let blocked = |p: &Policy, a: &OwnedAnswer| decide(p, &m, "/", Some(a)).rule.is_some();

    let layered = rules("layered");
    assert!(!blocked(&layered, &split) && blocked(&layered, &agree) && !blocked(&layered, &neither));
    let any = rules("any");
    assert!(blocked(&any, &split) && blocked(&any, &agree) && !blocked(&any, &neither));
    let all = rules("all");
    assert!(blocked(&all, &split), "RU and UA:Crimea both match the rule");
    assert!(blocked(&all, &agree) && !blocked(&all, &neither));
    let one_wrong = viewed("RU", &[(0, "RU", None), (3, "DE", None)]);
    assert!(!blocked(&all, &one_wrong), "every source with data must match");
    let named = rules("geoip");
    assert!(blocked(&named, &split) && !blocked(&named, &neither));
    assert!(!blocked(&named, &viewed("RU", &[(3, "RU", None)])), "the named source has no data here");
}

#[test]
fn bad_views_and_asns_are_refused_with_their_key() {
    for (rule, key, needle) in [
        ("view = \"nope\"\ncountries = [\"RU\"]", "rule[0].view", "no view `nope`"),
        ("view = \"partners\"\ncountries = [\"RU\"]", "rule[0].view", "is a list"),
        ("asns = [4294967296]", "rule[0].asns[0]", "not an AS number"),
        ("asns = [\"AS-1\"]", "rule[0].asns[0]", "not an AS number"),
        ("asns = [-5]", "rule[0].asns[0]", "not an AS number"),
        ("as_orgs = [\"**\"]", "rule[0].as_orgs[0]", "every organisation"),
        ("subdivisions = [\"XYZ:Crimea\"]", "rule[0].subdivisions[0]", "not a subdivision name"),
    ] {
        let text = format!("{BASE}[[rule]]\nname = \"r\"\naction = \"block\"\n{rule}\n");
        let e = config::parse(&text, None).expect_err(rule).to_string();
        assert!(e.contains(key) && e.contains(needle), "{rule}: {e}");
    }
}
