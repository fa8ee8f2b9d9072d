//! The `geogate` binary: parse the command line, set up tracing, call into the library,
//! turn failures into exit codes (64 bad configuration or usage, 1 start-up or runtime
//! failure, 1 for `lookup` when any input line was bad).

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use geogate::cli::{self, Format};
use geogate::config::{self, Config};
use geogate::reload::{self, ConfigSource};
use geogate::snapshot;

const EXIT_CONFIG: u8 = 64;

/// jemalloc returns the memory of a finished reload to the OS (glibc's malloc kept most of it)
/// and fragments less under the allocate-big-then-free pattern of compiling a snapshot.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser, Debug)]
#[command(name = "geogate", version, about = "Geo-blocking reverse proxy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve. Without --config, runs on the built-in defaults and the shipped database.
    Run {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Listen address for the one public listener (overrides the config).
        #[arg(long)]
        listen: Option<String>,
        /// The one upstream every request goes to (overrides the config's upstreams).
        #[arg(long)]
        upstream: Option<String>,
    },
    /// Load and compile everything, print a summary; non-zero exit with every error.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Look up addresses from the arguments, or one per line on stdin.
    Lookup {
        #[arg(long, short, conflicts_with_all = ["db", "list"])]
        config: Option<PathBuf>,
        /// A database file: MaxMind DB of any supported schema, or a range file (CSV/TSV,
        /// maybe gzip), detected by content; each becomes a source named after the file
        /// (repeatable; later sources override earlier ones field by field).
        #[arg(long)]
        db: Vec<PathBuf>,
        /// A named CIDR list, NAME=FILE (repeatable).
        #[arg(long)]
        list: Vec<String>,
        /// One JSON object per line instead of tab-separated text.
        #[arg(long)]
        json: bool,
        /// With --json: each database source's own answer too.
        #[arg(long, requires = "json")]
        sources: bool,
        ips: Vec<String>,
    },
    /// Where a candidate configuration (new database or policy) changes verdicts, compared
    /// with the live one over the whole address space, exactly.
    Diff {
        /// The configuration running now.
        #[arg(long)]
        config: PathBuf,
        /// The configuration to compare it with.
        #[arg(long)]
        candidate: PathBuf,
        /// The request judged, "METHOD PATH".
        #[arg(long, default_value = "GET /")]
        request: String,
        /// The request's host; without it, rules that name hosts do not apply.
        #[arg(long)]
        host: Option<String>,
        /// Example CIDRs per group of changes.
        #[arg(long, default_value_t = 3)]
        examples: usize,
        #[arg(long)]
        json: bool,
    },
    /// Which data matches an address and which rule decides, and why.
    Explain {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        ip: String,
        #[arg(long)]
        host: Option<String>,
        #[arg(long, default_value = "/")]
        path: String,
        #[arg(long, default_value = "GET")]
        method: String,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    // clap exits 2 on a usage error; the documented code is 64 (EX_USAGE). Help and version
    // requests are not errors and keep exit 0.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let usage = e.use_stderr();
            let _ = e.print();
            return if usage { ExitCode::from(EXIT_CONFIG) } else { ExitCode::SUCCESS };
        }
    };
    geogate::app::init_tracing();
    match cli.command {
        Command::Run { config, listen, upstream } => run(config, listen, upstream),
        Command::Check { config } => check(config),
        Command::Diff { config, candidate, request, host, examples, json } => {
            diff(config, candidate, &request, host, examples, json)
        }
        Command::Lookup { config, db, list, json, sources, ips } => {
            let format = match (json, sources) {
                (true, true) => Format::JsonWithSources,
                (true, false) => Format::Json,
                _ => Format::Text,
            };
            lookup(config, db, list, format, ips)
        }
        Command::Explain { config, ip, host, path, method, json } => explain(config, ip, host, path, method, json),
    }
}

fn load_config(path: Option<PathBuf>) -> Result<Config, ExitCode> {
    match path {
        Some(p) => config::load(&p).map_err(|e| {
            eprintln!("{e}");
            ExitCode::from(EXIT_CONFIG)
        }),
        None => Ok(config::defaults()),
    }
}

fn compile(config: Config) -> Result<snapshot::Snapshot, ExitCode> {
    snapshot::compile_once(Arc::new(config), 1).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn run(config: Option<PathBuf>, listen: Option<String>, upstream: Option<String>) -> ExitCode {
    let source = match config {
        Some(path) => ConfigSource::File { path, listen, upstream },
        None => match reload::apply_overrides(config::defaults(), listen.as_deref(), upstream.as_deref()) {
            Ok(c) => ConfigSource::Fixed(Arc::new(c)),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    match geogate::app::run(source) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("geogate: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn check(path: PathBuf) -> ExitCode {
    let cfg = match load_config(Some(path)) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match compile(cfg) {
        Ok(s) => {
            print!("{}", cli::check_summary(&s));
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn lookup(config: Option<PathBuf>, db: Vec<PathBuf>, list: Vec<String>, format: Format, ips: Vec<String>) -> ExitCode {
    let cfg = if config.is_none() && (!db.is_empty() || !list.is_empty()) {
        let mut lists = Vec::with_capacity(list.len());
        for l in &list {
            match config::parse_list_arg(l) {
                Ok(pair) => lists.push(pair),
                Err(e) => {
                    eprintln!("--list {l:?}: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            }
        }
        let mut dbs = Vec::with_capacity(db.len());
        for path in db {
            match cli::detect_format(&path) {
                Ok(format) => dbs.push(config::DbArg { path, format }),
                Err(e) => {
                    eprintln!("--db {}: cannot read: {e}", path.display());
                    return ExitCode::from(EXIT_CONFIG);
                }
            }
        }
        match Config::from_sources(&dbs, &lists) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        }
    } else {
        match load_config(config) {
            Ok(c) => c,
            Err(code) => return code,
        }
    };
    let snapshot = match compile(cfg) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    let stderr = io::stderr();
    let mut err = stderr.lock();
    let result = if ips.is_empty() {
        cli::lookup_lines(&snapshot, io::stdin().lock(), &mut out, &mut err, format)
    } else {
        cli::lookup_args(&snapshot, &ips, &mut out, &mut err, format)
    }
    .and_then(|s| out.flush().map(|()| s));
    match result {
        Ok(s) if s.bad > 0 => ExitCode::from(1),
        Ok(_) => ExitCode::SUCCESS,
        // A closed pipe (`| head`) is the reader's choice, not a failure.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("geogate lookup: {e}");
            ExitCode::from(1)
        }
    }
}

fn diff(
    live: PathBuf,
    candidate: PathBuf,
    request: &str,
    host: Option<String>,
    examples: usize,
    json: bool,
) -> ExitCode {
    let Some((method, path)) = request.trim().split_once(' ') else {
        eprintln!("--request {request:?}: expected \"METHOD PATH\", e.g. \"POST /signup\"");
        return ExitCode::from(EXIT_CONFIG);
    };
    let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
        eprintln!("--request {request:?}: {method:?} is not an HTTP method");
        return ExitCode::from(EXIT_CONFIG);
    };
    let path = path.trim();
    if !path.starts_with('/') {
        eprintln!("--request {request:?}: the path must start with /");
        return ExitCode::from(EXIT_CONFIG);
    }
    let mut snapshots = Vec::with_capacity(2);
    for file in [live, candidate] {
        let cfg = match load_config(Some(file)) {
            Ok(c) => c,
            Err(code) => return code,
        };
        match compile(cfg) {
            Ok(s) => snapshots.push(s),
            Err(code) => return code,
        }
    }
    let req = geogate::diff::DiffRequest { method, path: path.to_owned(), host };
    let report = geogate::diff::diff(&snapshots[0], &snapshots[1], &req, examples);
    if json {
        match serde_json::to_string(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("geogate diff: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        print!("{}", report.to_text());
    }
    ExitCode::SUCCESS
}

fn explain(config: PathBuf, ip: String, host: Option<String>, path: String, method: String, json: bool) -> ExitCode {
    let cfg = match load_config(Some(config)) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let snapshot = match compile(cfg) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let report =
        cli::explain(&snapshot, &ip, host.as_deref(), &path, &method).map_err(anyhow::Error::msg).context("explain");
    match report {
        Ok(r) => {
            let text = if json { r.to_json().to_string() } else { r.to_text() };
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("geogate explain: {e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
