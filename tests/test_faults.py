"""Faults: the disk fills up under the database, and SIGTERM lands in the middle of a crowd.

disk_full   The database lives on a 4 MiB tmpfs; a filler file takes most of the space
            and distinct users buy until purchases fail.  A failed purchase is 503
            `unavailable` (never 201) and stored nothing; every 201 is in the database;
            once the filler is deleted purchases succeed again; the audit is consistent,
            PRAGMA integrity_check is ok and the server never died.  Needs root (mount);
            without it the case is skipped with a PASS line saying so.
sigterm     SIGTERM while Python threads buy with an Idempotency-Key per request: exit 0
            within 10 s; every 201 is in the database; no purchase answered otherwise
            has an order under its key; stock_left + units sold == stock_total.

Usage: tests/test_faults.py [BINARY]   (default build/flashsale)
"""
import errno
import http.client
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, check, db_truth, finish, together  # noqa: E402

SUITE = "faults"
BINARY = sys.argv[1] if len(sys.argv) > 1 else None


def buy(conn, port, sale, user, key=None, timeout=10):
    """One purchase on conn (reconnecting when needed).  Returns (conn, status or
    'error', parsed body or the exception text, Retry-After)."""
    if conn is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Idempotency-Key"] = key
    try:
        conn.request("POST", f"/api/v1/sales/{sale}/orders", body=json.dumps({"user_id": user}), headers=headers)
        r = conn.getresponse()
        data = r.read()
        try:
            body = json.loads(data)
        except ValueError:
            body = data[:200]
        if (r.getheader("Connection") or "").lower() == "close":
            conn.close()
            conn = None
        return conn, r.status, body, r.getheader("Retry-After")
    except Exception as e:  # noqa: BLE001 - a reset or timeout is an outcome here
        conn.close()
        return None, "error", repr(e), None


def integrity(db):
    con = sqlite3.connect(db, timeout=10)
    try:
        return con.execute("PRAGMA integrity_check").fetchall()
    finally:
        con.close()


# ---- disk full ---------------------------------------------------------------------

def fill(path, leave):
    """Writes a filler file until only `leave` bytes are free (or the disk is full)."""
    st = os.statvfs(os.path.dirname(path))
    want = st.f_bavail * st.f_frsize - leave
    written = 0
    with open(path, "wb") as f:
        block = b"\xfa" * 65536
        try:
            while written < want:
                n = min(len(block), want - written)
                f.write(block[:n])
                written += n
            f.flush()
            os.fsync(f.fileno())
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
    return written


def crowd_until_failures(port, sale, tag, want_failures=30, max_tries=20000, threads=8, deadline=60):
    """Distinct users buy from `threads` connections until `want_failures` purchases
    failed (or the limits run out).  Returns [(user, status, body, retry_after)]."""
    results, lock = [], threading.Lock()
    counter = [0]
    stop = threading.Event()
    t_end = time.time() + deadline

    def worker(_):
        conn = None
        while not stop.is_set() and time.time() < t_end:
            with lock:
                counter[0] += 1
                i = counter[0]
                if i > max_tries:
                    return
            user = f"{tag}-{i}"
            conn, st, body, ra = buy(conn, port, sale, user)
            with lock:
                results.append((user, st, body, ra))
                if sum(1 for r in results if r[1] != 201) >= want_failures:
                    stop.set()
        if conn:
            conn.close()

    together(threads, worker)
    return results


def disk_full(strategy):
    name = f"disk_full[{strategy}]"
    if os.geteuid() != 0:
        check(SUITE, f"{name}:skipped_not_root", True)
        print("# disk_full needs root to mount a tmpfs; skipped", flush=True)
        return
    mnt = tempfile.mkdtemp(prefix="flashsale-faults-disk-")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt],
                             capture_output=True, text=True)
    if not check(SUITE, f"{name}:tmpfs_mounted", mounted.returncode == 0, mounted.stderr.strip()):
        os.rmdir(mnt)
        return
    srv = None
    try:
        db = os.path.join(mnt, "flashsale.db")
        filler = os.path.join(mnt, "filler")
        srv = Server(binary=BINARY, db=db, args=["--inventory", strategy]).start()
        c = srv.client(timeout=15)
        sale = c.create_sale(name="Disk full", stock=1000000, per_user_limit=1)
        warm = [c.post(f"/api/v1/sales/{sale}/orders", {"user_id": f"warm-{i}"}) for i in range(20)]
        check(SUITE, f"{name}:purchases_before_filling", all(r.status == 201 for r in warm),
              f"{[r for r in warm if r.status != 201][:3]}")
        acked = [(f"warm-{i}", r.json) for i, r in enumerate(warm) if r.status == 201]

        filled = fill(filler, leave=96 * 1024)
        st = os.statvfs(mnt)
        print(f"# {name}: filler {filled // 1024} KiB, {st.f_bavail * st.f_frsize // 1024} KiB left", flush=True)
        results = crowd_until_failures(srv.port, sale, "full")
        ok201 = [(u, b) for u, s, b, _ in results if s == 201]
        failed = [(u, s, b, ra) for u, s, b, ra in results if s != 201]
        acked += ok201
        kinds = {}
        for _, s, b, _ in failed:
            k = f"{s} {b.get('error')}" if isinstance(b, dict) else str(s)
            kinds[k] = kinds.get(k, 0) + 1
        print(f"# {name}: {len(results)} purchases while full: {len(ok201)} x 201, failures {kinds}", flush=True)
        check(SUITE, f"{name}:purchases_fail_when_full", len(failed) > 0,
              f"the disk never filled: {len(ok201)} purchases all succeeded")
        bad = [f for f in failed if not (f[1] == 503 and isinstance(f[2], dict)
                                         and f[2].get("error") == "unavailable" and f[3])]
        check(SUITE, f"{name}:failures_are_503_unavailable", failed and not bad,
              f"{len(bad)} of {len(failed)} failures were not 503 unavailable with Retry-After: {bad[:5]}")
        alive_full = srv.alive()

        os.unlink(filler)
        recovered, last, after = False, None, []
        conn = None
        for i in range(100):  # the writer retries on its next batch; allow a few seconds
            user = f"back-{i}"
            conn, s, b, _ = buy(conn, srv.port, sale, user)
            last = (s, b)
            if s == 201:
                after.append((user, b))
                recovered = True
                break
            time.sleep(0.1)
        for i in range(20):
            conn, s, b, _ = buy(conn, srv.port, sale, f"again-{i}")
            if s == 201:
                after.append((f"again-{i}", b))
        if conn:
            conn.close()
        acked += after
        check(SUITE, f"{name}:recovers_when_space_returns", recovered and len(after) == 21,
              f"after deleting the filler: {len(after)}/21 purchases succeeded, last {last}")

        rows = {r[0]: (r[1], r[2]) for r in srv.sql("SELECT id, user_id, quantity FROM orders WHERE sale_id=?", (sale,))}
        missing = [(u, b) for u, b in acked if rows.get(b.get("order_id")) != (u, b.get("quantity"))]
        check(SUITE, f"{name}:every_201_in_database", not missing,
              f"{len(missing)} of {len(acked)} acknowledged orders missing: {missing[:3]}")
        failed_users = {u for u, *_ in failed}
        stored = [u for (u, _) in rows.values() if u in failed_users]
        check(SUITE, f"{name}:failed_purchases_stored_nothing", not stored,
              f"{len(stored)} users answered 503 have orders: {stored[:5]}")
        a = srv.client(timeout=15).get(f"/api/v1/sales/{sale}/audit").json or {}
        total, left, units, n, over = db_truth(srv, sale)
        s = srv.client(timeout=15).get(f"/api/v1/sales/{sale}").json or {}
        check(SUITE, f"{name}:audit_consistent",
              a.get("consistent") is True and left + units == total and s.get("stock_left") == left
              and s.get("sold") == units and units == len(rows),
              f"audit {a}; db left {left} + units {units} vs total {total}; memory {s.get('stock_left')}/{s.get('sold')}")
        check(SUITE, f"{name}:server_never_died", alive_full and srv.alive(), f"exit {srv.proc.poll()}")
        code, secs = srv.stop()
        check(SUITE, f"{name}:stops_cleanly", code == 0, f"exit {code} after {secs:.1f}s")
        check(SUITE, f"{name}:integrity_check_ok", integrity(db) == [("ok",)], f"{integrity(db)[:5]}")
        check(SUITE, f"{name}:no_sanitizer_reports", not srv.sanitizer_reports(),
              "\n".join(srv.sanitizer_reports()[:20]))
    finally:
        if srv:
            srv.cleanup()
        subprocess.run(["umount", mnt], capture_output=True)
        try:
            os.rmdir(mnt)
        except OSError:
            pass


# ---- SIGTERM in a crowd -------------------------------------------------------------------

def sigterm_crowd(threads=32, run_for=1.5):
    srv = Server(binary=BINARY).start()
    try:
        sale = srv.client().create_sale(name="Stop me", stock=1000000, per_user_limit=1)
        results, lock, stop = [], threading.Lock(), threading.Event()
        nonce = random.randint(0, 1 << 30)

        def worker(n):
            conn, i = None, 0
            while not stop.is_set():
                i += 1
                user, key = f"term-{n}-{i}", f"key-{nonce}-{n}-{i}"
                t_sent = time.time()
                conn, st, body, _ = buy(conn, srv.port, sale, user, key=key)
                with lock:
                    results.append((user, key, st, body, t_sent))
                if st == "error":
                    time.sleep(0.05)  # the server is going away; keep knocking briefly
            if conn:
                conn.close()

        ts = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
        for t in ts:
            t.start()
        deadline = time.time() + 60  # the first purchase is through, however slow the machine
        while not any(r[2] == 201 for r in list(results)) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(run_for)
        with lock:
            before = len(results)
        t_signal = time.time()
        code, secs = srv.stop(timeout=15)
        t_exit = t_signal + secs
        time.sleep(0.3)
        stop.set()
        for t in ts:
            t.join(30)
        answered = [r for r in results if r[2] != "error"]
        ok201 = [r for r in answered if r[2] == 201]
        other = [r for r in answered if r[2] != 201]
        kinds = {}
        for r in results:
            k = f"{r[2]} {r[3].get('error')}" if isinstance(r[3], dict) and r[2] != 201 else str(r[2])
            kinds[k] = kinds.get(k, 0) + 1
        print(f"# sigterm: {before} purchases before the signal, {len(results)} in all: {kinds}; "
              f"stopped in {secs:.2f}s", flush=True)
        check(SUITE, "sigterm:exit_0_within_10s", code == 0 and secs < 10, f"exit {code} after {secs:.1f}s")
        check(SUITE, "sigterm:crowd_was_buying", len(ok201) > 0, f"no purchase succeeded: {kinds}")
        check(SUITE, "sigterm:nothing_left_deferred", not any("never completed" in l for l in srv.log),
              " | ".join(l for l in srv.log if "never completed" in l))
        rows = {r[0]: r[1:] for r in srv.sql(
            "SELECT id, user_id, quantity, idempotency_key FROM orders WHERE sale_id=?", (sale,))}
        missing = [r for r in ok201 if rows.get(r[3].get("order_id")) != (r[0], 1, r[1])]
        check(SUITE, "sigterm:every_201_in_database", not missing,
              f"{len(missing)} of {len(ok201)} acknowledged orders missing: {missing[:3]}")
        keys = {r[2] for r in rows.values()}
        stored = [r for r in other if r[1] in keys]
        check(SUITE, "sigterm:refused_purchases_stored_nothing", not stored,
              f"{len(stored)} purchases answered non-201 have an order under their key: {stored[:3]}")
        unanswered = [r for r in results if r[2] == "error" and r[4] < t_exit]
        committed_unanswered = sum(1 for r in unanswered if r[1] in keys)
        print(f"# sigterm: {len(unanswered)} requests sent before the exit got no answer "
              f"({sum(1 for r in unanswered if r[4] < t_signal)} of them before the signal), {committed_unanswered} "
              f"of them committed (allowed: the client can replay its key); "
              f"{sum(1 for r in other if r[4] >= t_signal)} answered non-201 during the drain", flush=True)
        early = [r for r in unanswered if r[4] < t_signal]
        check(SUITE, "sigterm:requests_sent_before_signal_answered", not early,
              f"{len(early)} purchases sent before SIGTERM got no answer: {early[:3]}")
        total, left, units, n, over = db_truth(srv, sale)
        check(SUITE, "sigterm:stock_adds_up", left + units == total and over == 0 and n == len(rows),
              f"left {left} + sold {units} != {total} (orders {n}, over limit {over})")
        check(SUITE, "sigterm:integrity_check_ok", integrity(srv.db) == [("ok",)], f"{integrity(srv.db)[:5]}")
        check(SUITE, "sigterm:no_sanitizer_reports", not srv.sanitizer_reports(),
              "\n".join(srv.sanitizer_reports()[:20]))
        srv.start()
        s = srv.client().get(f"/api/v1/sales/{sale}").json or {}
        check(SUITE, "sigterm:restart_counters_match_database", s.get("stock_left") == left and s.get("sold") == units,
              f"memory {s.get('stock_left')}/{s.get('sold')} vs db left {left} sold {units}")
    finally:
        srv.cleanup()


def main():
    for strategy in ("atomic", "sqlite"):  # the group-commit writer, and one transaction per purchase
        disk_full(strategy)
    sigterm_crowd()
    finish()


if __name__ == "__main__":
    main()
