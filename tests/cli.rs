//! The `geogate` binary itself, as a user runs it: exit codes, `lookup`, `check`, `explain`,
//! `run --listen/--upstream`, and the access log it writes on stdout (every refusal and
//! block, sampled allows).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_geogate");

fn geogate(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

fn code(o: &std::process::Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn exit_codes_are_the_documented_ones() {
    // Usage errors: 64 (EX_USAGE), as for a bad configuration.
    for args in [&["--bogus"][..], &["run", "--no-such-flag"], &["explain"], &["frobnicate"]] {
        let o = geogate(args);
        assert_eq!(code(&o), 64, "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
    // Help and version are not errors.
    assert_eq!(code(&geogate(&["--help"])), 0);
    assert_eq!(code(&geogate(&["--version"])), 0);
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "bad.toml", "[[listener]]\nname = \"x\"\naddress = \"nope\"\n");
    let o = geogate(&["check", "--config", bad.to_str().unwrap()]);
    assert_eq!(code(&o), 64);
    assert!(String::from_utf8_lossy(&o.stderr).contains("listener[0].address"), "{o:?}");
    let o = geogate(&["check", "--config", dir.path().join("absent.toml").to_str().unwrap()]);
    assert_eq!(code(&o), 64);
    assert_eq!(code(&geogate(&["check", "--config", "deploy/examples/geogate.toml"])), 0);
}

#[test]
fn lookup_answers_each_line_and_reports_bad_ones() {
    let mut child = Command::new(BIN)
        .args(["lookup", "--db", "geoip/geo-whois-asn-country.mmdb"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"77.88.8.8\nnot-an-ip\n::1\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 1, "a bad line must make the exit status 1");
    let out = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows[0].starts_with("77.88.8.8\tRU\t"), "{out}");
    assert!(rows[1].starts_with("::1\t-\t"), "{out}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("not-an-ip"));
    let o = geogate(&["lookup", "--db", "geoip/geo-whois-asn-country.mmdb", "--json", "77.88.8.8"]);
    assert_eq!(code(&o), 0);
    let v: Value = serde_json::from_slice(o.stdout.split(|&b| b == b'\n').next().unwrap()).unwrap();
    assert_eq!(v["country"], "RU", "{v}");
}

#[test]
fn explain_names_the_deciding_rule() {
    let o = geogate(&[
        "explain",
        "--config",
        "deploy/examples/geogate.toml",
        "--ip",
        "77.88.8.8",
        "--method",
        "POST",
        "--path",
        "/signup.json",
    ]);
    assert_eq!(code(&o), 0, "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("block by rule[1] \"block-signup-ru-by\" (country=RU)"), "{out}");
}

/// A running `geogate run`: its stdout lines (the access log) collected on a thread.
struct Running {
    child: Child,
    addr: SocketAddr,
    stdout: std::sync::mpsc::Receiver<String>,
    /// The JSON log lines on stderr up to "listening".
    startup: Vec<Value>,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut child = Command::new(BIN)
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, stdout) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        // The bound address comes from the "listening" log line on stderr.
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut line = String::new();
        let mut startup = Vec::new();
        let addr = loop {
            line.clear();
            assert!(Instant::now() < deadline, "geogate did not start");
            if err.read_line(&mut line).unwrap() == 0 {
                panic!("geogate exited before listening: {:?}", child.wait());
            }
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                startup.push(v.clone());
                let listening = v["fields"]["message"] == "listening" || v["message"] == "listening";
                let address = v["fields"]["address"].as_str().or(v["address"].as_str());
                if let (true, Some(a)) = (listening, address) {
                    break a.parse().unwrap();
                }
            }
        };
        std::thread::spawn(move || for _ in err.lines() {});
        Running { child, addr, stdout, startup }
    }

    /// Access-log lines written so far (waits up to `wait` for at least `n`).
    fn access_lines(&self, n: usize, wait: Duration) -> Vec<Value> {
        let deadline = Instant::now() + wait;
        let mut got = Vec::new();
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(l) => got.push(serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}"))),
                Err(_) => break,
            }
        }
        got
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn field<'a>(v: &'a Value, name: &str) -> &'a Value {
    if v["fields"].is_object() {
        &v["fields"][name]
    } else {
        &v[name]
    }
}

fn raw(addr: SocketAddr, request: &str) -> String {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("the proxy left the connection open");
    out
}

#[test]
fn run_with_listen_and_upstream_logs_every_refusal_and_block() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let up = rt.block_on(support::upstream());
    let dir = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let cfg = write(
        dir.path(),
        "geogate.toml",
        &format!(
            r#"
[[listener]]
name = "public"
address = "127.0.0.1:1"
client_ip = {{ source = "x-forwarded-for", trusted = ["127.0.0.1/32"] }}

[[upstream]]
name = "app"
url = "http://127.0.0.1:1"

[admin]
enabled = false

[reload]
watch = false

[[source]]
name = "geoip"
type = "mmdb"
path = "{root}/geoip/geo-whois-asn-country.mmdb"

[policy]
default = "allow"

[[rule]]
name = "ru"
action = "block"
countries = ["RU"]

[access_log]
enabled = true
sample = 0.0
"#
        ),
    );
    // --listen and --upstream override the file's listener address and upstreams.
    let g = Running::start(&[
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &format!("http://{}", up.addr),
    ]);
    let ok = raw(g.addr, "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 8.8.8.8\r\nConnection: close\r\n\r\n");
    assert!(ok.starts_with("HTTP/1.1 200 "), "--upstream was not used: {ok}");
    let blocked = raw(g.addr, "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 77.88.8.8\r\nConnection: close\r\n\r\n");
    assert!(blocked.starts_with("HTTP/1.1 451 "), "{blocked}");
    let refused = raw(g.addr, "GET /a%00 HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 8.8.8.8\r\nConnection: close\r\n\r\n");
    assert!(refused.starts_with("HTTP/1.1 400 "), "{refused}");
    let smuggled = raw(
        g.addr,
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
    );
    assert!(smuggled.starts_with("HTTP/1.1 400 "), "{smuggled}");
    // sample = 0: the allowed request is not logged; the block and both refusals are.
    let lines = g.access_lines(3, Duration::from_secs(10));
    let summary: Vec<(String, String, u64)> = lines
        .iter()
        .map(|l| {
            (
                field(l, "action").as_str().unwrap_or("").to_owned(),
                field(l, "reason").as_str().unwrap_or("").to_owned(),
                field(l, "status").as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("block".to_owned(), "-".to_owned(), 451),
            ("bad_request".to_owned(), "path_control".to_owned(), 400),
            ("bad_request".to_owned(), "smuggling_cl_te".to_owned(), 400),
        ],
        "{lines:?}"
    );
    assert!(g.access_lines(1, Duration::from_millis(300)).is_empty(), "an allowed request was logged at sample = 0");
}

fn config_with(root: &str, extra: &str, list: &Path) -> String {
    format!(
        r#"
[[listener]]
name = "public"
address = "127.0.0.1:0"
client_ip = {{ source = "x-forwarded-for", trusted = ["127.0.0.1/32"] }}

[[upstream]]
name = "app"
url = "http://127.0.0.1:1"

[admin]
enabled = false

[[source]]
name = "geoip"
type = "mmdb"
path = "{root}/geoip/geo-whois-asn-country.mmdb"

[[source]]
name = "blocked"
type = "list"
path = "{list}"

[policy]
default = "allow"

[[rule]]
name = "blocked"
action = "block"
lists = ["blocked"]

{extra}
"#,
        list = list.display()
    )
}

/// GET / from `ip` (trusted XFF): the status code.
fn status_from(addr: SocketAddr, ip: &str) -> u16 {
    let out = raw(addr, &format!("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: {ip}\r\nConnection: close\r\n\r\n"));
    out.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn wait_for_status(addr: SocketAddr, ip: &str, want: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while status_from(addr, ip) != want {
        assert!(Instant::now() < deadline, "{what}: still not {want}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill").args([&format!("-{sig}"), &child.id().to_string()]).status().unwrap();
    assert!(ok.success());
}

#[test]
fn sighup_reloads_check_interval_rechecks_and_sigterm_drains_and_exits_0() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = tempfile::tempdir().unwrap();
    let list = write(dir.path(), "blocked.txt", "192.0.2.0/24\n");
    let cfg = write(dir.path(), "geogate.toml", &config_with(root, "[reload]\nwatch = false\n", &list));
    let mut g = Running::start(&["run", "--config", cfg.to_str().unwrap()]);
    // The upstream is dead: an allowed request is answered 502, a blocked one 451.
    assert_eq!(status_from(g.addr, "192.0.2.7"), 451);
    assert_eq!(status_from(g.addr, "198.51.100.7"), 502);
    // With watch = false, only SIGHUP picks up the changed list.
    write(dir.path(), "blocked.txt", "198.51.100.0/24\n");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(status_from(g.addr, "198.51.100.7"), 502, "a list change was applied without any trigger");
    signal(&g.child, "HUP");
    wait_for_status(g.addr, "198.51.100.7", 451, "SIGHUP reload");
    assert_eq!(status_from(g.addr, "192.0.2.7"), 502);
    signal(&g.child, "TERM");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = g.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "SIGTERM did not stop geogate");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean shutdown");

    // check_interval re-reads sources without any event.
    let list = write(dir.path(), "blocked.txt", "192.0.2.0/24\n");
    let cfg = write(
        dir.path(),
        "geogate.toml",
        &config_with(root, "[reload]\nwatch = false\ncheck_interval = \"1s\"\n", &list),
    );
    let g = Running::start(&["run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(status_from(g.addr, "198.51.100.7"), 502);
    write(dir.path(), "blocked.txt", "198.51.100.0/24\n");
    wait_for_status(g.addr, "198.51.100.7", 451, "check_interval re-check");
}

#[test]
fn worker_threads_sets_the_runtime_size() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = tempfile::tempdir().unwrap();
    let list = write(dir.path(), "blocked.txt", "192.0.2.0/24\n");
    for n in [1u64, 3] {
        let cfg = write(
            dir.path(),
            "geogate.toml",
            &format!("[server]\nworker_threads = {n}\n{}", config_with(root, "[reload]\nwatch = false\n", &list)),
        );
        let g = Running::start(&["run", "--config", cfg.to_str().unwrap()]);
        // The runtime's own count (tokio's RuntimeMetrics), logged once at start-up.
        let workers = g
            .startup
            .iter()
            .find(|v| field(v, "message") == "runtime started")
            .and_then(|v| field(v, "worker_threads").as_u64());
        assert_eq!(workers, Some(n), "worker_threads = {n}: {:?}", g.startup);
        assert_eq!(status_from(g.addr, "192.0.2.7"), 451);
    }
}

/// A configuration whose only source is an inline list that sets the country, and one rule
/// blocking RU: `entries` decide which space the rule blocks.
fn listed_ru(entries: &str) -> String {
    format!(
        "[[listener]]\nname = \"public\"\naddress = \"127.0.0.1:1\"\n[[upstream]]\nname = \"app\"\nurl = \"http://127.0.0.1:2\"\n\
         [[source]]\nname = \"ru\"\ntype = \"list\"\nentries = [{entries}]\nset = {{ country = \"RU\" }}\n\
         [[rule]]\nname = \"block-ru\"\naction = \"block\"\ncountries = [\"RU\"]\n"
    )
}

#[test]
fn diff_counts_exactly_what_changes_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let live = write(dir.path(), "live.toml", &listed_ru(r#""10.0.0.0/8", "2001:db8::/32""#));
    let cand = write(dir.path(), "cand.toml", &listed_ru(r#""10.0.0.0/9", "10.200.0.0/16", "2001:db8::/33""#));
    let args = |extra: &[&str]| {
        let mut a = vec!["diff", "--config", live.to_str().unwrap(), "--candidate", cand.to_str().unwrap()];
        a.extend_from_slice(extra);
        geogate(&a)
    };
    let o = args(&["--json", "--examples", "2"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    // 10.128.0.0/9 minus 10.200.0.0/16 stops being blocked; 2001:db8:8000::/33 too.
    assert_eq!(v["totals"]["ipv4_addresses"], (1u64 << 23) - (1 << 16), "{v}");
    assert_eq!(v["totals"]["ipv6_64s"], 1u64 << 31, "{v}");
    let changes = v["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{v}");
    let c = &changes[0];
    assert_eq!(c["from"]["action"], "block");
    assert_eq!(c["from"]["rule"], "block-ru");
    assert_eq!(c["from"]["country"], "RU");
    assert_eq!(c["to"]["action"], "allow");
    assert!(c["to"]["rule"].is_null() && c["to"]["country"].is_null(), "{c}");
    assert_eq!(c["examples"], serde_json::json!(["10.128.0.0/10", "10.201.0.0/16"]), "{c}");
    // Nothing changes against itself; a bad request is a usage error.
    let same = geogate(&["diff", "--config", live.to_str().unwrap(), "--candidate", live.to_str().unwrap(), "--json"]);
    let v: Value = serde_json::from_slice(&same.stdout).unwrap();
    assert_eq!(v["totals"]["ranges"], 0, "{v}");
    assert_eq!(code(&args(&["--request", "GET"])), 64);
    assert_eq!(code(&args(&["--request", "GET nope"])), 64);
    let o = args(&[]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("block by \"block-ru\" (RU) -> allow by default (-)"), "{text}");
}

#[test]
fn lookup_reads_range_files_and_mmdbs_by_content_and_layers_them() {
    let dir = tempfile::tempdir().unwrap();
    // A range file named like a database: detected by its content, not its name.
    let asn = write(
        dir.path(),
        "operators.dat",
        "# ASN feed\n1.0.0.0,1.0.0.255,13335,\"Cloudflare, Inc.\"\n8.8.8.0,8.8.8.255,15169,Google LLC\n",
    );
    let city = write(
        dir.path(),
        "city.csv",
        "1.0.0.0,1.0.0.255,AU,Queensland,,Brisbane,,0,0,\n8.8.8.0,8.8.8.127,US,California,,Mountain View,,0,0,\n",
    );
    let o = geogate(&[
        "lookup",
        "--db",
        "geoip/geo-whois-asn-country.mmdb",
        "--db",
        city.to_str().unwrap(),
        "--db",
        asn.to_str().unwrap(),
        "1.0.0.1",
        "8.8.8.200",
        "192.0.2.1",
    ]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "1.0.0.1\tAU\tAU:Queensland\t-\t13335", "{text}");
    // The city file does not cover 8.8.8.200: the shipped database's country stays, the ASN is added.
    assert!(lines[1].starts_with("8.8.8.200\tUS\t-\t-\t15169"), "{text}");
    assert_eq!(lines[2], "192.0.2.1\t-\t-\t-\t-", "{text}");
    let o = geogate(&[
        "lookup",
        "--db",
        city.to_str().unwrap(),
        "--db",
        asn.to_str().unwrap(),
        "--json",
        "--sources",
        "1.0.0.1",
    ]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["asn"], 13335);
    assert_eq!(v["as_org"], "Cloudflare, Inc.");
    assert_eq!(v["source"], "city");
    assert_eq!(v["sources"]["city"]["subdivision"], "AU:Queensland", "{v}");
    assert_eq!(v["sources"]["operators.dat"]["asn"], 13335, "{v}");
    assert!(v["sources"]["operators.dat"]["country"].is_null(), "{v}");
    // A bad range file is refused with its file and line.
    let bad = write(dir.path(), "bad.csv", "1.0.0.0,1.0.0.255,13335,x\n1.0.1.9,1.0.1.0,13335,y\n");
    let o = geogate(&["lookup", "--db", bad.to_str().unwrap(), "1.0.0.1"]);
    assert_ne!(code(&o), 0);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.csv:2") && err.contains("1.0.1.9"), "{err}");
}
