"""kill -9 in the middle of a crowd, in a loop: after each restart on the same file,
every acknowledged order exists, stock_left + units sold == stock_total, the
in-memory counters are rebuilt from the database, and PRAGMA integrity_check is ok.

Usage: tests/test_kill.py [ROUNDS]   (default 3; `make test-kill ROUNDS=50` for more)
"""
import os
import random
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ROOT, Client, Server, check, db_truth, finish  # noqa: E402

SUITE = "kill"


def buyers(port, sale, tag, acked, stop, threads=24):
    """Python buyers recording every order the server acknowledged with 201."""
    lock = threading.Lock()

    def run(n):
        c = Client(port, timeout=5)
        i = 0
        while not stop.is_set():
            i += 1
            try:
                r = c.post(f"/api/v1/sales/{sale}/orders", {"user_id": f"{tag}-{n}-{i}", "quantity": 1 + i % 2})
            except Exception:
                return  # the server is gone
            if r.status == 201:
                with lock:
                    acked.append(r.json)
    ts = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for t in ts:
        t.start()
    return ts


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    srv = Server(args=["--inventory", "atomic"])
    srv.start()
    sale = srv.client().create_sale(name="Kill me", stock=5000000, per_user_limit=2)
    total_acked, survived = 0, 0
    loadgen = os.path.join(ROOT, "build", "loadgen")
    try:
        for rnd in range(1, rounds + 1):
            acked, stop = [], threading.Event()
            ts = buyers(srv.port, sale, f"r{rnd}-{random.randint(0, 1 << 30)}", acked, stop)
            # loadgen adds C-speed pressure, so the writer's queue is full when the kill lands.
            lg = subprocess.Popen([loadgen, "--url", f"http://127.0.0.1:{srv.port}", "--rate", "0",
                                   "--connections", "64", "--duration", "5",
                                   "--path", f"/api/v1/sales/{sale}/orders"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if os.path.exists(loadgen) else None
            time.sleep(random.uniform(0.3, 1.2))
            srv.proc.kill()  # SIGKILL: no drain, no clean close
            srv.proc.wait()
            stop.set()
            for t in ts:
                t.join()
            if lg:
                lg.kill()
                lg.wait()
            total_acked += len(acked)
            rows = {r[0]: r[1:] for r in srv.sql(f"SELECT id, user_id, quantity FROM orders WHERE sale_id={sale}")}
            missing = [o for o in acked if rows.get(o["order_id"]) != (o["user_id"], o["quantity"])]
            ok = check(SUITE, f"round{rnd}:acknowledged_orders_durable", not missing and len(acked) > 0,
                       f"{len(missing)} of {len(acked)} acknowledged orders missing: {missing[:3]}")
            total, left, units, n, over = db_truth(srv, sale)
            ok &= check(SUITE, f"round{rnd}:stock_adds_up", left + units == total and over == 0,
                        f"left {left} + sold {units} != {total}, over limit {over}")
            ok &= check(SUITE, f"round{rnd}:integrity_check", srv.sql("PRAGMA integrity_check") == [("ok",)])
            srv.start()
            c = srv.client()
            s = c.get(f"/api/v1/sales/{sale}").json
            ok &= check(SUITE, f"round{rnd}:counters_rebuilt", s["stock_left"] == left and s["sold"] == units,
                        f"memory {s} vs db left {left} sold {units}")
            audit = c.get(f"/api/v1/sales/{sale}/audit").json
            ok &= check(SUITE, f"round{rnd}:audit_consistent", audit["consistent"] is True, repr(audit))
            if acked:
                o = random.choice(acked)
                r = c.order(o)  # its token still opens it: the secret survived the kill
                ok &= check(SUITE, f"round{rnd}:order_readable", r.status == 200
                            and r.json == {k: v for k, v in o.items() if k != "order_token"}, f"{r} vs {o}")
            c.close()
            survived += ok
            print(f"# round {rnd}: {len(acked)} orders acknowledged before kill -9, all found: {not missing}; "
                  f"{units} units in the database", flush=True)
        code, _ = srv.stop()
        check(SUITE, "final_clean_stop", code == 0, f"exit {code}")
    finally:
        srv.cleanup()
    print(f"# kill -9 rounds survived: {survived}/{rounds}; acknowledged orders checked: {total_acked}")
    finish()


if __name__ == "__main__":
    main()
