"""--model processes (issue 13 §1): what only that model has.

Every case runs the real binary with `--model processes --processes 2` (a supervisor
fs-main, workers fs-worker-0 and fs-worker-1, one fs-writer) on a real SQLite file:
  names     every process names itself, and all are direct children of fs-main
  metrics   /metrics and /api/v1/stats count the purchases of both workers, whichever answers
  rate      --user-rate and --ip-rate hold across processes: one bucket, not one per worker
  idem      one Idempotency-Key sent on many connections at once: one order, stock moves once
  kill      kill -9 of a worker, then of the writer, mid-crowd, per strategy (atomic, mutex,
            sqlite): it comes back, every 201 is in the file, the sale sells out exactly
            (no unit leaked by the dead process), the audit is consistent
  main      kill -9 of fs-main: the whole group exits, the port is free, a restart continues
  term      SIGTERM to fs-main mid-crowd: exit 0, no child left, every 201 in the file
  hook      FLASHSALE_TEST_PARK parks a worker holding the sale's lock (mutex) or its user's
            stripe (atomic); kill -9 of it: the lock is recovered and the sale sells out
The shared black-box suites (api, crowd, kill, hostile, lifecycle) run against this model
as proc-* in tests/run.sh, through FLASHSALE_TEST_ARGS.

Which process serves a connection is read from /proc (the socket's inode in
/proc/net/tcp, then the process holding it), so a case can prove both workers served.
Deadlines are liveness only; how fast a process is restarted is printed, never asserted.

Usage: tests/test_processes.py [ROUNDS] [--only CASE,...] [--binary B] [--model M]
  ROUNDS   kill -9 rounds per process kind and strategy (default 1; `PROC_ROUNDS=N tests/run.sh proc`)
  --model threads runs the cases that make sense without processes (metrics, rate, idem),
  to debug this file against the threaded model.
"""
import argparse
import http.client
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Client, Server, check, db_truth, finish, metric, same_key_retries  # noqa: E402
from test_lifecycle import until  # noqa: E402

SUITE = "proc"
STRATEGIES = ("atomic", "mutex", "sqlite")
# Every answer a purchase may get in these crowds: sold, refused, 503 while a process is
# restarted or counters are rebuilt, or the connection dropped by a killed process.
CROWD_ANSWERS = {201, 409, 503, "error"}
OPT = None  # the parsed command line


def model_args(*more):
    if OPT.model == "processes":
        return ["--model", "processes", "--processes", str(OPT.processes)] + list(more)
    return ["--model", OPT.model] + list(more)


# ---- processes, from /proc (what ps -o pid,ppid,comm prints) ----

def proc_stat(pid):
    """(comm, state, ppid) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    comm = s[s.index("(") + 1:s.rindex(")")]
    state, ppid = s[s.rindex(")") + 2:].split()[:2]
    return comm, state, int(ppid)


def children(main):
    """{comm: pid} of the live direct children of main."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = proc_stat(int(d))
            if st and st[2] == main and st[1] != "Z":
                out[st[0]] = int(d)
    return out


def group(srv):
    """Pids of every live process of this server, children included, found by the --db
    path in the command line they inherited through fork (a killed supervisor's children
    are re-parented, so their ppid no longer tells)."""
    want = srv.db.encode()
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        st = proc_stat(int(d))
        if want in args and st and st[1] != "Z":
            pids.append(int(d))
    return pids


def family(srv):
    """{pid: comm} of the server's processes now: fs-main, its children, and anything else
    started with its --db (whatever a child may exec, it is one of these two)."""
    pids = set(group(srv)) | set(children(srv.proc.pid).values()) | {srv.proc.pid}
    return {p: st[0] for p in pids for st in [proc_stat(p)] if st and st[1] != "Z"}


def survivors(fam):
    """The processes of a family snapshot still alive (same pid, same name: not a reused pid)."""
    return {p: c for p, c in fam.items() for st in [proc_stat(p)] if st and st[1] != "Z" and st[0] == c}


def serving_pid(port, client, pids):
    """The pid among pids that holds the server end of client's open connection."""
    if client.conn is None or client.conn.sock is None:
        return None
    mine = client.conn.sock.getsockname()[1]
    inode = None
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and int(fields[2].split(":")[1], 16) == mine:
                inode = fields[9]
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
        except OSError:
            pass
    return None


def workers(srv):
    """{index: pid} of the worker processes (threads model: the one process as worker 0)."""
    if OPT.model != "processes":
        return {0: srv.proc.pid}
    return {int(k.rsplit("-", 1)[1]): v for k, v in children(srv.proc.pid).items() if k.startswith("fs-worker-")}


def tgid(pid):
    """The process a thread id belongs to (a pid is its own)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Tgid:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return pid


def port_free(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT does not count; a listener does
    try:
        s.bind(("127.0.0.1", port))
        s.listen(1)
        return True
    except OSError:
        return False
    finally:
        s.close()


def log_match(srv, pattern):
    """The first log line matching pattern (a regex), as a match, or None."""
    for line in list(srv.log):
        m = re.search(pattern, line)
        if m:
            return m
    return None


# ---- HTTP helpers that outlive a killed worker ----

def get_json(port, path, deadline=60):
    """GET on a fresh connection, tried until a 200 comes (a connection may land on a
    worker being killed or restarted); its JSON, or None."""
    def once():
        c = Client(port, timeout=30)
        try:
            r = c.get(path)
            return r.json if r.status == 200 else None
        except Exception:
            return None
        finally:
            c.close()
    return until(once, deadline)


def metrics_text(port, deadline=60):
    def once():
        c = Client(port, timeout=30)
        try:
            r = c.get("/metrics")
            return r.raw.decode() if r.status == 200 else None
        except Exception:
            return None
        finally:
            c.close()
    return until(once, deadline)


def metric_sum(text, name, labels=""):
    """The sum of every sample of name whose labels contain the given text."""
    total = 0.0
    for line in text.splitlines():
        if (line.startswith(name + "{") and labels in line.split("}")[0]) or (not labels and line.startswith(name + " ")):
            total += float(line.split()[-1])
    return total


class Crowd:
    """Buyers on `threads` threads, each purchase on a fresh connection (so each lands on
    whichever worker the kernel picks, a restarted one too), every user new, until stopped.
    Records every 201 body and every status, with the time it came."""

    def __init__(self, port, sale, tag, threads=12):
        self.port, self.sale, self.tag = port, sale, tag
        self.acked, self.answers = [], []  # answers: (time, status)
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(n,)) for n in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def _run(self, n):
        i = 0
        while not self.stopping.is_set():
            i += 1
            c = Client(self.port, timeout=60)
            try:
                r = c.post(f"/api/v1/sales/{self.sale}/orders", {"user_id": f"{self.tag}-{n}-{i}", "quantity": 1 + i % 2})
                st, body = r.status, r.json
            except Exception:
                st, body = "error", None
            finally:
                c.close()
            with self.lock:
                self.answers.append((time.time(), st))
                if st == 201:
                    self.acked.append(body)
            if st != 201:
                time.sleep(0.005)  # no busy loop against a port being restarted

    def units(self):
        with self.lock:
            return sum(o["quantity"] for o in self.acked)

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join()

    def statuses(self, since=0.0, until_t=float("inf")):
        out = {}
        for t, st in self.answers:
            if since <= t <= until_t:
                out[st] = out.get(st, 0) + 1
        return out


def missing_in_db(srv, acked):
    """Acknowledged orders the file does not hold as acknowledged (id, user, quantity)."""
    rows = {r[0]: r[1:] for r in srv.sql("SELECT id, user_id, quantity FROM orders")}
    return [o for o in acked if rows.get(o["order_id"]) != (o["user_id"], o["quantity"])]


def settled_audit(port, sale, units, deadline=60):
    """The sale's audit once it is consistent and counts `units` sold (its answer may be
    up to 1 s old), or the last one seen."""
    last = [None]

    def once():
        last[0] = get_json(port, f"/api/v1/sales/{sale}/audit")
        return last[0] and last[0]["consistent"] is True and last[0]["units_sold"] == units
    until(once, deadline)
    return last[0]


def sold_out(srv, sale, stock, deadline=120):
    """Liveness: the file holds the whole stock as sold, within a generous deadline.  The
    crowd runs until then, so units a dead process had reserved and that were given back
    (or restored by a rebuild from the file) are sold too; units leaked stay unsold."""
    return until(lambda: db_truth(srv, sale)[2] >= stock, deadline)


def memory_sold_out(srv, sale, stock):
    """The sale as the workers' shared memory shows it, and whether that is sold out exactly."""
    s = get_json(srv.port, f"/api/v1/sales/{sale}") or {}
    return s, s.get("stock_left") == 0 and s.get("sold") == stock


def wait_units(crowd, n, deadline=120):
    """Liveness: until the crowd has n units acknowledged, polled finely (a crowd on a fast
    machine sells thousands of units a second, and the kill must land mid-sale)."""
    end = time.time() + deadline
    while crowd.units() < n and time.time() < end:
        time.sleep(0.002)
    return crowd.units() >= n


# ---- cases ----

def names():
    srv = Server(binary=OPT.binary, args=model_args()).start()
    try:
        main = srv.proc.pid
        ps = subprocess.run(["ps", "-o", "comm=", "-p", str(main)], capture_output=True, text=True).stdout.split()
        check(SUITE, "names:supervisor_fs_main", ps == ["fs-main"], repr(ps))
        ps = subprocess.run(["ps", "-o", "comm=", "--ppid", str(main)], capture_output=True, text=True).stdout.split()
        want = sorted([f"fs-worker-{i}" for i in range(OPT.processes)] + ["fs-writer"])
        check(SUITE, "names:children_of_fs_main", sorted(ps) == want, f"ps --ppid {main}: {sorted(ps)}, want {want}")
        # Nothing else: no grandchild, no process outside fs-main's children.
        rest = sorted(set(group(srv)) - {main} - set(children(main).values()))
        check(SUITE, "names:all_direct_children", not rest, f"{[proc_stat(p) for p in rest]}")
        stats = get_json(srv.port, "/api/v1/stats")
        check(SUITE, "names:stats_model", stats and stats.get("model") == "processes"
              and stats.get("processes") == OPT.processes, repr({k: (stats or {}).get(k) for k in ("model", "processes")}))
        code, _ = srv.stop()
        check(SUITE, "names:clean_stop", code == 0, f"exit {code}")
    finally:
        srv.cleanup()
    # --processes 0: one worker per online core.
    srv = Server(binary=OPT.binary, args=["--model", "processes", "--processes", "0"]).start()
    try:
        n = len([k for k in children(srv.proc.pid) if k.startswith("fs-worker-")])
        cores = os.sysconf("SC_NPROCESSORS_ONLN")
        check(SUITE, "names:processes_0_one_per_core", n == cores, f"{n} workers, {cores} cores")
        srv.stop()
    finally:
        srv.cleanup()


def metrics():
    """M purchases on M fresh connections, both workers serving some: every process's
    /metrics and /api/v1/stats count all M."""
    srv = Server(binary=OPT.binary, args=model_args()).start()
    try:
        c = srv.client()
        m = 60
        sale = c.create_sale(name="Counted", stock=10 * m, per_user_limit=1)
        c.close()
        pids = workers(srv)
        served, statuses = {}, {}
        for i in range(m):
            cl = Client(srv.port)
            r = cl.post(f"/api/v1/sales/{sale}/orders", {"user_id": f"counted-{i}"})
            p = serving_pid(srv.port, cl, pids.values())
            cl.close()
            served[p] = served.get(p, 0) + 1
            statuses[r.status] = statuses.get(r.status, 0) + 1
        check(SUITE, "metrics:all_201", statuses == {201: m}, repr(statuses))
        check(SUITE, "metrics:every_worker_served", set(served) == set(pids.values()),
              f"connections per pid {served}, workers {pids}")
        print(f"# metrics: {m} purchases, connections per worker pid {served}", flush=True)

        want = (m, m, m, m, m)

        def scrape():
            """(which pid answered, (order_create 201s, their duration count, orders_total,
            units_sold_total, the sale's sold gauge)) from one /metrics on a fresh connection."""
            cl = Client(srv.port)
            t = cl.get("/metrics").raw.decode()
            p = serving_pid(srv.port, cl, pids.values())
            cl.close()
            return p, (metric_sum(t, "flashsale_requests_total", 'route="order_create",status="201"'),
                       metric(t, "flashsale_request_duration_seconds_count", 'route="order_create"'),
                       metric(t, "flashsale_orders_total"), metric(t, "flashsale_units_sold_total"),
                       metric(t, "flashsale_sale_sold", f'sale="{sale}"'))
        until(lambda: scrape()[1] == want, 10)  # a counter may be bumped just after its answer went out
        seen = {}
        for _ in range(40):  # until /metrics came from every worker
            p, vals = scrape()
            seen.setdefault(p, vals)
            if set(seen) >= set(pids.values()):
                break
        check(SUITE, "metrics:metrics_from_every_worker", set(seen) >= set(pids.values()), f"{seen}")
        check(SUITE, "metrics:metrics_count_all_processes", all(v == want for v in seen.values()),
              f"(order_create 201s, duration count, orders_total, units_sold_total, sale_sold) per pid: {seen}, want {m}")
        seen = {}
        for _ in range(40):
            cl = Client(srv.port)
            s = cl.get("/api/v1/stats").json
            p = serving_pid(srv.port, cl, pids.values())
            cl.close()
            sold = [x["sold"] for x in s["sales"] if x["id"] == sale]
            seen.setdefault(p, (s.get("model"), s["totals"]["orders"], s["totals"]["units_sold"], sold))
            if set(seen) >= set(pids.values()):
                break
        want_stats = (OPT.model, m, m, [m])
        check(SUITE, "metrics:stats_count_all_processes", set(seen) >= set(pids.values())
              and all(v == want_stats for v in seen.values()),
              f"(model, orders, units, sale sold) per pid: {seen}, want {want_stats}")
        code, _ = srv.stop()
        check(SUITE, "metrics:clean_stop", code == 0, f"exit {code}")
    finally:
        srv.cleanup()


def burst(srv, what, rate, send, conns=16, per_conn=3):
    """`conns` connections (proved to reach every worker), then each sends `per_conn`
    requests at once.  A token bucket of `rate` tokens (the burst is the rate: src/api.c)
    refilled at `rate` a second lets at most rate + rate*T through in T seconds, whoever
    serves them; one bucket per process would let through up to that many per worker."""
    pids = workers(srv)
    clients, owners = [], {}
    while len(clients) < conns or not set(pids.values()) <= set(owners.values()):
        cl = Client(srv.port)
        cl.get("/healthz")
        owners[len(clients)] = serving_pid(srv.port, cl, pids.values())
        clients.append(cl)
        if len(clients) > 200:
            break
    check(SUITE, f"rate:{what}_connections_reach_every_worker", set(owners.values()) >= set(pids.values()),
          f"owners {owners}, workers {pids}")
    answers, lock = [], threading.Lock()
    go = threading.Barrier(len(clients))
    starts = []

    def one(i):
        go.wait()
        with lock:
            starts.append(time.time())
        for _ in range(per_conn):
            r = send(clients[i])
            with lock:
                answers.append((owners[i], r.status, r.error()))
    ts = [threading.Thread(target=one, args=(i,)) for i in range(len(clients))]
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    elapsed = time.time() - min(starts)
    for cl in clients:
        cl.close()
    ok = [a for a in answers if a[1] in (200, 201)]
    limited = [a for a in answers if a[1] == 429]
    bound = rate + rate * elapsed
    per_worker = {p: sum(1 for a in ok if a[0] == p) for p in pids.values()}
    print(f"# {what}: {len(answers)} requests in {elapsed:.3f} s on {len(clients)} connections: {len(ok)} through "
          f"(per worker {per_worker}), bound {bound:.2f}; one bucket per worker would allow "
          f"{len(pids) * bound:.2f}", flush=True)
    check(SUITE, f"rate:{what}_limited_across_processes", 1 <= len(ok) <= bound,
          f"{len(ok)} through in {elapsed:.3f} s, at most {bound:.2f} allowed: {per_worker}")
    check(SUITE, f"rate:{what}_rest_429", len(ok) + len(limited) == len(answers)
          and all(a[2] == "rate_limited" for a in limited), repr(sorted({a[1:] for a in answers}, key=str)))


def rate():
    user_rate, ip_rate = 2, 3
    srv = Server(binary=OPT.binary, args=model_args("--user-rate", str(user_rate))).start()
    try:
        sale = srv.client().create_sale(name="Rate", stock=1000, per_user_limit=1000)
        burst(srv, "user", user_rate, lambda cl: cl.post(f"/api/v1/sales/{sale}/orders", {"user_id": "eager"}))
        audit = settled_audit(srv.port, sale, sum(1 for r in srv.sql(f"SELECT id FROM orders WHERE sale_id={sale}")))
        check(SUITE, "rate:user_audit_consistent", audit and audit["consistent"] is True, repr(audit))
        srv.stop()
    finally:
        srv.cleanup()
    srv = Server(binary=OPT.binary, args=model_args("--ip-rate", str(ip_rate))).start()
    try:
        burst(srv, "ip", ip_rate, lambda cl: cl.get("/api/v1/sales"))
        srv.stop()
    finally:
        srv.cleanup()


def idem():
    """same_key_retries (tests/harness.py): 16 fresh connections at once per round, one
    key; 10 rounds, a new sale of 50 each.  Plus: the stock moved by exactly one unit, in
    the file and in the memory every worker reads."""
    srv = Server(binary=OPT.binary, args=model_args()).start()
    try:
        c = srv.client()
        rounds = 10
        mixed, rows_bad = same_key_retries(srv, c, rounds=rounds, tries=16)
        check(SUITE, "idem:one_order_per_key", not mixed and rows_bad == 0,
              f"{len(mixed)} of {rounds} rounds with mixed answers (e.g. {mixed[:1]}), {rows_bad} without exactly one row")
        sales = srv.sql("SELECT id, stock_left FROM sales WHERE name LIKE 'Retry %'")
        mem = {s: (get_json(srv.port, f"/api/v1/sales/{s}") or {}).get("stock_left") for s, _ in sales}
        check(SUITE, "idem:stock_moved_once", len(sales) == rounds and all(left == 49 and mem[s] == 49 for s, left in sales),
              f"(sale, stock_left in file) {sales}, in memory {mem}")
        text = metrics_text(srv.port)
        replays = metric(text, "flashsale_idempotent_replays_total")
        check(SUITE, "idem:replays_counted", replays is not None and replays >= 1, repr(replays))
        code, _ = srv.stop()
        check(SUITE, "idem:clean_stop", code == 0, f"exit {code}")
    finally:
        srv.cleanup()


def ledger():
    """The shared ledger is a fixed table (--ledger-entries): past it a purchase by a
    new user gets 503 with a message that says so, takes no stock, and the users
    already in it keep buying.  1,024 asked for is 4,096 slots (256 stripes of 16);
    6,000 new users must overflow some stripe."""
    srv = Server(binary=OPT.binary, args=model_args("--ledger-entries", "1024")).start()
    try:
        c = srv.client()
        sale = c.create_sale(name="Ledger", stock=100000, per_user_limit=5)
        answers = {}
        full = None
        for u in range(6000):
            r = c.post(f"/api/v1/sales/{sale}/orders", {"user_id": f"ledger-{u}"})
            st, body = r.status, r.json
            answers[st] = answers.get(st, 0) + 1
            if st == 503 and full is None:
                full = body
        sold = answers.get(201, 0)
        print(f"# ledger: 6,000 new users, {sold} sold, {answers.get(503, 0)} refused 503 (table full)", flush=True)
        check(SUITE, "ledger:full_is_503", answers.get(503, 0) > 0 and set(answers) <= {201, 503}, repr(answers))
        check(SUITE, "ledger:full_says_why", isinstance(full, dict) and full.get("error") == "unavailable"
              and "ledger" in full.get("message", ""), repr(full))
        left = srv.sql(f"SELECT stock_left FROM sales WHERE id={sale}")[0][0]
        check(SUITE, "ledger:refusals_took_nothing", left == 100000 - sold, f"left {left}, sold {sold}")
        r = c.post(f"/api/v1/sales/{sale}/orders", {"user_id": "ledger-0"})  # already in the table
        check(SUITE, "ledger:known_users_still_buy", r.status == 201, f"{r.status} {r.raw!r}")
        audit = settled_audit(srv.port, sale, sold + 1)
        check(SUITE, "ledger:audit_consistent", audit and audit["consistent"] is True, repr(audit))
        code, _ = srv.stop()
        check(SUITE, "ledger:clean_stop", code == 0, f"exit {code}")
    finally:
        srv.cleanup()


def kill_round(srv, kind, name, rnd):
    """One sale, a crowd on it; at a fifth of its stock sold, kill -9 the process of
    `kind` (a worker, rnd picks which, or the writer); then it must come back and the sale
    sell out exactly.  Returns the crowd's acknowledged orders."""
    main, stock = srv.proc.pid, 5000
    comm = f"fs-worker-{rnd % OPT.processes}" if kind == "worker" else "fs-writer"
    victim = children(main).get(comm)
    if not check(SUITE, f"{name}:victim_found", victim is not None, f"no {comm} among {children(main)}"):
        return None, []
    sale = srv.client().create_sale(name=f"{name}", stock=stock, per_user_limit=2)
    crowd = Crowd(srv.port, sale, f"{name}-{random.randint(0, 1 << 30)}").start()
    try:
        # Counted in units sold, not time: the kill lands mid-sale however slow the machine.
        wait_units(crowd, stock // 5)
        t0, at_kill = time.time(), crowd.units()
        os.kill(victim, signal.SIGKILL)
        back = until(lambda: children(main).get(comm) not in (None, victim), 30)
        t1 = time.time()
        check(SUITE, f"{name}:restarted", bool(back), f"no new {comm} after 30 s: {children(main)}")
        print(f"# {name}: {comm} pid {victim} killed with {at_kill} of {stock} units acknowledged; a new {comm} "
              f"(pid {children(main).get(comm)}) seen after {t1 - t0:.2f} s (info, not asserted)", flush=True)
        who = f"worker {rnd % OPT.processes}" if kind == "worker" else "writer"
        logged = until(lambda: log_match(srv, rf"supervisor: {who} \(pid {victim}\) died .*restarted as pid \d+"), 30)
        check(SUITE, f"{name}:restart_logged", bool(logged), "\n".join(srv.log[-10:]))
        done = sold_out(srv, sale, stock)
    finally:
        crowd.stop()
    outage = crowd.statuses(t0, t1)
    print(f"# {name}: answers between the kill and the new process: {outage}; all: {crowd.statuses()}", flush=True)
    sold_out_checks(srv, name, crowd, sale, stock, done)
    return sale, crowd.acked


def sold_out_checks(srv, name, crowd, sale, stock, done):
    """After a kill and a crowd run to sell-out (done: the file reached the stock in time),
    with the server still up: the answers, the file, memory and the audit agree."""
    check(SUITE, f"{name}:answers_documented", set(crowd.statuses()) <= CROWD_ANSWERS, repr(crowd.statuses()))
    total, left, units, _, over = db_truth(srv, sale)
    check(SUITE, f"{name}:sells_out_exactly", bool(done) and (left, units, over) == (0, stock, 0),
          f"file: left {left}, sold {units} of {total}, {over} users over the limit")
    ids = [o["order_id"] for o in crowd.acked]
    check(SUITE, f"{name}:order_ids_unique", len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} ids acknowledged twice")
    missing = missing_in_db(srv, crowd.acked)  # the writer committed them; the file says so now
    check(SUITE, f"{name}:acknowledged_orders_in_db", not missing and crowd.acked,
          f"{len(missing)} of {len(crowd.acked)} missing: {missing[:3]}")
    mem, ok = memory_sold_out(srv, sale, stock)
    check(SUITE, f"{name}:memory_sold_out_exactly", ok, f"stock {stock}, memory {mem}")
    audit = settled_audit(srv.port, sale, stock)
    check(SUITE, f"{name}:audit_consistent", audit and audit["consistent"] is True
          and audit["units_sold"] == stock and audit["oversold"] == 0, f"stock {stock}, audit {audit}")


def kill(strategy):
    srv = Server(binary=OPT.binary, args=model_args("--inventory", strategy)).start()
    sales, acked, kills = [], [], {"worker": 0, "writer": 0}
    try:
        for rnd in range(OPT.rounds):
            for kind in ("worker", "writer"):
                sale, got = kill_round(srv, kind, f"kill:{strategy}:{kind}{rnd + 1}", rnd)
                sales += [sale] if sale else []
                acked += got
                kills[kind] += 1
        text = metrics_text(srv.port)
        for kind, n in kills.items():
            v = metric(text, "flashsale_process_restarts_total", f'kind="{kind}"')
            check(SUITE, f"kill:{strategy}:restarts_counted_{kind}", v is not None and v >= n, f"{v}, {n} kills")
        rebuilds = metric(text, "flashsale_memory_rebuilds_total")
        check(SUITE, f"kill:{strategy}:rebuilds_counted", rebuilds is not None and rebuilds >= 1, repr(rebuilds))
        code, _ = srv.stop(timeout=60)
        check(SUITE, f"kill:{strategy}:clean_stop", code == 0, f"exit {code}")
        # After the stop, from the file alone.
        missing = missing_in_db(srv, acked)
        check(SUITE, f"kill:{strategy}:db_every_201", not missing, f"{len(missing)} of {len(acked)} missing: {missing[:3]}")
        truths = {s: db_truth(srv, s) for s in sales}
        check(SUITE, f"kill:{strategy}:db_sold_out_exactly",
              all(left == 0 and units == total and over == 0 for total, left, units, _, over in truths.values()),
              f"(total, left, units, orders, over limit) per sale: {truths}")
        check(SUITE, f"kill:{strategy}:integrity_check", srv.sql("PRAGMA integrity_check") == [("ok",)])
        print(f"# kill:{strategy}: {kills['worker']} worker and {kills['writer']} writer kills; "
              f"{len(acked)} acknowledged orders checked", flush=True)
    finally:
        srv.cleanup()


def kill_main():
    """kill -9 of fs-main: PR_SET_PDEATHSIG takes every child with it, the port is free,
    and a restart on the same file continues from the last commit."""
    srv = Server(binary=OPT.binary, args=model_args("--inventory", "atomic")).start()
    try:
        sale = srv.client().create_sale(name="Main dies", stock=1000000, per_user_limit=2)
        crowd = Crowd(srv.port, sale, f"main-{random.randint(0, 1 << 30)}").start()
        try:
            wait_units(crowd, 100)
            before = family(srv)
            port = srv.port
            srv.proc.kill()
            srv.proc.wait()
            gone = until(lambda: not survivors(before) and not group(srv), 30)
            check(SUITE, "main:children_exit", bool(gone) and len(before) >= OPT.processes + 2,  # not vacuous
                  f"left: {survivors(before)} {group(srv)}; were {before}")
        finally:
            crowd.stop()
        check(SUITE, "main:port_free", bool(until(lambda: port_free(port), 30)), f"port {port} still taken")
        missing = missing_in_db(srv, crowd.acked)
        check(SUITE, "main:db_every_201", not missing and crowd.acked, f"{len(missing)} of {len(crowd.acked)} missing")
        total, left, units, _, over = db_truth(srv, sale)
        srv.start(timeout=120)
        s = get_json(srv.port, f"/api/v1/sales/{sale}")
        check(SUITE, "main:restart_continues", s and s["sold"] == units and s["stock_left"] == left and left + units == total,
              f"memory {s}, file left {left} sold {units} of {total}")
        audit = settled_audit(srv.port, sale, units)
        check(SUITE, "main:restart_audit_consistent", audit and audit["consistent"] is True, repr(audit))
        r = srv.client().post(f"/api/v1/sales/{sale}/orders", {"user_id": "after-restart"})
        check(SUITE, "main:restart_sells", r.status == 201, repr(r))
        code, _ = srv.stop()
        check(SUITE, "main:clean_stop", code == 0 and until(lambda: not group(srv), 30), f"exit {code}, left {group(srv)}")
    finally:
        srv.cleanup()


def term():
    srv = Server(binary=OPT.binary, args=model_args("--inventory", "mutex")).start()
    try:
        sale = srv.client().create_sale(name="Drain", stock=1000000, per_user_limit=2)
        crowd = Crowd(srv.port, sale, f"term-{random.randint(0, 1 << 30)}").start()
        try:
            wait_units(crowd, 100)
            before = family(srv)
            code, secs = srv.stop(timeout=60)
            left = survivors(before)
            gone = until(lambda: not survivors(before) and not group(srv), 30)
        finally:
            crowd.stop()
        check(SUITE, "term:exit_0", code == 0, f"exit {code} after {secs:.1f} s")
        check(SUITE, "term:no_child_left", bool(gone) and len(before) >= OPT.processes + 2,  # not vacuous
              f"left: {survivors(before)} {group(srv)}; were {before}")
        if left:
            print(f"# term: {len(left)} processes of the group were still there when fs-main exited: {left}")
        missing = missing_in_db(srv, crowd.acked)
        check(SUITE, "term:db_every_201", not missing and crowd.acked, f"{len(missing)} of {len(crowd.acked)} missing")
        total, left_db, units, _, over = db_truth(srv, sale)
        check(SUITE, "term:stock_adds_up", left_db + units == total and over == 0, f"left {left_db} + sold {units} != {total}")
        check(SUITE, "term:integrity_check", srv.sql("PRAGMA integrity_check") == [("ok",)])
    finally:
        srv.cleanup()


def hook(strategy):
    """A worker parked holding the lock (the test hook), a crowd queued behind it, then
    kill -9 of that worker: the next locker repairs, and the sale sells out exactly."""
    name, stock = f"hook:{strategy}", 5000
    srv = Server(binary=OPT.binary, args=model_args("--inventory", strategy),
                 env={"FLASHSALE_TEST_PARK": "parker"}).start()
    parked = []
    try:
        main = srv.proc.pid
        sale = srv.client().create_sale(name="Parked", stock=stock, per_user_limit=2)

        def park():
            # One try only (not harness.Client, which retries once on a dropped connection):
            # a retry would park the restarted worker as well.
            c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=120)
            try:
                c.request("POST", f"/api/v1/sales/{sale}/orders", body=b'{"user_id":"parker"}',
                          headers={"Content-Type": "application/json"})
                parked.append(c.getresponse().status)
            except Exception:
                parked.append("error")
            c.close()
        pt = threading.Thread(target=park, daemon=True)
        pt.start()
        m = until(lambda: log_match(srv, r"test hook: parked holding (.+) \(pid (\d+)\)"), 30)
        check(SUITE, f"{name}:parked", bool(m), "\n".join(srv.log[-10:]))
        if not m:
            return
        pid = tgid(int(m.group(2)))  # the hook may log its thread's id
        ws = workers(srv)
        index = [i for i, p in ws.items() if p == pid]
        check(SUITE, f"{name}:parked_in_a_worker", len(index) == 1, f"pid {pid}, workers {ws}")
        crowd = Crowd(srv.port, sale, f"hook-{random.randint(0, 1 << 30)}").start()
        try:
            # The mutex blocks the whole sale, a stripe some users: a second, or a fifth of
            # the stock sold, whichever comes first, so the kill lands mid-sale.
            t0 = time.time()
            wait_units(crowd, stock // 5, deadline=1)
            print(f"# {name}: parked holding {m.group(1)} in pid {pid}; in {time.time() - t0:.2f} s the crowd got "
                  f"{crowd.statuses()} (info)", flush=True)
            t0 = time.time()
            os.kill(pid, signal.SIGKILL)
            comm = f"fs-worker-{index[0] if index else 0}"
            back = until(lambda: children(main).get(comm) not in (None, pid), 30)
            check(SUITE, f"{name}:worker_restarted", bool(back), repr(children(main)))
            print(f"# {name}: new {comm} seen {time.time() - t0:.2f} s after the kill (info)", flush=True)
            done = sold_out(srv, sale, stock)
        finally:
            crowd.stop()
        pt.join(60)
        check(SUITE, f"{name}:parked_purchase_not_acknowledged", parked != [201], repr(parked))
        sold_out_checks(srv, name, crowd, sale, stock, done)
        text = metrics_text(srv.port)
        rec = metric(text, "flashsale_lock_recoveries_total")
        print(f"# {name}: flashsale_lock_recoveries_total {rec}", flush=True)
        if strategy == "mutex":  # the atomic strategy's stripe is recovered only if someone locks it again
            check(SUITE, f"{name}:lock_recovered", rec is not None and rec >= 1, repr(rec))
        code, _ = srv.stop(timeout=60)
        check(SUITE, f"{name}:clean_stop", code == 0, f"exit {code}")
        total, left, units, _, over = db_truth(srv, sale)
        check(SUITE, f"{name}:db_after_stop", (left, units, over) == (0, total, 0) and not missing_in_db(srv, crowd.acked),
              f"left {left} sold {units} of {total}")
    finally:
        srv.cleanup()


def relink():
    """Review: a purchase admitted while a worker's link to a restarted writer is not open
    yet.  The new writer rebuilds memory (quickly when nothing was in flight) and unfreezes
    it, while the workers redial only every 20 ms: a purchase in that gap reserves in shared
    memory, finds the link closed and ends 503 in the worker, where no follower gives its
    units back and no rebuild follows.  After each round, with nothing in flight, memory
    must match the file."""
    name, stock = "relink", 100000
    srv = Server(binary=OPT.binary, args=model_args("--inventory", "atomic")).start()
    try:
        main = srv.proc.pid
        sale = srv.client().create_sale(name="Relink", stock=stock, per_user_limit=2)
        for rnd in range(5):
            wr = children(main).get("fs-writer")
            stop = threading.Event()
            answers = []

            def buy(n):
                i = 0
                while not stop.is_set():
                    i += 1
                    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
                    try:
                        c.request("POST", f"/api/v1/sales/{sale}/orders", body=f'{{"user_id":"relink-{rnd}-{n}-{i}"}}'.encode(),
                                  headers={"Content-Type": "application/json"})
                        answers.append(c.getresponse().status)
                    except Exception:
                        answers.append("error")
                    c.close()
            os.kill(wr, signal.SIGKILL)  # with nothing in flight: the new writer's rebuild is short
            ts = [threading.Thread(target=buy, args=(n,)) for n in range(8)]
            for t in ts:
                t.start()
            until(lambda: children(main).get("fs-writer") not in (None, wr), 30)
            time.sleep(1.0)
            stop.set()
            for t in ts:
                t.join(60)
            got = {st: answers.count(st) for st in set(answers)}
            total, left, units, _, _ = db_truth(srv, sale)
            s = get_json(srv.port, f"/api/v1/sales/{sale}") or {}
            ok = s.get("stock_left") == left and s.get("sold") == units
            print(f"# {name}: round {rnd + 1}: answers {got}; file left {left} sold {units}; memory stock_left "
                  f"{s.get('stock_left')} sold {s.get('sold')}", flush=True)
            if not ok:
                break
        check(SUITE, f"{name}:memory_matches_file", ok,
              f"file: left {left} sold {units}; memory: stock_left {s.get('stock_left')} sold {s.get('sold')}")
        audit = settled_audit(srv.port, sale, units, deadline=10)
        check(SUITE, f"{name}:audit_consistent", audit and audit["consistent"] is True, repr(audit))
        code, _ = srv.stop()
        check(SUITE, f"{name}:clean_stop", code == 0, f"exit {code}")
    finally:
        srv.cleanup()

def handover():
    """Review: a slot's job channel waits (ipc_slot_taken) while another channel of the same
    slot is registered.  Worker A dies with jobs still to commit (its channel ch1 stays
    registered until they are done); its replacement A' dials (ch2, waiting) and dies too;
    A'' dials (ch3, waiting).  When ch1 ends, ch2 and ch3 each see the other and wait
    forever: A'' never gets its channel, and the writer's rebuild for A' waits for ch2
    forever, with every purchase frozen.  The writer is held with SIGSTOP only to make
    "ch1 still has work" last long enough to force the interleaving."""
    name = "handover"
    srv = Server(binary=OPT.binary, args=["--model", "processes", "--processes", "1", "--inventory", "atomic"]).start()
    try:
        main = srv.proc.pid
        sale = srv.client().create_sale(name="Handover", stock=100000, per_user_limit=2)
        wr = children(main).get("fs-writer")

        def buy(user):
            c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=120)
            try:
                c.request("POST", f"/api/v1/sales/{sale}/orders", body=f'{{"user_id":"{user}"}}'.encode(),
                          headers={"Content-Type": "application/json"})
                return c.getresponse().status
            except Exception:
                return "error"
            finally:
                c.close()
        os.kill(wr, signal.SIGSTOP)
        try:
            ts = [threading.Thread(target=buy, args=(f"hang-{i}",), daemon=True) for i in range(20)]
            for t in ts:
                t.start()
            time.sleep(1.0)  # the purchases are in worker 0's job ring, unanswered
            for gen in range(2):
                w = children(main).get("fs-worker-0")
                os.kill(w, signal.SIGKILL)
                back = until(lambda: children(main).get("fs-worker-0") not in (None, w), 30)
                check(SUITE, f"{name}:restarted_{gen + 1}", bool(back), repr(children(main)))
                time.sleep(1.0)  # the new worker has dialed the (stopped) writer
        finally:
            os.kill(wr, signal.SIGCONT)
        # Liveness: selling resumes by itself (503s while frozen or relinking are fine).
        sold = until(lambda: buy(f"after-{random.randint(0, 1 << 30)}") == 201, 60)
        check(SUITE, f"{name}:sells_again", bool(sold), "no 201 within 60 s of SIGCONT: " + " | ".join(srv.log[-6:]))
        code, _ = srv.stop(timeout=60)
        check(SUITE, f"{name}:clean_stop", code == 0, f"exit {code}")
    finally:
        srv.cleanup()

def wide():
    """Review: 64 worker processes (the most the model takes, and --processes 0 on a
    64-core machine) must start: the shared region is sized 256 MiB + the ledger, but the
    job rings alone take 2 x 8192 x 448 bytes per slot (7.3 MiB), 475 MiB for 65 slots,
    so from about 35 workers on the supervisor dies with 'the shared region is too small'."""
    name = "wide"
    srv = Server(binary=OPT.binary, args=["--model", "processes", "--processes", "64"])
    try:
        try:
            srv.start(timeout=180)
            started = True
        except AssertionError as e:
            started = False
            why = str(e)[-400:]
        if not check(SUITE, f"{name}:64_workers_start", started, why if not started else ""):
            return
        n = len([k for k in children(srv.proc.pid) if k.startswith("fs-worker-")])
        check(SUITE, f"{name}:64_workers_running", n == 64, f"{n} workers")
        code, _ = srv.stop(timeout=120)
        check(SUITE, f"{name}:clean_stop", code == 0, f"exit {code}")
    finally:
        srv.cleanup()

CASES = {
    "names": (True, names),
    "metrics": (False, metrics),
    "rate": (False, rate),
    "idem": (False, idem),
    "ledger": (True, ledger),
    "kill": (True, lambda: [kill(s) for s in STRATEGIES]),
    "main": (True, kill_main),
    "term": (True, term),
    "hook": (True, lambda: [hook(s) for s in ("mutex", "atomic")]),
    "relink": (True, relink),
    "handover": (True, handover),
    "wide": (True, wide),
}  # name: (needs --model processes, run)


def main():
    global OPT
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("rounds", nargs="?", type=int, default=1, help="kill -9 rounds per process kind and strategy")
    ap.add_argument("--only", default=",".join(CASES), help="comma-separated cases: " + ",".join(CASES))
    ap.add_argument("--binary", default=None)
    ap.add_argument("--model", default="processes")
    ap.add_argument("--processes", type=int, default=2)
    OPT = ap.parse_args()
    for name in OPT.only.split(","):
        needs_processes, run = CASES[name]
        if needs_processes and OPT.model != "processes":
            print(f"# {name}: skipped, needs --model processes", flush=True)
            continue
        run()
    finish()


if __name__ == "__main__":
    main()
