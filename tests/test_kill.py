"""kill -9 (and SIGTERM) in the middle of a crowd, in a loop: after each restart on the
same file, every acknowledged order exists, stock_left + units sold == stock_total, the
in-memory counters are rebuilt from the database, and PRAGMA integrity_check is ok.
Each round restarts with the next strategy (atomic, mutex, sqlite) on the same file.

Usage: tests/test_kill.py [KILL_ROUNDS [TERM_ROUNDS]]   (default 3 1)
       `make test-kill KILL_ROUNDS=50`; `make soak` runs 120 kill -9 and 30 SIGTERM rounds.
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
STRATEGIES = ("atomic", "mutex", "sqlite")


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


def wait_for_first_order(acked, deadline=60):
    """Liveness only: the kill must land while orders are being acknowledged, however slow
    the machine; after the first one the moment is random."""
    t_end = time.time() + deadline
    while not acked and time.time() < t_end:
        time.sleep(0.01)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    term_rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    plan = ["kill"] * rounds + ["term"] * term_rounds
    random.shuffle(plan)
    srv = Server(args=["--inventory", STRATEGIES[1 % len(STRATEGIES)]])
    srv.start()
    sale = srv.client().create_sale(name="Kill me", stock=5000000, per_user_limit=2)
    total_acked, survived, done = 0, {"kill": 0, "term": 0}, {"kill": 0, "term": 0}
    loadgen = os.path.join(ROOT, "build", "loadgen")
    try:
        for rnd, how in enumerate(plan, 1):
            strategy = srv.args[1]
            name = f"round{rnd}:{how}:{strategy}"
            acked, stop = [], threading.Event()
            ts = buyers(srv.port, sale, f"r{rnd}-{random.randint(0, 1 << 30)}", acked, stop)
            # loadgen adds C-speed pressure, so the writer's queue is full when the kill lands.
            lg = subprocess.Popen([loadgen, "--url", f"http://127.0.0.1:{srv.port}", "--rate", "0",
                                   "--connections", "64", "--duration", "5",
                                   "--path", f"/api/v1/sales/{sale}/orders"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if os.path.exists(loadgen) else None
            wait_for_first_order(acked)
            time.sleep(random.uniform(0, 0.8))
            if how == "kill":
                srv.proc.kill()  # SIGKILL: no drain, no clean close
                srv.proc.wait()
                ok = True
            else:  # SIGTERM: drain, answer what is queued, close the database, exit 0
                code, _ = srv.stop(timeout=60)
                ok = check(SUITE, f"{name}:sigterm_exit_0", code == 0, f"exit {code}")
            stop.set()
            for t in ts:
                t.join()
            if lg:
                lg.kill()
                lg.wait()
            done[how] += 1
            total_acked += len(acked)
            rows = {r[0]: r[1:] for r in srv.sql(f"SELECT id, user_id, quantity FROM orders WHERE sale_id={sale}")}
            missing = [o for o in acked if rows.get(o["order_id"]) != (o["user_id"], o["quantity"])]
            ok &= check(SUITE, f"{name}:acknowledged_orders_durable", not missing and len(acked) > 0,
                        f"{len(missing)} of {len(acked)} acknowledged orders missing: {missing[:3]}")
            total, left, units, n, over = db_truth(srv, sale)
            ok &= check(SUITE, f"{name}:stock_adds_up", left + units == total and over == 0,
                        f"left {left} + sold {units} != {total}, over limit {over}")
            ok &= check(SUITE, f"{name}:integrity_check", srv.sql("PRAGMA integrity_check") == [("ok",)])
            srv.args = ["--inventory", STRATEGIES[(rnd + 1) % len(STRATEGIES)]]
            srv.start(timeout=120)  # liveness only: the file grows every round
            c = srv.client()
            s = c.get(f"/api/v1/sales/{sale}").json
            ok &= check(SUITE, f"{name}:counters_rebuilt", s["stock_left"] == left and s["sold"] == units,
                        f"memory {s} vs db left {left} sold {units}")
            audit = c.get(f"/api/v1/sales/{sale}/audit").json
            ok &= check(SUITE, f"{name}:audit_consistent", audit["consistent"] is True, repr(audit))
            if acked:
                o = random.choice(acked)
                r = c.order(o)  # its token still opens it: the secret survived the kill
                ok &= check(SUITE, f"{name}:order_readable", r.status == 200
                            and r.json == {k: v for k, v in o.items() if k != "order_token"}, f"{r} vs {o}")
            c.close()
            survived[how] += ok
            print(f"  round {rnd} ({how}, {strategy}): {len(acked)} orders acknowledged, all found: {not missing}; "
                  f"{units} units in the database", flush=True)
        code, _ = srv.stop()
        check(SUITE, "final_clean_stop", code == 0, f"exit {code}")
    finally:
        srv.cleanup()
    print(f"# kill -9 rounds survived: {survived['kill']}/{done['kill']}; SIGTERM rounds: {survived['term']}/"
          f"{done['term']}; restarts: {done['kill'] + done['term']}; acknowledged orders checked: {total_acked:,}")
    finish()


if __name__ == "__main__":
    main()
