// Tests may panic on a broken expectation; that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;

use super::*;
use crate::config::PathMatch;
use crate::policy::pattern::PathPattern;

fn framework(pattern: &str, path: &str) -> bool {
    PathPattern::new(pattern).matches_readings(&PathReadings::new(path), PathMatch::Framework)
}

fn strict(pattern: &str, path: &str) -> bool {
    PathPattern::new(pattern).matches_readings(&PathReadings::new(path), PathMatch::Strict)
}

#[test]
fn framework_readings_catch_what_frameworks_route_to_the_path() {
    for (pattern, path) in [
        // Format suffixes (Rails, Spring MVC before 5.3), any case, on the last segment.
        ("/signup", "/signup.json"),
        ("/signup", "/SIGNUP.JSON"),
        ("/signup", "/signup.xml"),
        ("/signup", "/signup.tar.gz"),
        ("/api/v1/accounts", "/api/v1/accounts.json"),
        ("/api/v1/accounts", "/api/v1/accounts.XML"),
        ("/api/v1/accounts", "/api/v1/%61ccounts.json"),
        ("/api/v1/accounts", "/api/v1/accounts.json?x=1"),
        ("/api/v1/accounts", "/api/v1/accounts;format=json"),
        // Trailing dots and spaces that Windows-backed servers drop.
        ("/signup", "/signup."),
        ("/signup", "/signup.."),
        ("/signup", "/signup%20"),
        ("/signup", "/signup%20/"),
        ("/signup", "/signup%20%20."),
        ("/signup", "/signup.json."),
        ("/signup", "/signup%20.json"),
        ("/api/v1/accounts", "/api./v1%20/accounts"),
        // Unicode compatibility forms folded by NFKC-normalising stacks.
        ("/signup", "/%EF%BD%93%EF%BD%89%EF%BD%87%EF%BD%8E%EF%BD%95%EF%BD%90"),
        ("/signup", "/%C5%BFignup"),
        ("/signup", "/signup%E2%80%A4json"),
        // Cut at a decoded delimiter (listeners that let them through).
        ("/signup", "/signup%3Fx=1"),
        ("/signup", "/signup%23frag"),
        ("/signup", "/signup%253Fx"),
        // Dot segments kept as names, for routers that never resolve them (`/signup/<rest>`
        // routes in Flask, Django, Express and Rails match `/signup/..`).
        ("/signup", "/signup/.."),
        ("/signup", "/signup/../"),
        ("/signup", "/signup/%2e%2e"),
        ("/signup", "/signup/.%2e/public"),
        ("/signup", "/signup/."),
        ("/api/v1/accounts", "/api/v1/accounts/../public"),
        // The strict reading is always one of them.
        ("/signup", "/SignUp"),
        ("/signup", "//signup/./"),
        ("/signup", "/x/../signup"),
        ("/robots.txt", "/robots.txt"),
        ("/api/*/accounts", "/api/v2/accounts.json"),
    ] {
        assert!(framework(pattern, path), "{path:?} dodged {pattern:?}: {:?}", PathReadings::new(path));
    }
}

#[test]
fn framework_readings_leave_different_resources_alone() {
    for (pattern, path) in [
        ("/signup", "/signups"),
        ("/signup", "/signup-help"),
        ("/signup", "/signups.json"),
        ("/signup", "/signupx.json"),
        ("/signup", "/sign"),
        ("/signup", "/.signup"),
        ("/signup", "/x/signup"),
        ("/signup", "/sign%20up"),
        ("/api/v1/accounts", "/api/v1/accountsettings"),
        ("/api/v1/accounts", "/api/v1/accounts2"),
        ("/api/v1/accounts", "/api/v1/accounts-export.json"),
        ("/api/v1/accounts", "/api/v1.json/accounts2"),
        ("/robots.txt", "/robots"),
    ] {
        assert!(!framework(pattern, path), "{path:?} matched {pattern:?}: {:?}", PathReadings::new(path));
    }
}

#[test]
fn strict_reading_matches_only_what_every_framework_reads_as_the_path() {
    for yes in ["/public", "/public/x", "//public", "/public;jsessionid=1", "/public/", "/public/x.json"] {
        assert!(strict("/public", yes), "{yes}");
    }
    for no in [
        "/PUBLIC",
        "/Public/x",
        "/public.json",
        "/public.",
        "/public%20",
        "/publicx",
        "/%EF%BD%90ublic",
        // Routers that keep dot segments read these as below /x or /signup, not /public.
        "/x/../public",
        "/signup/../public",
        "/signup/%2e%2e/public/x",
    ] {
        assert!(!strict("/public", no), "{no}");
        assert!(!strict("/public", no) || framework("/public", no));
    }
}

#[test]
fn ordinary_paths_read_once_without_allocating() {
    let r = PathReadings::new("/api/v1/accounts");
    assert!(matches!(r.strict, Cow::Borrowed(_)));
    assert_eq!(r.all().count(), 1);
    let r = PathReadings::new("/signup.json");
    assert_eq!(r.all().collect::<Vec<_>>(), ["/signup.json", "/signup"]);
    let r = PathReadings::new("/signup/../x");
    assert_eq!(r.all().collect::<Vec<_>>(), ["/x", "/signup/../x"]);
}

#[test]
fn screen_refuses_forms_without_a_single_reading() {
    use PathRefusal::*;
    for (path, why) in [
        ("/signup%00", Control),
        ("/signup%00.json", Control),
        ("/signup%0a", Control),
        ("/signup%0d%0a", Control),
        ("/signup%09", Control),
        ("/signup%0B", Control),
        ("/signup%7f", Control),
        ("/signup%2500", Control),
        ("/signup%23", EncodedDelimiter),
        ("/signup%23x", EncodedDelimiter),
        ("/signup%3F", EncodedDelimiter),
        ("/signup%3fx=1", EncodedDelimiter),
        ("/signup%253F", EncodedDelimiter),
        ("/%c0%afsignup", InvalidUtf8),
        ("/%c0%ae%c0%ae/signup", InvalidUtf8),
        ("/signup%ff", InvalidUtf8),
        ("/signup%e2%82", InvalidUtf8),
        ("/x%ef%bc%8fsignup", AmbiguousUnicode),
        ("/x%ef%bc%bcsignup", AmbiguousUnicode),
        ("/signup%ef%bc%9f", AmbiguousUnicode),
        ("/signup%ef%bc%83", AmbiguousUnicode),
    ] {
        assert_eq!(screen(path, EncodedDelimiters::Refuse), Err(why), "{path}");
    }
}

#[test]
fn screen_lets_ordinary_and_foldable_paths_through() {
    for path in [
        "/",
        "/signup",
        "/signup?next=%00",
        "/signup%20",
        "/caf%C3%A9",
        "/%EF%BD%93ignup",
        "/%2e%2e/signup",
        "/a%2Fb",
        "/100%",
        "/%zz",
        "*",
    ] {
        assert_eq!(screen(path, EncodedDelimiters::Refuse), Ok(()), "{path}");
    }
    assert_eq!(screen("/signup%23x", EncodedDelimiters::Allow), Ok(()));
    assert_eq!(screen("/signup%3F", EncodedDelimiters::Allow), Ok(()));
    // Allowing delimiters allows nothing else.
    assert_eq!(screen("/signup%00", EncodedDelimiters::Allow), Err(PathRefusal::Control));
}

proptest! {
    /// Framework matching reads at least as broadly as strict matching.
    #[test]
    fn framework_matching_covers_strict_matching(
        raw in "[/a-cA-C.;%?#\\\\2-5eEfF0 ]{0,24}|\\PC{0,16}",
        pattern in "/[a-c]{1,3}(/[a-c.*]{1,3}){0,2}",
    ) {
        prop_assert!(!strict(&pattern, &raw) || framework(&pattern, &raw));
    }

    /// Any format suffix on a path a rule covers is covered too, and no suffix makes a
    /// longer name match.
    #[test]
    fn format_suffixes_never_dodge_and_never_widen(
        name in "[a-z]{1,8}",
        extra in "[a-z0-9]{1,4}",
        ext in "[a-zA-Z0-9]{1,5}(\\.[a-z]{1,3})?",
    ) {
        let with_suffix = format!("/{name}.{ext}");
        let pattern = format!("/{name}");
        prop_assert!(framework(&pattern, &with_suffix));
        let other = format!("/{name}{extra}.{ext}");
        prop_assert!(!framework(&pattern, &other));
    }

    /// Readings and the screen are total: any text is a valid input.
    #[test]
    fn readings_and_screen_never_panic(raw in "\\PC{0,32}|[%0-9a-fA-F/.?#;\\\\ ]{0,32}") {
        let r = PathReadings::new(&raw);
        prop_assert!(r.all().all(|p| p.starts_with('/')));
        let _ = screen(&raw, EncodedDelimiters::Refuse);
    }
}
