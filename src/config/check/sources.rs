//! Checks `[[source]]`: databases, range files and CIDR lists, with their schemas, layouts and `set` records.

use super::*;

impl<'a> Checker<'a> {
    pub(super) fn sources(&mut self, file: &[S<FileSource>]) -> (Vec<SourceConfig>, SourceNames) {
        if file.is_empty() {
            self.err(
                "source",
                None,
                "no [[source]] defined".into(),
                r#"add [[source]] with name = "geoip", type = "mmdb", path = "geoip/geo-whois-asn-country.mmdb""#,
            );
        }
        if file.len() > usize::from(u16::MAX) {
            self.err("source", None, "too many sources".into(), "use at most 65535");
        }
        let mut seen = HashSet::new();
        let mut names = SourceNames { all: Vec::new(), lists: Vec::new(), databases: Vec::new() };
        let mut out = Vec::new();
        for (i, s) in file.iter().enumerate() {
            let key = format!("source[{i}]");
            let span = s.span();
            let s = s.get_ref();
            let k = |leaf: &str| format!("{key}.{leaf}");
            let name = match self.required(&k("name"), &s.name, span.clone(), r#"e.g. name = "geoip""#) {
                Some(n) => self.name(&k("name"), n, &mut seen, "source"),
                None => String::new(),
            };
            #[derive(Clone, Copy, PartialEq)]
            enum T {
                Mmdb,
                List,
                Ranges,
            }
            let kind = match self.required(
                &k("type"),
                &s.kind,
                span.clone(),
                r#"type = "mmdb", type = "ranges" or type = "list""#,
            ) {
                Some(t) => self.one_of(&k("type"), t, &[("mmdb", T::Mmdb), ("list", T::List), ("ranges", T::Ranges)]),
                None => None,
            };
            let is_list = kind.map(|t| t == T::List);
            if kind != Some(T::Ranges) {
                for (leaf, v) in [("layout", &s.layout), ("delimiter", &s.delimiter)] {
                    if let Some(v) = v {
                        self.at(&k(leaf), v, format!("`{leaf}` applies only to type = \"ranges\""), "");
                    }
                }
                if let Some(v) = &s.columns {
                    self.at(&k("columns"), v, "`columns` applies only to type = \"ranges\"".into(), "");
                }
            }
            // Where the data comes from: exactly one of path, url (and, for lists, entries).
            let given: Vec<&str> = [
                ("path", s.path.is_some()),
                ("url", s.url.is_some()),
                ("entries", s.entries.is_some()),
                ("maxmind", s.maxmind.is_some()),
            ]
            .iter()
            .filter(|(_, g)| *g)
            .map(|(n, _)| *n)
            .collect();
            let choices = match kind {
                Some(T::List) => "`path`, `url` or `entries`",
                Some(T::Mmdb) => "`path`, `url` or `maxmind`",
                _ => "`path` or `url`",
            };
            if let (Some(mm), true) = (&s.maxmind, kind.is_some_and(|t| t != T::Mmdb)) {
                self.at(
                    &k("maxmind"),
                    mm,
                    "`maxmind` applies only to type = \"mmdb\"".into(),
                    "MaxMind publishes its databases as mmdb files",
                );
            }
            if given.is_empty() && is_list.is_some() {
                self.err(
                    &key,
                    Some(span.clone()),
                    format!("a source needs one of {choices}"),
                    "relative paths resolve against the config file's directory",
                );
            } else if given.len() > 1 {
                self.err(
                    &key,
                    Some(span.clone()),
                    format!("`{}` cannot be combined", given.join("` and `")),
                    &format!("give exactly one of {choices}"),
                );
            }
            let location = self.location(&key, s);
            let kind = match is_list {
                Some(false) if kind == Some(T::Ranges) => {
                    for (leaf, given) in [("entries", s.entries.is_some()), ("set", s.set.is_some())] {
                        if given {
                            self.err(
                                &k(leaf),
                                Some(span.clone()),
                                format!("`{leaf}` applies only to type = \"list\""),
                                "",
                            );
                        }
                    }
                    for (leaf, given) in [("schema", s.schema.is_some()), ("fields", s.fields.is_some())] {
                        if given {
                            self.err(
                                &k(leaf),
                                Some(span.clone()),
                                format!("`{leaf}` applies only to type = \"mmdb\""),
                                "a range file's columns are named by `layout` or `columns`",
                            );
                        }
                    }
                    names.databases.push(name.clone());
                    let layout = self.range_layout(&key, s);
                    SourceKind::Ranges { location: location.unwrap_or_else(|| Location::Path(PathBuf::new())), layout }
                }
                Some(false) => {
                    names.databases.push(name.clone());
                    if let Some(e) = &s.entries {
                        self.at(&k("entries"), e, "`entries` applies only to type = \"list\"".into(), "");
                    }
                    if let Some(e) = &s.set {
                        self.at(&k("set"), e, "`set` applies only to type = \"list\"".into(), "");
                    }
                    let schema = self.schema(&key, s);
                    SourceKind::Mmdb { location: location.unwrap_or_else(|| Location::Path(PathBuf::new())), schema }
                }
                Some(true) => {
                    if let Some(e) = &s.schema {
                        self.at(&k("schema"), e, "`schema` applies only to type = \"mmdb\"".into(), "");
                    }
                    if let Some(e) = &s.fields {
                        self.at(&k("fields"), e, "`fields` applies only to type = \"mmdb\"".into(), "");
                    }
                    let list_location = match &s.entries {
                        Some(entries) => {
                            let mut out = Vec::new();
                            for (j, e) in entries.get_ref().iter().enumerate() {
                                if let Some(net) = self.cidr(&format!("{key}.entries[{j}]"), e) {
                                    out.push(net.to_string());
                                }
                            }
                            ListLocation::Inline(out)
                        }
                        None => ListLocation::File(location.unwrap_or_else(|| Location::Path(PathBuf::new()))),
                    };
                    let set = s.set.as_ref().and_then(|set| self.set(&k("set"), set));
                    if names.lists.len() == MAX_LISTS {
                        self.err(
                            &key,
                            Some(span.clone()),
                            format!("more than {MAX_LISTS} list sources"),
                            "merge lists; each list needs a bit in every table entry",
                        );
                    }
                    names.lists.push(name.clone());
                    SourceKind::List { location: list_location, set }
                }
                None => SourceKind::List { location: ListLocation::Inline(Vec::new()), set: None },
            };
            names.all.push(name.clone());
            let region_names = match &s.region_names {
                None => RegionNames::Named,
                Some(v) if is_list == Some(true) => {
                    self.at(&k("region_names"), v, "`region_names` applies only to databases".into(), "");
                    RegionNames::Named
                }
                Some(v) => self
                    .one_of(&k("region_names"), v, &[("named", RegionNames::Named), ("all", RegionNames::All)])
                    .unwrap_or_default(),
            };
            out.push(SourceConfig { name, kind, region_names });
        }
        (out, names)
    }

    pub(super) fn location(&mut self, key: &str, s: &FileSource) -> Option<Location> {
        let k = |leaf: &str| format!("{key}.{leaf}");
        if let Some(mm) = &s.maxmind {
            return self.maxmind(key, s, mm);
        }
        if let Some(url) = &s.url {
            let url = self.http_url(&k("url"), url, false, false);
            let cache = match &s.cache {
                Some(c) => self.file_path(&k("cache"), c),
                None => {
                    if let Some(u) = &s.url {
                        self.at(
                            &k("cache"),
                            u,
                            "a remote source needs `cache`".into(),
                            r#"e.g. cache = "cache/geoip.mmdb"; the last good copy lets a restart work offline"#,
                        );
                    }
                    None
                }
            };
            let poll_interval = self.duration(&k("poll_interval"), &s.poll_interval, DEFAULT_POLL_INTERVAL, false);
            let timeout = self.duration(&k("timeout"), &s.timeout, DEFAULT_REMOTE_TIMEOUT, false);
            let max_bytes = self.int(&k("max_bytes"), &s.max_bytes, DEFAULT_MAX_BYTES, 1, i64::MAX as u64);
            return Some(Location::Remote(RemoteSource {
                url: url?,
                cache: cache?,
                poll_interval,
                timeout,
                max_bytes,
                maxmind: None,
            }));
        }
        let remote_only: [(&str, Option<Range<usize>>); 4] = [
            ("cache", s.cache.as_ref().map(S::span)),
            ("poll_interval", s.poll_interval.as_ref().map(S::span)),
            ("timeout", s.timeout.as_ref().map(S::span)),
            ("max_bytes", s.max_bytes.as_ref().map(S::span)),
        ];
        for (leaf, span) in remote_only {
            if let Some(span) = span {
                self.err(
                    &k(leaf),
                    Some(span),
                    format!("`{leaf}` applies only to a remote source (`url`)"),
                    "remove it, or set `url`",
                );
            }
        }
        let path = s.path.as_ref()?;
        self.file_path(&k("path"), path).map(Location::Path)
    }

    pub(super) fn schema(&mut self, key: &str, s: &FileSource) -> MmdbSchema {
        #[derive(Clone, PartialEq)]
        enum K {
            Auto,
            GeoIp2,
            Flat,
            Asn,
            Custom,
        }
        let kind = match &s.schema {
            None => K::Auto,
            Some(v) => self
                .one_of(
                    &format!("{key}.schema"),
                    v,
                    &[
                        ("auto", K::Auto),
                        ("geoip2", K::GeoIp2),
                        ("flat", K::Flat),
                        ("asn", K::Asn),
                        ("custom", K::Custom),
                    ],
                )
                .unwrap_or(K::Auto),
        };
        match (&kind, &s.fields) {
            (K::Custom, None) => {
                if let Some(v) = &s.schema {
                    self.at(
                        &format!("{key}.fields"),
                        v,
                        "schema = \"custom\" needs `fields`".into(),
                        r#"e.g. fields = { country = "location.cc" }"#,
                    );
                }
                MmdbSchema::Custom(FieldPaths::default())
            }
            (K::Custom, Some(f)) => {
                let fk = format!("{key}.fields");
                let g = f.get_ref();
                let mut path = |leaf: &str, v: &Option<S<String>>| -> Option<String> {
                    let v = v.as_ref()?;
                    let s = v.get_ref();
                    if s.is_empty() || s.split('.').any(str::is_empty) {
                        self.at(
                            &format!("{fk}.{leaf}"),
                            v,
                            format!("`{s}` is not a field path"),
                            r#"dotted keys, e.g. "country.iso_code" or "subdivisions.-1.iso_code""#,
                        );
                        return None;
                    }
                    Some(s.clone())
                };
                let paths = FieldPaths {
                    country: path("country", &g.country),
                    registered_country: path("registered_country", &g.registered_country),
                    represented_country: path("represented_country", &g.represented_country),
                    subdivision: path("subdivision", &g.subdivision),
                    anonymous_proxy: path("anonymous_proxy", &g.anonymous_proxy),
                    satellite_provider: path("satellite_provider", &g.satellite_provider),
                    asn: path("asn", &g.asn),
                    as_org: path("as_org", &g.as_org),
                };
                if paths == FieldPaths::default() {
                    self.at(&fk, f, "`fields` names no field".into(), r#"e.g. fields = { country = "location.cc" }"#);
                }
                MmdbSchema::Custom(paths)
            }
            (_, Some(f)) => {
                self.at(
                    &format!("{key}.fields"),
                    f,
                    "`fields` applies only with schema = \"custom\"".into(),
                    "remove it, or set schema = \"custom\"",
                );
                MmdbSchema::Auto
            }
            (K::Auto, None) => MmdbSchema::Auto,
            (K::GeoIp2, None) => MmdbSchema::GeoIp2,
            (K::Flat, None) => MmdbSchema::Flat,
            (K::Asn, None) => MmdbSchema::Asn,
        }
    }

    /// A range file's layout: `layout` by name, or `columns` (with an optional `delimiter`).
    pub(super) fn range_layout(&mut self, key: &str, s: &FileSource) -> RangeLayout {
        let k = |leaf: &str| format!("{key}.{leaf}");
        let delimiter = s.delimiter.as_ref().and_then(|d| match d.get_ref().as_str() {
            "," | "comma" => Some(b','),
            "\t" | "tab" => Some(b'\t'),
            ";" => Some(b';'),
            "|" => Some(b'|'),
            other => {
                self.at(&k("delimiter"), d, format!("`{other}` is not a delimiter"), r#"use ",", "tab", ";" or "|""#);
                None
            }
        });
        match (&s.layout, &s.columns) {
            (Some(l), Some(_)) => {
                self.at(&k("columns"), l, "`layout` and `columns` cannot be combined".into(), "give one of them");
                RangeLayout::Auto
            }
            (Some(l), None) => {
                if let Some(d) = &s.delimiter {
                    self.at(&k("delimiter"), d, "`delimiter` applies only with `columns`".into(), "");
                }
                let known = self.one_of(
                    &k("layout"),
                    l,
                    &[
                        ("auto", None),
                        ("country", Some(KnownRangeLayout::Country)),
                        ("asn", Some(KnownRangeLayout::Asn)),
                        ("city", Some(KnownRangeLayout::City)),
                        ("iptoasn", Some(KnownRangeLayout::Iptoasn)),
                    ],
                );
                match known.flatten() {
                    Some(k) => RangeLayout::Known(k),
                    None => RangeLayout::Auto,
                }
            }
            (None, Some(c)) => {
                let mut columns = Vec::new();
                for (j, name) in c.get_ref().iter().enumerate() {
                    match RangeColumn::from_name(name.get_ref()) {
                        Some(col) => columns.push(col),
                        None => self.at(
                            &format!("{key}.columns[{j}]"),
                            name,
                            format!("`{}` is not a column", name.get_ref()),
                            r#"columns are "start", "end", "country", "subdivision", "asn", "as_org" or "-" (ignored)"#,
                        ),
                    }
                }
                for needed in [RangeColumn::Start, RangeColumn::End] {
                    if columns.iter().filter(|&&c| c == needed).count() != 1 {
                        self.at(
                            &k("columns"),
                            c,
                            format!("`columns` needs exactly one {:?} column", needed).to_lowercase(),
                            r#"e.g. columns = ["start", "end", "country"]"#,
                        );
                    }
                }
                if !columns.iter().any(|c| !matches!(c, RangeColumn::Start | RangeColumn::End | RangeColumn::Skip)) {
                    self.at(&k("columns"), c, "`columns` names no data column".into(), r#"add "country", "asn", ..."#);
                }
                RangeLayout::Columns { delimiter, columns }
            }
            (None, None) => {
                if let Some(d) = &s.delimiter {
                    self.at(&k("delimiter"), d, "`delimiter` applies only with `columns`".into(), "");
                }
                RangeLayout::Auto
            }
        }
    }

    /// An AS number written as `13238` or `"AS13238"`.
    pub(super) fn asn(&mut self, key: &str, v: &S<FileAsn>) -> Option<u32> {
        let parsed = match v.get_ref() {
            FileAsn::Number(n) => u32::try_from(*n).ok(),
            FileAsn::Text(t) => crate::geo::parse_asn(t.trim()),
        };
        if parsed.is_none() {
            let shown = match v.get_ref() {
                FileAsn::Number(n) => n.to_string(),
                FileAsn::Text(t) => format!("{t:?}"),
            };
            self.at(key, v, format!("{shown} is not an AS number"), "use 0 to 4294967295, e.g. 13238 or \"AS13238\"");
        }
        parsed
    }

    pub(super) fn set(&mut self, key: &str, set: &S<FileSet>) -> Option<GeoRecord> {
        let g = set.get_ref();
        let k = |leaf: &str| format!("{key}.{leaf}");
        let record = GeoRecord {
            country: g.country.as_ref().and_then(|c| self.country(&k("country"), c)),
            registered_country: g.registered_country.as_ref().and_then(|c| self.country(&k("registered_country"), c)),
            represented_country: g
                .represented_country
                .as_ref()
                .and_then(|c| self.country(&k("represented_country"), c)),
            subdivision: g.subdivision.as_ref().and_then(|c| self.subdivision(&k("subdivision"), c)).map(Into::into),
            anonymous_proxy: g.anonymous_proxy.unwrap_or(false),
            satellite_provider: g.satellite_provider.unwrap_or(false),
            asn: g.asn.as_ref().and_then(|a| self.asn(&k("asn"), a)).filter(|&a| a != 0),
            as_org: g.as_org.as_ref().map(|o| o.get_ref().trim()).filter(|o| !o.is_empty()).map(Into::into),
        };
        if let (Some(c), Some(sub), Some(v)) = (record.country, &record.subdivision, &g.subdivision) {
            if !sub.starts_with(c.as_str()) || sub.as_bytes().get(2).is_some_and(|b| !matches!(b, b'-' | b':')) {
                self.at(
                    &k("subdivision"),
                    v,
                    format!("`{sub}` is not in country {c}"),
                    "make country and subdivision agree",
                );
            }
        }
        if record.is_empty() {
            // An empty `set` says nothing; treat it as absent rather than erasing geo data.
            return None;
        }
        Some(record)
    }
}
