//! Checks a source's `maxmind = {...}`: edition, account, where the licence key is, the
//! service URL and the daily download cap. The key itself is never read here (see
//! [`MaxMindSource`]).

use super::*;

/// Most GETs a MaxMind source may be allowed a day: a paid account's whole daily allowance.
const MAX_DOWNLOADS_PER_DAY: u64 = 2000;

impl Checker<'_> {
    pub(super) fn maxmind(&mut self, key: &str, s: &FileSource, mm: &S<FileMaxMind>) -> Option<Location> {
        let k = |leaf: &str| format!("{key}.{leaf}");
        let mk = |leaf: &str| format!("{key}.maxmind.{leaf}");
        let m = mm.get_ref();
        let span = mm.span();
        let edition = self
            .required(&mk("edition"), &m.edition, span.clone(), r#"e.g. edition = "GeoLite2-City""#)
            .and_then(|e| {
                let name = e.get_ref();
                let ok = !name.is_empty()
                    && name.len() <= 64
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                if !ok {
                    self.at(
                        &mk("edition"),
                        e,
                        format!("`{name}` is not a MaxMind edition ID"),
                        "letters, digits and dashes, e.g. \"GeoLite2-City\", \"GeoLite2-ASN\", \"GeoIP2-Country\"",
                    );
                }
                ok.then(|| name.clone())
            });
        let account_id = self
            .required(
                &mk("account_id"),
                &m.account_id,
                span.clone(),
                "e.g. account_id = 123456 (maxmind.com, My Account)",
            )
            .and_then(|a| match u64::try_from(*a.get_ref()) {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    self.at(&mk("account_id"), a, format!("{} is not an account ID", a.get_ref()), "a positive number");
                    None
                }
            });
        let license_key = match (&m.license_key_file, &m.license_key_env) {
            (Some(f), None) => self.file_path(&mk("license_key_file"), f).map(LicenseKeyFrom::File),
            (None, Some(e)) => {
                let name = e.get_ref();
                let ok = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !ok {
                    self.at(
                        &mk("license_key_env"),
                        e,
                        format!("`{name}` is not an environment variable name"),
                        "letters, digits and `_`, e.g. \"MAXMIND_LICENSE_KEY\"",
                    );
                }
                ok.then(|| LicenseKeyFrom::Env(name.clone()))
            }
            (Some(_), Some(e)) => {
                self.at(
                    &mk("license_key_env"),
                    e,
                    "`license_key_file` and `license_key_env` cannot be combined".into(),
                    "give one of them",
                );
                None
            }
            (None, None) => {
                self.err(
                    &mk("license_key_file"),
                    Some(span.clone()),
                    "a MaxMind source needs `license_key_file` or `license_key_env`".into(),
                    r#"e.g. license_key_file = "/run/secrets/maxmind-license-key"; the key never goes in this file"#,
                );
                None
            }
        };
        let base = match &m.url {
            Some(u) => self.maxmind_base(&mk("url"), u),
            None => Some(DEFAULT_MAXMIND_URL.to_owned()),
        };
        let max_downloads_per_day = self.int(
            &mk("max_downloads_per_day"),
            &m.max_downloads_per_day,
            DEFAULT_MAXMIND_MAX_DOWNLOADS_PER_DAY,
            2,
            MAX_DOWNLOADS_PER_DAY,
        );
        let cache = match &s.cache {
            Some(c) => self.file_path(&k("cache"), c),
            None => {
                self.at(
                    &k("cache"),
                    mm,
                    "a MaxMind source needs `cache`".into(),
                    r#"e.g. cache = "/var/lib/geogate/GeoLite2-City.mmdb"; the last good copy serves while downloads fail"#,
                );
                None
            }
        };
        let poll_interval = self.duration(&k("poll_interval"), &s.poll_interval, DEFAULT_MAXMIND_POLL_INTERVAL, false);
        let timeout = self.duration(&k("timeout"), &s.timeout, DEFAULT_MAXMIND_TIMEOUT, false);
        let max_bytes = self.int(&k("max_bytes"), &s.max_bytes, DEFAULT_MAX_BYTES, 1, i64::MAX as u64);
        let (edition, base) = (edition?, base?);
        let permalink = |suffix: &str| -> Option<Uri> {
            Uri::from_str(&format!("{base}/geoip/databases/{edition}/download?suffix={suffix}")).ok()
        };
        let (url, checksum_url) = (permalink("tar.gz")?, permalink("tar.gz.sha256")?);
        Some(Location::Remote(RemoteSource {
            url,
            cache: cache?,
            poll_interval,
            timeout,
            max_bytes,
            maxmind: Some(Box::new(MaxMindSource {
                edition,
                account_id: account_id?,
                license_key: license_key?,
                checksum_url,
                max_downloads_per_day: u32::try_from(max_downloads_per_day).unwrap_or(u32::MAX),
            })),
        }))
    }

    /// The service's base URL: `https://` (or `http://` for a local mirror or stand-in), a host,
    /// optionally a path prefix, no query and no credentials. Returned without a trailing `/`.
    fn maxmind_base(&mut self, key: &str, v: &S<String>) -> Option<String> {
        let s = v.get_ref();
        let hint = r#"e.g. "https://download.maxmind.com" or a mirror such as "http://geoip-mirror.internal""#;
        let uri = match Uri::from_str(s) {
            Ok(u) => u,
            Err(e) => {
                self.at(key, v, format!("`{s}` is not a URL: {e}"), hint);
                return None;
            }
        };
        if !matches!(uri.scheme_str(), Some("https" | "http")) {
            self.at(key, v, format!("`{s}` is not an https:// or http:// URL"), hint);
            return None;
        }
        match uri.authority() {
            None => {
                self.at(key, v, format!("`{s}` has no host"), hint);
                return None;
            }
            Some(a) if a.as_str().contains('@') => {
                self.at(
                    key,
                    v,
                    // Not echoed: the user:password part may be the licence key.
                    "the URL carries credentials".into(),
                    "account_id and the licence key are sent as basic auth; remove the user:password@ part",
                );
                return None;
            }
            Some(_) => {}
        }
        if uri.query().is_some() {
            self.at(key, v, format!("`{s}` has a query"), "the edition's paths and query are appended to this base");
            return None;
        }
        Some(s.trim_end_matches('/').to_owned())
    }
}
