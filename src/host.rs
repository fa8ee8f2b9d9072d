//! Host values (`Host` headers, URI authorities, `default_host`): which are valid, and the one
//! canonical form geogate judges and forwards.
//!
//! Pure and allocation-light; used by `config` (to check `default_host`) and by the proxy (to
//! decide each request's host, see `proxy::authority`). A `Host` header value that is already
//! canonical (the usual case) is kept as it is, a reference-counted clone; otherwise the
//! canonical form takes one allocation.
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

use bytes::Bytes;
use http::HeaderValue;

/// A valid host in canonical form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// The canonical `host[:port]`, ready to be forwarded as the `Host` header.
    value: HeaderValue,
    /// Length of the name part of `value`.
    name_len: usize,
}

impl Host {
    /// Lower-case name or address, no port, no trailing dot.
    pub fn name(&self) -> &str {
        self.header().get(..self.name_len).unwrap_or_default()
    }

    /// `name` plus `:port` when one was given: the `Host` header forwarded.
    pub fn header(&self) -> &str {
        // Always visible ASCII: built from checked bytes only.
        self.value.to_str().unwrap_or_default()
    }

    /// [`Host::header`] as a header value.
    pub fn value(&self) -> &HeaderValue {
        &self.value
    }
}

/// Parses and canonicalises `host[:port]`; `None` when it is not a valid host.
pub fn canonical(raw: &[u8]) -> Option<Host> {
    canonicalise(raw, None)
}

/// [`canonical`] for a header value: when the value is already canonical, the `Host` holds
/// (a clone of) that value and nothing is allocated.
pub fn canonical_value(value: &HeaderValue) -> Option<Host> {
    canonicalise(value.as_bytes(), Some(value))
}

fn canonicalise(raw: &[u8], original: Option<&HeaderValue>) -> Option<Host> {
    let (name, port) = split_port(raw)?;
    // The port as `u16` formatting writes it: no leading zeros (already at most 65535).
    let port = port.map(|digits| {
        let zeros = digits.iter().take(digits.len() - 1).take_while(|&&d| d == b'0').count();
        &digits[zeros..]
    });
    if let Some(inner) = name.strip_prefix(b"[") {
        let inner = inner.strip_suffix(b"]")?;
        let v6: Ipv6Addr = std::str::from_utf8(inner).ok()?.parse().ok()?;
        let mut text = format!("[{v6}]");
        let name_len = text.len();
        if let Some(p) = port {
            text.push(':');
            // Checked digits.
            text.push_str(std::str::from_utf8(p).ok()?);
        }
        let value = HeaderValue::from_maybe_shared(Bytes::from(text.into_bytes().into_boxed_slice())).ok()?;
        return Some(Host { value, name_len });
    }
    let dot = name.last() == Some(&b'.');
    let name = if dot { &name[..name.len() - 1] } else { name };
    let ok = !name.is_empty()
        && name.len() <= 253
        && name[0] != b'.'
        && !name.windows(2).any(|w| w == b"..")
        && name.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !ok {
        return None;
    }
    let already =
        !dot && !name.iter().any(u8::is_ascii_uppercase) && port.is_none_or(|p| p.len() + 1 == raw.len() - name.len());
    if let (true, Some(original)) = (already, original) {
        return Some(Host { value: original.clone(), name_len: name.len() });
    }
    // Exactly the capacity needed, so the bytes become the header value without a copy.
    let mut text = Vec::with_capacity(name.len() + port.map_or(0, |p| p.len() + 1));
    text.extend(name.iter().map(u8::to_ascii_lowercase));
    if let Some(p) = port {
        text.push(b':');
        text.extend_from_slice(p);
    }
    let value = HeaderValue::from_maybe_shared(Bytes::from(text)).ok()?;
    Some(Host { value, name_len: name.len() })
}

/// `(name, port digits)`; `None` for an invalid port.
fn split_port(raw: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
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
    u16::try_from(port).ok()?;
    Some((&raw[..colon], Some(digits)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Option<(String, String)> {
        let h = canonical(s.as_bytes()).map(|h| (h.name().to_owned(), h.header().to_owned()));
        // A header value gives the same host, and keeps the value itself when it is canonical.
        if let Ok(v) = HeaderValue::from_str(s) {
            let from_value = canonical_value(&v);
            assert_eq!(from_value.as_ref().map(|h| (h.name().to_owned(), h.header().to_owned())), h, "{s:?}");
            if let (Some(from_value), false) = (from_value, s.starts_with('[')) {
                let kept = from_value.header().as_ptr() == v.as_bytes().as_ptr();
                assert_eq!(kept, from_value.header() == s, "{s:?}");
            }
        }
        h
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
        assert_eq!(c("a.example:0080"), s("a.example", "a.example:80"));
        assert_eq!(c("a.example:00"), s("a.example", "a.example:0"));
        assert_eq!(c("a.example:0"), s("a.example", "a.example:0"));
        assert_eq!(c("a.example.:65535"), s("a.example", "a.example:65535"));
        assert_eq!(c("[::1]:0443"), s("[::1]", "[::1]:443"));
        assert_eq!(c("[::0001]"), s("[::1]", "[::1]"));
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
