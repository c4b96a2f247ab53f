#!/usr/bin/env python3
"""make loadtest — a flash crowd end to end, with proof that nothing was oversold.

Starts its own server on a free port with a temporary database (or targets a running
one with URL=... and ADMIN_TOKEN=...), creates a sale through the admin API, runs the
load with a progress line, then reads the audit and /metrics and prints a summary.
Exits 1 when anything was oversold, any user passed the limit, or the audit is
inconsistent; 2 when the load could not run.

Knobs (environment): DURATION (10 s), CONNECTIONS (64), THREADS (1), STOCK (10000),
PER_USER_LIMIT (1), INVENTORY (atomic), SCENARIO (crowd | retry | browse | mix | burst),
USERS (1000, retry storm), BURST (5000, connections of the burst), URL, ADMIN_TOKEN,
FLASHSALE_BIN (build/flashsale).
"""
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TTY = sys.stderr.isatty()


def env(name, default):
    return os.environ.get(name) or default


def http(method, url, body=None, token=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metrics(base):
    """{(route, status): count} of flashsale_requests_total, plus the plain counters."""
    _, text = http("GET", base + "/metrics")
    out = {}
    for line in text.splitlines():
        m = re.match(r'flashsale_requests_total\{route="([^"]+)",status="([^"]+)"\} (\d+)', line)
        if m:
            out[(m.group(1), m.group(2))] = int(m.group(3))
        m = re.match(r"(flashsale_\w+)(\{[^}]*\})? ([\d.e+-]+)$", line)
        if m and not line.startswith("flashsale_requests_total"):
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


class LocalServer:
    """build/flashsale on a free port with a temporary SQLite file (or db=URI)."""

    def __init__(self, inventory, db=None, extra=(), prefix=()):
        self.tmp = tempfile.mkdtemp(prefix="flashsale-loadtest-")
        self.token = secrets.token_hex(16)
        binary = env("FLASHSALE_BIN", os.path.join(ROOT, "build", "flashsale"))
        cmd = [*prefix, binary, "--port", "0", "--db", db or os.path.join(self.tmp, "loadtest.db"), "--admin-token", self.token,
               "--demo-stock", "0", "--inventory", inventory, "--static", os.path.join(ROOT, "static"), *extra]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.port = None
        self.log = []
        ready = threading.Event()

        def read():
            for line in self.proc.stderr:
                self.log.append(line.rstrip())
                m = re.search(r"listening on http://[\d.]+:(\d+)", line)
                if m:
                    self.port = int(m.group(1))
                    ready.set()
            ready.set()
        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(15) or not self.port:
            self.stop()
            sys.exit("loadtest: the server did not start:\n" + "\n".join(self.log[-20:]))
        self.url = f"http://127.0.0.1:{self.port}"

    def rss_kib(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))
        except (OSError, AttributeError):
            return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


class Progress(threading.Thread):
    """One line a second: elapsed, requests/s, stock left.  Also notes when stock hits 0."""

    def __init__(self, base, sale, duration):
        super().__init__(daemon=True)
        self.base, self.sale, self.duration = base, sale, duration
        self.t0 = time.time()
        self.sold_out_at = None
        self.halt = threading.Event()

    def run(self):
        last_print = 0
        while not self.halt.is_set():
            try:
                _, body = http("GET", f"{self.base}/api/v1/stats", timeout=2)
                stats = json.loads(body)
                sale = next((s for s in stats["sales"] if s["id"] == self.sale), None)
            except (OSError, ValueError, KeyError):
                stats, sale = None, None
            now = time.time() - self.t0
            if sale and sale["stock_left"] == 0 and self.sold_out_at is None:
                self.sold_out_at = now
            if stats and now - last_print >= 1:
                last_print = now
                line = (f"  {now:5.1f}/{self.duration:.0f} s   {stats['requests_per_s']:>10,.0f} req/s   "
                        f"{stats['orders_per_s']:>8,.0f} orders/s   stock left {sale['stock_left'] if sale else '?':>8}"
                        f"   p99 {stats['latency_p99_ms'] or 0:.2f} ms")
                sys.stderr.write(("\r" + line) if TTY else line + "\n")
                sys.stderr.flush()
            self.halt.wait(0.1)
        if TTY:
            sys.stderr.write("\n")


def run_wrk(scenario, base, sale, duration, connections, threads):
    script = os.path.join(ROOT, "loadtest", scenario + ".lua")
    args = [str(sale)]
    if scenario == "retry":
        args.append(env("USERS", "1000"))
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", script, base, "--"] + args
    p = subprocess.run(cmd, capture_output=True, text=True)
    m = re.search(r"WRKJSON (\{.*\})", p.stdout)
    if not m:
        sys.exit(f"loadtest: wrk failed:\n{p.stdout}\n{p.stderr}")
    r = json.loads(m.group(1))
    return {"requests": r["requests"], "duration_s": r["duration_s"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
            "p999_ms": r["p999_ms"], "max_ms": r["max_ms"], "errors": r["errors"]}


def run_burst(base, sale, connections):
    loadgen = os.path.join(ROOT, "build", "loadgen")
    cmd = [loadgen, "--url", base, "--burst", str(connections), "--path", f"/api/v1/sales/{sale}/orders", "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    try:
        r = json.loads(p.stdout)
    except ValueError:
        sys.exit(f"loadtest: loadgen failed:\n{p.stdout}\n{p.stderr}")
    lat = r["latency_ms"]
    return {"requests": r["completed"], "duration_s": r["duration_s"], "p50_ms": lat["p50"], "p99_ms": lat["p99"],
            "p999_ms": lat["p999"], "max_ms": lat["max"], "errors": r["errors"] + r["timeouts"]}


def main():
    scenario = env("SCENARIO", "crowd")
    duration = float(env("DURATION", "10"))
    connections = int(env("CONNECTIONS", "64"))
    threads = int(env("THREADS", "1"))
    stock = int(env("STOCK", "10000"))
    limit = int(env("PER_USER_LIMIT", "1"))
    inventory = env("INVENTORY", "atomic")
    if scenario not in ("crowd", "retry", "browse", "mix", "burst"):
        sys.exit(f"loadtest: unknown SCENARIO {scenario} (crowd, retry, browse, mix, burst)")
    for tool in (["loadgen"] if scenario == "burst" else ["wrk"]):
        if tool == "wrk" and not shutil.which("wrk"):
            sys.exit("loadtest: wrk is not installed (make deps)")
    server = None
    if env("URL", ""):
        base, token = env("URL", "").rstrip("/"), env("ADMIN_TOKEN", "")
        where = base
    else:
        server = LocalServer(inventory)
        base, token = server.url, server.token
        where = f"{base} (own server, temporary database)"
    try:
        code, body = http("POST", base + "/api/v1/sales", {"name": f"loadtest {scenario}", "stock": stock,
                                                           "per_user_limit": limit}, token)
        if code != 201:
            sys.exit(f"loadtest: creating the sale failed: {code} {body}")
        sale = json.loads(body)["id"]
        print(f"flashsale loadtest: scenario {scenario}, inventory {inventory if server else '(remote)'}, "
              f"{connections if scenario != 'burst' else env('BURST', '5000')} connections, "
              f"{duration:.0f} s, sale {sale} with {stock} units (limit {limit}) at {where}", file=sys.stderr)
        before = metrics(base)
        progress = Progress(base, sale, duration)
        progress.start()
        t0 = time.time()
        if scenario == "burst":
            load = run_burst(base, sale, int(env("BURST", "5000")))
        else:
            load = run_wrk(scenario, base, sale, int(duration), connections, threads)
        progress.halt.set()
        progress.join()
        elapsed = time.time() - t0
        after = metrics(base)
        _, body = http("GET", f"{base}/api/v1/sales/{sale}/audit")
        audit = json.loads(body)
        rss = server.rss_kib() if server else None
    finally:
        if server:
            server.stop()

    def delta(route, status):
        return after.get((route, status), 0) - before.get((route, status), 0)
    statuses = {}
    for key in set(k for k in after if isinstance(k, tuple)):
        if key[0] in ("order_create", "sale"):
            statuses[key[1]] = statuses.get(key[1], 0) + delta(*key)
    other = sum(v for k, v in statuses.items() if k not in ("200", "201", "409", "503"))
    sold_out = progress.sold_out_at
    oversold_gauge = after.get(f'flashsale_oversold{{sale="{sale}"}}')
    ok = audit["oversold"] == 0 and audit["users_over_limit"] == 0 and audit["consistent"]
    rows = [
        ("duration", f"{load['duration_s']:.1f} s"),
        ("requests", f"{load['requests']:,}"),
        ("requests/s", f"{load['requests'] / max(load['duration_s'], 1e-9):,.0f}"),
        ("200 / 201 / 409 / 503 / other",
         f"{statuses.get('200', 0):,} / {statuses.get('201', 0):,} / {statuses.get('409', 0):,} / "
         f"{statuses.get('503', 0):,} / {other:,}"),
        ("client errors (connect/read/timeout)", f"{load['errors']:,}"),
        ("time until sold out", f"{sold_out:.2f} s" if sold_out is not None else "not sold out"),
        ("latency p50 / p99 / p99.9 / max",
         f"{load['p50_ms']:.2f} / {load['p99_ms']:.2f} / {load['p999_ms']:.2f} / {load['max_ms']:.2f} ms"),
        ("orders in the database", f"{audit['orders']:,} ({audit['units_sold']:,} units of {audit['stock_total']:,})"),
        ("oversold", f"{audit['oversold']}" + (f" (gauge {oversold_gauge:.0f})" if oversold_gauge is not None else "")),
        ("users over the limit", f"{audit['users_over_limit']}"),
        ("consistent", "yes" if audit["consistent"] else "NO"),
    ]
    if rss:
        rows.append(("server peak RSS", f"{rss / 1024:.1f} MiB"))
    width = max(len(k) for k, _ in rows)
    print()
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    print()
    print("PASS: sold exactly what there was, nobody over the limit" if ok else
          "FAIL: the audit found overselling, a user over the limit, or an inconsistency")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
