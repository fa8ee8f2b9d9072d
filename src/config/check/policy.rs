//! Checks `[policy]`, its tag headers and block responses, and every `[[rule]]`.

use super::*;

impl<'a> Checker<'a> {
    pub(super) fn tag_kinds(&mut self, key: &str, list: &[S<String>], span: Range<usize>) -> Vec<TagKind> {
        let mut out = Vec::new();
        for (j, t) in list.iter().enumerate() {
            let kind = self.one_of(
                &format!("{key}[{j}]"),
                t,
                &[
                    ("country", TagKind::Country),
                    ("subdivision", TagKind::Subdivision),
                    ("restricted", TagKind::Restricted),
                    ("rule", TagKind::Rule),
                    ("asn", TagKind::Asn),
                ],
            );
            if let Some(kind) = kind {
                if !out.contains(&kind) {
                    out.push(kind);
                }
            }
        }
        if list.is_empty() {
            self.err(
                key,
                Some(span),
                "`tag` is empty".into(),
                r#"name at least one of "country", "subdivision", "restricted", "rule", or use action "allow""#,
            );
        }
        out
    }

    pub(super) fn policy(
        &mut self,
        f: FilePolicy,
        rules: &[S<FileRule>],
        sources: &SourceNames,
        listeners: &[ListenerConfig],
    ) -> PolicyConfig {
        let default_kind = match &f.default {
            None => Some("allow"),
            Some(v) => self.one_of("policy.default", v, &[("allow", "allow"), ("block", "block"), ("tag", "tag")]),
        };
        let default_action = match (default_kind, &f.tag) {
            (Some("tag"), Some(tags)) => ActionConfig::Tag(self.tag_kinds("policy.tag", tags.get_ref(), tags.span())),
            (Some("tag"), None) => ActionConfig::tag_default(),
            (Some("block"), _) => ActionConfig::Block,
            _ => ActionConfig::Allow,
        };
        if let (Some(kind), Some(tags)) = (default_kind, &f.tag) {
            if kind != "tag" {
                self.at(
                    "policy.tag",
                    tags,
                    "`tag` applies only with default = \"tag\"".into(),
                    "remove it, or set default = \"tag\"",
                );
            }
        }
        let tag_headers = self.tag_headers(f.tag_headers.unwrap_or_default(), listeners);
        let block =
            self.block("policy.block", &f.block.unwrap_or_default(), &BlockResponse::default()).unwrap_or_default();
        let mut out = Vec::new();
        let mut names = HashSet::new();
        let mut dry_runs = 0;
        let mut catch_all: Option<(usize, String)> = None;
        for (i, r) in rules.iter().enumerate() {
            let key = format!("rule[{i}]");
            let span = r.span();
            let rule = self.rule(&key, r.get_ref(), span.clone(), &mut names, sources, &block);
            if rule.dry_run {
                dry_runs += 1;
                if dry_runs == MAX_DRY_RUN_RULES + 1 {
                    self.err(
                        &format!("{key}.dry_run"),
                        Some(span.clone()),
                        format!("more than {MAX_DRY_RUN_RULES} dry_run rules"),
                        "promote or remove some dry-run rules",
                    );
                }
            }
            if let Some((j, name)) = &catch_all {
                self.err(
                    &key,
                    Some(span.clone()),
                    format!("unreachable: rule[{j}] `{name}` above matches every request"),
                    "move this rule above it, or give that rule some criteria",
                );
            } else if !rule.dry_run && rule.matcher == RuleMatch::default() {
                catch_all = Some((i, rule.name.clone()));
            }
            out.push(rule);
        }
        PolicyConfig { rules: out, default_action, tag_headers, block }
    }

    pub(super) fn tag_headers(&mut self, f: FileTagHeaders, listeners: &[ListenerConfig]) -> TagHeaders {
        let d = TagHeaders::default();
        let mut seen: Vec<HeaderName> = Vec::new();
        let mut one = |this: &mut Self, leaf: &str, v: &Option<S<String>>, default: HeaderName| -> HeaderName {
            let key = format!("policy.tag_headers.{leaf}");
            let name = match v {
                None => default,
                Some(v) => match this.header_name(&key, v) {
                    Some(n) => n,
                    None => return default,
                },
            };
            let span = v.as_ref().map(S::span);
            if RESERVED_HEADERS.contains(&name.as_str()) {
                this.err(
                    &key,
                    span,
                    format!("`{name}` cannot be a tag header"),
                    "geogate or HTTP itself owns this header; pick an X-... name",
                );
            } else if seen.contains(&name) {
                this.err(&key, span, format!("`{name}` is used for two tags"), "each tag needs its own header");
            } else if listeners.iter().any(|l| l.client_ip.source == ClientIpSource::Header(name.clone())) {
                this.err(
                    &key,
                    span,
                    format!("`{name}` is also a client-IP header"),
                    &format!("geogate strips tag headers sent by clients; set {key} to another name"),
                );
            }
            seen.push(name.clone());
            name
        };
        TagHeaders {
            country: one(self, "country", &f.country, d.country),
            subdivision: one(self, "subdivision", &f.subdivision, d.subdivision),
            restricted: one(self, "restricted", &f.restricted, d.restricted),
            rule: one(self, "rule", &f.rule, d.rule),
            asn: one(self, "asn", &f.asn, d.asn),
        }
    }

    /// Block-response keys merged over `base`; `None` when none is given.
    pub(super) fn block(&mut self, key: &str, f: &FileBlock, base: &BlockResponse) -> Option<BlockResponse> {
        let given = f.status.is_some()
            || f.json_body.is_some()
            || f.html_body.is_some()
            || f.html_file.is_some()
            || f.redirect.is_some()
            || f.redirect_status.is_some()
            || f.grpc_status.is_some()
            || f.grpc_message.is_some();
        if !given {
            return None;
        }
        let k = |leaf: &str| {
            if key.is_empty() {
                leaf.to_owned()
            } else {
                format!("{key}.{leaf}")
            }
        };
        let mut out = base.clone();
        if let Some(s) = &f.status {
            out.status = self
                .status(
                    &k("status"),
                    s,
                    400..600,
                    "a block answers with a 4xx or 5xx status, e.g. 451 or 403; use `redirect` to redirect",
                )
                .unwrap_or(out.status);
        }
        if let Some(b) = &f.json_body {
            out.json_body = b.get_ref().clone();
        }
        match (&f.html_body, &f.html_file) {
            (Some(_), Some(file)) => {
                self.at(&k("html_file"), file, "`html_body` and `html_file` cannot be combined".into(), "keep one")
            }
            (Some(b), None) => out.html_body = b.get_ref().clone(),
            (None, Some(file)) => {
                if let Some(body) = self.read_html(&k("html_file"), file) {
                    out.html_body = body;
                }
            }
            (None, None) => {}
        }
        if let Some(r) = &f.redirect {
            let s = r.get_ref();
            let uri = Uri::from_str(s).ok().filter(|u| match u.scheme_str() {
                Some("http" | "https") => u.authority().is_some(),
                None => s.starts_with('/') && !s.starts_with("//"),
                Some(_) => false,
            });
            match uri {
                Some(u) => out.redirect = Some(u),
                None => self.at(
                    &k("redirect"),
                    r,
                    format!("`{s}` is not a redirect target"),
                    r#"use an absolute http(s) URL or a path, e.g. "https://example.com/unavailable""#,
                ),
            }
        }
        if let Some(s) = &f.redirect_status {
            if f.redirect.is_none() && base.redirect.is_none() {
                self.at(
                    &k("redirect_status"),
                    s,
                    "`redirect_status` without `redirect`".into(),
                    "set `redirect`, or remove this",
                );
            }
            out.redirect_status = self
                .status(&k("redirect_status"), s, 300..400, "use 301, 302, 303, 307 or 308")
                .unwrap_or(out.redirect_status);
        }
        if let Some(s) = &f.grpc_status {
            // 0 is OK, which a block is not; 17 and above are not gRPC status codes.
            match u8::try_from(*s.get_ref()).ok().filter(|c| (1..=16).contains(c)) {
                Some(c) => out.grpc_status = c,
                None => self.at(
                    &k("grpc_status"),
                    s,
                    format!("{} is not a gRPC error status", s.get_ref()),
                    "use 1 to 16, e.g. 7 (PERMISSION_DENIED) or 14 (UNAVAILABLE)",
                ),
            }
        }
        if let Some(m) = &f.grpc_message {
            out.grpc_message = m.get_ref().clone();
        }
        Some(out)
    }

    pub(super) fn read_html(&mut self, key: &str, v: &S<String>) -> Option<String> {
        let path = self.file_path(key, v)?;
        let result = std::fs::metadata(&path).and_then(|m| {
            // A FIFO or device reports length 0 and would block or never end: regular files only,
            // and never read more than the limit whatever the metadata says.
            if !m.is_file() {
                return Err(std::io::Error::other("not a regular file"));
            }
            if m.len() > MAX_HTML_FILE {
                return Err(std::io::Error::other("larger than 1 MiB"));
            }
            let mut text = String::new();
            std::io::Read::read_to_string(
                &mut std::io::Read::take(std::fs::File::open(&path)?, MAX_HTML_FILE + 1),
                &mut text,
            )?;
            if text.len() as u64 > MAX_HTML_FILE {
                return Err(std::io::Error::other("larger than 1 MiB"));
            }
            Ok(text)
        });
        match result {
            Ok(s) => Some(s),
            Err(e) => {
                self.at(
                    key,
                    v,
                    format!("cannot read {}: {e}", path.display()),
                    "relative paths resolve against the config file's directory",
                );
                None
            }
        }
    }

    pub(super) fn rule(
        &mut self,
        key: &str,
        r: &FileRule,
        span: Range<usize>,
        names: &mut HashSet<String>,
        sources: &SourceNames,
        base: &BlockResponse,
    ) -> RuleConfig {
        let k = |leaf: &str| format!("{key}.{leaf}");
        let name = match self.required(&k("name"), &r.name, span.clone(), r#"e.g. name = "block-signup-ru""#) {
            Some(n) => self.name(&k("name"), n, names, "rule"),
            None => String::new(),
        };
        let kind = match self.required(&k("action"), &r.action, span.clone(), r#"action = "allow", "block" or "tag""#) {
            Some(a) => self.one_of(&k("action"), a, &[("allow", "allow"), ("block", "block"), ("tag", "tag")]),
            None => None,
        };
        let mut matcher = RuleMatch {
            anonymous_proxy: r.anonymous_proxy,
            satellite_provider: r.satellite_provider,
            unknown: r.unknown,
            ..RuleMatch::default()
        };
        for (j, c) in r.countries.iter().enumerate() {
            matcher.countries.extend(self.country(&format!("{key}.countries[{j}]"), c));
        }
        for (j, c) in r.registered_countries.iter().enumerate() {
            matcher.registered_countries.extend(self.country(&format!("{key}.registered_countries[{j}]"), c));
        }
        for (j, c) in r.subdivisions.iter().enumerate() {
            matcher.subdivisions.extend(self.subdivision(&format!("{key}.subdivisions[{j}]"), c));
        }
        for (j, a) in r.asns.iter().enumerate() {
            matcher.asns.extend(self.asn(&format!("{key}.asns[{j}]"), a));
        }
        for (j, o) in r.as_orgs.iter().enumerate() {
            let glob = o.get_ref().trim();
            if glob.is_empty() || glob.bytes().all(|b| b == b'*') {
                self.at(
                    &format!("{key}.as_orgs[{j}]"),
                    o,
                    format!("`{glob}` matches every organisation or none"),
                    r#"name part of the organisation, e.g. "*yandex*""#,
                );
            } else {
                matcher.as_orgs.push(glob.to_lowercase());
            }
        }
        if let Some(v) = &r.view {
            matcher.view = match v.get_ref().as_str() {
                "layered" => GeoView::Layered,
                "any" => GeoView::Any,
                "all" => GeoView::All,
                name if sources.databases.iter().any(|d| d == name) => GeoView::Source(name.to_owned()),
                name => {
                    let hint = if sources.lists.iter().any(|l| l == name) {
                        format!("`{name}` is a list; lists are matched with `lists`, the same in every view")
                    } else {
                        format!(r#""layered", "any", "all" or a database source: {}"#, sources.databases.join(", "))
                    };
                    self.at(&k("view"), v, format!("no view `{name}`"), &hint);
                    GeoView::Layered
                }
            };
        }
        for (j, l) in r.lists.iter().enumerate() {
            let lk = format!("{key}.lists[{j}]");
            if sources.lists.contains(l.get_ref()) {
                matcher.lists.push(l.get_ref().clone());
            } else if sources.all.contains(l.get_ref()) {
                self.at(
                    &lk,
                    l,
                    format!("source `{}` is not a list", l.get_ref()),
                    "rules match lists by name; a database is matched by countries/subdivisions",
                );
            } else {
                let known = if sources.lists.is_empty() {
                    "no type = \"list\" source is defined".to_owned()
                } else {
                    format!("lists: {}", sources.lists.join(", "))
                };
                self.at(&lk, l, format!("no list named `{}`", l.get_ref()), &known);
            }
        }
        for (j, h) in r.hosts.iter().enumerate() {
            matcher.hosts.extend(self.host_pattern(&format!("{key}.hosts[{j}]"), h));
        }
        for (j, p) in r.paths.iter().enumerate() {
            matcher.paths.extend(self.path_pattern(&format!("{key}.paths[{j}]"), p));
        }
        for (j, m) in r.methods.iter().enumerate() {
            matcher.methods.extend(self.method(&format!("{key}.methods[{j}]"), m));
        }
        if let Some(v) = &r.path_match {
            matcher.path_match =
                self.one_of(&k("path_match"), v, &[("framework", PathMatch::Framework), ("strict", PathMatch::Strict)]);
            if r.paths.is_empty() {
                self.at(
                    &k("path_match"),
                    v,
                    "`path_match` has no effect without `paths`".into(),
                    "remove it, or add paths",
                );
            }
        }
        let action = match kind {
            Some("block") => ActionConfig::Block,
            Some("tag") => match &r.tag {
                Some(t) => ActionConfig::Tag(self.tag_kinds(&k("tag"), t.get_ref(), t.span())),
                None => ActionConfig::tag_all(),
            },
            _ => ActionConfig::Allow,
        };
        if kind.is_some() && kind != Some("tag") {
            if let Some(t) = &r.tag {
                self.at(
                    &k("tag"),
                    t,
                    "`tag` applies only to action = \"tag\"".into(),
                    "remove it, or set action = \"tag\"",
                );
            }
        }
        let overrides = FileBlock {
            status: r.status.clone(),
            json_body: r.json_body.clone(),
            html_body: r.html_body.clone(),
            html_file: r.html_file.clone(),
            redirect: r.redirect.clone(),
            redirect_status: r.redirect_status.clone(),
            grpc_status: r.grpc_status.clone(),
            grpc_message: r.grpc_message.clone(),
        };
        let block = self.block(key, &overrides, base);
        if block.is_some() && kind.is_some() && kind != Some("block") {
            let first = [&r.status, &r.redirect_status]
                .into_iter()
                .flatten()
                .map(S::span)
                .chain([&r.grpc_status].into_iter().flatten().map(S::span))
                .chain(
                    [&r.json_body, &r.html_body, &r.html_file, &r.redirect, &r.grpc_message]
                        .into_iter()
                        .flatten()
                        .map(S::span),
                )
                .min_by_key(|s| s.start);
            self.err(
                key,
                first,
                "block-response keys apply only to action = \"block\"".into(),
                "remove status/json_body/html_body/html_file/redirect/grpc_status/grpc_message, or set action = \"block\"",
            );
        }
        RuleConfig {
            name,
            action,
            dry_run: r.dry_run,
            matcher,
            block: if kind == Some("block") { block } else { None },
        }
    }
}
