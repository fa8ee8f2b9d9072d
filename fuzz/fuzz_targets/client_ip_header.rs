//! `client_ip::resolve` / `effective_ip` with a single-address header (`X-Real-IP`).
#![no_main]

mod common;

use geogate::config::ClientIpSource;
use http::HeaderName;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| common::run(data, ClientIpSource::Header(HeaderName::from_static("x-real-ip"))));
