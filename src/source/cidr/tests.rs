// Tests may unwrap: a failure should stop right there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn ok(text: &str) -> CidrList {
    match parse("t", "t.txt", text) {
        Ok(list) => list,
        Err(e) => panic!("{text:?}: {e}"),
    }
}

fn bad_lines(text: &str) -> Vec<LineError> {
    match parse("t", "t.txt", text) {
        Err(SourceError::List { origin, errors }) => {
            assert_eq!(origin, "t.txt");
            errors
        }
        other => panic!("{text:?}: expected list errors, got {other:?}"),
    }
}

fn net4(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn net6(s: &str) -> Ipv6Net {
    s.parse().unwrap()
}

#[test]
fn accepts_mixed_entries_comments_and_blank_lines() {
    let list = ok("# header\n\n10.0.0.0/8\n  192.0.2.1   # one host\n2001:db8::/32\n::1\n0.0.0.0/0\n");
    assert_eq!(list.v4, vec![net4("0.0.0.0/0"), net4("10.0.0.0/8"), net4("192.0.2.1/32")]);
    assert_eq!(list.v6, vec![net6("::1/128"), net6("2001:db8::/32")]);
    assert_eq!(list.provenance.kind, "list");
    assert_eq!(list.provenance.schema, "list");
    assert_eq!((list.provenance.networks_v4, list.provenance.networks_v6), (3, 2));
}

#[test]
fn accepts_bom_crlf_tabs_and_duplicates() {
    let list = ok("\u{feff}10.0.0.0/8\r\n10.0.0.0/8\r\n\t2001:db8::1\t\r\n");
    assert_eq!(list.v4, vec![net4("10.0.0.0/8")]);
    assert_eq!(list.v6, vec![net6("2001:db8::1/128")]);
}

#[test]
fn empty_text_is_an_empty_list() {
    let list = ok("");
    assert!(list.v4.is_empty() && list.v6.is_empty());
}

#[test]
fn canonicalises_ipv4_mapped_entries() {
    let list = ok("::ffff:192.0.2.0/120\n::ffff:10.1.2.3\n::ffff:0:0/96\n");
    assert_eq!(list.v4, vec![net4("0.0.0.0/0"), net4("10.1.2.3/32"), net4("192.0.2.0/24")]);
    assert!(list.v6.is_empty());
    // IPv4-compatible addresses are not canonicalised by lookups, so they stay IPv6.
    assert_eq!(ok("::192.0.2.1").v6, vec![net6("::c000:201/128")]);
}

#[test]
fn refuses_lenient_address_forms() {
    for text in [
        "010.0.0.1",
        "0x7f.0.0.1",
        "0x7f.1",
        "127.1",
        "2130706433",
        "fe80::1%eth0",
        "fe80::1%1/64",
        "1.2.3.4.5",
        "1.2.3.256",
        "1.2.3",
        " 1.2.3.4x",
        "[::1]",
        "::1::2",
        "10.0.0.0/8/8",
        "10.0.0.0/",
        "/8",
        "10.0.0.0/08",
        "10.0.0.0/+8",
        "10.0.0.0/-1",
        "10.0.0.0/33",
        "::/129",
        "10.0.0.0/0x8",
        "1.2.3.4 5.6.7.8",
        "1.2.3.4, 5.6.7.8",
        "1.2.3.4;",
        "10.0.0.0 /8",
        "１.2.3.4",
    ] {
        let errors = bad_lines(text);
        assert_eq!(errors.len(), 1, "{text:?}");
        assert_eq!(errors[0].line, 1);
        assert_eq!(errors[0].text, text);
    }
}

#[test]
fn host_bits_give_a_hint() {
    let errors = bad_lines("10.0.0.1/8\n2001:db8::1/32\n");
    assert!(errors[0].reason.contains("did you mean 10.0.0.0/8?"), "{errors:?}");
    assert!(errors[1].reason.contains("did you mean 2001:db8::/32?"), "{errors:?}");
    assert_eq!(errors[1].line, 2);
}

#[test]
fn mapped_prefix_shorter_than_96_is_refused() {
    let errors = bad_lines("::/80\n::ffff:0:0/95\n");
    assert_eq!(errors.len(), 2);
    assert!(errors[0].reason.contains("::ffff:0:0/96"), "{errors:?}");
}

#[test]
fn hints_name_the_mistake() {
    let reason = |t: &str| bad_lines(t).remove(0).reason;
    assert!(reason("010.0.0.1").contains("leading zero"));
    assert!(reason("127.1").contains("four parts"));
    assert!(reason("2130706433").contains("bare integer"));
    assert!(reason("fe80::1%eth0").contains("zone id"));
    assert!(reason("1.2.3.4 5.6.7.8").contains("one address or CIDR per line"));
    assert!(reason("10.0.0.0/33").contains("longer than /32"));
}

#[test]
fn collects_every_bad_line_with_its_number() {
    let text = "10.0.0.0/8\nnope\n# fine\n1.2.3.4/40\n\n2001:db8::/32\nalso bad # comment\n";
    let errors = bad_lines(text);
    let got: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.text.as_str())).collect();
    assert_eq!(got, vec![(2, "nope"), (4, "1.2.3.4/40"), (7, "also bad # comment")]);
    let msg = SourceError::List { origin: "t.txt".into(), errors }.to_string();
    assert!(msg.contains("t.txt") && msg.contains("line 4: \"1.2.3.4/40\""), "{msg}");
}

#[test]
fn inline_entries_number_by_index() {
    let entries: Vec<String> = ["10.0.0.0/8", "# c", "bad"].map(String::from).to_vec();
    match from_entries("inline-list", &entries) {
        Err(SourceError::List { origin, errors }) => {
            assert_eq!(origin, "inline");
            assert_eq!((errors[0].line, errors[0].text.as_str()), (3, "bad"));
        }
        other => panic!("{other:?}"),
    }
    let list = from_entries("l", &entries[..2]).unwrap();
    assert_eq!(list.provenance.origin, "inline");
    assert_eq!(list.v4, vec![net4("10.0.0.0/8")]);
}

#[test]
fn load_reports_missing_file_and_invalid_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.txt");
    let err = load("l", &missing).unwrap_err();
    assert!(err.to_string().contains("missing.txt"), "{err}");

    let path = dir.path().join("l.txt");
    std::fs::write(&path, b"10.0.0.0/8 # caf\xe9\n\xff\xfe\n").unwrap();
    match load("l", &path) {
        Err(SourceError::List { origin, errors }) => {
            assert!(origin.ends_with("l.txt"));
            assert_eq!(errors.len(), 1);
            assert_eq!(errors[0].line, 2);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn provenance_hashes_the_file_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.txt");
    std::fs::write(&path, "10.0.0.0/8\n").unwrap();
    let list = load("l", &path).unwrap();
    assert_eq!(list.provenance.bytes, 11);
    assert_eq!(list.provenance.sha256, sha256_hex(b"10.0.0.0/8\n"));
    assert_eq!(list.provenance.origin, path.display().to_string());
}

#[test]
fn long_garbage_lines_are_quoted_short() {
    let line = "x".repeat(500);
    let msg = bad_lines(&line)[0].to_string();
    assert!(msg.len() < 400, "{msg}");
}
