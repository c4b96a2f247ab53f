#!/usr/bin/env python3
"""make bench — flashsale measured against the machine's limits, in one run.

Every figure is measured here and now, with the same client settings (wrk -t1 -c64,
keep-alive, the same Lua script), and reported as a ratio to anchors measured in the
same run:
  1. nginx answering a fixed 200 JSON body to the very same requests: the HTTP ceiling
  2. flashsale under a flash crowd (stock far below demand: almost every answer a 409)
  3. the durable path (stock far above demand: every request commits, synchronous=FULL),
     beside storebench: the same group-committed SQLite writes with no HTTP at all
  4. every --inventory strategy on the crowd and the durable path, with oversold counts
  5. latency percentiles, peak RSS, a connection sweep, and 10,000 connections held
  6. the crowd and the durable path again with --model processes --processes 2 (a row
     saying "not available in this build" when the binary refuses the flag)
Prints a table, writes results/bench-<time>.json (and results/latest.json), and draws
results/bench.png with gnuplot.  Knobs: DURATION (5 s per run), CONNECTIONS (64),
SWEEP ("64 128 256 1024 4096"), HOLD (10000), STRATEGIES ("atomic mutex sqlite unsafe").
`bench.py --report results/<file>.json` prints a saved run's tables again.
"""
import glob
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
import nginx  # noqa: E402
from pgserver import PgServer  # noqa: E402
from run import LocalServer, http, metrics  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DURATION = int(os.environ.get("DURATION", "5"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "64"))
SWEEP = [int(x) for x in os.environ.get("SWEEP", "64 128 256 1024 4096").split()]
HOLD = int(os.environ.get("HOLD", "10000"))
STRATEGIES = os.environ.get("STRATEGIES", "atomic mutex sqlite unsafe").split()
NGINX_BODY = '{"error":"sold_out","message":"not enough stock left"}'
PROCESSES_ARGS = ("--model", "processes", "--processes", "2")


def step(msg):
    print(f"-- {msg}", file=sys.stderr, flush=True)


def wrk(url, sale, connections=CONNECTIONS, duration=DURATION, script="crowd.lua"):
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s",
           os.path.join(ROOT, "loadtest", script), url, "--", str(sale)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    m = re.search(r"WRKJSON (\{.*\})", p.stdout)
    if not m:
        raise RuntimeError(f"wrk failed: {p.stdout} {p.stderr}")
    r = json.loads(m.group(1))
    r["rps"] = r["requests"] / r["duration_s"]
    return r


def nginx_anchor():
    server = nginx.fixed(NGINX_BODY)
    try:
        return wrk(server.url, 1)
    finally:
        server.stop()


def model_refused(extra):
    """None when build/flashsale takes these flags, else its complaint: a build without
    the model refuses the flag before it starts (the flags are parsed before --version)."""
    binary = os.environ.get("FLASHSALE_BIN") or os.path.join(ROOT, "build", "flashsale")
    p = subprocess.run([binary, *extra, "--version"], capture_output=True, text=True)
    return None if p.returncode == 0 else (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]


def group_pids(pid):
    """pid and its descendants: --model processes serves from fs-main's children."""
    pids, i = [pid], 0
    while i < len(pids):
        for kids in glob.glob(f"/proc/{pids[i]}/task/*/children"):
            try:
                pids += [int(x) for x in open(kids).read().split()]
            except OSError:
                pass
        i += 1
    return pids


def group_figures(pid):
    """(CPU seconds used, sum of peak RSS in KiB, sum of PSS in KiB) over the server's
    processes.  Peak RSS counts a page shared between processes (the inventory region,
    libraries) once in each; PSS, now rather than at the peak, splits it between them."""
    cpu, rss, pss = 0.0, 0, 0
    for p in group_pids(pid):
        try:
            stat = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            cpu += (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
            rss += int(re.search(r"VmHWM:\s+(\d+)", open(f"/proc/{p}/status").read()).group(1))
            pss += int(re.search(r"^Pss:\s+(\d+)", open(f"/proc/{p}/smaps_rollup").read(), re.M).group(1))
        except (OSError, AttributeError, IndexError, ValueError):
            pass
    return cpu, rss, pss


def flashsale_run(inventory, stock, label, connections=CONNECTIONS, extra=()):
    """A fresh server and sale; returns wrk's figures plus the server's own counts."""
    srv = LocalServer(inventory, extra=extra)
    try:
        code, body = http("POST", srv.url + "/api/v1/sales", {"name": label, "stock": stock}, srv.token)
        sale = json.loads(body)["id"]
        before = metrics(srv.url)
        cpu0, _, _ = group_figures(srv.proc.pid)
        r = wrk(srv.url, sale, connections=connections)
        cpu1, rss, pss = group_figures(srv.proc.pid)
        after = metrics(srv.url)
        created = after.get(("order_create", "201"), 0) - before.get(("order_create", "201"), 0)
        _, body = http("GET", f"{srv.url}/api/v1/sales/{sale}/audit")
        audit = json.loads(body)
        r.update(orders=created, orders_per_s=created / r["duration_s"], oversold=audit["oversold"],
                 consistent=audit["consistent"], users_over_limit=audit["users_over_limit"],
                 rss_mib=rss / 1024, pss_mib=pss / 1024, cpu_s=cpu1 - cpu0, batch_mean=(
                     after.get("flashsale_commit_batch_size_sum", 0) / max(after.get("flashsale_commit_batch_size_count", 0), 1)))
        return r
    finally:
        srv.stop()


def cluster_rows():
    """The durable path on PostgreSQL: one node, then three behind nginx."""
    pg = PgServer().start()
    rows = []
    try:
        for nodes_n in (1, 3):
            db = pg.create_db(f"bench{nodes_n}")
            nodes = [LocalServer("atomic", db=db) for _ in range(nodes_n)]
            lb = nginx.balancer([n.port for n in nodes]) if nodes_n > 1 else None
            try:
                url = lb.url if lb else nodes[0].url
                code, body = http("POST", nodes[0].url + "/api/v1/sales", {"name": "bench", "stock": 1000000000},
                                  nodes[0].token)
                sale = json.loads(body)["id"]
                time.sleep(0.3)  # the other nodes learn the sale (NOTIFY)
                r = wrk(url, sale)
                _, body = http("GET", f"{nodes[0].url}/api/v1/sales/{sale}/audit")
                audit = json.loads(body)
                r.update(nodes=nodes_n, orders_per_s=audit["units_sold"] / r["duration_s"], oversold=audit["oversold"],
                         consistent=audit["consistent"])
                rows.append(r)
            finally:
                if lb:
                    lb.stop()
                for n in nodes:
                    n.stop()
    finally:
        pg.stop()
    return rows


def storebench(inflight):
    p = subprocess.run([os.path.join(ROOT, "build", "storebench"), "--seconds", str(DURATION), "--inflight",
                        str(inflight), "--json"], capture_output=True, text=True)
    return json.loads(p.stdout)


def hold_connections(n):
    """n keep-alive connections opened, then three rounds of one purchase on each."""
    srv = LocalServer("atomic")
    try:
        code, body = http("POST", srv.url + "/api/v1/sales", {"name": "hold", "stock": 1000}, srv.token)
        sale = json.loads(body)["id"]
        p = subprocess.run([os.path.join(ROOT, "build", "loadgen"), "--url", srv.url, "--burst", str(n), "--rounds",
                            "3", "--source-ips", "4", "--path", f"/api/v1/sales/{sale}/orders", "--json"],
                           capture_output=True, text=True)
        try:
            r = json.loads(p.stdout)
        except ValueError:
            raise RuntimeError(f"loadgen failed (exit {p.returncode}): {p.stderr[-2000:]}")
        r["rss_mib"] = (srv.rss_kib() or 0) / 1024
        return r
    finally:
        srv.stop()


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = re.search(r"model name\s*:\s*(.*)", f.read()).group(1)
    except (OSError, AttributeError):
        pass
    ver = lambda cmd: subprocess.run(cmd, capture_output=True, text=True, shell=True).stdout.strip()  # noqa: E731
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "libmicrohttpd": ver("pkg-config --modversion libmicrohttpd"),
            "sqlite": ver("pkg-config --modversion sqlite3"), "nginx": ver("nginx -v 2>&1 | sed 's/.*\\///'"),
            "wrk": "wrk -t1 -c%d -d%ds keep-alive, loadtest/crowd.lua" % (CONNECTIONS, DURATION)}


def chart(res, path):
    if not shutil.which("gnuplot"):
        return False
    data = os.path.join(os.path.dirname(path), "bench.dat")
    with open(data, "w") as f:
        f.write("# strategy crowd_rps durable_orders crowd_p99 durable_p99\n")
        for s in res["strategies"]:
            f.write(f"{s['strategy']} {s['crowd']['rps']:.0f} {s['durable']['orders_per_s']:.0f} "
                    f"{s['crowd']['p99_ms']:.3f} {s['durable']['p99_ms']:.3f}\n")
    nginx = res["nginx"]["rps"]
    script = f"""
set terminal pngcairo size 1100,460 font "sans,10"
set output '{path}'
set multiplot layout 1,2 title "flashsale on {res['machine']['cores']} cores — {time.strftime('%Y-%m-%d')} (nginx fixed 200: {nginx:,.0f} req/s)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set key top right
set grid ytics
set ylabel "per second"
set format y "%.0s%c"
set title "Throughput per strategy"
plot '{data}' using 2:xtic(1) title "flash crowd req/s" lc rgb "#3b7dd8", '' using 3 title "durable orders/s" lc rgb "#2a9d5c", {nginx} with lines lw 2 dt 2 lc rgb "#888888" title "nginx 200"
set title "p99 latency per strategy"
set ylabel "ms"
set format y "%g"
set logscale y
plot '{data}' using 4:xtic(1) title "flash crowd p99" lc rgb "#3b7dd8", '' using 5 title "durable p99" lc rgb "#2a9d5c"
unset multiplot
"""
    p = subprocess.run(["gnuplot"], input=script, capture_output=True, text=True)
    if p.returncode != 0:
        print(p.stderr, file=sys.stderr)
    return p.returncode == 0


def main():
    for tool in ("wrk", "nginx", "gnuplot"):
        if not shutil.which(tool) and not os.path.exists("/usr/sbin/" + tool):
            sys.exit(f"bench: {tool} is missing (make deps)")
    t0 = time.time()
    res = {"machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "duration_s": DURATION,
           "connections": CONNECTIONS}
    step("nginx fixed 200 (the HTTP ceiling)")
    res["nginx"] = nginx_anchor()
    step("storebench: group-committed SQLite writes, no HTTP")
    res["store"] = {"inflight_64": storebench(64), "inflight_256": storebench(256), "one_per_txn": None}
    p = subprocess.run([os.path.join(ROOT, "build", "storebench"), "--seconds", "2", "--inflight", "1", "--batch",
                        "1", "--json"], capture_output=True, text=True)
    res["store"]["one_per_txn"] = json.loads(p.stdout)
    res["strategies"] = []
    for inv in STRATEGIES:
        step(f"{inv}: flash crowd (stock 1000, every request a new user)")
        crowd = flashsale_run(inv, 1000, "bench crowd")
        step(f"{inv}: durable path (stock 10^9: every request commits)")
        durable = flashsale_run(inv, 1000000000, "bench durable")
        res["strategies"].append({"strategy": inv, "crowd": crowd, "durable": durable})
    refused = model_refused(PROCESSES_ARGS)
    res["processes"] = {"args": " ".join(PROCESSES_ARGS), "refused": refused}
    if not refused:
        step("atomic, --model processes --processes 2: flash crowd")
        res["processes"]["crowd"] = flashsale_run("atomic", 1000, "bench crowd", extra=PROCESSES_ARGS)
        step("atomic, --model processes --processes 2: durable path")
        res["processes"]["durable"] = flashsale_run("atomic", 1000000000, "bench durable", extra=PROCESSES_ARGS)
    res["sweep"] = []
    for c in SWEEP:
        step(f"atomic flash crowd with {c} connections")
        r = flashsale_run("atomic", 1000, "bench sweep", connections=c)
        r["connections"] = c
        res["sweep"].append(r)
    step("cluster: durable path on PostgreSQL, 1 node and 3 nodes behind nginx")
    try:
        res["cluster"] = cluster_rows()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        res["cluster"] = []
        print(f"bench: cluster rows skipped: {e}", file=sys.stderr)
    step(f"{HOLD} connections held, three rounds of one purchase each (loadgen burst)")
    res["hold"] = hold_connections(HOLD)
    res["elapsed_s"] = time.time() - t0
    text = report(res)
    print(text)
    os.makedirs(os.path.join(ROOT, "results"), exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in (f"bench-{stamp}.json", "latest.json"):
        with open(os.path.join(ROOT, "results", name), "w") as f:
            json.dump(res, f, indent=2)
    with open(os.path.join(ROOT, "results", "latest.md"), "w") as f:
        f.write(text + "\n")
    png = os.path.join(ROOT, "results", "bench.png")
    drew = chart(res, png)
    print(f"\nraw results: results/bench-{stamp}.json; table: results/latest.md" + ("; chart: results/bench.png" if drew else "")
          + f"; took {res['elapsed_s']:.0f} s", file=sys.stderr)


def report(res):
    """The tables and the targets line, from one run's results (bench.py --report FILE
    renders a saved run again)."""
    nginx = res["nginx"]["rps"]
    atomic = next((s for s in res["strategies"] if s["strategy"] == "atomic"), res["strategies"][0])
    lines = []
    m = res["machine"]
    lines.append(f"machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}; libmicrohttpd {m['libmicrohttpd']}, "
                 f"SQLite {m['sqlite']}, nginx {m['nginx']}; client: {m['wrk']}")
    lines.append("")
    lines.append(f"| what | per second | × nginx | p50 ms | p99 ms | p99.9 ms | oversold | peak RSS |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    n = res["nginx"]
    lines.append(f"| nginx fixed 200 (HTTP ceiling) | {nginx:,.0f} req | 1.00 | {n['p50_ms']:.2f} | {n['p99_ms']:.2f} | {n['p999_ms']:.2f} | | |")
    for s in res["strategies"]:
        c, d = s["crowd"], s["durable"]
        lines.append(f"| {s['strategy']}: flash crowd | {c['rps']:,.0f} req | {c['rps'] / nginx:.2f} | {c['p50_ms']:.2f} | "
                     f"{c['p99_ms']:.2f} | {c['p999_ms']:.2f} | {c['oversold']} | {c['rss_mib']:.1f} MiB |")
        lines.append(f"| {s['strategy']}: durable, orders committed | {d['orders_per_s']:,.0f} orders | "
                     f"{d['orders_per_s'] / nginx:.2f} | {d['p50_ms']:.2f} | {d['p99_ms']:.2f} | {d['p999_ms']:.2f} | "
                     f"{d['oversold']} | {d['rss_mib']:.1f} MiB |")
    pr = res.get("processes")
    if pr and pr.get("refused"):
        lines.append(f"| atomic, {pr['args']} | not available in this build ({pr['refused']}) | | | | | | |")
    elif pr:
        c, d = pr["crowd"], pr["durable"]
        lines.append(f"| atomic, {pr['args']}: flash crowd | {c['rps']:,.0f} req | {c['rps'] / nginx:.2f} | "
                     f"{c['p50_ms']:.2f} | {c['p99_ms']:.2f} | {c['p999_ms']:.2f} | {c['oversold']} | {c['pss_mib']:.1f} MiB PSS |")
        lines.append(f"| atomic, {pr['args']}: durable, orders committed | {d['orders_per_s']:,.0f} orders | "
                     f"{d['orders_per_s'] / nginx:.2f} | {d['p50_ms']:.2f} | {d['p99_ms']:.2f} | {d['p999_ms']:.2f} | "
                     f"{d['oversold']} | {d['pss_mib']:.1f} MiB PSS |")
        lines.append(f"| (processes: PSS summed over fs-main and its children after the run, each shared page split between "
                     f"them; their peak RSS summed, shared pages counted in each: {c['rss_mib']:.0f} and "
                     f"{d['rss_mib']:.0f} MiB) | | | | | | | |")
    st = res["store"]
    lines.append(f"| storebench, no HTTP, 64 in flight (store ceiling) | {st['inflight_64']['per_second']:,.0f} orders | "
                 f"{st['inflight_64']['per_second'] / nginx:.2f} | | | | | |")
    lines.append(f"| storebench, no HTTP, 256 in flight | {st['inflight_256']['per_second']:,.0f} orders | "
                 f"{st['inflight_256']['per_second'] / nginx:.2f} | | | | | |")
    lines.append(f"| storebench, one purchase per transaction | {st['one_per_txn']['per_second']:,.0f} orders | "
                 f"{st['one_per_txn']['per_second'] / nginx:.2f} | | | | | |")
    lines.append("")
    lines.append("| connections (atomic, flash crowd) | req/s | × nginx | p50 ms | p99 ms | p99.9 ms | peak RSS |")
    lines.append("|---:|---:|---:|---:|---:|---:|---:|")
    for r in res["sweep"]:
        lines.append(f"| {r['connections']} | {r['rps']:,.0f} | {r['rps'] / nginx:.2f} | {r['p50_ms']:.2f} | "
                     f"{r['p99_ms']:.2f} | {r['p999_ms']:.2f} | {r['rss_mib']:.1f} MiB |")
    if res.get("cluster"):
        lines.append("")
        lines.append("| PostgreSQL, durable path | orders/s | × nginx | p50 ms | p99 ms | oversold | consistent |")
        lines.append("|---|---:|---:|---:|---:|---:|---|")
        for r in res.get("cluster"):
            lines.append(f"| {r['nodes']} node{'s behind nginx' if r['nodes'] > 1 else ''} | {r['orders_per_s']:,.0f} | "
                         f"{r['orders_per_s'] / nginx:.2f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['oversold']} | "
                         f"{'yes' if r['consistent'] else 'NO'} |")
    h = res["hold"]
    lines.append("")
    held = h.get('connections', HOLD)
    lines.append(f"{held} keep-alive connections held by loadgen --burst {held} --rounds 3: {held} "
                 f"connected, {h['completed']:,} answers ({h['status']}), errors {h['errors']}, timeouts {h['timeouts']}, "
                 f"p50 {h['latency_ms']['p50']:.1f} ms, p99 {h['latency_ms']['p99']:.1f} ms from each round's start; "
                 f"server peak RSS {h['rss_mib']:.1f} MiB")
    d = atomic["durable"]
    crowd_x, durable_x = atomic['crowd']['rps'] / nginx, d['orders_per_s'] / nginx
    oversold = sum(s['crowd']['oversold'] + s['durable']['oversold'] for s in res['strategies'] if s['strategy'] != 'unsafe')
    oversold += sum(pr[w]['oversold'] for w in ("crowd", "durable") if pr and w in pr)

    def verdict(ok):  # three decimals above: a rounded 0.35 must not hide 0.346
        return "met" if ok else "MISSED"
    lines.append("")
    lines.append(f"targets: flash crowd {crowd_x:.3f}× nginx (≥ 0.80: {verdict(crowd_x >= 0.8)}), p99 "
                 f"{atomic['crowd']['p99_ms']:.2f} ms (< 5: {verdict(atomic['crowd']['p99_ms'] < 5)}); durable {durable_x:.3f}× "
                 f"nginx (≥ 0.35: {verdict(durable_x >= 0.35)}), mean batch {d['batch_mean']:.1f} purchases/commit; "
                 f"safe strategies oversold: {oversold} ({verdict(oversold == 0)})")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--report":
        with open(sys.argv[2]) as f:
            print(report(json.load(f)))
    else:
        main()
