//! Checks `[[upstream]]` and `[[route]]`.

use super::*;

impl<'a> Checker<'a> {
    pub(super) fn upstreams(&mut self, file: &[S<FileUpstream>]) -> (Vec<UpstreamConfig>, Vec<String>) {
        if file.is_empty() {
            self.err(
                "upstream",
                None,
                "no [[upstream]] defined".into(),
                r#"add [[upstream]] with name = "app" and url = "http://127.0.0.1:3000""#,
            );
        }
        let mut names = HashSet::new();
        let mut out = Vec::new();
        let mut ordered = Vec::new();
        for (i, u) in file.iter().enumerate() {
            let key = format!("upstream[{i}]");
            let span = u.span();
            let u = u.get_ref();
            let name = match self.required(&format!("{key}.name"), &u.name, span.clone(), r#"e.g. name = "app""#) {
                Some(n) => self.name(&format!("{key}.name"), n, &mut names, "upstream"),
                None => String::new(),
            };
            let url = self
                .required(&format!("{key}.url"), &u.url, span, r#"e.g. url = "http://127.0.0.1:3000""#)
                .and_then(|v| self.http_url(&format!("{key}.url"), v, true))
                .unwrap_or_else(|| Uri::from_static(DEFAULT_UPSTREAM));
            ordered.push(name.clone());
            out.push(UpstreamConfig { name: name.into(), url });
        }
        (out, ordered)
    }

    pub(super) fn routes(&mut self, file: &[S<FileRoute>], upstreams: &[String]) -> Vec<RouteConfig> {
        let mut out = Vec::new();
        for (i, r) in file.iter().enumerate() {
            let key = format!("route[{i}]");
            let span = r.span();
            let r = r.get_ref();
            let host = r.host.as_ref().and_then(|h| self.host_pattern(&format!("{key}.host"), h));
            let path_prefix = r.path_prefix.as_ref().and_then(|p| self.path_pattern(&format!("{key}.path_prefix"), p));
            if let Some(p) = &r.path_prefix {
                if p.get_ref().contains('*') {
                    self.at(&format!("{key}.path_prefix"), p, "routes match a plain prefix".into(), "remove the `*`");
                }
            }
            let upstream = self
                .required(&format!("{key}.upstream"), &r.upstream, span, r#"e.g. upstream = "api""#)
                .and_then(|u| self.lookup_name(&format!("{key}.upstream"), u, upstreams, "upstream"))
                .unwrap_or(0);
            out.push(RouteConfig { host, path_prefix, upstream });
        }
        out
    }
}
