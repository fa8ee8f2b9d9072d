// Tests may panic on a broken expectation; that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use super::*;
use crate::geo::CountryCode;

/// The smallest valid file; tests append to it.
const MINIMAL: &str = r#"
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
"#;

fn ok(text: &str) -> Config {
    match parse(text, None) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

fn errs(text: &str) -> ConfigErrors {
    match parse(text, Some(Path::new("/etc/geogate/geogate.toml"))) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e,
    }
}

/// The single error, checked for its key and its line.
fn one_err(text: &str, key: &str, line: usize) -> ConfigError {
    let e = errs(text);
    assert_eq!(e.len(), 1, "expected one error, got:\n{e}");
    let e = e.errors()[0].clone();
    assert_eq!(e.key, key, "{e}");
    assert_eq!(e.position.map(|p| p.line), Some(line), "{e}");
    e
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1).unwrap_or_else(|| panic!("{needle} not in text"))
}

fn with(extra: &str) -> String {
    format!("{MINIMAL}{extra}")
}

// --- defaults ---

#[test]
fn built_in_defaults() {
    let c = defaults();
    assert_eq!(c.listeners.len(), 1);
    assert_eq!(c.listeners[0].address, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(c.listeners[0].client_ip.source, ClientIpSource::Peer);
    assert_eq!(c.upstreams[0].url, "http://127.0.0.1:3000");
    assert_eq!(c.admin.address, Some("127.0.0.1:9901".parse().unwrap()));
    assert!(matches!(
        &c.sources[0].kind,
        SourceKind::Mmdb { location: Location::Path(p), schema: MmdbSchema::Auto }
            if p == Path::new("geoip/geo-whois-asn-country.mmdb")
    ));
    assert!(c.policy.rules.is_empty());
    assert_eq!(c.policy.default_action, ActionConfig::Tag(vec![TagKind::Country, TagKind::Subdivision]));
    assert_eq!(c.policy.block.status.as_u16(), 451);
    assert!(c.policy.block.json_body.contains("unavailable_for_legal_reasons"));
    assert!(c.policy.block.html_body.contains("<html"));
}

#[test]
fn file_defaults() {
    let c = ok(MINIMAL);
    assert_eq!(
        c.server,
        ServerConfig { worker_threads: None, shutdown_grace: Duration::from_secs(30), http1: Http1Engine::Geogate }
    );
    assert_eq!(c.admin.address, Some(DEFAULT_ADMIN));
    assert_eq!(c.default_upstream, 0);
    assert_eq!(c.policy.default_action, ActionConfig::Allow);
    assert_eq!(c.policy.tag_headers, TagHeaders::default());
    assert_eq!(c.limits, Limits::default());
    assert_eq!(c.limits.max_header_bytes.get(), 16384);
    assert_eq!(c.reload, ReloadConfig::default());
    assert_eq!(c.reload.max_network_drop_percent, Some(20.0));
    assert_eq!(c.reload.compile_cpu_share, 0.25);
    let pace = c.reload.compile_pace().unwrap();
    assert_eq!((pace.work, pace.rest), (Duration::from_micros(100), Duration::from_micros(300)));
    assert_eq!(c.access_log, AccessLogConfig { enabled: true, sample: 1.0 });
    assert_eq!(c.listeners[0].client_ip, ClientIpConfig::default());
    assert_eq!(c.listeners[0].client_ip.on_unresolved, OnUnresolved::Block);
}

#[test]
fn every_key_parses() {
    let text = r#"
default_upstream = "api"

[server]
worker_threads = 2
shutdown_grace = "45s"
http1 = "hyper"

[[listener]]
name = "public"
address = "[::]:8080"
client_ip = { source = "header", header = "CF-Connecting-IP", trusted = ["173.245.48.0/20", "2400:cb00::/32"], on_unresolved = "use-peer" }

[[listener]]
name = "lb"
address = "0.0.0.0:8443"
client_ip = { source = "proxy-protocol", trusted = ["10.0.0.1"], on_unresolved = "allow" }

[admin]
address = "127.0.0.1:9902"
reload_token = "tok3n"

[[upstream]]
name = "console"
url = "http://127.0.0.1:3000/"

[[upstream]]
name = "api"
url = "http://[::1]:3001"

[[route]]
host = "API.example.com."
path_prefix = "/api/"
upstream = "api"

[[source]]
name = "city"
type = "mmdb"
url = "http://mirror.internal/city.mmdb"
cache = "cache/city.mmdb"
poll_interval = "1h"
timeout = "30s"
max_bytes = 1000
schema = "custom"
fields = { country = "location.cc", subdivision = "subdivisions.-1.iso_code" }

[[source]]
name = "partners"
type = "list"
entries = ["203.0.113.0/24", "2001:db8::1"]
set = { country = "de", subdivision = "de-be", anonymous_proxy = false }

[policy]
default = "tag"
tag = ["country"]
tag_headers = { country = "X-Country", subdivision = "X-Sub", restricted = "X-Restricted", rule = "X-Rule" }

[policy.block]
status = 403
json_body = '{"error":"blocked"}'
html_body = "<p>blocked</p>"
redirect = "https://example.com/unavailable"
redirect_status = 303

[[rule]]
name = "r1"
action = "block"
dry_run = true
countries = ["ru"]
subdivisions = ["ua-43"]
registered_countries = ["BY"]
lists = ["partners"]
anonymous_proxy = true
satellite_provider = true
unknown = true
hosts = ["*.example.com"]
paths = ["/signup", "/api/*/accounts"]
methods = ["POST", "PUT"]
status = 451

[[rule]]
name = "r2"
action = "tag"
tag = ["rule", "restricted"]

[limits]
header_read_timeout = "5s"
idle_timeout = "2m"
max_header_bytes = 32768
max_headers = 50
max_connections = 100
upstream_connect_timeout = "1s"
upstream_response_timeout = "1m"
proxy_protocol_timeout = "500ms"
max_h2_streams = 10

[reload]
watch = false
debounce = "0ms"
check_interval = "1h"
max_network_drop_percent = 5
min_networks = 1000
on_no_data = "fail-open"
compile_cpu_share = 1.0

[access_log]
enabled = false
sample = 0.5
"#;
    let c = ok(text);
    assert_eq!(c.default_upstream, 1);
    assert_eq!(c.server.worker_threads.map(|n| n.get()), Some(2));
    assert_eq!(c.server.http1, Http1Engine::Hyper);
    assert_eq!(
        c.listeners[0].client_ip.source,
        ClientIpSource::Header(http::HeaderName::from_static("cf-connecting-ip"))
    );
    assert_eq!(c.listeners[0].client_ip.trusted.len(), 2);
    assert_eq!(c.listeners[0].client_ip.on_unresolved, OnUnresolved::UsePeer);
    assert_eq!(c.listeners[1].client_ip.source, ClientIpSource::ProxyProtocol);
    assert_eq!(c.listeners[1].client_ip.trusted, vec!["10.0.0.1/32".parse::<ipnet::IpNet>().unwrap()]);
    assert_eq!(c.admin.reload_token.as_deref(), Some("tok3n"));
    assert_eq!(c.routes[0].host.as_deref(), Some("api.example.com"));
    assert_eq!(c.routes[0].upstream, 1);
    let SourceKind::Mmdb { location: Location::Remote(r), schema: MmdbSchema::Custom(f) } = &c.sources[0].kind else {
        panic!("{:?}", c.sources[0]);
    };
    assert_eq!(r.poll_interval, Duration::from_secs(3600));
    assert_eq!(r.max_bytes, 1000);
    assert_eq!(r.cache, PathBuf::from("cache/city.mmdb"));
    assert_eq!(f.country.as_deref(), Some("location.cc"));
    let SourceKind::List { location: ListLocation::Inline(entries), set: Some(set) } = &c.sources[1].kind else {
        panic!("{:?}", c.sources[1]);
    };
    assert_eq!(entries, &["203.0.113.0/24".to_owned(), "2001:db8::1/128".to_owned()]);
    assert_eq!(set.country, CountryCode::parse("DE"));
    assert_eq!(set.subdivision.as_deref(), Some("DE-BE"));
    assert_eq!(c.list_names(), vec!["partners".to_owned()]);
    assert_eq!(c.policy.default_action, ActionConfig::Tag(vec![TagKind::Country]));
    assert_eq!(c.policy.tag_headers.country, "x-country");
    assert_eq!(c.policy.block.status.as_u16(), 403);
    assert_eq!(c.policy.block.redirect_status.as_u16(), 303);
    let r1 = &c.policy.rules[0];
    assert!(r1.dry_run);
    assert_eq!(r1.matcher.subdivisions, vec!["UA-43".to_owned()]);
    assert_eq!(r1.matcher.countries, vec![CountryCode::parse("RU").unwrap()]);
    assert_eq!(r1.matcher.methods, vec![http::Method::POST, http::Method::PUT]);
    let b = r1.block.as_ref().unwrap();
    assert_eq!(b.status.as_u16(), 451);
    assert_eq!(b.json_body, r#"{"error":"blocked"}"#, "rule overrides merge over [policy.block]");
    assert_eq!(c.policy.rules[1].action, ActionConfig::Tag(vec![TagKind::Rule, TagKind::Restricted]));
    assert_eq!(c.limits.idle_timeout, Duration::from_secs(120));
    assert_eq!(c.limits.proxy_protocol_timeout, Duration::from_millis(500));
    assert_eq!(c.limits.max_h2_streams.get(), 10);
    assert_eq!(c.reload.debounce, Duration::ZERO);
    assert_eq!(c.reload.check_interval, Some(Duration::from_secs(3600)));
    assert_eq!(c.reload.max_network_drop_percent, Some(5.0));
    assert_eq!(c.reload.on_no_data, OnNoData::FailOpen);
    assert_eq!((c.reload.compile_cpu_share, c.reload.compile_pace()), (1.0, None));
    assert!(!c.access_log.enabled);
}

#[test]
fn rule_tag_defaults_to_all_four() {
    let c = ok(&with("[[rule]]\nname = \"t\"\naction = \"tag\"\ncountries = [\"RU\"]\n"));
    assert_eq!(c.policy.rules[0].action, ActionConfig::tag_all());
    let c = ok(&with("[policy]\ndefault = \"tag\"\n"));
    assert_eq!(c.policy.default_action, ActionConfig::tag_default());
}

#[test]
fn admin_empty_address_and_disabled() {
    assert_eq!(ok(&with("[admin]\naddress = \"\"\n")).admin.address, Some(DEFAULT_ADMIN));
    assert_eq!(ok(&with("[admin]\nenabled = false\n")).admin.address, None);
}

// --- serde-stage errors ---

#[test]
fn unknown_keys_are_refused_everywhere() {
    for (extra, key) in [
        ("[serverx]\n", "serverx"),
        ("[server]\nworkers = 2\n", "server.workers"),
        ("[[rule]]\nname = \"x\"\ncontries = [\"RU\"]\n", "rule[0].contries"),
        ("[policy.block]\nstatuss = 1\n", "policy.block.statuss"),
        ("[limits]\nmax_conn = 1\n", "limits.max_conn"),
        ("[reload]\nwatchh = true\n", "reload.watchh"),
        ("[access_log]\nsampling = 1\n", "access_log.sampling"),
    ] {
        let text = with(extra);
        let e = errs(&text);
        assert_eq!(e.len(), 1, "{e}");
        let e = &e.errors()[0];
        assert!(e.message.contains("unknown field"), "{e}");
        assert_eq!(e.key, key, "{e}");
        assert!(e.position.is_some(), "{e}");
    }
}

#[test]
fn unknown_key_in_inline_table_names_it() {
    let text = with("[[listener]]\nname = \"b\"\naddress = \"0.0.0.0:1\"\nclient_ip = { sorce = \"peer\" }\n")
        .replace("[[listener]]\nname = \"public\"\naddress = \"0.0.0.0:8080\"\n", "");
    let e = errs(&text);
    let e = &e.errors()[0];
    assert_eq!(e.key, "listener[0].client_ip.sorce", "{e}");
    assert_eq!(e.position, Some(Position { line: line_of(&text, "sorce"), column: 15 }));
}

#[test]
fn syntax_and_type_errors_have_positions() {
    let e = one_err("[server]\nworker_threads = \"two\"\n", "server.worker_threads", 2);
    assert!(e.message.contains("invalid type"), "{e}");
    let e = errs("[server\n");
    assert_eq!(e.errors()[0].position.map(|p| p.line), Some(1), "{e}");
}

// --- semantic errors ---

#[test]
fn display_is_file_line_col_key_message_hint() {
    let text = with("[[rule]]\nname = \"r\"\naction = \"block\"\ncountries = [\"RU\", \"RUS\"]\n");
    let e = errs(&text);
    let line = line_of(&text, "RUS");
    assert_eq!(
        e.to_string(),
        format!(
            "/etc/geogate/geogate.toml:{line}:20: rule[0].countries[1]: `RUS` is not a country code (use an ISO 3166-1 alpha-2 code such as \"RU\" or \"BY\")"
        )
    );
}

#[test]
fn many_errors_at_once_in_file_order() {
    let text = r#"
[server]
shutdown_grace = "30"

[[listener]]
name = "public"
address = "localhost:80"
client_ip = { source = "x-forwarded-for" }

[[upstream]]
name = "app"
url = "ftp://app:21"

[[source]]
name = "geoip"
type = "mmdb"
path = "a.mmdb"

[[rule]]
name = "r"
action = "deny"
countries = ["XYZ"]
lists = ["nope"]
"#;
    let e = errs(text);
    let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "server.shutdown_grace",
            "listener[0].address",
            "listener[0].client_ip.trusted",
            "upstream[0].url",
            "rule[0].action",
            "rule[0].countries[0]",
            "rule[0].lists[0]",
        ],
        "{e}"
    );
    assert_eq!(e.to_string().lines().count(), 7);
    for err in &e {
        assert!(err.position.is_some() && err.hint.is_some(), "{err}");
    }
}

#[test]
fn each_error_class() {
    // (extra text, key, needle on the error's line, message fragment)
    let cases: &[(&str, &str, &str, &str)] = &[
        ("[server]\nworker_threads = 0\n", "server.worker_threads", "worker_threads", "out of range"),
        ("[server]\nshutdown_grace = \"1.5s\"\n", "server.shutdown_grace", "shutdown_grace", "invalid duration"),
        ("[server]\nshutdown_grace = 30\n", "server.shutdown_grace", "shutdown_grace", "bare number"),
        ("[server]\nhttp1 = \"nginx\"\n", "server.http1", "http1", "unknown value `nginx`"),
        ("[admin]\naddress = \"127.0.0.1\"\n", "admin.address", "address = \"127", "not an IP address and port"),
        ("[admin]\naddress = \"0.0.0.0:8080\"\n", "admin.address", "address = \"0.0.0.0:8080\"\n", "also a proxy listener"),
        ("[admin]\nreload_token = \"a b\"\n", "admin.reload_token", "reload_token", "invalid reload token"),
        ("[[upstream]]\nname = \"u2\"\nurl = \"http://x:1/api\"\n", "upstream[1].url", "x:1/api", "path or query"),
        ("[[upstream]]\nname = \"u2\"\nurl = \"ftp://x\"\n", "upstream[1].url", "ftp", "not an http://"),
        ("[[upstream]]\nname = \"app\"\nurl = \"http://x\"\n", "upstream[1].name", "name = \"app\"\nurl = \"http://x", "duplicate upstream name"),
        ("[[route]]\nupstream = \"nope\"\n", "route[0].upstream", "nope", "no upstream named"),
        ("[[route]]\nhost = \"a.com:8080\"\nupstream = \"app\"\n", "route[0].host", "a.com", "not a host pattern"),
        ("[[route]]\npath_prefix = \"api\"\nupstream = \"app\"\n", "route[0].path_prefix", "path_prefix", "not a path pattern"),
        ("[[source]]\nname = \"l\"\ntype = \"list\"\nentries = [\"10.0.0.1/8\"]\n", "source[1].entries[0]", "10.0.0.1/8", "host bits"),
        ("[[source]]\nname = \"l\"\ntype = \"list\"\nentries = [\"10.0.0.0/33\"]\n", "source[1].entries[0]", "10.0.0.0/33", "not a CIDR"),
        ("[[source]]\nname = \"geoip\"\ntype = \"list\"\nentries = []\n", "source[1].name", "name = \"geoip\"\ntype = \"list", "duplicate source name"),
        ("[[source]]\nname = \"x\"\ntype = \"csv\"\npath = \"a\"\n", "source[1].type", "csv", "unknown value"),
        ("[[source]]\nname = \"x\"\ntype = \"mmdb\"\npath = \"a\"\nurl = \"http://h/a\"\ncache = \"c\"\n", "source[1]", "[[source]]\nname = \"x\"", "cannot be combined"),
        ("[[source]]\nname = \"x\"\ntype = \"mmdb\"\nurl = \"http://h/a\"\n", "source[1].cache", "http://h/a", "needs `cache`"),
        ("[[source]]\nname = \"x\"\ntype = \"mmdb\"\npath = \"a\"\ntimeout = \"1s\"\n", "source[1].timeout", "timeout", "only to a remote"),
        ("[[source]]\nname = \"x\"\ntype = \"mmdb\"\npath = \"a\"\nschema = \"custom\"\n", "source[1].fields", "custom", "needs `fields`"),
        ("[[source]]\nname = \"x\"\ntype = \"mmdb\"\npath = \"a\"\nfields = { country = \"c\" }\n", "source[1].fields", "fields", "only with schema"),
        ("[[source]]\nname = \"x\"\ntype = \"mmdb\"\npath = \"a\"\nset = { country = \"RU\" }\n", "source[1].set", "set =", "only to type = \"list\""),
        ("[[source]]\nname = \"x\"\ntype = \"list\"\nentries = []\nset = { country = \"RU\", subdivision = \"UA-43\" }\n", "source[1].set.subdivision", "UA-43", "not in country"),
        ("[[source]]\nname = \"x\"\ntype = \"ranges\"\npath = \"a\"\ncolumns = [\"start\", \"end\", \"country\", \"bogus\"]\n", "source[1].columns[3]", "bogus", "not a column"),
        ("[[source]]\nname = \"x\"\ntype = \"ranges\"\npath = \"a\"\ncolumns = [\"start\", \"country\"]\n", "source[1].columns", "columns =", "exactly one end column"),
        ("[[source]]\nname = \"x\"\ntype = \"ranges\"\npath = \"a\"\nlayout = \"weird\"\n", "source[1].layout", "weird", "unknown value"),
        ("[[source]]\nname = \"x\"\ntype = \"mmdb\"\npath = \"a\"\nlayout = \"asn\"\n", "source[1].layout", "layout =", "applies only to type = \"ranges\""),
        ("[[source]]\nname = \"x\"\ntype = \"list\"\nentries = []\nregion_names = \"all\"\n", "source[1].region_names", "region_names =", "applies only to databases"),
        ("[[source]]\nname = \"x\"\ntype = \"list\"\nentries = []\nset = { asn = \"AS-1\" }\n", "source[1].set.asn", "AS-1", "not an AS number"),
        ("[[listener]]\nname = \"p2\"\naddress = \"0.0.0.0:8080\"\n", "listener[1].address", "address = \"0.0.0.0:8080\"", "used by another listener"),
        ("[[listener]]\nname = \"p2\"\naddress = \"0.0.0.0:1\"\nclient_ip = { source = \"peer\", trusted = [\"10.0.0.0/8\"] }\n", "listener[1].client_ip.trusted", "client_ip", "no effect"),
        ("[[listener]]\nname = \"p2\"\naddress = \"0.0.0.0:1\"\nclient_ip = { source = \"forwarded\", trusted = [] }\n", "listener[1].client_ip.trusted", "client_ip", "trusting nobody"),
        ("[[listener]]\nname = \"p2\"\naddress = \"0.0.0.0:1\"\nclient_ip = { source = \"header\", trusted = [\"10.0.0.0/8\"] }\n", "listener[1].client_ip.header", "client_ip", "needs `header`"),
        ("[[listener]]\nname = \"p2\"\naddress = \"0.0.0.0:1\"\nclient_ip = { source = \"header:X-Real-IP\", trusted = [\"10.0.0.0/8\"] }\n", "listener[1].client_ip.source", "client_ip", "not a source"),
        ("[[listener]]\nname = \"p2\"\naddress = \"0.0.0.0:1\"\nclient_ip = { source = \"header\", header = \"Bad Header\", trusted = [\"10.0.0.0/8\"] }\n", "listener[1].client_ip.header", "client_ip", "not a valid header name"),
        ("[[listener]]\nname = \"p2\"\naddress = \"0.0.0.0:1\"\nclient_ip = { on_unresolved = \"drop\" }\n", "listener[1].client_ip.on_unresolved", "client_ip", "unknown value"),
        ("[[listener]]\nname = \"bad name\"\naddress = \"0.0.0.0:1\"\n", "listener[1].name", "bad name", "invalid name"),
        ("[policy]\ndefault = \"deny\"\n", "policy.default", "deny", "unknown value"),
        ("[policy]\ntag = [\"country\"]\n", "policy.tag", "tag =", "only with default"),
        ("[policy]\ndefault = \"tag\"\ntag = [\"city\"]\n", "policy.tag[0]", "city", "unknown value"),
        ("[policy]\ndefault = \"tag\"\ntag = []\n", "policy.tag", "tag = []", "is empty"),
        ("[policy]\ntag_headers = { country = \"X-A\", rule = \"x-a\" }\n", "policy.tag_headers.rule", "tag_headers", "used for two tags"),
        ("[policy]\ntag_headers = { country = \"Host\" }\n", "policy.tag_headers.country", "tag_headers", "cannot be a tag header"),
        ("[policy.block]\nstatus = 302\n", "policy.block.status", "status", "not allowed here"),
        ("[policy.block]\nstatus = 200\n", "policy.block.status", "status", "not allowed here"),
        ("[policy.block]\nredirect = \"/x\"\nredirect_status = 404\n", "policy.block.redirect_status", "redirect_status", "not allowed here"),
        ("[policy.block]\nredirect_status = 302\n", "policy.block.redirect_status", "redirect_status", "without `redirect`"),
        ("[policy.block]\nredirect = \"javascript:alert(1)\"\n", "policy.block.redirect", "javascript", "not a redirect target"),
        ("[policy.block]\nhtml_body = \"x\"\nhtml_file = \"y.html\"\n", "policy.block.html_file", "html_file", "cannot be combined"),
        ("[policy.block]\nhtml_file = \"does-not-exist.html\"\n", "policy.block.html_file", "html_file", "cannot read"),
        ("[[rule]]\naction = \"block\"\n", "rule[0].name", "[[rule]]", "missing `name`"),
        ("[[rule]]\nname = \"r\"\n", "rule[0].action", "[[rule]]", "missing `action`"),
        ("[[rule]]\nname = \"r\"\naction = \"block\"\nsubdivisions = [\"UA43\"]\n", "rule[0].subdivisions[0]", "UA43", "not a subdivision"),
        ("[[rule]]\nname = \"r\"\naction = \"block\"\nregistered_countries = [\"1A\"]\n", "rule[0].registered_countries[0]", "1A", "not a country"),
        ("[[rule]]\nname = \"r\"\naction = \"block\"\nlists = [\"geoip\"]\n", "rule[0].lists[0]", "lists", "is not a list"),
        ("[[rule]]\nname = \"r\"\naction = \"block\"\nmethods = [\"post\"]\n", "rule[0].methods[0]", "post", "not an HTTP method"),
        ("[[rule]]\nname = \"r\"\naction = \"block\"\nhosts = [\"a.*.com\"]\n", "rule[0].hosts[0]", "a.*.com", "not a host pattern"),
        ("[[rule]]\nname = \"r\"\naction = \"block\"\npaths = [\"/a?b=1\"]\n", "rule[0].paths[0]", "/a?b", "not a path pattern"),
        ("[[rule]]\nname = \"r\"\naction = \"allow\"\ntag = [\"country\"]\n", "rule[0].tag", "tag =", "only to action = \"tag\""),
        ("[[rule]]\nname = \"r\"\naction = \"tag\"\nstatus = 403\n", "rule[0]", "status", "only to action = \"block\""),
        ("[[rule]]\nname = \"r\"\naction = \"block\"\n[[rule]]\nname = \"s\"\naction = \"allow\"\n", "rule[1]", "[[rule]]\nname = \"s\"", "unreachable"),
        ("[[rule]]\nname = \"r\"\naction = \"block\"\ncountries = [\"RU\"]\n[[rule]]\nname = \"r\"\naction = \"allow\"\n", "rule[1].name", "name = \"r\"\naction = \"allow\"", "duplicate rule name"),
        ("[limits]\nmax_header_bytes = 1024\n", "limits.max_header_bytes", "max_header_bytes", "out of range"),
        ("[limits]\nmax_h2_streams = 70000\n", "limits.max_h2_streams", "max_h2_streams", "out of range"),
        ("[limits]\nmax_connections = -1\n", "limits.max_connections", "max_connections", "out of range"),
        ("[limits]\nidle_timeout = \"0s\"\n", "limits.idle_timeout", "idle_timeout", "greater than zero"),
        ("[reload]\nmax_network_drop_percent = 120.0\n", "reload.max_network_drop_percent", "max_network", "not a percentage"),
        ("[reload]\non_no_data = \"ignore\"\n", "reload.on_no_data", "on_no_data", "unknown value"),
        ("[reload]\ncompile_cpu_share = 0.0\n", "reload.compile_cpu_share", "compile_cpu_share", "not a share"),
        ("[reload]\ncompile_cpu_share = 1.5\n", "reload.compile_cpu_share", "compile_cpu_share", "not a share"),
        ("[reload]\ncheck_interval = \"0s\"\n", "reload.check_interval", "check_interval", "greater than zero"),
        ("[access_log]\nsample = 1.5\n", "access_log.sample", "sample", "not a fraction"),
    ];
    for (extra, key, needle, fragment) in cases {
        let text = with(extra);
        let e = errs(&text);
        assert_eq!(e.len(), 1, "for {extra:?}:\n{e}");
        let e = &e.errors()[0];
        assert_eq!(e.key, *key, "for {extra:?}: {e}");
        assert!(e.message.contains(fragment), "for {extra:?}: {e}");
        // The needle may span lines: its first line is where the error must point.
        let needle_at = text.rfind(needle).unwrap_or_else(|| panic!("{needle:?} not in {text}"));
        let line = text[..needle_at].matches('\n').count() + 1;
        assert_eq!(e.position.map(|p| p.line), Some(line), "for {extra:?}: {e}");
        assert!(e.hint.is_some() || e.message.contains("applies only"), "no hint for {extra:?}: {e}");
    }
}

#[test]
fn missing_sections() {
    let e = match parse("", None) {
        Err(e) => e,
        Ok(_) => panic!("empty file accepted"),
    };
    let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, vec!["listener", "upstream", "source"], "{e}");
    assert!(e.to_string().starts_with("<config>: listener: no [[listener]] defined"), "{e}");
}

#[test]
fn at_most_64_lists() {
    let mut text = MINIMAL.to_owned();
    for i in 0..65 {
        text.push_str(&format!("[[source]]\nname = \"l{i}\"\ntype = \"list\"\nentries = []\n"));
    }
    let e = errs(&text);
    assert_eq!(e.len(), 1, "{e}");
    assert!(e.errors()[0].message.contains("more than 64"), "{e}");
    assert_eq!(e.errors()[0].key, "source[65]");
}

#[test]
fn tag_header_may_not_be_the_client_ip_header() {
    let text = MINIMAL.replace(
        "address = \"0.0.0.0:8080\"\n",
        "address = \"0.0.0.0:8080\"\nclient_ip = { source = \"header\", header = \"X-Geo-Country\", trusted = [\"10.0.0.0/8\"] }\n",
    );
    let e = errs(&text);
    assert_eq!(e.errors()[0].key, "policy.tag_headers.country", "{e}");
    assert_eq!(e.errors()[0].position, None, "a default has no position: {e}");
    assert!(e.errors()[0].message.contains("client-IP header"), "{e}");
}

#[test]
fn dry_run_rules_do_not_make_later_rules_unreachable() {
    let c = ok(&with(
        "[[rule]]\nname = \"everything\"\naction = \"block\"\ndry_run = true\n[[rule]]\nname = \"b\"\naction = \"allow\"\ncountries = [\"DE\"]\n",
    ));
    assert_eq!(c.policy.rules.len(), 2);
}

#[test]
fn too_many_dry_run_rules() {
    let mut text = MINIMAL.to_owned();
    for i in 0..65 {
        text.push_str(&format!("[[rule]]\nname = \"r{i}\"\naction = \"block\"\ndry_run = true\n"));
    }
    let e = errs(&text);
    assert_eq!(e.len(), 1, "{e}");
    assert_eq!(e.errors()[0].key, "rule[64].dry_run");
}

// --- paths ---

#[test]
fn relative_paths_resolve_against_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("blocked.html"), "<p>nope</p>").unwrap();
    let text = with(
        "[[source]]\nname = \"l\"\ntype = \"list\"\npath = \"lists/l.txt\"\n[[source]]\nname = \"abs\"\ntype = \"list\"\npath = \"/srv/abs.txt\"\n[policy.block]\nhtml_file = \"blocked.html\"\n",
    );
    let file = dir.path().join("geogate.toml");
    std::fs::write(&file, &text).unwrap();
    let c = load(&file).unwrap();
    assert_eq!(c.origin.as_deref(), Some(file.as_path()));
    let SourceKind::Mmdb { location: Location::Path(db), .. } = &c.sources[0].kind else { panic!() };
    assert_eq!(db, &dir.path().join("geo.mmdb"));
    let SourceKind::List { location: ListLocation::File(Location::Path(l)), .. } = &c.sources[1].kind else { panic!() };
    assert_eq!(l, &dir.path().join("lists/l.txt"));
    let SourceKind::List { location: ListLocation::File(Location::Path(a)), .. } = &c.sources[2].kind else { panic!() };
    assert_eq!(a, Path::new("/srv/abs.txt"));
    assert_eq!(c.policy.block.html_body, "<p>nope</p>");

    // Without a file, paths stay as written (relative to the working directory).
    let c = ok(MINIMAL);
    let SourceKind::Mmdb { location: Location::Path(db), .. } = &c.sources[0].kind else { panic!() };
    assert_eq!(db, Path::new("geo.mmdb"));
    // A bare file name resolves against ".".
    let c = parse(MINIMAL, Some(Path::new("geogate.toml"))).unwrap();
    let SourceKind::Mmdb { location: Location::Path(db), .. } = &c.sources[0].kind else { panic!() };
    assert_eq!(db, Path::new("./geo.mmdb"));
}

#[test]
fn load_reports_unreadable_file() {
    let e = load(Path::new("/nonexistent/geogate.toml")).unwrap_err();
    assert_eq!(e.len(), 1);
    assert!(e.to_string().starts_with("/nonexistent/geogate.toml: cannot read"), "{e}");
}

// --- durations ---

#[test]
fn durations() {
    for (text, want) in [
        ("0ms", Duration::ZERO),
        ("500ms", Duration::from_millis(500)),
        ("10s", Duration::from_secs(10)),
        ("5m", Duration::from_secs(300)),
        ("1h", Duration::from_secs(3600)),
        ("007s", Duration::from_secs(7)),
        ("18446744073709551615ms", Duration::from_millis(u64::MAX)),
    ] {
        assert_eq!(parse_duration(text), Ok(want), "{text}");
    }
    for bad in [
        "",
        "10",
        "s",
        "1.5s",
        "-1s",
        "+1s",
        " 1s",
        "1s ",
        "1 s",
        "1S",
        "1M",
        "1h30m",
        "1d",
        "1us",
        "1sec",
        "1min",
        "ms",
        "18446744073709551616s",
        "307445734561825861m",
        "5124095576030432h",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
    }
    assert!(matches!(parse_duration("10"), Err(DurationError::NoUnit(_))));
    assert!(matches!(parse_duration("1h30m"), Err(DurationError::BadUnit(_))));
    assert!(duration::hint("10").contains("\"10s\""));
    assert!(duration::hint("1.5s").contains("1500ms"));
}

// --- command-line helpers ---

#[test]
fn cli_helpers() {
    let c = defaults()
        .with_listen(parse_listen_arg("127.0.0.1:9000").unwrap())
        .with_upstream(parse_upstream_arg("http://127.0.0.1:4000").unwrap());
    assert_eq!(c.listeners.len(), 1);
    assert_eq!(c.listeners[0].address, "127.0.0.1:9000".parse().unwrap());
    assert_eq!(c.upstreams[0].url, "http://127.0.0.1:4000");
    assert!(parse_listen_arg("localhost:80").is_err());
    assert!(parse_upstream_arg("https://x").is_err());
    assert!(parse_upstream_arg("http://x/path").is_err());

    assert_eq!(parse_list_arg("partners=lists/p.txt").unwrap(), ("partners".to_owned(), PathBuf::from("lists/p.txt")));
    for bad in ["partners", "=x", "p=", "bad name=x"] {
        assert!(parse_list_arg(bad).is_err(), "{bad}");
    }

    let db = |p: &str, format| DbArg { path: PathBuf::from(p), format };
    let c = Config::from_sources(
        &[
            db("dir/a.mmdb", DbFormat::Mmdb),
            db("b.mmdb", DbFormat::Mmdb),
            db("other/a.mmdb", DbFormat::Mmdb),
            db("asn-ipv4.csv.gz", DbFormat::Ranges),
            db("weird name!.mmdb", DbFormat::Mmdb),
        ],
        &[("p".to_owned(), PathBuf::from("p.txt"))],
    )
    .unwrap();
    let names: Vec<&str> = c.sources.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["a", "b", "a-2", "asn-ipv4", "weird_name_", "p"]);
    assert!(matches!(c.sources[3].kind, SourceKind::Ranges { .. }));
    assert_eq!(c.list_names(), vec!["p".to_owned()]);
    assert!(Config::from_sources(&[], &[]).is_err());
    assert!(Config::from_sources(&[], &[("p".into(), "a".into()), ("p".into(), "b".into())]).is_err());
}

// --- shipped examples ---

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn deploy_example_loads_and_compiles() {
    let c = load(&repo("deploy/examples/geogate.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.list_names(), vec!["occupied-regions".to_owned(), "partners".to_owned()]);
    let SourceKind::Mmdb { location: Location::Path(db), .. } = &c.sources[0].kind else { panic!() };
    assert!(db.exists(), "{} missing", db.display());
    for s in &c.sources {
        if let SourceKind::List { location: ListLocation::File(Location::Path(p)), .. } = &s.kind {
            assert!(p.exists(), "{} missing", p.display());
        }
    }
    assert_eq!(c.policy.rules[0].action, ActionConfig::Allow);
    crate::policy::compile(&c.policy, &c.list_names()).unwrap();
}

#[test]
fn bench_config_has_the_expected_shape() {
    let c = load(&repo("benches/compare/geogate.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.listeners.len(), 1);
    assert_eq!(c.listeners[0].address, "127.0.0.1:18083".parse().unwrap());
    assert_eq!(c.listeners[0].client_ip.source, ClientIpSource::XForwardedFor);
    assert_eq!(c.listeners[0].client_ip.trusted, vec!["127.0.0.1/32".parse::<ipnet::IpNet>().unwrap()]);
    assert_eq!(c.upstreams.len(), 1);
    assert_eq!(c.upstreams[0].url, "http://127.0.0.1:18080");
    assert_eq!(c.server.worker_threads.map(|n| n.get()), Some(1));
    assert_eq!(c.admin.address, Some("127.0.0.1:9901".parse().unwrap()));
    assert!(!c.access_log.enabled);
    assert_eq!(c.policy.default_action, ActionConfig::Tag(vec![TagKind::Country]));
    assert_eq!(c.policy.rules.len(), 1);
    let r = &c.policy.rules[0];
    assert_eq!(r.action, ActionConfig::Block);
    assert_eq!(r.matcher.countries, vec![CountryCode::parse("RU").unwrap(), CountryCode::parse("BY").unwrap()]);
    assert_eq!(c.policy.block.status.as_u16(), 451);
    let SourceKind::Mmdb { location: Location::Path(db), .. } = &c.sources[0].kind else { panic!() };
    assert!(db.exists(), "{} missing", db.display());
    crate::policy::compile(&c.policy, &c.list_names()).unwrap();
}

/// The reference in the module doc is the source of the configuration reference in
/// docs/configuration.md (which .ci/check_deploy_refs.py checks against src/config/file.rs): it
/// must stay a valid configuration.
#[test]
fn module_doc_reference_is_valid() {
    let src = include_str!("../config.rs");
    let mut block = String::new();
    let mut inside = false;
    for line in src.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            continue;
        };
        let doc = doc.strip_prefix(' ').unwrap_or(doc);
        match (inside, doc.trim()) {
            (false, "```toml") => inside = true,
            (true, "```") => break,
            (true, _) => {
                block.push_str(doc);
                block.push('\n');
            }
            _ => {}
        }
    }
    assert!(block.contains("[[rule]]"), "reference block not found");
    let c = parse(&block, None).unwrap_or_else(|e| panic!("{e}\n---\n{block}"));
    crate::policy::compile(&c.policy, &c.list_names()).unwrap();
}

#[test]
fn grpc_block_answer_defaults_and_overrides() {
    let c = ok(&with(
        "[policy.block]\ngrpc_message = \"no\"\n\n[[rule]]\nname = \"r\"\naction = \"block\"\ncountries = [\"RU\"]\ngrpc_status = 14\n",
    ));
    assert_eq!((c.policy.block.grpc_status, c.policy.block.grpc_message.as_str()), (7, "no"));
    let rule = c.policy.rules[0].block.as_ref().unwrap();
    assert_eq!((rule.grpc_status, rule.grpc_message.as_str()), (14, "no"), "the rest from [policy.block]");
    for bad in ["0", "17", "-1"] {
        let text = with(&format!("[policy.block]\ngrpc_status = {bad}\n"));
        let e = one_err(&text, "policy.block.grpc_status", line_of(&text, "grpc_status"));
        assert!(e.hint.unwrap().contains("1 to 16"));
    }
    let text = with("[[rule]]\nname = \"r\"\naction = \"allow\"\ngrpc_message = \"x\"\n");
    one_err(&text, "rule[0]", line_of(&text, "grpc_message"));
}

#[test]
fn upstream_protocols_and_schemes() {
    let up = |url: &str, protocol: &str| {
        ok(&format!(
            "[[listener]]\nname = \"p\"\naddress = \"0.0.0.0:1\"\n[[upstream]]\nname = \"a\"\nurl = \"{url}\"\nprotocol = \"{protocol}\"\n[[source]]\nname = \"g\"\ntype = \"mmdb\"\npath = \"g.mmdb\"\n"
        ))
        .upstreams
        .remove(0)
    };
    let u = up("http://127.0.0.1:3000", "auto");
    assert_eq!((u.protocol, u.tls), (UpstreamProtocol::Http1, None), "auto on cleartext is HTTP/1.1");
    assert_eq!(up("http://127.0.0.1:3000", "h2c").protocol, UpstreamProtocol::H2c);
    let u = up("https://app.internal", "auto");
    assert_eq!((u.protocol, u.tls), (UpstreamProtocol::Auto, Some(UpstreamTlsConfig::default())));
    assert_eq!(up("https://app.internal", "h2").protocol, UpstreamProtocol::H2);
    let text = with("[[upstream]]\nname = \"b\"\nurl = \"http://127.0.0.1:1\"\nprotocol = \"h3\"\n");
    one_err(&text, "upstream[1].protocol", line_of(&text, "h3"));
}
