//! Checks `[limits]`, `[reload]` and `[access_log]`.

use super::*;

impl<'a> Checker<'a> {
    pub(super) fn limits(&mut self, f: FileLimits) -> Limits {
        let d = Limits::default();
        let max_h2 = self.int(
            "limits.max_h2_streams",
            &f.max_h2_streams,
            u64::from(d.max_h2_streams.get()),
            1,
            u64::from(u16::MAX),
        );
        Limits {
            header_read_timeout: self.duration(
                "limits.header_read_timeout",
                &f.header_read_timeout,
                d.header_read_timeout,
                false,
            ),
            idle_timeout: self.duration("limits.idle_timeout", &f.idle_timeout, d.idle_timeout, false),
            max_header_bytes: self.nonzero(
                "limits.max_header_bytes",
                &f.max_header_bytes,
                d.max_header_bytes,
                MIN_HEADER_BYTES as u64,
            ),
            max_headers: self.nonzero("limits.max_headers", &f.max_headers, d.max_headers, 1),
            max_connections: self.nonzero("limits.max_connections", &f.max_connections, d.max_connections, 1),
            upstream_connect_timeout: self.duration(
                "limits.upstream_connect_timeout",
                &f.upstream_connect_timeout,
                d.upstream_connect_timeout,
                false,
            ),
            upstream_response_timeout: self.duration(
                "limits.upstream_response_timeout",
                &f.upstream_response_timeout,
                d.upstream_response_timeout,
                false,
            ),
            proxy_protocol_timeout: self.duration(
                "limits.proxy_protocol_timeout",
                &f.proxy_protocol_timeout,
                d.proxy_protocol_timeout,
                false,
            ),
            tls_handshake_timeout: self.duration(
                "limits.tls_handshake_timeout",
                &f.tls_handshake_timeout,
                d.tls_handshake_timeout,
                false,
            ),
            max_h2_streams: u16::try_from(max_h2).ok().and_then(NonZeroU16::new).unwrap_or(d.max_h2_streams),
            send_timeout: self.duration("limits.send_timeout", &f.send_timeout, d.send_timeout, true),
            min_send_rate: self.int("limits.min_send_rate", &f.min_send_rate, d.min_send_rate, 0, 1 << 30),
            send_buffer_bytes: self.int(
                "limits.send_buffer_bytes",
                &f.send_buffer_bytes,
                d.send_buffer_bytes,
                0,
                1 << 26,
            ),
        }
    }

    pub(super) fn reload(&mut self, f: FileReload) -> ReloadConfig {
        let d = ReloadConfig::default();
        let check_interval = f
            .check_interval
            .as_ref()
            .map(|_| self.duration("reload.check_interval", &f.check_interval, Duration::from_secs(3600), false));
        let max_network_drop_percent = match &f.max_network_drop_percent {
            None => d.max_network_drop_percent,
            Some(v) => {
                let p = *v.get_ref();
                if !(0.0..=100.0).contains(&p) {
                    self.at(
                        "reload.max_network_drop_percent",
                        v,
                        format!("{p} is not a percentage"),
                        "use 0.0 to 100.0; 100 turns the guard off",
                    );
                    d.max_network_drop_percent
                } else if p >= 100.0 {
                    None
                } else {
                    Some(p)
                }
            }
        };
        let min_networks = self.int("reload.min_networks", &f.min_networks, 0, 0, u32::MAX as u64);
        let on_no_data = match &f.on_no_data {
            None => d.on_no_data,
            Some(v) => self
                .one_of(
                    "reload.on_no_data",
                    v,
                    &[
                        ("refuse", OnNoData::Refuse),
                        ("fail-open", OnNoData::FailOpen),
                        ("fail-closed", OnNoData::FailClosed),
                    ],
                )
                .unwrap_or(d.on_no_data),
        };
        let compile_cpu_share = self.fraction(
            "reload.compile_cpu_share",
            &f.compile_cpu_share,
            d.compile_cpu_share,
            0.01..=1.0,
            (
                "a share of 0.01 to 1.0",
                "use 0.25 (the default) to rest three quarters of the time; 1.0 compiles flat out",
            ),
        );
        ReloadConfig {
            watch: f.watch.unwrap_or(d.watch),
            debounce: self.duration("reload.debounce", &f.debounce, d.debounce, true),
            check_interval,
            max_network_drop_percent,
            min_networks: usize::try_from(min_networks).unwrap_or(usize::MAX),
            on_no_data,
            compile_cpu_share,
        }
    }

    pub(super) fn access_log(&mut self, f: FileAccessLog) -> AccessLogConfig {
        let d = AccessLogConfig::default();
        let sample = self.fraction(
            "access_log.sample",
            &f.sample,
            d.sample,
            0.0..=1.0,
            ("a fraction", "use 0.0 (none) to 1.0 (every allowed request); blocks are always logged"),
        );
        AccessLogConfig { enabled: f.enabled.unwrap_or(d.enabled), sample }
    }
}
