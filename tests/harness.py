"""harness — start the real flashsale binary and talk to it over HTTP.

Black-box tests import this: Server starts build/flashsale (or a sanitizer build) on a
free port with a temporary database, and reports every check as a line
"PASS <suite>:<name>" or "FAIL <suite>:<name>: <why>" that tests/run.sh counts.
Only the Python standard library is used.
"""
import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "test-admin-token"
# With FLASHSALE_TEST_PG=postgresql://user@host:port the same suites run against
# PostgreSQL: every Server gets a fresh database there instead of an SQLite file.
PG = os.environ.get("FLASHSALE_TEST_PG", "").rstrip("/")
# With FLASHSALE_TEST_RECORD=<file>, every answer a Client gets is appended to the file
# (tests/test_contract.py checks them all against static/openapi.json).
RECORD = os.environ.get("FLASHSALE_TEST_RECORD")
_record_lock = threading.Lock()
# FLASHSALE_TEST_ARGS="--model thread-per-connection" runs a suite against another
# execution model: these flags follow every server's own.
EXTRA_ARGS = os.environ.get("FLASHSALE_TEST_ARGS", "").split()
FAILED = 0


def check(suite, name, ok, why=""):
    """Reports one case; returns ok so callers can chain."""
    global FAILED
    if ok:
        print(f"PASS {suite}:{name}", flush=True)
    else:
        FAILED += 1
        print(f"FAIL {suite}:{name}: {why}", flush=True)
    return ok


def record(method, path, response):
    """Appends one answer to the FLASHSALE_TEST_RECORD file, if any, as a JSON line."""
    if not RECORD:
        return
    line = json.dumps({"method": method, "path": path, "status": response.status, "headers": response.headers,
                       "body": base64.b64encode(response.raw).decode()})
    with _record_lock, open(RECORD, "a") as f:
        f.write(line + "\n")


def finish():
    sys.exit(1 if FAILED else 0)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.raw = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def error(self):
        return self.json.get("error") if isinstance(self.json, dict) else None

    def __repr__(self):
        return f"<{self.status} {self.raw[:200]!r}>"


class Client:
    """One keep-alive connection; reconnects when the server closed it."""

    def __init__(self, port, timeout=30):
        self.port = port
        self.timeout = timeout
        self.conn = None

    def request(self, method, path, body=None, headers=None, json_body=None):
        hdrs = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body)
            hdrs.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=hdrs)
                r = self.conn.getresponse()
                data = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.close()
                resp = Response(r.status, r.getheaders(), data)
                record(method, path, resp)
                return resp
            except (ConnectionError, http.client.HTTPException, socket.timeout, OSError):
                self.close()
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, json_body=body, **kw)

    def admin(self, path, body=None):
        return self.request("POST", path, json_body=body, headers={"Authorization": "Bearer " + TOKEN})

    def order(self, o, action=None, body=None, token=None, headers=None):
        """GET /api/v1/orders/{id}, or POST .../{action} ("pay", "cancel") with an
        optional JSON body, proving ownership with the order's X-Order-Token (o is
        the purchase's 201 JSON; token overrides it, "" sends none)."""
        path = f"/api/v1/orders/{o['order_id']}" + (f"/{action}" if action else "")
        hdrs = dict(headers or {})
        token = o.get("order_token") if token is None else token
        if token:
            hdrs["X-Order-Token"] = token
        return self.request("POST" if action else "GET", path, json_body=body, headers=hdrs)

    def create_sale(self, **fields):
        fields.setdefault("name", "Test sale")
        r = self.admin("/api/v1/sales", fields)
        if r.status != 201:
            raise AssertionError(f"creating a sale failed: {r}")
        return r.json["id"]


class Server:
    """The real binary on a free port.  db=None makes a fresh temporary database."""

    def __init__(self, binary=None, args=(), db=None, env=None, demo_stock=0):
        self.binary = binary or os.path.join(ROOT, "build", "flashsale")
        self.tmp = tempfile.mkdtemp(prefix="flashsale-test-")
        self.pg_name = None
        if db is None and PG:
            self.pg_name = "fs_test_" + os.urandom(6).hex()
            psql(PG + "/postgres", f"CREATE DATABASE {self.pg_name}")
            db = f"{PG}/{self.pg_name}"
        self.db = db or os.path.join(self.tmp, "flashsale.db")
        self.args = list(args)
        self.env = env or {}
        self.demo_stock = demo_stock
        self.proc = None
        self.port = None
        self.log = []
        self._reader = None

    def start(self, timeout=15):
        cmd = [self.binary, "--port", "0", "--db", self.db, "--admin-token", TOKEN,
               "--static", os.path.join(ROOT, "static"), "--demo-stock", str(self.demo_stock)] + self.args + EXTRA_ARGS
        env = dict(os.environ)
        env.update(self.env)
        self.log = []
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        ready = threading.Event()

        def read():
            for raw in self.proc.stderr:
                line = raw.decode(errors="replace").rstrip("\n")
                self.log.append(line)
                m = re.search(r"listening on http://[\d.]+:(\d+)", line)
                if m:
                    self.port = int(m.group(1))
                    ready.set()
            ready.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not ready.wait(timeout) or self.port is None:
            self.kill()
            raise AssertionError("server did not start:\n" + "\n".join(self.log[-30:]))
        return self

    def client(self, timeout=30):
        return Client(self.port, timeout)

    def stop(self, timeout=15):
        """SIGTERM; returns (exit code, seconds taken)."""
        t0 = time.time()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
            code = "timeout"
        self._reader.join(5)
        return code, time.time() - t0

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self._reader:
            self._reader.join(5)

    def alive(self):
        return self.proc.poll() is None

    def sanitizer_reports(self):
        """Lines of sanitizer output in the server's log."""
        pats = ("WARNING: ThreadSanitizer", "ERROR: AddressSanitizer", "runtime error:",
                "ERROR: LeakSanitizer", "SUMMARY: ")
        return [l for l in self.log if any(p in l for p in pats)]

    def cleanup(self):
        self.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.pg_name:
            psql(PG + "/postgres", f"DROP DATABASE IF EXISTS {self.pg_name} WITH (FORCE)")

    def is_pg(self):
        return self.db.startswith("postgres")

    def sql(self, query, args=()):
        """Reads the database directly, as anyone could with the sqlite3 shell (or psql)."""
        if self.is_pg():
            if query.strip().upper().startswith("PRAGMA INTEGRITY_CHECK"):
                return [("ok",)]  # PostgreSQL checks its own pages; nothing to ask
            for a in args:  # the few queries with parameters pass integers
                query = query.replace("?", str(int(a)), 1)
            return psql(self.db, query)
        con = sqlite3.connect(self.db, timeout=10)
        try:
            return con.execute(query, args).fetchall()
        finally:
            con.close()


def psql(uri, query):
    """Rows of a query through psql, numbers as ints; the rest as text (NULL as None)."""
    out = subprocess.run(["psql", "-X", "-q", "-At", "-F", "\x1f", "-P", "null=\x1e", uri, "-c", query],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise AssertionError(f"psql failed: {out.stderr}")
    rows = []
    for line in out.stdout.split("\n"):  # not splitlines(): it splits at \x1e too
        if not line:
            continue
        row = []
        for v in line.split("\x1f"):
            row.append(None if v == "\x1e" else int(v) if re.fullmatch(r"-?\d+", v) else v)
        rows.append(tuple(row))
    return rows


def metric(text, name, labels=None):
    """The value of one Prometheus sample, or None."""
    want = name + ("{" + labels + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return None


def together(n, fn):
    """fn(0) .. fn(n-1), each on a thread of its own, all at once; returns when all did."""
    ts = [threading.Thread(target=fn, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def crowd(port, sale_id, users, tries=2, threads=32, quantity=1, key=None):
    """Every user tries `tries` times from `threads` keep-alive connections.
    Returns (statuses: dict status->count, orders: list of 201 bodies)."""
    lock = threading.Lock()
    statuses, orders = {}, []
    work = [u for _ in range(tries) for u in users]
    idx = [0]

    def worker(_):
        c = Client(port)
        while True:
            with lock:
                if idx[0] >= len(work):
                    break
                u = work[idx[0]]
                idx[0] += 1
            headers = {"Idempotency-Key": key(u)} if key else None
            try:
                r = c.request("POST", f"/api/v1/sales/{sale_id}/orders",
                              json_body={"user_id": u, "quantity": quantity}, headers=headers)
                st, body = r.status, r.json
            except Exception:
                st, body = "error", None
            with lock:
                statuses[st] = statuses.get(st, 0) + 1
                if st == 201:
                    orders.append(body)
        c.close()

    together(threads, worker)
    return statuses, orders


def same_key_retries(server, c, rounds=10, tries=8):
    """A client retrying with one Idempotency-Key before its first try is answered:
    `tries` requests at once, `rounds` times, each round on a new sale with a limit of
    one.  Returns (rounds whose answers were not all the same 201, rounds without
    exactly one order row)."""
    mixed, rows_bad = [], 0
    for rnd in range(rounds):
        sale = c.create_sale(name=f"Retry {rnd}", stock=50, per_user_limit=1)
        answers, lock = [], threading.Lock()
        start = threading.Barrier(tries)

        def one(_):
            cl = Client(server.port)
            start.wait()
            r = cl.request("POST", f"/api/v1/sales/{sale}/orders", json_body={"user_id": "ivy"},
                           headers={"Idempotency-Key": "ivy-1"})
            with lock:
                answers.append((r.status, r.json.get("order_id") if r.status == 201 else r.error()))
            cl.close()
        together(tries, one)
        if len(set(answers)) != 1 or answers[0][0] != 201:
            mixed.append(sorted(answers, key=str))
        rows_bad += server.sql("SELECT COUNT(*) FROM orders WHERE sale_id=?", (sale,))[0][0] != 1
    return mixed, rows_bad


def db_truth(server, sale_id):
    """(stock_total, stock_left, units_sold, orders, users_over_limit) from the file."""
    total, left, limit = server.sql("SELECT stock_total, stock_left, per_user_limit FROM sales WHERE id=?",
                                    (sale_id,))[0]
    units, n = server.sql("SELECT COALESCE(SUM(quantity),0), COUNT(*) FROM orders WHERE sale_id=? "
                          "AND status IN ('pending','paid','confirmed')", (sale_id,))[0]
    over = server.sql("SELECT COUNT(*) FROM (SELECT user_id FROM orders WHERE sale_id=? AND status IN "
                      "('pending','paid','confirmed') GROUP BY user_id HAVING SUM(quantity) > ?) AS over_limit",
                      (sale_id, limit))[0][0]
    return total, left, units, n, over


def parse_responses(data):
    """Raw HTTP/1.1 bytes read off a socket (the framing and hostile suites): complete responses at the front of data: [(status, {header: value}, body)] and
    the bytes left over.  304, 204 and 1xx have no body whatever Content-Length says."""
    out = []
    while data.startswith(b"HTTP/"):
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.split(b"\r\n")
        try:
            status = int(lines[0].split()[1])
        except (IndexError, ValueError):
            break
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers.setdefault(k.strip().lower().decode(errors="replace"), v.strip().decode(errors="replace"))
        n = 0 if status in (204, 304) or status < 200 else int(headers.get("content-length", "0") or 0)
        if len(rest) < n:
            break
        out.append((status, headers, rest[:n]))
        data = rest[n:]
    return out, data
