//! `client_ip::resolve` / `effective_ip` with source = forwarded; invariants in `common`.
#![no_main]

mod common;

use geogate::config::ClientIpSource;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| common::run(data, ClientIpSource::Forwarded));
