//! Host values (`Host` headers, URI authorities, `default_host`): which are valid, and the one
//! canonical form geogate judges and forwards.
//!
//! Pure and allocation-light; used by `config` (to check `default_host`) and by the proxy (to
//! decide each request's host, see `proxy::authority`).
//!
//! # Accepted
//! - a registered name of letters, digits, `-`, `.`, `_` and `~` (RFC 3986 `unreserved`), at
//!   most 253 bytes, not starting with `.`; or an IPv4 address (the same characters); or an
//!   IPv6 literal in brackets (`[2001:db8::1]`, parsed by std);
//! - optionally `:port`, 1 to 5 digits, at most 65535.
//!
//! # Refused
//! Percent-encoding (`console%2eexample.com`: one stack decodes it, another does not), the
//! other sub-delimiters (`!$&'()*+,;=`), user info (`user@host`), whitespace, an empty name,
//! an empty port (`host:`), and anything else: a host a proxy cannot read one way only.
//!
//! # Canonical form
//! Lower-case, one trailing dot removed (`Console.Example.COM.:8080` is
//! `console.example.com:8080`). `name` is without the port (brackets kept for IPv6, as rule
//! patterns write it); `header` is what the upstream receives in `Host`.

use std::net::Ipv6Addr;

/// A valid host in canonical form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// Lower-case name or address, no port, no trailing dot.
    pub name: String,
    /// `name` plus `:port` when one was given: the `Host` header forwarded.
    pub header: String,
}

/// Parses and canonicalises `host[:port]`; `None` when it is not a valid host.
pub fn canonical(raw: &[u8]) -> Option<Host> {
    let (name, port) = split_port(raw)?;
    let name = if let Some(inner) = name.strip_prefix(b"[") {
        let inner = inner.strip_suffix(b"]")?;
        let v6: Ipv6Addr = std::str::from_utf8(inner).ok()?.parse().ok()?;
        format!("[{v6}]")
    } else {
        let name = name.strip_suffix(b".").unwrap_or(name);
        let ok = !name.is_empty()
            && name.len() <= 253
            && name[0] != b'.'
            && !name.windows(2).any(|w| w == b"..")
            && name.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if !ok {
            return None;
        }
        // Checked ASCII above.
        String::from_utf8(name.to_ascii_lowercase()).ok()?
    };
    let header = match port {
        Some(p) => format!("{name}:{p}"),
        None => name.clone(),
    };
    Some(Host { name, header })
}

/// `(name, port)`; `None` for an invalid port.
fn split_port(raw: &[u8]) -> Option<(&[u8], Option<u16>)> {
    let colon = if raw.first() == Some(&b'[') {
        let close = raw.iter().position(|&b| b == b']')?;
        match raw.get(close + 1) {
            None => return Some((raw, None)),
            Some(b':') => close + 1,
            Some(_) => return None,
        }
    } else {
        match raw.iter().position(|&b| b == b':') {
            None => return Some((raw, None)),
            Some(i) => i,
        }
    };
    let digits = &raw[colon + 1..];
    if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let port = digits.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    Some((&raw[..colon], Some(u16::try_from(port).ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Option<(String, String)> {
        canonical(s.as_bytes()).map(|h| (h.name, h.header))
    }

    #[test]
    fn valid_hosts_are_canonicalised() {
        let s = |a: &str, b: &str| Some((a.to_owned(), b.to_owned()));
        assert_eq!(c("Console.Example.COM"), s("console.example.com", "console.example.com"));
        assert_eq!(c("console.example.com.:8080"), s("console.example.com", "console.example.com:8080"));
        assert_eq!(c("127.0.0.1:80"), s("127.0.0.1", "127.0.0.1:80"));
        assert_eq!(c("[2001:DB8::1]:443"), s("[2001:db8::1]", "[2001:db8::1]:443"));
        assert_eq!(c("[::1]"), s("[::1]", "[::1]"));
        assert_eq!(c("my_host-1.internal"), s("my_host-1.internal", "my_host-1.internal"));
    }

    #[test]
    fn ambiguous_or_invalid_hosts_are_refused() {
        for bad in [
            "",
            ".",
            "console%2eexample.com",
            "console.example.com:",
            "console.example.com:65536",
            "console.example.com:8o",
            "user@console.example.com",
            "console.example.com ",
            " console.example.com",
            "a,b",
            "a;b",
            "[::1",
            "[::1]x",
            "[not-v6]",
            "::1",
            ".example.com",
            "a..b:1:2",
            "a..b",
            "ex\u{e4}mple.com",
        ] {
            assert_eq!(c(bad), None, "{bad:?}");
        }
        assert_eq!(c(&"a".repeat(254)), None);
        assert!(c(&"a".repeat(253)).is_some());
    }
}
