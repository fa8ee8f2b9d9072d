//! `config::parse` on any text never panics; a configuration it accepts compiles into a policy
//! (the checker promises that nothing above it re-validates), and the compiled policy decides
//! and explains a few requests consistently.
#![no_main]

use geogate::geo::{Answer, CountryCode, GeoRecord, ListSet, OwnedAnswer};
use geogate::policy::{compile, RequestFacts};
use http::Method;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // `html_file` makes the checker read a file: keep the fuzzer off the filesystem (a path
    // such as /dev/zero would only measure the machine's memory). See README.md.
    if text.contains("html_file") {
        return;
    }
    let cfg = match geogate::config::parse(&text, None) {
        Ok(cfg) => cfg,
        Err(errors) => {
            let _ = errors.to_string();
            return;
        }
    };
    let policy = match compile(&cfg.policy, &cfg.list_names()) {
        Ok(p) => p,
        Err(e) => panic!("a checked configuration does not compile: {e}"),
    };
    // Source 0 says RU, both layered and as its own view (what a rule's `view` tests).
    let mut ru = OwnedAnswer::new(GeoRecord { country: CountryCode::parse("RU"), ..GeoRecord::default() });
    ru.lists = ListSet(u64::MAX);
    ru.push_view(0, ru.geo.clone());
    let ru = ru.answer();
    let requests = [
        RequestFacts { host: Some("app.example.com:8443"), path: "/signup?x=1", method: &Method::POST },
        RequestFacts { host: None, path: "/%2e%2e/api/v1//accounts/", method: &Method::GET },
        RequestFacts { host: Some("[::1]:80"), path: "", method: &Method::OPTIONS },
    ];
    for req in &requests {
        for answer in [None, Some(&ru), Some(&Answer::default())] {
            let verdict = policy.decide(req, answer);
            let explanation = policy.explain(req, answer);
            assert_eq!(verdict, explanation.verdict, "decide and explain disagree for {req:?}");
            if let Some(rule) = verdict.rule {
                assert!(policy.rule_name(rule).is_some());
            }
        }
    }
});
