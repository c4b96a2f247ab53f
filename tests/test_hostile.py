"""Hostile clients against the real binary: broken HTTP, slow clients, limits, timeouts.

1. A table of raw-socket requests that are not (quite) HTTP: garbage bytes, NUL bytes
   in the request line, oversized headers and URLs, HTTP/1.0 without Host, pipelining,
   requests cut off mid-headers or mid-body, bad chunk sizes, percent-encoded path
   traversal, overflowing ids.  Each gets the expected answer (or a closed socket
   where HTTP itself is broken); after each the server is alive, /healthz answers and
   no stock moved; after the whole table the sale and the database are untouched.
2. Slow clients: 300 connections trickling headers a byte every 200 ms while a normal
   keep-alive client buys and reads; every normal request completes.
3. --per-ip-limit: connections from 127.0.0.1 beyond the limit are refused while a
   client bound to 127.0.0.2 is served.
4. --idle-timeout: an idle connection is closed by the server.
5. --queue-timeout-ms: with the database write-locked from outside, concurrent
   purchases are all answered 503 (overloaded/unavailable, Retry-After), none 201;
   after the lock is released purchases succeed and the audit is consistent.

Usage: tests/test_hostile.py [BINARY]   (default build/flashsale)
"""
import http.client
import json
import os
import random
import resource
import socket
import sqlite3
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, check, db_truth, finish, parse_responses  # noqa: E402

SUITE = "hostile"
BINARY = sys.argv[1] if len(sys.argv) > 1 else None


# ---- raw sockets ------------------------------------------------------------------

def exchange(port, data, mode="keep", want=1, timeout=3.0, src=None):
    """Sends data on a fresh connection and reads what comes back.

    mode "keep": read until `want` complete responses, EOF, reset or `timeout` of silence.
    mode "half": the same after shutdown(SHUT_WR), the client's "I am done sending".
    mode "close": send, then close at once without reading (the client walks away).
    Returns (responses, end) with end 'complete' | 'eof' | 'reset' | 'timeout' | 'closed'.

    After a half-close, libmicrohttpd (edge-triggered epoll) may not notice the EOF
    when it arrived together with the data; the connection then waits for the idle
    timeout.  That is harmless, so a half-closed exchange that goes silent reports
    'half-open', which the expectations accept as "no answer"."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if src:
        s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    out, end = b"", "eof"
    try:
        if data:
            s.sendall(data)
        if mode == "close":
            time.sleep(0.05)
            return [], "closed"
        if mode == "half":
            s.shutdown(socket.SHUT_WR)
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
            if len(parse_responses(out)[0]) >= want:
                end = "complete"
                break
    except (ConnectionResetError, BrokenPipeError):
        end = "reset"
    except socket.timeout:
        end = "half-open" if mode == "half" else "timeout"
    except OSError as e:  # ENOTCONN: the server closed before our shutdown
        end = "reset" if e.errno in (107, 104) else f"error {e!r}"
    finally:
        s.close()
    return parse_responses(out)[0], end


def json_of(body):
    try:
        return json.loads(body)
    except ValueError:
        return None


def describe(resps, end):
    if not resps:
        return f"no response ({end})"
    return "; ".join(f"{st} {body[:120]!r}" for st, _, body in resps) + f" ({end})"


# ---- expectations: each takes (responses, end) and returns (ok, why) ---------------

def status_in(*codes):
    def f(resps, end):
        return bool(resps) and resps[0][0] in codes, f"want one of {codes}, got {describe(resps, end)}"
    return f


def closed_or(*codes):
    """A closed socket (no answer) or the first answer's status in codes."""
    def f(resps, end):
        ok = (resps and resps[0][0] in codes) or (not resps and end in ("eof", "reset", "half-open"))
        return ok, f"want a closed socket or one of {codes}, got {describe(resps, end)}"
    return f


def no_answer():
    def f(resps, end):
        return not resps and end in ("eof", "reset", "half-open", "closed"), f"want the connection closed without an answer, got {describe(resps, end)}"
    return f


def json_error(code, error, forbid=()):
    """Status code with a JSON error body; none of the forbidden byte strings in it."""
    def f(resps, end):
        if not resps:
            return False, f"want {code} {error}, got {describe(resps, end)}"
        st, hdrs, body = resps[0]
        j = json_of(body)
        leaked = [x for x in forbid if x in body]
        ok = st == code and isinstance(j, dict) and j.get("error") == error and not leaked
        return ok, f"want {code} {{error: {error}}}, got {describe(resps, end)}" + \
            (f"; LEAKED {leaked}" if leaked else "")
    return f


def never(*codes):
    """Whatever happens, the first answer is not one of codes (nor a timeout)."""
    def f(resps, end):
        ok = bool(resps) and resps[0][0] not in codes or not resps and end in ("eof", "reset", "half-open")
        return ok, f"must not answer {codes}, got {describe(resps, end)}"
    return f


def sequence(*checks):
    """Pipelining: one expectation per response, in order."""
    def f(resps, end):
        if len(resps) != len(checks):
            return False, f"want {len(checks)} responses, got {describe(resps, end)}"
        for i, c in enumerate(checks):
            ok, why = c([resps[i]], end)
            if not ok:
                return False, f"response {i + 1}: {why}"
        return True, ""
    f.want = len(checks)
    return f


def sale_json(sale_id):
    def f(resps, end):
        if not resps:
            return False, f"want the sale, got {describe(resps, end)}"
        st, _, body = resps[0]
        j = json_of(body)
        return st == 200 and isinstance(j, dict) and j.get("id") == sale_id, \
            f"want 200 with sale {sale_id}, got {describe(resps, end)}"
    return f


# ---- 1. the table -----------------------------------------------------------------

def purchase(path, body, extra=b"", te=None, cl=None):
    """Raw bytes of a purchase-shaped POST (valid JSON body: any acceptance would sell)."""
    head = b"POST " + path + b" HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n" + extra
    if te is not None:
        return head + b"Transfer-Encoding: chunked\r\n\r\n" + te
    return head + b"Content-Length: " + (cl if cl is not None else str(len(body)).encode()) + b"\r\n\r\n" + body


def table(sale):
    orders = f"/api/v1/sales/{sale}/orders".encode()
    rnd = random.Random(5)
    garbage = bytes(rnd.randrange(256) for _ in range(4096))
    user = iter(range(1, 1000))

    def body():  # a fresh user per case, so nothing is refused for the per-user limit
        return b'{"user_id":"hostile-%d"}' % next(user)

    def chunk(data, add, end=b"0\r\n\r\n"):  # one chunk of data, its size plus add, then end
        return b"%x\r\n" % (len(data) + add) + data + b"\r\n" + end

    def get(path, extra=b""):
        return b"GET " + path + b" HTTP/1.1\r\nHost: t\r\n" + extra + b"\r\n"

    no_files = (b"root:", b"#include", b"<html", b"<!doctype")
    return [
        # name, bytes sent, expectation, exchange mode (see exchange())
        ("garbage_bytes", garbage + b"\r\n\r\n", closed_or(400), "keep"),
        ("garbage_tls_client_hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + garbage[:500],
         closed_or(400), "keep"),
        ("garbage_only_newlines", b"\r\n" * 2000, closed_or(400), "half"),
        ("garbage_one_long_token", b"A" * 6000 + b"\r\n\r\n", closed_or(400, 414, 431), "keep"),
        ("garbage_method_only", b"GET\r\n\r\n", closed_or(400), "keep"),
        ("garbage_http2_preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", closed_or(400, 404, 405, 505), "keep"),
        ("garbage_bare_lf_still_http", b"GET /healthz HTTP/1.1\nHost: t\n\n", status_in(200), "keep"),
        # NUL in the request line: libmicrohttpd reads the line as a C string.  The path
        # as sent names no resource, so nothing may be served or sold from it.
        ("nul_in_request_line_404", b"GET /heal\x00thz HTTP/1.1\r\nHost: t\r\n\r\n", closed_or(400, 404), "keep"),
        ("nul_in_path_serves_no_file", b"GET /index.html\x00.js HTTP/1.1\r\nHost: t\r\n\r\n",
         closed_or(400, 404), "keep"),
        ("nul_in_path_sells_nothing", purchase(orders + b"\x00/x", body()), closed_or(400, 404), "keep"),
        ("nul_percent_encoded_404", get(b"/index.html%00.js"), json_error(404, "not_found"), "keep"),
        # Oversized: libmicrohttpd answers these itself with its own HTML body.
        ("header_10k_431", get(b"/healthz", b"X-Big: " + b"a" * 10240 + b"\r\n"), status_in(431), "keep"),
        ("headers_many_431", get(b"/healthz", b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 16) for i in range(600))),
         status_in(431), "keep"),
        ("url_20k_414", get(b"/" + b"a" * 20480), status_in(414, 431), "keep"),
        ("url_20k_purchase_refused", purchase(orders + b"?" + b"p" * 20480, body()), status_in(414, 431), "keep"),
        # Old and odd but valid HTTP.
        ("http10_no_host", b"GET /healthz HTTP/1.0\r\n\r\n", status_in(200), "keep"),
        ("http10_no_host_sale", b"GET /api/v1/sales/%d HTTP/1.0\r\n\r\n" % sale, sale_json(sale), "keep"),
        ("pipelined_pair", get(b"/healthz") + get(b"/api/v1/sales/%d" % sale), sequence(status_in(200), sale_json(sale)), "keep"),
        ("pipelined_bad_then_good", purchase(orders, b'{"user_id":') + get(b"/healthz"),
         sequence(json_error(400, "invalid_request"), status_in(200)), "keep"),
        # Cut off: nothing may be answered as if the request were complete.
        ("stops_in_request_line", b"GET /heal", no_answer(), "close"),
        ("stops_mid_headers", b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Partial: ab", no_answer(), "close"),
        ("stops_mid_purchase_headers", purchase(orders, body())[:60], no_answer(), "close"),
        ("content_length_larger_than_body", purchase(orders, body(), cl=b"100"), closed_or(400), "half"),
        ("content_length_negative", purchase(orders, body(), cl=b"-1"), closed_or(400), "keep"),
        ("content_length_overflow", purchase(orders, body(), cl=b"99999999999999999999999"), closed_or(400, 413), "keep"),
        ("content_length_conflicting", purchase(orders, body(), extra=b"Content-Length: 5\r\n"),
         never(201), "keep"),
        ("content_length_and_chunked", purchase(orders, b"", extra=b"Content-Length: 22\r\n",
                                                te=b"zz\r\n" + body() + b"\r\n0\r\n\r\n"), closed_or(400), "keep"),
        # Chunked bodies with bad chunk sizes (each chunk holds a valid purchase).
        ("chunk_size_not_hex", purchase(orders, b"", te=b"ZZ\r\n" + body() + b"\r\n0\r\n\r\n"), closed_or(400), "keep"),
        ("chunk_size_negative", purchase(orders, b"", te=b"-5\r\n" + body() + b"\r\n0\r\n\r\n"), closed_or(400), "keep"),
        ("chunk_size_overflow", purchase(orders, b"", te=b"f" * 24 + b"\r\n" + body() + b"\r\n0\r\n\r\n"),
         closed_or(400, 413), "keep"),
        ("chunk_size_2_64_plus_len", purchase(orders, b"", te=chunk(body(), 2**64)),
         closed_or(400, 413), "keep"),
        ("chunk_size_smaller_than_data", purchase(orders, b"", te=b"5\r\n" + body() + b"\r\n0\r\n\r\n"),
         closed_or(400), "keep"),
        ("chunk_size_larger_then_close", purchase(orders, b"", te=b"100\r\n" + body()), closed_or(400), "half"),
        ("chunk_no_terminator_then_close", purchase(orders, b"", te=chunk(body(), 0, end=b"")),
         closed_or(400), "half"),
        # Path traversal, plain and percent-encoded: 404 JSON, never a file's contents.
        ("traversal_pct_dotdot_etc_passwd", get(b"/%2e%2e/%2e%2e/etc/passwd"), json_error(404, "not_found", no_files), "keep"),
        ("traversal_dotdot_pct_slash_src", get(b"/..%2fsrc/main.c"), json_error(404, "not_found", no_files), "keep"),
        ("traversal_plain_dotdot", get(b"/../../etc/passwd"), json_error(404, "not_found", no_files), "keep"),
        ("traversal_all_encoded", get(b"/%2e%2e%2f%2e%2e%2fetc%2fpasswd"), json_error(404, "not_found", no_files), "keep"),
        ("traversal_double_encoded", get(b"/%252e%252e/%252e%252e/etc/passwd"), json_error(404, "not_found", no_files), "keep"),
        ("traversal_dot_pct_dot", get(b"/.%2e/src/main.c"), json_error(404, "not_found", no_files), "keep"),
        ("traversal_backslash", get(b"/..\\..\\src\\main.c"), json_error(404, "not_found", no_files), "keep"),
        ("traversal_absolute_double_slash", get(b"//etc/passwd"), json_error(404, "not_found", no_files), "keep"),
        ("traversal_under_api", get(b"/api/v1/../../src/main.c"), json_error(404, "not_found", no_files), "keep"),
        # Ids outside 1..2^63-1, or not decimal: 404, and never another sale's purchase.
        ("id_int64_max_plus_1", get(b"/api/v1/sales/9223372036854775808"), json_error(404, "not_found"), "keep"),
        ("id_20_digits", get(b"/api/v1/sales/99999999999999999999"), json_error(404, "not_found"), "keep"),
        ("id_zero", get(b"/api/v1/sales/0"), json_error(404, "not_found"), "keep"),
        ("id_negative", get(b"/api/v1/orders/-1"), json_error(404, "not_found"), "keep"),
        ("id_plus_sign", get(b"/api/v1/sales/+%d" % sale), json_error(404, "not_found"), "keep"),
        ("id_hex", get(b"/api/v1/sales/0x%x" % sale), json_error(404, "not_found"), "keep"),
        ("id_exponent", get(b"/api/v1/sales/%de0" % sale), json_error(404, "not_found"), "keep"),
        ("id_int64_max_no_such_sale", get(b"/api/v1/sales/9223372036854775807"), json_error(404, "not_found"), "keep"),
        ("id_wraps_2_64_purchase", purchase(b"/api/v1/sales/%d/orders" % (2**64 + sale), body()),
         json_error(404, "not_found"), "keep"),
        ("id_wraps_2_63_purchase", purchase(b"/api/v1/sales/%d/orders" % (2**63 + sale), body()),
         json_error(404, "not_found"), "keep"),
        ("id_order_overflow", get(b"/api/v1/orders/18446744073709551616"), json_error(404, "not_found"), "keep"),
    ]


def sale_counters(c, sale):
    s = c.get(f"/api/v1/sales/{sale}").json
    return (s["stock_left"], s["sold"]) if s else None


def run_table(srv):
    c = srv.client(timeout=10)
    sale = c.create_sale(name="Hostile table", stock=50, per_user_limit=1)
    before = sale_counters(c, sale)
    db_before = db_truth(srv, sale)
    cases = table(sale)
    for name, data, expect, mode in cases:
        s0 = sale_counters(c, sale)
        try:
            resps, end = exchange(srv.port, data, mode=mode, want=getattr(expect, "want", 1))
            ok, why = expect(resps, end)
        except OSError as e:
            ok, why = False, f"socket error {e!r}"
        alive = srv.alive()
        try:
            h = c.get("/healthz")
            healthy = h.status == 200
        except Exception as e:  # noqa: BLE001 - any failure is the finding
            healthy, h = False, e
        s1 = sale_counters(c, sale) if healthy else None
        problems = [why] if not ok else []
        if not alive:
            problems.append(f"server died (exit {srv.proc.poll()})")
        elif not healthy:
            problems.append(f"/healthz failed afterwards: {h!r}")
        if s1 != s0:
            problems.append(f"stock moved: (stock_left, sold) {s0} -> {s1}")
        check(SUITE, name, not problems, "; ".join(problems))
        if not alive:
            srv.start()  # keep going: later cases still tell something
            c = srv.client(timeout=10)
    after = sale_counters(c, sale)
    db_after = db_truth(srv, sale)
    check(SUITE, "table:no_stock_moved", before == after and db_before == db_after,
          f"memory (left, sold) {before} -> {after}; db (total, left, units, orders, over) {db_before} -> {db_after}")
    check(SUITE, "table:no_orders_written", srv.sql("SELECT COUNT(*) FROM orders")[0][0] == 0,
          f"orders in the database: {srv.sql('SELECT id, sale_id, user_id FROM orders')}")
    check(SUITE, "table:cases_tried", len(cases) >= 40, f"{len(cases)} cases")
    print(f"# hostile table: {len(cases)} malformed requests tried", flush=True)


# ---- 2. slow clients ---------------------------------------------------------------

def slow_clients(srv, n=300, interval=0.2, duration=5.0):
    """n connections trickle a never-ending header one byte per interval while a
    normal keep-alive client buys and reads.  Every normal request completes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 1024), hard))
    c = srv.client(timeout=10)
    sale = c.create_sale(name="Slow clients", stock=1000, per_user_limit=1)
    trickle = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"s" * 4000
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        s.setblocking(False)
        socks.append(s)
    stop = threading.Event()
    sent = [0]
    dropped = set()

    def trickler():
        i = 0
        while not stop.is_set():
            for k, s in enumerate(socks):
                if k in dropped:
                    continue
                try:
                    s.send(trickle[i:i + 1])
                    sent[0] += 1
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    dropped.add(k)
            i += 1
            stop.wait(interval)

    t = threading.Thread(target=trickler, daemon=True)
    t.start()
    time.sleep(1.0)  # the trickle is under way before the normal client starts
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    failures, done, rounds, t0 = [], 0, 0, time.time()
    hdrs = {"Content-Type": "application/json"}
    while time.time() - t0 < duration:  # keep the trickle going for many of its rounds
        steps = [("POST", f"/api/v1/sales/{sale}/orders", json.dumps({"user_id": f"normal-{rounds}"}), 201),
                 ("GET", f"/api/v1/sales/{sale}", None, 200),
                 ("GET", "/healthz", None, 200)]
        rounds += 1
        for method, path, body, want in steps:
            try:
                conn.request(method, path, body=body, headers=hdrs if body else {})
                r = conn.getresponse()
                data = r.read()
                if r.status != want:
                    failures.append(f"{method} {path}: {r.status} {data[:100]!r}")
                done += 1
            except Exception as e:  # noqa: BLE001 - a timeout or reset is the finding
                failures.append(f"{method} {path}: {e!r}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        time.sleep(0.05)
    elapsed = time.time() - t0
    conn.close()
    still_open = n - len(dropped)
    stop.set()
    t.join(5)
    for s in socks:
        s.close()
    check(SUITE, "slow_clients:normal_requests_all_complete", not failures and done == 3 * rounds,
          f"{done}/{3 * rounds} completed; {failures[:5]}")
    check(SUITE, "slow_clients:server_alive", srv.alive() and srv.client(timeout=10).get("/healthz").status == 200,
          "server down after the slow clients")
    total, left, units, orders, over = db_truth(srv, sale)
    check(SUITE, "slow_clients:purchases_recorded", units == rounds and left + units == total,
          f"db: {units} units sold of {rounds} bought, left {left}, total {total}")
    print(f"# slow clients: {n} trickling ({still_open} still open at the end, {sent[0]} bytes sent); "
          f"{done} normal requests in {elapsed:.1f}s", flush=True)


# ---- 3. per-IP limit -----------------------------------------------------------------

def per_ip_limit(limit=20):
    srv = Server(binary=BINARY, args=["--per-ip-limit", str(limit), "--io-threads", "1"]).start()
    held = []
    try:
        for _ in range(limit):  # fill the limit with open, unfinished requests
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
            held.append(s)
        time.sleep(0.5)  # the server has accepted them all
        answers = []
        for _ in range(5):
            answers.append(exchange(srv.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                                    timeout=5))
        refused = [a for a in answers if not a[0] and a[1] != "timeout"]
        check(SUITE, "per_ip_limit:extra_connections_refused", len(refused) == 5,
              f"beyond {limit} connections from 127.0.0.1: {[describe(r, e) for r, e in answers]}")
        r, end = exchange(srv.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                          timeout=5, src="127.0.0.2")
        check(SUITE, "per_ip_limit:other_address_served", bool(r) and r[0][0] == 200,
              f"from 127.0.0.2: {describe(r, end)}")
        for s in held:
            s.close()
        held = []
        ok, last = False, None
        for _ in range(50):  # the server notices the closes on its next round
            last = exchange(srv.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                            timeout=5)
            if last[0] and last[0][0][0] == 200:
                ok = True
                break
            time.sleep(0.1)
        check(SUITE, "per_ip_limit:served_again_after_close", ok, f"127.0.0.1 after closing: {describe(*last)}")
        check(SUITE, "per_ip_limit:server_alive", srv.alive())
    finally:
        for s in held:
            s.close()
        srv.cleanup()


# ---- 4. idle timeout --------------------------------------------------------------------

def idle_timeout(seconds=2):
    srv = Server(binary=BINARY, args=["--idle-timeout", str(seconds)]).start()
    try:
        for name, first in (("silent_connection", b""),
                            ("keepalive_after_request", b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=15)
            t0 = time.time()
            got, end = b"", "eof"
            try:
                if first:
                    s.sendall(first)
                while True:
                    d = s.recv(4096)
                    if not d:
                        break
                    got += d
            except ConnectionResetError:
                end = "reset"
            except socket.timeout:
                end = "timeout"
            finally:
                s.close()
            took = time.time() - t0
            answered = not first or (parse_responses(got)[0] and parse_responses(got)[0][0][0] == 200)
            check(SUITE, f"idle_timeout:{name}_closed", end != "timeout" and 1.0 <= took and answered,
                  f"--idle-timeout {seconds}: {end} after {took:.1f}s, received {got[:80]!r}")
        check(SUITE, "idle_timeout:server_alive", srv.alive() and srv.client().get("/healthz").status == 200)
    finally:
        srv.cleanup()


# ---- 5. queue timeout while the database is locked ------------------------------------------

def queue_timeout(hold=120.0, n=20):
    srv = Server(binary=BINARY, args=["--inventory", "sqlite", "--workers", "1", "--queue-timeout-ms", "200"]).start()
    try:
        c = srv.client(timeout=15)
        sale = c.create_sale(name="Locked out", stock=100, per_user_limit=1)
        # The lock is held until every purchase is answered (hold is only a cap for a
        # server that never answers): a purchase that reaches the writer late would
        # otherwise outlive a fixed hold and rightly commit once the lock is gone.
        locked, release = threading.Event(), threading.Event()
        lock_err, released_at = [], []

        def holder():
            try:
                con = sqlite3.connect(srv.db, timeout=10, isolation_level=None)
                con.execute("BEGIN IMMEDIATE")
                locked.set()
                release.wait(hold)
                released_at.append(time.time() - t_lock)
                con.execute("ROLLBACK")
                con.close()
            except Exception as e:  # noqa: BLE001
                lock_err.append(e)
                locked.set()

        t_lock = time.time()
        h = threading.Thread(target=holder)
        h.start()
        locked.wait(10)
        results = [None] * n

        def buy(i):
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
            try:
                conn.request("POST", f"/api/v1/sales/{sale}/orders", body=json.dumps({"user_id": f"locked-{i}"}),
                             headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                results[i] = (r.status, r.getheader("Retry-After"), json_of(r.read()), time.time() - t_lock)
            except Exception as e:  # noqa: BLE001
                results[i] = ("error", None, repr(e), time.time() - t_lock)
            finally:
                conn.close()

        ts = [threading.Thread(target=buy, args=(i,)) for i in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(90)
        release.set()
        h.join(15)
        check(SUITE, "queue_timeout:lock_taken", not lock_err, f"could not lock the database: {lock_err}")
        answered = [r for r in results if r and r[0] != "error"]
        released = released_at[0] if released_at else 0
        late = [r for r in answered if r[3] >= released]
        check(SUITE, "queue_timeout:every_purchase_answered", len(answered) == n and not late,
              f"{len(answered)}/{n} answered, {len(late)} only after the lock was released at {released:.1f}s: "
              f"{[r for r in results if not r or r[0] == 'error'][:3]} {late[:3]}")
        bad = [r for r in answered if not (r[0] == 503 and isinstance(r[2], dict)
                                           and r[2].get("error") in ("overloaded", "unavailable") and r[1])]
        check(SUITE, "queue_timeout:all_503_with_retry_after", not bad and answered, f"{bad[:5]}")
        check(SUITE, "queue_timeout:none_sold_while_locked", not any(r[0] == 201 for r in answered),
              f"{sum(1 for r in answered if r[0] == 201)} answered 201 while the database was locked")
        slowest = max((r[3] for r in answered), default=0)
        kinds = {}
        for r in answered:
            k = r[2].get("error") if isinstance(r[2], dict) else r[0]
            kinds[k] = kinds.get(k, 0) + 1
        print(f"# queue timeout: {kinds}, slowest answer {slowest:.1f}s after the lock", flush=True)
        ok, last = False, None
        for i in range(20):
            last = c.post(f"/api/v1/sales/{sale}/orders", {"user_id": f"after-{i}"})
            if last.status == 201:
                ok = True
                break
            time.sleep(0.25)
        check(SUITE, "queue_timeout:purchases_succeed_after_release", ok, f"last answer {last}")
        for i in range(5):
            c.post(f"/api/v1/sales/{sale}/orders", {"user_id": f"later-{i}"})
        a = c.get(f"/api/v1/sales/{sale}/audit").json or {}
        total, left, units, orders, over = db_truth(srv, sale)
        locked_orders = srv.sql("SELECT COUNT(*) FROM orders WHERE user_id LIKE 'locked-%'")[0][0]
        check(SUITE, "queue_timeout:audit_consistent",
              a.get("consistent") is True and left + units == total and locked_orders == 0,
              f"audit {a}; db left {left} + units {units} vs {total}; orders of refused buyers {locked_orders}")
        check(SUITE, "queue_timeout:server_alive", srv.alive())
    finally:
        srv.cleanup()


def main():
    srv = Server(binary=BINARY).start()
    try:
        run_table(srv)
        slow_clients(srv)
        code, secs = srv.stop()
        check(SUITE, "table_server_stops_cleanly", code == 0, f"exit {code} after {secs:.1f}s")
        check(SUITE, "no_sanitizer_reports", not srv.sanitizer_reports(), "\n".join(srv.sanitizer_reports()[:20]))
    finally:
        srv.cleanup()
    per_ip_limit()
    idle_timeout()
    queue_timeout()
    finish()


if __name__ == "__main__":
    main()
