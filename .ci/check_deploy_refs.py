#!/usr/bin/env python3
"""Cross-reference checks for geogate's deployment files (deploy/).

Run from the repository root:

    python3 .ci/check_deploy_refs.py --rendered base=/tmp/base.yaml --rendered proxy-protocol=...
    python3 .ci/check_deploy_refs.py --print-metrics      # metric names used, one per line
    python3 .ci/check_deploy_refs.py --emit-promql FILE   # dashboard queries as a rules file

What it checks (each failure is printed with the file it concerns):
  * metrics: every geogate_* / process_* name in the dashboard, the alert rules, their tests
    and the docs under deploy/ is exported by src/metrics.rs (histograms as _bucket/_sum/
    _count only), label names in selectors belong to the metric, and enumerated label values
    (action, result, trigger, kind) are ones geogate emits;
  * kustomize: every file a kustomization.yaml lists exists; ConfigMap keys used by volume
    `items` exist in the configMapGenerator files, and every generated key is projected;
  * manifests (rendered by kustomize when --rendered is given, for base and every overlay):
    named ports used by probes, the Service and the PodMonitor exist; probes hit /healthz
    (liveness) and /readyz (readiness) on the admin port; the --config path is in the
    mounted ConfigMap; relative list paths in geogate.toml resolve inside the mount; listener
    and admin ports in geogate.toml match the container ports; admin binds 0.0.0.0;
    terminationGracePeriodSeconds exceeds shutdown_grace (+ preStop); every container is
    locked down (non-root, read-only root fs, no privilege escalation, caps dropped,
    RuntimeDefault seccomp) and has memory requests/limits; selectors match the pod;
  * geogate.toml files: parse, use only the agreed keys and values, names resolve; overlay
    copies differ from the base only where their `# deploy-checks: may-differ` line says;
  * Dockerfile: COPY sources exist in the repo; CMD's config and paths the manifests use
    inside the image (bundled database, busybox) are put there; ports and user;
  * systemd unit, Grafana dashboard and alert rules: structural consistency;
  * README.md and docs/: the README shows its two commands (`cargo run --release -- run`,
    `cargo test --locked`) and the quickstart block; the configuration reference
    (docs/configuration.md, "Configuration reference") is valid TOML and shows every key
    src/config/file.rs accepts; the metrics reference (docs/operations.md, "Metrics") lists
    exactly the families and labels src/metrics.rs registers; every alert of
    deploy/prometheus/alerts.yml has a row and a section with what it means and what to do
    (docs/operations.md, "Alerts"); every metric the README and docs/ name is exported;
  * Markdown links: every relative link of every *.md file resolves, anchors included
    (`--links` runs this check alone).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import unquote

import yaml

ROOT = Path.cwd()
DEPLOY = ROOT / "deploy"
EXAMPLES = DEPLOY / "examples"  # owned elsewhere: parsed, not held to these rules

# Contract with geogate (see the deployment brief / src/metrics.rs doc comments).
LABEL_VALUES = {
    "action": {"allow", "block", "tag", "unresolved_block", "unresolved_allow"},
    "result": {"ok", "unchanged", "failed", "refused"},
    "trigger": {"startup", "watch", "signal", "admin", "remote", "interval"},
    "kind": {"connect", "timeout", "protocol", "tls"},
    "family": {"ipv4", "ipv6"},
}
# Enumerations above apply to these metrics only (dry_run's `action` is e.g. dry_run_block).
ENUM_METRICS = {
    "action": {"geogate_requests_total", "geogate_request_duration_seconds_bucket",
               "geogate_request_duration_seconds_count", "geogate_request_duration_seconds_sum"},
    "result": {"geogate_reloads_total"},
    "trigger": {"geogate_reloads_total"},
    "kind": {"geogate_upstream_errors_total"},
    "family": {"geogate_table_networks", "geogate_table_ranges"},
}
# Values only some of those metrics carry: request durations are also observed for requests
# refused before the policy (bad_request) or failing inside geogate (error).
EXTRA_LABEL_VALUES = {
    (m, "action"): {"bad_request", "error"}
    for m in ("geogate_request_duration_seconds_bucket", "geogate_request_duration_seconds_count",
              "geogate_request_duration_seconds_sum")
}
# Labels added by the scrape (target labels), allowed on every metric.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "container", "endpoint", "service", "node"}
# The prometheus crate's process collector (Linux).
PROCESS_METRICS = {
    "process_cpu_seconds_total", "process_open_fds", "process_max_fds",
    "process_virtual_memory_bytes", "process_resident_memory_bytes",
    "process_start_time_seconds", "process_threads",
}

DURATION = re.compile(r"^[0-9]+(ms|s|m|h)$")
TOML_SCHEMA = {
    "": {"server", "listener", "admin", "upstream", "route", "default_upstream", "source",
         "policy", "rule", "limits", "reload", "access_log"},
    "server": {"worker_threads", "shutdown_grace"},
    "listener": {"name", "address", "client_ip", "tls"},
    "listener.tls": {"cert", "key", "certificates"},
    "listener.client_ip": {"source", "header", "trusted", "on_unresolved"},
    "admin": {"address", "reload_token"},
    "upstream": {"name", "url"},
    "route": {"host", "path_prefix", "upstream"},
    "source": {"name", "type", "path", "schema", "entries", "set", "url", "cache", "poll_interval"},
    "source.set": {"country", "registered_country", "represented_country", "subdivision",
                   "anonymous_proxy", "satellite_provider"},
    "policy": {"default", "block"},
    "policy.block": {"status", "json_body", "html_body", "redirect"},
    "rule": {"name", "action", "dry_run", "countries", "subdivisions", "registered_countries",
             "lists", "anonymous_proxy", "satellite_provider", "unknown", "hosts", "paths", "methods"},
    "limits": {"header_read_timeout", "idle_timeout", "max_header_bytes", "max_headers",
               "max_connections", "upstream_connect_timeout", "upstream_response_timeout",
               "proxy_protocol_timeout", "max_h2_streams", "tls_handshake_timeout"},
    "reload": {"watch", "debounce", "check_interval", "max_network_drop_percent", "min_networks",
               "on_no_data"},
    "access_log": {"enabled", "sample"},
}
TOML_ENUMS = {
    "listener.client_ip.source": {"peer", "x-forwarded-for", "forwarded", "proxy-protocol", "header"},
    "listener.client_ip.on_unresolved": {"block", "use-peer", "allow"},
    "source.type": {"mmdb", "list"},
    "policy.default": {"allow", "block", "tag"},
    "rule.action": {"allow", "block", "tag"},
    "reload.on_no_data": {"refuse", "fail-open", "fail-closed"},
}
TOML_DURATIONS = {"server.shutdown_grace", "source.poll_interval", "reload.debounce",
                  "reload.check_interval"} | {f"limits.{k}" for k in TOML_SCHEMA["limits"]
                                               if k.endswith("timeout")}


class Report:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.passed: list[str] = []
        self.notes: list[str] = []

    def check(self, ok: bool, what: str, why: str = "") -> bool:
        if ok:
            self.passed.append(what)
        else:
            self.failures.append(f"{what}: {why}" if why else what)
        return ok

    def fail(self, what: str, why: str) -> None:
        self.check(False, what, why)

    def note(self, text: str) -> None:
        self.notes.append(text)


def rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(ROOT.resolve()))
    except ValueError:
        return str(p)


def duration_seconds(text: str) -> float:
    m = re.match(r"^([0-9]+)(ms|s|m|h)$", text)
    if not m:
        raise ValueError(text)
    n = int(m.group(1))
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def mine(p: Path) -> bool:
    """Files of this area (deploy/ without deploy/examples/)."""
    return EXAMPLES not in p.resolve().parents


# ---------------------------------------------------------------------------------------
# metrics

def metric_families() -> tuple[dict[str, set[str]], set[str]]:
    """{family name: label names} registered by src/metrics.rs, and the histogram names."""
    src = (ROOT / "src" / "metrics.rs").read_text()
    src = src.split("#[cfg(test)]", 1)[0]
    names = set(re.findall(r'"(geogate_[a-z0-9_]+)"', src))
    histos = set(re.findall(r'histogram_vec\(\s*"(geogate_[a-z0-9_]+)"', src))
    histos |= set(re.findall(r'HistogramOpts::new\(\s*"(geogate_[a-z0-9_]+)"', src))
    labels: dict[str, set[str]] = {n: set() for n in names}
    for m in re.finditer(r'"(geogate_[a-z0-9_]+)",\s*"[^"]*",\s*&\[([^\]]*)\]', src):
        labels[m.group(1)] = set(re.findall(r'"([a-z_]+)"', m.group(2)))
    return labels, histos


def exported_metrics(r: Report) -> tuple[dict[str, set[str]], set[str]]:
    """{series name: label names} exported by src/metrics.rs, and the histogram base names."""
    labels, histos = metric_families()
    names = set(labels)
    r.check(len(names) >= 10, "src/metrics.rs: metric names found",
            f"only {len(names)} geogate_* literals found; did the file move or change style?")
    out: dict[str, set[str]] = {}
    for n in names:
        if n in histos:
            out[n + "_bucket"] = labels[n] | {"le"}
            out[n + "_sum"] = labels[n]
            out[n + "_count"] = labels[n]
        else:
            out[n] = labels[n]
    for p in PROCESS_METRICS:
        out[p] = set()
    return out, histos


METRIC_TOKEN = re.compile(r"(?<![A-Za-z0-9_:])((?:geogate|process)_[a-z0-9_]+)")
SELECTOR = re.compile(r"(?<![A-Za-z0-9_:])((?:geogate|process)_[a-z0-9_]+)\s*\{([^}]*)\}")
MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def metric_texts() -> list[Path]:
    files = []
    for p in sorted(DEPLOY.rglob("*")):
        if p.is_file() and mine(p) and p.suffix in {".yml", ".yaml", ".json", ".md", ".toml", ".sh",
                                                      ".service", ".txt"}:
            files.append(p)
        elif p.is_file() and mine(p) and p.name == "Dockerfile":
            files.append(p)
    return files


def check_doc_metrics(r: Report, exported: dict[str, set[str]], histos: set[str]) -> None:
    """Every geogate_* / process_* name in the README and docs/*.md (the metrics reference,
    the alert runbooks) is one geogate exports; a histogram may be named by its family."""
    for path in [p for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))] if p.is_file()]:
        for name in sorted(set(METRIC_TOKEN.findall(path.read_text()))):
            if name.endswith("_"):
                continue  # a prefix in prose, e.g. `process_*`
            r.check(name in exported or name in histos, f"{rel(path)}: metric {name}",
                    "not exported by src/metrics.rs")


def check_metrics(r: Report, exported: dict[str, set[str]], histos: set[str]) -> set[str]:
    used: set[str] = set()
    for path in metric_texts():
        text = path.read_text()
        for name in sorted(set(METRIC_TOKEN.findall(text))):
            if name in exported:
                used.add(name)
                continue
            if name in histos:
                r.fail(f"{rel(path)}: metric {name}",
                       "is a histogram: use it as _bucket, _sum or _count")
            elif name.startswith("geogate_") or name in PROCESS_METRICS:
                r.fail(f"{rel(path)}: metric {name}", "not exported by src/metrics.rs")
            elif name.startswith("process_"):
                r.fail(f"{rel(path)}: metric {name}", "not one of the process collector's metrics")
        for m in SELECTOR.finditer(text):
            name, body = m.group(1), m.group(2)
            if name not in exported:
                continue
            allowed = exported[name] | TARGET_LABELS
            for lm in MATCHER.finditer(body.replace('\\"', '"')):
                label, op, value = lm.groups()
                if label not in allowed:
                    r.fail(f"{rel(path)}: {name}{{{label}...}}",
                           f"label {label!r} is not a label of {name} (has {sorted(exported[name])})")
                    continue
                if label in ENUM_METRICS and name in ENUM_METRICS[label] and op in {"=", "=~"}:
                    alts = value.split("|") if op == "=~" else [value]
                    for alt in alts:
                        known = LABEL_VALUES[label] | EXTRA_LABEL_VALUES.get((name, label), set())
                        if re.fullmatch(r"[a-z_]+", alt) and alt not in known:
                            r.fail(f"{rel(path)}: {name}{{{label}=\"{value}\"}}",
                                   f"{alt!r} is not a value geogate emits for {label} "
                                   f"({sorted(LABEL_VALUES[label])})")
    r.check(bool(used), "deploy/: geogate metrics referenced", "no metric references found at all")
    return used


# ---------------------------------------------------------------------------------------
# YAML helpers

def load_yaml_docs(path: Path) -> list[dict]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d]


def generator_key(entry: str) -> tuple[str, str]:
    """configMapGenerator `files` entry -> (key, file path)."""
    if "=" in entry:
        k, v = entry.split("=", 1)
        return k, v
    return os.path.basename(entry), entry


# ---------------------------------------------------------------------------------------
# kustomize (static)

def kustomization_dirs() -> list[Path]:
    return sorted(p.parent for p in (DEPLOY / "kubernetes").rglob("kustomization.yaml") if mine(p))


def check_kustomization(r: Report, kdir: Path) -> dict[str, dict[str, Path]]:
    """Checks listed files exist; returns generated ConfigMaps {name: {key: file}}."""
    kpath = kdir / "kustomization.yaml"
    k = load_yaml_docs(kpath)[0]
    where = rel(kpath)
    listed: list[tuple[str, str]] = []
    for res in k.get("resources", []) or []:
        listed.append(("resource", res))
    for comp in k.get("components", []) or []:
        listed.append(("component", comp))
    for patch in k.get("patches", []) or []:
        if isinstance(patch, dict) and "path" in patch:
            listed.append(("patch", patch["path"]))
    for patch in k.get("patchesStrategicMerge", []) or []:
        listed.append(("patch", patch))
    gens: dict[str, dict[str, Path]] = {}
    for gen in (k.get("configMapGenerator", []) or []) + (k.get("secretGenerator", []) or []):
        keys = gens.setdefault(gen["name"], {})
        for entry in gen.get("files", []) or []:
            key, fpath = generator_key(entry)
            listed.append(("generator file", fpath))
            keys[key] = kdir / fpath
    for kind, item in listed:
        p = kdir / item
        if "://" in item:
            r.fail(f"{where}: {kind} {item}", "remote bases are not allowed (no network in CI)")
        elif p.is_dir():
            r.check((p / "kustomization.yaml").is_file(), f"{where}: {kind} {item}",
                    "directory without kustomization.yaml")
        else:
            r.check(p.is_file(), f"{where}: {kind} {item}", "listed but missing")
    # Every file in the directory that looks like a manifest is used (catches forgotten ones).
    used_files = {(kdir / item).resolve() for _, item in listed}
    for f in sorted(kdir.rglob("*")):
        if f.is_file() and f.name != "kustomization.yaml" and f.resolve() not in used_files \
                and kdir == f.parent.parent and f.parent.name == "lists":
            r.fail(f"{rel(f)}", "list file not in the configMapGenerator: it would never reach the pod")
        elif f.is_file() and f.parent == kdir and f.name != "kustomization.yaml" \
                and f.resolve() not in used_files and f.suffix in {".yaml", ".yml", ".toml", ".txt", ".sh"}:
            r.fail(f"{rel(f)}", "not referenced by kustomization.yaml")
    return gens


# ---------------------------------------------------------------------------------------
# manifests

def index(docs: list[dict]) -> dict[tuple[str, str], dict]:
    return {(d.get("kind", ""), d.get("metadata", {}).get("name", "")): d for d in docs}


def matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def geogate_container(pod: dict) -> dict | None:
    for c in pod.get("containers", []):
        if c.get("name") == "geogate":
            return c
    return None


def port_of(container: dict, port) -> int | None:
    for p in container.get("ports", []) or []:
        if port == p.get("name") or port == p.get("containerPort"):
            return p.get("containerPort")
    return None


def all_container_ports(pod: dict) -> dict:
    out = {}
    for c in pod.get("containers", []) + pod.get("initContainers", []):
        for p in c.get("ports", []) or []:
            if "name" in p:
                out[p["name"]] = (c["name"], p["containerPort"])
    return out


def check_security(r: Report, where: str, pod: dict, c: dict) -> None:
    psc = pod.get("securityContext", {}) or {}
    sc = c.get("securityContext", {}) or {}
    name = f"{where}: container {c['name']}"
    r.check(sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, f"{name} runAsNonRoot", "not set to true")
    uid = sc.get("runAsUser", psc.get("runAsUser"))
    r.check(isinstance(uid, int) and uid > 0, f"{name} runAsUser", f"numeric non-root uid required, got {uid!r}")
    r.check(sc.get("readOnlyRootFilesystem") is True, f"{name} readOnlyRootFilesystem", "not true")
    r.check(sc.get("allowPrivilegeEscalation") is False, f"{name} allowPrivilegeEscalation", "not false")
    r.check("ALL" in ((sc.get("capabilities") or {}).get("drop") or []), f"{name} capabilities.drop", "ALL not dropped")
    r.check(not (sc.get("capabilities") or {}).get("add"), f"{name} capabilities.add", "adds capabilities")
    seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
    r.check(seccomp == "RuntimeDefault", f"{name} seccompProfile", f"want RuntimeDefault, got {seccomp!r}")
    res = c.get("resources", {}) or {}
    r.check(bool((res.get("requests") or {}).get("memory")) and bool((res.get("limits") or {}).get("memory")),
            f"{name} memory requests/limits", "missing")


def check_probe(r: Report, where: str, c: dict, kind: str, paths: set[str]) -> None:
    probe = c.get(kind)
    if not r.check(probe is not None, f"{where}: geogate {kind}", "missing"):
        return
    http = probe.get("httpGet")
    if not r.check(http is not None, f"{where}: geogate {kind} httpGet", "not an HTTP probe"):
        return
    r.check(http.get("path") in paths, f"{where}: geogate {kind} path",
            f"{http.get('path')!r} not in {sorted(paths)}")
    port = port_of(c, http.get("port"))
    r.check(port is not None, f"{where}: geogate {kind} port {http.get('port')!r}",
            "no such port on the geogate container")
    admin = port_of(c, "admin")
    r.check(port == admin and admin is not None, f"{where}: geogate {kind} on the admin port",
            f"probe port {port} != admin port {admin}")


def config_path_from_args(c: dict) -> str | None:
    argv = list(c.get("command", []) or []) + list(c.get("args", []) or [])
    for i, a in enumerate(argv):
        if a in ("--config", "-c") and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--config="):
            return a.split("=", 1)[1]
    return None


def check_rendered(r: Report, name: str, path: Path, gens: dict[str, dict[str, Path]],
                   image_paths: set[str]) -> None:
    where = f"render[{name}]"
    docs = load_yaml_docs(path)
    idx = index(docs)
    deployments = [d for d in docs if d.get("kind") == "Deployment"]
    if not r.check(len(deployments) >= 1, f"{where}: a Deployment", "none rendered"):
        return
    configmaps = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "ConfigMap"}
    for dep in deployments:
        dname = f"{where} Deployment/{dep['metadata']['name']}"
        tmpl = dep["spec"]["template"]
        pod = tmpl["spec"]
        labels = tmpl["metadata"].get("labels", {})
        r.check(matches(dep["spec"]["selector"].get("matchLabels", {}), labels),
                f"{dname}: selector matches pod labels")
        c = geogate_container(pod)
        if not r.check(c is not None, f"{dname}: geogate container", "no container named geogate"):
            continue
        for cc in pod.get("containers", []) + pod.get("initContainers", []):
            check_security(r, dname, pod, cc)
        check_probe(r, dname, c, "livenessProbe", {"/healthz"})
        check_probe(r, dname, c, "readinessProbe", {"/readyz"})
        if c.get("startupProbe"):
            check_probe(r, dname, c, "startupProbe", {"/healthz", "/readyz"})
        # volumes and mounts
        volumes = {v["name"]: v for v in pod.get("volumes", []) or []}
        for cc in pod.get("containers", []) + pod.get("initContainers", []):
            for m in cc.get("volumeMounts", []) or []:
                r.check(m["name"] in volumes, f"{dname}: {cc['name']} mounts {m['name']}", "no such volume")
                if m["name"] in volumes and "configMap" in volumes[m["name"]]:
                    r.check("subPath" not in m, f"{dname}: {cc['name']} mounts ConfigMap {m['name']} without subPath",
                            "subPath mounts never see ConfigMap updates (no live reload)")
        mounted: dict[str, str] = {}  # absolute file path in the geogate container -> ConfigMap key
        cm_mounts: list[tuple[str, dict]] = []
        for vname, v in volumes.items():
            cmv = v.get("configMap")
            if not cmv:
                continue
            cm = configmaps.get(cmv["name"])
            if not r.check(cm is not None or cmv.get("optional"), f"{dname}: volume {vname} ConfigMap {cmv['name']}",
                           "not rendered"):
                continue
            data_keys = set((cm.get("data") or {}).keys()) | set((cm.get("binaryData") or {}).keys())
            # Generator keys (by name without the hash suffix).
            gen_name = next((g for g in gens if cmv["name"] == g or re.fullmatch(re.escape(g) + r"-[a-z0-9]{10}", cmv["name"])), None)
            items = cmv.get("items")
            projected = {}
            if items:
                for it in items:
                    r.check(it["key"] in data_keys, f"{dname}: volume {vname} item key {it['key']}",
                            f"not a key of ConfigMap {cmv['name']} ({sorted(data_keys)})")
                    if gen_name:
                        r.check(it["key"] in gens[gen_name], f"{dname}: volume {vname} item key {it['key']} in configMapGenerator",
                                f"generator {gen_name} has {sorted(gens[gen_name])}")
                    projected[it["path"]] = it["key"]
                for key in sorted(data_keys - {it["key"] for it in items}):
                    r.fail(f"{dname}: ConfigMap {cmv['name']} key {key}",
                           f"not projected by the `items` of volume {vname}: the pod would not see it")
            else:
                projected = {k: k for k in data_keys}
            for m in c.get("volumeMounts", []) or []:
                if m["name"] == vname:
                    cm_mounts.append((m["mountPath"], cm))
                    for p, k in projected.items():
                        mounted[os.path.normpath(os.path.join(m["mountPath"], p))] = k
        cfg_path = config_path_from_args(c)
        if not r.check(cfg_path is not None, f"{dname}: geogate --config", "no --config in args"):
            continue
        if not r.check(cfg_path in mounted, f"{dname}: --config {cfg_path} is in a mounted ConfigMap",
                       f"mounted files: {sorted(mounted)}"):
            continue
        cm = next(cm for mp, cm in cm_mounts if cfg_path.startswith(mp.rstrip("/") + "/"))
        toml_text = cm["data"][mounted[cfg_path]]
        try:
            cfg = tomllib.loads(toml_text)
        except tomllib.TOMLDecodeError as e:
            r.fail(f"{dname}: {cfg_path} parses as TOML", str(e))
            continue
        cfg_dir = os.path.dirname(cfg_path)
        writable = {m["mountPath"] for m in c.get("volumeMounts", []) or [] if not m.get("readOnly")}
        all_mounts = {m["mountPath"] for m in c.get("volumeMounts", []) or []}
        for src in cfg.get("source", []):
            for key in ("path", "cache"):
                if key not in src:
                    continue
                p = src[key] if os.path.isabs(src[key]) else os.path.normpath(os.path.join(cfg_dir, src[key]))
                what = f"{dname}: [[source]] {src.get('name')} {key} {src[key]}"
                if key == "cache":
                    r.check(any(p.startswith(w.rstrip("/") + "/") for w in writable), what,
                            "cache must be on a writable volume mount")
                elif p in mounted:
                    r.passed.append(what)
                elif any(p.startswith(mp.rstrip("/") + "/") for mp in all_mounts):
                    # A volume (database): something must put the file there.
                    fname = os.path.basename(p)
                    seeded = any(fname in " ".join(map(str, (ic.get("command") or []) + (ic.get("args") or [])))
                                 for ic in pod.get("initContainers", []) or [])
                    r.check(seeded, what, f"on a volume, but no init container writes {fname}")
                else:
                    r.fail(what, f"not in any mount of the geogate container; mounted files: {sorted(mounted)}")
        # ports and addresses
        for lst in cfg.get("listener", []):
            port = int(str(lst.get("address", "0.0.0.0:8080")).rsplit(":", 1)[1])
            r.check(port == port_of(c, "http"), f"{dname}: listener {lst.get('name')} port {port} == container port http",
                    f"container port http is {port_of(c, 'http')}")
        admin_addr = (cfg.get("admin") or {}).get("address", "127.0.0.1:9901")
        host, port = admin_addr.rsplit(":", 1)
        r.check(host in {"0.0.0.0", "[::]"}, f"{dname}: [admin] address binds all interfaces",
                f"{admin_addr}: probes and scrapes cannot reach 127.0.0.1 in a pod")
        r.check(int(port) == port_of(c, "admin"), f"{dname}: [admin] port {port} == container port admin",
                f"container port admin is {port_of(c, 'admin')}")
        # shutdown
        grace = duration_seconds((cfg.get("server") or {}).get("shutdown_grace", "30s"))
        pre = 0
        cmd = ((c.get("lifecycle") or {}).get("preStop") or {}).get("exec", {}).get("command", [])
        if cmd and cmd[-2:-1] == ["sleep"]:
            pre = int(cmd[-1])
        tgp = pod.get("terminationGracePeriodSeconds", 30)
        r.check(tgp > grace + pre, f"{dname}: terminationGracePeriodSeconds {tgp} > shutdown_grace {grace:g}s + preStop {pre}s")
        # image-internal paths used by the manifests
        for cc in pod.get("containers", []) + pod.get("initContainers", []):
            if cc.get("image", "").split(":")[0].split("/")[-1] != "geogate":
                continue
            argv = list(cc.get("command", []) or []) + list(((cc.get("lifecycle") or {}).get("preStop") or {}).get("exec", {}).get("command", []) or [])
            for a in argv:
                if a.startswith("/usr/") and not any(a.startswith(mp) for mp in {m["mountPath"] for m in cc.get("volumeMounts", []) or []}):
                    r.check(a in image_paths, f"{dname}: {cc['name']} uses {a} from the image",
                            "the Dockerfile does not put it there")
        # Service(s)
        for svc in (d for d in docs if d.get("kind") == "Service"):
            sname = f"{where} Service/{svc['metadata']['name']}"
            if not matches(svc["spec"].get("selector", {}), labels):
                continue
            for sp in svc["spec"].get("ports", []):
                tp = sp.get("targetPort", sp.get("port"))
                port = port_of(c, tp)
                r.check(port is not None and port == port_of(c, "http"), f"{sname}: targetPort {tp!r} is geogate's public port",
                        f"resolves to {port}, geogate's http port is {port_of(c, 'http')} (the app must not be exposed)")
        # PodMonitor(s)
        for pm in (d for d in docs if d.get("kind") == "PodMonitor"):
            pname = f"{where} PodMonitor/{pm['metadata']['name']}"
            if not r.check(matches(pm["spec"].get("selector", {}).get("matchLabels", {}), labels),
                           f"{pname}: selects the pod", "selector does not match the pod labels"):
                continue
            for ep in pm["spec"].get("podMetricsEndpoints", []):
                r.check(ep.get("port") in all_container_ports(pod), f"{pname}: port {ep.get('port')!r} exists",
                        f"named ports: {sorted(all_container_ports(pod))}")
                r.check(port_of(c, ep.get("port")) == port_of(c, "admin"), f"{pname}: scrapes the admin port")
                r.check(ep.get("path", "/metrics") == "/metrics", f"{pname}: path /metrics")
                jobs = [rl.get("replacement") for rl in ep.get("relabelings", []) or [] if rl.get("targetLabel") == "job"]
                r.check(jobs == ["geogate"], f"{pname}: sets job=\"geogate\" (alerts and dashboard expect it)")
        # PDB
        for pdb in (d for d in docs if d.get("kind") == "PodDisruptionBudget"):
            r.check(matches(pdb["spec"]["selector"].get("matchLabels", {}), labels),
                    f"{where} PodDisruptionBudget/{pdb['metadata']['name']}: selects the pod")
    r.check(any(d.get("kind") == "PodDisruptionBudget" for d in docs), f"{where}: a PodDisruptionBudget")
    r.check(any(d.get("kind") == "PodMonitor" for d in docs), f"{where}: a PodMonitor")
    _ = idx


# ---------------------------------------------------------------------------------------
# geogate.toml

def walk_toml(r: Report, where: str, node, path: str) -> None:
    if isinstance(node, list):
        for item in node:
            walk_toml(r, where, item, path)
        return
    if not isinstance(node, dict):
        return
    allowed = TOML_SCHEMA.get(path)
    if allowed is None:
        return
    for k, v in node.items():
        key = f"{path}.{k}" if path else k
        if k not in allowed:
            r.fail(f"{where}: key {key}", "not one of the agreed config keys")
            continue
        if key in TOML_ENUMS and v not in TOML_ENUMS[key]:
            r.fail(f"{where}: {key} = {v!r}", f"expected one of {sorted(TOML_ENUMS[key])}")
        if key in TOML_DURATIONS and not (isinstance(v, str) and DURATION.match(v)):
            r.fail(f"{where}: {key} = {v!r}", 'durations are "500ms", "10s", "5m", "1h"')
        walk_toml(r, where, v, key)


def check_toml_semantics(r: Report, where: str, cfg: dict) -> None:
    walk_toml(r, where, cfg, "")
    upstreams = {u.get("name") for u in cfg.get("upstream", [])}
    if "default_upstream" in cfg:
        r.check(cfg["default_upstream"] in upstreams, f"{where}: default_upstream names an upstream")
    for rt in cfg.get("route", []):
        r.check(rt.get("upstream") in upstreams, f"{where}: route upstream {rt.get('upstream')!r} exists")
    lists = {s.get("name") for s in cfg.get("source", []) if s.get("type") == "list"}
    for rule in cfg.get("rule", []):
        for name in rule.get("lists", []):
            r.check(name in lists, f"{where}: rule {rule.get('name')} list {name!r} is a list source")
    names = [x.get("name") for x in cfg.get("rule", [])]
    r.check(len(names) == len(set(names)), f"{where}: rule names unique")
    for lst in cfg.get("listener", []):
        ci = lst.get("client_ip") or {}
        if ci.get("source") in {"x-forwarded-for", "forwarded", "proxy-protocol", "header"}:
            r.check(bool(ci.get("trusted")), f"{where}: listener {lst.get('name')} trusts someone",
                    f"client_ip.source = {ci.get('source')!r} with no trusted CIDRs believes nobody")
        if ci.get("source") == "header":
            r.check(bool(ci.get("header")), f"{where}: listener {lst.get('name')} header set")


def check_tomls(r: Report) -> dict[Path, dict]:
    parsed = {}
    for p in sorted(DEPLOY.rglob("*.toml")):
        try:
            parsed[p] = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as e:
            r.fail(f"{rel(p)} parses", str(e))
            continue
        r.passed.append(f"{rel(p)} parses")
        if mine(p):
            check_toml_semantics(r, rel(p), parsed[p])
    # Overlay copies vs the base.
    base_path = DEPLOY / "kubernetes" / "base" / "geogate.toml"
    base = parsed.get(base_path)
    for p, cfg in parsed.items():
        if base is None or p == base_path or "overlays" not in p.parts:
            continue
        m = re.search(r"^# deploy-checks: may-differ = (\[.*\])$", p.read_text(), re.M)
        if not r.check(m is not None, f"{rel(p)}: has a `# deploy-checks: may-differ = [...]` line"):
            continue
        may = set(json.loads(m.group(1)))
        for key in sorted(set(base) | set(cfg)):
            if key not in may:
                r.check(base.get(key) == cfg.get(key), f"{rel(p)}: [{key}] same as the base",
                        "differs from deploy/kubernetes/base/geogate.toml (edit both, or list it in may-differ)")
    return parsed


# ---------------------------------------------------------------------------------------
# Dockerfile

def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    lines, cur = [], ""
    for raw in text.splitlines():
        s = raw.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if cur and s.startswith("#"):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        cur += s
        parts = cur.split(None, 1)
        lines.append((parts[0].upper(), parts[1] if len(parts) > 1 else ""))
        cur = ""
    return lines


def check_dockerfile(r: Report, parsed_tomls: dict[Path, dict]) -> set[str]:
    path = DEPLOY / "docker" / "Dockerfile"
    where = rel(path)
    if not r.check(path.is_file(), f"{where} exists"):
        return set()
    ins = dockerfile_instructions(path.read_text())
    image_paths: set[str] = set()
    stage = 0
    stages = sum(1 for k, _ in ins if k == "FROM")
    r.check(stages >= 2, f"{where}: multi-stage build")
    cmd = entry = user = None
    exposed: set[int] = set()
    health = ""
    for k, arg in ins:
        if k == "FROM":
            stage += 1
        elif k == "COPY":
            words = shlex.split(arg)
            opts = [w for w in words if w.startswith("--")]
            rest = [w for w in words if not w.startswith("--")]
            srcs, dest = rest[:-1], rest[-1]
            from_stage = any(o.startswith("--from=") for o in opts)
            for s in srcs:
                if not from_stage:
                    r.check((ROOT / s).exists(), f"{where}: COPY {s}", "not in the repository (build context = repo root)")
                if stage == stages:
                    image_paths.add(dest if not dest.endswith("/") else dest + os.path.basename(s))
        elif k == "RUN" and stage == stages:
            # Directories the runtime stage creates (`install -d ... DIRS` or `mkdir -p DIRS`,
            # shell or exec form).
            for d in re.findall(r"(?:install -d|mkdir -p)[^&\"]*?((?:/[\w./-]+\s*)+)", arg):
                image_paths.update(d.split())
        elif k == "CMD":
            cmd = json.loads(arg)
        elif k == "ENTRYPOINT":
            entry = json.loads(arg)
        elif k == "USER":
            user = arg
        elif k == "EXPOSE":
            exposed |= {int(x.split("/")[0]) for x in arg.split()}
        elif k == "HEALTHCHECK":
            health = arg
    r.check(entry == ["geogate"], f"{where}: ENTRYPOINT [\"geogate\"]", f"got {entry}")
    r.check(bool(cmd) and cmd[:1] == ["run"], f"{where}: CMD starts with run", f"got {cmd}")
    r.check(bool(user) and re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", user or "") is not None,
            f"{where}: numeric non-root USER", f"got {user!r}")
    r.check("/usr/local/bin/geogate" in image_paths, f"{where}: geogate on PATH (/usr/local/bin)")
    r.check("/usr/share/geogate/geo-whois-asn-country.mmdb" in image_paths, f"{where}: default database at /usr/share/geogate")
    cfg_path = None
    if cmd and "--config" in cmd:
        cfg_path = cmd[cmd.index("--config") + 1]
        r.check(cfg_path in image_paths, f"{where}: CMD config {cfg_path} is copied into the image")
    dcfg = parsed_tomls.get(DEPLOY / "docker" / "geogate.toml")
    if dcfg is not None:
        ports = {int(l["address"].rsplit(":", 1)[1]) for l in dcfg.get("listener", [])}
        admin = dcfg.get("admin", {}).get("address", "127.0.0.1:9901")
        ports.add(int(admin.rsplit(":", 1)[1]))
        r.check(ports <= exposed, f"{where}: EXPOSE covers the config's ports {sorted(ports)}", f"EXPOSE {sorted(exposed)}")
        r.check(admin.startswith("0.0.0.0:"), f"deploy/docker/geogate.toml: admin binds 0.0.0.0")
        r.check(f":{admin.rsplit(':', 1)[1]}/healthz" in health, f"{where}: HEALTHCHECK hits the admin port's /healthz")
        hc_bin = re.search(r'CMD \["([^"]+)"', health)
        r.check(bool(hc_bin) and hc_bin.group(1) in image_paths, f"{where}: HEALTHCHECK binary is in the image")
        for src in dcfg.get("source", []):
            p = src.get("path", "")
            if p:
                r.check(p in image_paths or any(p.startswith(d + "/") for d in image_paths),
                        f"deploy/docker/geogate.toml: source {src.get('name')} path {p} exists in the image")
    return image_paths


def dockerfile_runtime() -> dict:
    """What the runtime (last) stage of deploy/docker/Dockerfile puts together, for the
    image emulation in .ci/deploy-checks.sh: files copied from the repository, files copied
    from the builder, directories created, USER, ENTRYPOINT, CMD and the HEALTHCHECK command."""
    ins = dockerfile_instructions((DEPLOY / "docker" / "Dockerfile").read_text())
    stages = sum(1 for k, _ in ins if k == "FROM")
    out: dict = {"copies": [], "from_builder": [], "dirs": [], "user": None, "entrypoint": None,
                 "cmd": None, "healthcheck": None}
    stage = 0
    for k, arg in ins:
        if k == "FROM":
            stage += 1
        if stage != stages:
            continue
        if k == "COPY":
            words = shlex.split(arg)
            rest = [w for w in words if not w.startswith("--")]
            key = "from_builder" if any(w.startswith("--from=") for w in words) else "copies"
            out[key] += [[s, rest[-1]] for s in rest[:-1]]
        elif k == "RUN":
            for d in re.findall(r"(?:install -d|mkdir -p)[^&\"]*?((?:/[\w./-]+\s*)+)", arg):
                out["dirs"] += d.split()
        elif k == "USER":
            out["user"] = arg.strip()
        elif k == "ENTRYPOINT":
            out["entrypoint"] = json.loads(arg)
        elif k == "CMD":
            out["cmd"] = json.loads(arg)
        elif k == "HEALTHCHECK":
            m = re.search(r"\bCMD\s+(\[.*\])\s*$", arg)
            out["healthcheck"] = json.loads(m.group(1)) if m else None
    return out


# ---------------------------------------------------------------------------------------
# README and docs/: the configuration reference, the metrics reference and the alert runbooks
# against the source, the README's two commands

README = ROOT / "README.md"
CONFIG_DOC = ROOT / "docs" / "configuration.md"    # "## Configuration reference"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"   # "## Metrics", "## Alerts"
# The README's two commands, exactly as CI (.ci/run) and the quickstart use them.
README_COMMANDS = ["cargo run --release -- run", "cargo test --locked"]
# Which configuration-reference table(s) document each struct of src/config/file.rs.
CONFIG_STRUCT_TABLES = {
    "FileServer": ["server"], "FileListener": ["listener"], "FileClientIp": ["listener"],
    "FileTls": ["listener"], "FileCertPair": ["listener"],
    "FileAdmin": ["admin"], "FileUpstream": ["upstream"], "FileRoute": ["route"],
    "FileSource": ["source"], "FileFields": ["source"], "FileSet": ["source"], "FileMaxMind": ["source"],
    "FilePolicy": ["policy", "policy.tag_headers", "policy.block"],
    "FileTagHeaders": ["policy.tag_headers"], "FileBlock": ["policy.block"], "FileRule": ["rule"],
    "FileLimits": ["limits"], "FileReload": ["reload"], "FileAccessLog": ["access_log"],
}


def doc_section(text: str, title: str) -> str:
    """The body of the `## title` section of a Markdown text (up to the next `## `)."""
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    return m.group(1) if m else ""


def config_structs() -> dict[str, list[str]]:
    """{struct name: TOML keys} of src/config/file.rs (serde renames applied)."""
    src = (ROOT / "src" / "config" / "file.rs").read_text()
    out: dict[str, list[str]] = {}
    for m in re.finditer(r"struct (File\w+) \{(.*?)^\}", src, re.S | re.M):
        keys, rename = [], None
        for line in m.group(2).splitlines():
            rm = re.search(r'rename = "([^"]+)"', line)
            if rm:
                rename = rm.group(1)
            fm = re.match(r"\s*pub (\w+):", line)
            if fm:
                keys.append(rename or fm.group(1))
                rename = None
        out[m.group(1)] = keys
    return out


def check_readme(r: Report) -> None:
    where = rel(README)
    if not r.check(README.is_file(), f"{where} exists"):
        return
    text = README.read_text()
    for cmd in README_COMMANDS:
        r.check(re.search(rf"(?m)^    {re.escape(cmd)}(?:\s|$)", text) is not None,
                f"{where}: shows the command `{cmd}`", "as an indented line of its own")
    r.check(QUICKSTART.search(text) is not None, f"{where}: has the quickstart block",
            "<!-- quickstart:begin ... --> ... <!-- quickstart:end -->")
    for doc in (CONFIG_DOC, OPERATIONS_DOC):
        r.check(f"]({rel(doc)}" in text, f"{where}: links to {rel(doc)}")


def check_config_doc(r: Report) -> None:
    where = rel(CONFIG_DOC)
    if not r.check(CONFIG_DOC.is_file(), f"{where} exists"):
        return
    text = CONFIG_DOC.read_text()

    # Configuration reference: every key serde accepts is shown in its table.
    ref = doc_section(text, "Configuration reference")
    block = re.search(r"```toml\n(.*?)```", ref, re.S)
    if not r.check(block is not None, f"{where}: Configuration reference has a toml block"):
        return
    try:
        tomllib.loads(block.group(1))
        r.check(True, f"{where}: configuration reference is valid TOML")
    except tomllib.TOMLDecodeError as e:
        r.fail(f"{where}: configuration reference is valid TOML", str(e))
    tables: dict[str, str] = {"": ""}
    cur = ""
    for line in block.group(1).splitlines():
        h = re.match(r"^\[\[?([\w.]+)\]\]?", line)
        if h:
            cur = h.group(1)
            tables.setdefault(cur, "")
        tables[cur] += line + "\n"
    structs = config_structs()
    r.check(len(structs) >= 15, "src/config/file.rs: config structs found",
            f"only {sorted(structs)}; did the file change style?")
    for key in structs.get("FileConfig", []):
        shown = key in tables or re.search(rf"(?m)^#?\s*{key}\s*=", tables[""]) is not None
        r.check(shown, f"{where}: configuration reference shows top-level `{key}`")
    for struct, keys in structs.items():
        if struct == "FileConfig":
            continue
        names = CONFIG_STRUCT_TABLES.get(struct)
        if not r.check(names is not None, f"{where}: src/config/file.rs {struct} mapped to a reference table",
                       "add it to CONFIG_STRUCT_TABLES in .ci/check_deploy_refs.py"):
            continue
        body = "".join(tables.get(n, "") for n in names)
        headers = set(tables)
        for key in keys:
            shown = (re.search(rf"(?<![\w.]){key}\s*=", body) is not None
                     or any(f"{n}.{key}" in headers for n in names)
                     or (struct == "FileSet" and re.search(rf"\b{key}\b", body) is not None))
            r.check(shown, f"{where}: configuration reference shows [{names[0]}] `{key}`",
                    f"src/config/file.rs {struct} accepts it")



def check_operations_doc(r: Report, exported_src: dict[str, set[str]]) -> None:
    where = rel(OPERATIONS_DOC)
    if not r.check(OPERATIONS_DOC.is_file(), f"{where} exists"):
        return
    text = OPERATIONS_DOC.read_text()

    # Metrics reference: the table lists exactly the families src/metrics.rs registers,
    # with their label names.
    sec = doc_section(text, "Metrics")
    rows = {}
    for line in sec.splitlines():
        m = re.match(r"^\| `(geogate_[a-z0-9_]+)` \|[^|]*\|([^|]*)\|", line)
        if m:
            rows[m.group(1)] = set(re.findall(r"`([a-z_]+)`", m.group(2)))
    for name, labels in sorted(exported_src.items()):
        if r.check(name in rows, f"{where}: metrics reference lists {name}", "exported by src/metrics.rs"):
            r.check(rows[name] == labels, f"{where}: metrics reference labels of {name}",
                    f"{where} {sorted(rows[name])}, src/metrics.rs {sorted(labels)}")
    for name in sorted(set(rows) - set(exported_src)):
        r.fail(f"{where}: metrics reference lists {name}", "src/metrics.rs does not export it")

    # Alerts: every alert of deploy/prometheus/alerts.yml has a row in the table and a
    # `### Name` section saying what it means and what to do; no section for an alert that
    # is not there.
    alerts_yml = DEPLOY / "prometheus" / "alerts.yml"
    alerts = {rule["alert"]: rule for g in load_yaml_docs(alerts_yml)[0].get("groups", [])
              for rule in g.get("rules", []) if "alert" in rule}
    sec = doc_section(text, "Alerts")
    r.check(bool(sec), f"{where}: has an Alerts section")
    parts = re.split(r"(?m)^### ", sec)[1:]
    sections = {p.split("\n", 1)[0].strip(): p for p in parts}
    for name in sorted(alerts):
        body = sections.get(name)
        if r.check(body is not None, f"{where}: alert {name} has a section", f"{rel(alerts_yml)} defines it"):
            r.check("**Means:**" in body and "**Do:**" in body, f"{where}: alert {name} says what it means and what to do",
                    "**Means:** ... **Do:** ...")
        r.check(re.search(rf"(?m)^\| \[?`{name}`", sec) is not None, f"{where}: alert {name} in the alerts table")
    for name in sorted(set(sections) - set(alerts)):
        r.fail(f"{where}: alert section {name}", f"{rel(alerts_yml)} has no such alert")


# ---------------------------------------------------------------------------------------
# Markdown links: every relative `](path)` and `](path#anchor)` in the repository's *.md files
# resolves (anchors as GitHub generates them from headings)

LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.M)
FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.S | re.M)


def markdown_files() -> list[Path]:
    """The repository's *.md files, tracked or new (git's ignore rules apply)."""
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "--", "*.md"], cwd=ROOT,
                             check=True, capture_output=True, text=True).stdout
        return sorted(ROOT / p for p in out.splitlines() if (ROOT / p).is_file())
    except (OSError, subprocess.CalledProcessError):
        skip = {"target", ".git", "node_modules"}
        return sorted(p for p in ROOT.rglob("*.md") if not skip & set(p.relative_to(ROOT).parts))


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: its rendered text, lower case, without punctuation
    other than `-` and `_`, spaces turned into `-` (duplicates are numbered by the caller)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links: their text
    text = re.sub(r"<[^>]+>", "", text)                          # inline HTML
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def markdown_anchors(text: str) -> set[str]:
    text = FENCE.sub("", text)
    seen: dict[str, int] = {}
    out = set(re.findall(r"""<a\s+(?:name|id)=["']([^"']+)["']""", text))
    for m in re.finditer(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$", text, re.M):
        base = github_anchor(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def markdown_links(text: str) -> list[str]:
    text = FENCE.sub("", text)
    text = re.sub(r"(`+)(?:(?!\1).)+?\1", "", text, flags=re.S)  # inline code spans
    return LINK.findall(text) + REF_LINK.findall(text)


def check_links(r: Report) -> int:
    """Checks every relative link of every *.md file; returns how many were checked."""
    anchors: dict[Path, set[str]] = {}
    n = 0
    for md in markdown_files():
        for target in markdown_links(md.read_text()):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("//"):
                continue  # http:, https:, mailto:, ...
            n += 1
            path, _, anchor = target.partition("#")
            dest = (md.parent / unquote(path)).resolve() if path else md.resolve()
            where = f"{rel(md)}: link ({target})"
            if not r.check(dest.exists(), where, f"{rel(dest)} does not exist"):
                continue
            if anchor and dest.is_file() and dest.suffix == ".md":
                if dest not in anchors:
                    anchors[dest] = markdown_anchors(dest.read_text())
                r.check(unquote(anchor) in anchors[dest], where,
                        f"no heading in {rel(dest)} makes the anchor #{anchor}")
    return n


# ---------------------------------------------------------------------------------------
# helpers for .ci/deploy-checks.sh: the README quickstart and the image emulation

QUICKSTART = re.compile(r"<!-- quickstart:begin.*?-->\n(.*?)<!-- quickstart:end -->", re.S)


def quickstart_script(script: str, expected: str) -> int:
    """Writes the README's quickstart commands as a shell script, verbatim and in order, run
    under `set -e` from the repository root as a user pastes them (`cargo run --release` finds
    the binary deploy-checks.sh has just built), and its expected-output lines. Only a preamble
    is added: loopback up in the private network namespace, and no background job left
    running when a command fails."""
    m = QUICKSTART.search(README.read_text())
    if not m:
        print("README.md: no <!-- quickstart:begin --> ... <!-- quickstart:end --> block", file=sys.stderr)
        return 1
    lines = [line[4:] for line in m.group(1).splitlines() if line.startswith("    ")]
    cmds = [line for line in lines if not line.lstrip().startswith("#")]
    exp = [line.lstrip()[1:].strip() for line in lines if line.lstrip().startswith("#")]
    preamble = [
        "# harness, not the README's:",
        "ip link set lo up",
        "trap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT",
        "trap 'exit 143' TERM",
        "set -ex",
        "# the README's quickstart, verbatim:",
    ]
    Path(script).write_text("\n".join(preamble + cmds) + "\n")
    Path(expected).write_text("\n".join(exp) + "\n")
    print(f"README quickstart: {len(cmds)} commands, {len(exp)} expected-output lines")
    return 0 if cmds and exp else 1


def quickstart_compare(output: str, expected: str) -> int:
    """The expected lines appear in the output in the README's order: each one within a
    single output line, at or after the place where the previous one ended (a response body
    without a final newline shares its line with the next command's output). Whitespace-
    insensitive; `…` elides within the line, and a fragment in parentheses is commentary."""
    out = [" ".join(line.split()) for line in Path(output).read_text().splitlines()]
    at_line, at_col = 0, 0

    def find(frags: list[str], line: int, col: int) -> int | None:
        """The end of `frags` found in order in out[line] from `col`, or None."""
        for f in frags:
            i = out[line].find(f, col)
            if i < 0:
                return None
            col = i + len(f)
        return col

    bad = 0
    for n, line in enumerate(Path(expected).read_text().splitlines(), 1):
        frags = [" ".join(f.split()) for f in line.split("…")]
        frags = [f for f in frags if f and not (f.startswith("(") and f.endswith(")"))]
        for i in range(at_line, len(out)):
            end = find(frags, i, at_col if i == at_line else 0)
            if end is not None:
                at_line, at_col = i, end
                break
        else:
            bad += 1
            anywhere = any(find(frags, i, 0) is not None for i in range(len(out)))
            where = "only earlier, out of order" if anywhere else "nowhere"
            print(f"README expected-output line {n} {frags} is not in the output after line {at_line + 1} "
                  f"({where})")
    print(f"README quickstart: expected output {'differs' if bad else 'matches, in order'} ({bad} lines not found)")
    return 1 if bad else 0


def emulate_layout(root: str, binary: str) -> int:
    """Shell lines that lay out the Dockerfile's runtime stage under `root` (this machine's
    files standing in for the builder's outputs), and set ARGV, HEALTH, USERSPEC."""
    spec = dockerfile_runtime()
    q = shlex.quote
    builder = {"/out/geogate": binary, "/bin/busybox": "/bin/busybox",
               "/etc/ssl/certs/ca-certificates.crt": "/etc/ssl/certs/ca-certificates.crt"}
    out = []
    for src, dest in spec["copies"]:
        out.append(f"install -D -m 0644 {q(str(ROOT / src))} {q(root + dest)}")
    for src, dest in spec["from_builder"]:
        if src not in builder:
            print(f"Dockerfile copies {src} from the builder: tell emulate_layout in "
                  ".ci/check_deploy_refs.py which file stands in for it", file=sys.stderr)
            return 1
        mode = "0755" if os.access(builder[src], os.X_OK) else "0644"
        out.append(f"install -D -m {mode} {q(builder[src])} {q(root + dest)}")
    if not spec["user"] or not spec["healthcheck"] or not spec["entrypoint"]:
        print(f"Dockerfile: USER, HEALTHCHECK CMD [...] and ENTRYPOINT [...] needed, got {spec}", file=sys.stderr)
        return 1
    uid, _, gid = spec["user"].partition(":")
    for d in spec["dirs"]:
        out.append(f"install -d -o {q(uid)} -g {q(gid or uid)} -m 0750 {q(root + d)}")
    argv = spec["entrypoint"] + (spec["cmd"] or [])
    out.append("ARGV=(" + " ".join(q(a) for a in argv) + ")")
    out.append("HEALTH=(" + " ".join(q(a) for a in spec["healthcheck"]) + ")")
    out.append(f"USERSPEC={q(spec['user'])}")
    print("\n".join(out))
    return 0


# ---------------------------------------------------------------------------------------
# systemd, dashboard, alerts

def check_systemd(r: Report, parsed_tomls: dict[Path, dict]) -> None:
    path = DEPLOY / "systemd" / "geogate.service"
    where = rel(path)
    if not r.check(path.is_file(), f"{where} exists"):
        return
    kv: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            k, v = line.split("=", 1)
            kv.setdefault(k, []).append(v)
    start = kv.get("ExecStart", [""])[0]
    pre = kv.get("ExecStartPre", [""])[0]
    m = re.search(r"--config\s+(\S+)", start)
    r.check(bool(m), f"{where}: ExecStart has --config")
    if m:
        r.check(f"check --config {m.group(1)}" in pre, f"{where}: ExecStartPre checks the same config")
        cfg_dir = os.path.dirname(m.group(1))
        r.check(any(cfg_dir in v.split() for v in kv.get("ReadOnlyPaths", [])), f"{where}: ReadOnlyPaths covers {cfg_dir}")
    r.check(kv.get("ExecReload") == ["/bin/kill -HUP $MAINPID"], f"{where}: ExecReload sends SIGHUP")
    for key, want in {"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes",
                      "MemoryDenyWriteExecute": "yes", "LockPersonality": "yes", "RestrictNamespaces": "yes",
                      "Restart": "on-failure", "CapabilityBoundingSet": ""}.items():
        r.check(kv.get(key, [None])[0] == want, f"{where}: {key}={want}", f"got {kv.get(key)}")
    r.check(kv.get("RestrictAddressFamilies", [""])[0].split() == ["AF_INET", "AF_INET6", "AF_UNIX"],
            f"{where}: RestrictAddressFamilies")
    r.check("@system-service" in kv.get("SystemCallFilter", []), f"{where}: SystemCallFilter=@system-service")
    r.check(bool(kv.get("StateDirectory") or kv.get("CacheDirectory")), f"{where}: State/CacheDirectory")
    dcfg = parsed_tomls.get(DEPLOY / "docker" / "geogate.toml") or {}
    grace = duration_seconds((dcfg.get("server") or {}).get("shutdown_grace", "30s"))
    stop = kv.get("TimeoutStopSec", ["90"])[0]
    r.check(duration_seconds(stop if not stop.isdigit() else stop + "s") > grace,
            f"{where}: TimeoutStopSec {stop} > shutdown_grace {grace:g}s")


def dashboard_exprs(d: dict) -> list[tuple[str, str]]:
    out = []
    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels", []) or [])
    for p in panels(d.get("panels", [])):
        for t in p.get("targets", []) or []:
            if t.get("expr"):
                out.append((f"panel {p.get('id')} {p.get('title')!r} {t.get('refId')}", t["expr"]))
    for a in (d.get("annotations") or {}).get("list", []):
        if a.get("expr"):
            out.append((f"annotation {a.get('name')!r}", a["expr"]))
    for v in (d.get("templating") or {}).get("list", []):
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if v.get("type") == "query" and isinstance(q, str):
            m = re.fullmatch(r"label_values\((.*),\s*\w+\)", q.strip())
            if m:
                out.append((f"variable {v.get('name')}", m.group(1)))
    return out


def substitute_vars(expr: str) -> str:
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1h")
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", ".*", expr)


def check_dashboard(r: Report) -> list[tuple[str, str]]:
    path = DEPLOY / "grafana" / "geogate-dashboard.json"
    where = rel(path)
    if not r.check(path.is_file(), f"{where} exists"):
        return []
    d = json.loads(path.read_text())
    r.check(isinstance(d.get("schemaVersion"), int) and d["schemaVersion"] >= 36, f"{where}: schemaVersion >= 36")
    r.check(bool(d.get("uid")) and bool(d.get("title")), f"{where}: uid and title")
    variables = {v["name"]: v for v in (d.get("templating") or {}).get("list", [])}
    r.check(variables.get("DS_PROMETHEUS", {}).get("type") == "datasource", f"{where}: DS_PROMETHEUS datasource variable")
    ids, boxes = set(), []
    for p in d.get("panels", []):
        pid = p.get("id")
        r.check(pid not in ids, f"{where}: panel id {pid} unique")
        ids.add(pid)
        g = p.get("gridPos") or {}
        if not r.check(all(k in g for k in "hwxy") and g["x"] + g["w"] <= 24, f"{where}: panel {pid} gridPos"):
            continue
        for (oid, og) in boxes:
            if g["x"] < og["x"] + og["w"] and og["x"] < g["x"] + g["w"] and g["y"] < og["y"] + og["h"] and og["y"] < g["y"] + g["h"]:
                r.fail(f"{where}: panel {pid} overlaps panel {oid}", str(g))
        boxes.append((pid, g))
        if p.get("type") != "row":
            ds = (p.get("datasource") or {}).get("uid")
            r.check(ds == "${DS_PROMETHEUS}", f"{where}: panel {pid} datasource", f"uid {ds!r}")
            r.check(bool(p.get("targets")), f"{where}: panel {pid} has queries")
            for t in p.get("targets", []):
                r.check((t.get("datasource") or {}).get("uid") == "${DS_PROMETHEUS}", f"{where}: panel {pid} target datasource")
    exprs = dashboard_exprs(d)
    for label, e in exprs:
        for var in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", e):
            r.check(var.startswith("__") or var in variables, f"{where}: {label} variable ${var} defined")
    return exprs


def check_alerts(r: Report) -> None:
    path = DEPLOY / "prometheus" / "alerts.yml"
    where = rel(path)
    doc = load_yaml_docs(path)[0]
    names = set()
    for g in doc.get("groups", []):
        for rule in g.get("rules", []):
            if "alert" not in rule:
                continue
            names.add(rule["alert"])
            ann = rule.get("annotations") or {}
            for a in ("summary", "description", "runbook"):
                r.check(bool(ann.get(a)), f"{where}: {rule['alert']} annotation {a}")
            r.check((rule.get("labels") or {}).get("severity") in {"warning", "critical", "info"},
                    f"{where}: {rule['alert']} severity label")
    want = {"GeogateReloadsFailing", "GeogateDatabaseStale", "GeogateNoSnapshot", "GeogateUpstreamErrors",
            "GeogateBlockRateAnomaly", "GeogateUnresolvedClients", "GeogateDown"}
    r.check(want <= names, f"{where}: required alerts present", f"missing {sorted(want - names)}")
    tests = load_yaml_docs(DEPLOY / "prometheus" / "tests.yml")[0]
    tested = set()
    for t in tests.get("tests", []):
        for a in t.get("alert_rule_test", []) or []:
            tested.add(a["alertname"])
        for q in t.get("promql_expr_test", []) or []:
            tested |= set(re.findall(r'alertname="([A-Za-z]+)"', q.get("expr", "")))
    r.check(len(tested & names) >= 2, "deploy/prometheus/tests.yml: tests at least two alerts", f"tests {sorted(tested)}")
    r.note(f"alerts with unit tests: {', '.join(sorted(tested & names))}; without: {', '.join(sorted(names - tested)) or 'none'}")


# ---------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rendered", action="append", default=[], metavar="NAME=FILE",
                    help="kustomize output of deploy/kubernetes/{base,overlays/NAME}")
    ap.add_argument("--print-metrics", action="store_true",
                    help="print the metric names deploy/ uses, one per line, and exit")
    ap.add_argument("--emit-promql", metavar="FILE",
                    help="write the dashboard's queries as a Prometheus rules file (for promtool)")
    ap.add_argument("--print-dockerfile", action="store_true",
                    help="print what the Dockerfile's runtime stage assembles, as JSON, and exit")
    ap.add_argument("--quickstart-script", metavar="FILE", help="write the README quickstart as a script")
    ap.add_argument("--quickstart-expected", metavar="FILE", help="its expected-output lines")
    ap.add_argument("--quickstart-binary", metavar="PATH", help="geogate binary for the image emulation")
    ap.add_argument("--quickstart-compare", metavar="OUTPUT",
                    help="check OUTPUT against --quickstart-expected and exit")
    ap.add_argument("--emulate-layout", metavar="ROOT",
                    help="print shell lines laying out the Dockerfile's runtime stage under ROOT")
    ap.add_argument("--links", action="store_true",
                    help="check only the relative links of the repository's *.md files, and exit")
    args = ap.parse_args()
    if args.links:
        r = Report()
        n = check_links(r)
        for f in r.failures:
            print(f"FAIL: {f}")
        print(f"check_deploy_refs --links: {len(markdown_files())} Markdown files, {n} relative links, "
              f"{len(r.passed)} checks passed (targets and anchors), {len(r.failures)} failed")
        return 1 if r.failures else 0
    if args.quickstart_compare:
        return quickstart_compare(args.quickstart_compare, args.quickstart_expected)
    if args.quickstart_script:
        return quickstart_script(args.quickstart_script, args.quickstart_expected)
    if args.emulate_layout:
        return emulate_layout(args.emulate_layout, args.quickstart_binary)

    if not (ROOT / "src" / "metrics.rs").is_file() or not DEPLOY.is_dir():
        print("run from the repository root", file=sys.stderr)
        return 2

    if args.print_dockerfile:
        print(json.dumps(dockerfile_runtime(), indent=1))
        return 0

    r = Report()
    exported, histos = exported_metrics(r)
    used = check_metrics(r, exported, histos)
    if args.print_metrics:
        for name in sorted(used):
            print(name)
        return 0 if not r.failures else 1

    parsed = check_tomls(r)
    image_paths = check_dockerfile(r, parsed)
    gens: dict[str, dict[str, Path]] = {}
    kdirs = kustomization_dirs()
    for kdir in kdirs:
        for name, keys in check_kustomization(r, kdir).items():
            gens.setdefault(name, {}).update(keys)
    rendered = dict(x.split("=", 1) for x in args.rendered)
    for kdir in kdirs:
        name = kdir.name
        if name in rendered:
            check_rendered(r, name, Path(rendered[name]), gens, image_paths)
        else:
            r.note(f"{rel(kdir)}: not rendered (no --rendered {name}=FILE): manifest checks skipped")
    check_systemd(r, parsed)
    check_readme(r)
    check_config_doc(r)
    check_operations_doc(r, metric_families()[0])
    check_doc_metrics(r, exported, histos)
    r.note(f"{check_links(r)} relative links in the repository's *.md files checked")
    exprs = check_dashboard(r)
    check_alerts(r)
    if args.emit_promql:
        rules = [{"record": f"dashboard:q{i}", "expr": substitute_vars(e)} for i, (_, e) in enumerate(exprs)]
        Path(args.emit_promql).write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
        r.note(f"{len(rules)} dashboard queries written to {args.emit_promql}")

    for n in r.notes:
        print(f"note: {n}")
    for f in dict.fromkeys(r.failures):  # once each, in order
        print(f"FAIL: {f}")
    print(f"check_deploy_refs: {len(r.passed)} checks passed, {len(r.failures)} failed; "
          f"{len(used)} metric names in use")
    return 1 if r.failures else 0


if __name__ == "__main__":
    sys.exit(main())
