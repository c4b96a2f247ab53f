"""Power cuts, simulated below SQLite: the server runs with build/powerloss.so
(tests/powerloss_vfs.c) preloaded, which keeps every write no fsync has made durable
and, at a random write or sync, drops those writes (some reach the disk anyway, some
torn), removes files whose creation never became durable and SIGKILLs the process.
Then the database is opened on what is left, without the shim, and judged:

- durability full: every acknowledged (201) order exists, stock adds up, nobody is
  over the limit, PRAGMA integrity_check is ok, the restarted server rebuilds its
  counters and its audit is consistent.  Asserted on every cut.
- durability normal: the same, except that acknowledged orders may be lost (the
  documented trade: NORMAL survives a process crash, not a power cut).  Their
  number is measured and reported, not asserted.
- control: durability full on a disk whose fsync does nothing (POWERLOSS_IGNORE_SYNC).
  Acknowledged orders must get lost at least once over the control cuts, or the
  shim is not cutting anything.

The cut point is a count of the server's writes and syncs, never a time: a slow
machine cuts at the same places as a fast one.  Four cuts in five count from the
first acknowledged order on (POWERLOSS_ARM), so they land among purchases; the
fifth counts from the start, so it may land in the start's own writes (the index
the sqlite strategy builds or the others drop, on a file that grows every cut).

Usage: tests/test_powerloss.py [FULL_CUTS [NORMAL_CUTS [CONTROL_CUTS]]]   (10 3 3)
       `make test-powerloss` runs 100 100 10.
"""
import os
import random
import shutil
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ROOT, Client, Server, check, db_truth, finish  # noqa: E402

SUITE = "powerloss"
SHIM = os.path.join(ROOT, "build", "powerloss.so")
STRATEGIES = ("atomic", "mutex", "sqlite")
MAX_OPS = int(os.environ.get("POWERLOSS_MAX_OPS", 8000))  # the cut lands on one of the first MAX_OPS writes and syncs
DEADLINE = 180     # seconds; liveness only: a cut that never comes is a failure


def buyers(port, sale, tag, acked, threads=16):
    """Buyers recording every order acknowledged with 201, until the server is gone."""
    lock = threading.Lock()

    def run(n):
        c = Client(port, timeout=20)
        i = 0
        while True:
            i += 1
            try:
                r = c.post(f"/api/v1/sales/{sale}/orders", {"user_id": f"{tag}-{n}-{i}", "quantity": 1 + i % 2})
            except Exception:
                return  # the power is off
            if r.status == 201:
                with lock:
                    acked.append(r.json)
    ts = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(threads)]
    for t in ts:
        t.start()
    return ts


def forget_shm(db):
    """The WAL index is shared memory: a power cut loses it."""
    for suffix in ("-shm",):
        try:
            os.unlink(db + suffix)
        except FileNotFoundError:
            pass


def survivors(db):
    """Pids of processes still running with this database (a fork keeps the command line)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if db.encode() in argv and state != "Z":
            found.append(int(pid))
    return found


def lost_orders(srv, sale, acked):
    """Acknowledged orders that are not in the file as acknowledged; None if unreadable."""
    try:
        rows = {r[0]: r[1:] for r in srv.sql(f"SELECT id, user_id, quantity FROM orders WHERE sale_id={sale}")}
    except Exception:
        return None
    return [o for o in acked if rows.get(o["order_id"]) != (o["user_id"], o["quantity"])]


def cut_once(srv, sale, durability, strategy, label, control=False, armed=True):
    """One power cut and the judgement after it; armed: count from the first order on.
    Returns (acknowledged, lost or None if the file was unreadable, the shim's cut line)."""
    forget_shm(srv.db)
    after = random.randint(1, MAX_OPS)
    arm = srv.db + ".arm"
    if os.path.exists(arm):
        os.unlink(arm)
    srv.args = ["--inventory", strategy, "--durability", durability, "--workers", "2"]
    srv.env = {"LD_PRELOAD": SHIM, "POWERLOSS_AFTER": str(after),
               "POWERLOSS_SEED": str(random.randint(1, 1 << 62))}
    if armed:
        srv.env["POWERLOSS_ARM"] = arm
    if control:
        srv.env["POWERLOSS_IGNORE_SYNC"] = "1"
    acked, ts = [], []
    try:
        srv.start(timeout=DEADLINE)  # a growing file under a busy machine starts slowly
        ts = buyers(srv.port, sale, f"{label}-{random.randint(0, 1 << 30)}", acked)
        t_end = time.time() + DEADLINE  # liveness only
        while armed and not acked and srv.alive() and time.time() < t_end:
            time.sleep(0.01)
        open(arm, "w").close()
    except AssertionError:
        pass  # the power went out while it was starting
    try:
        srv.proc.wait(DEADLINE)
        by_itself = True
    except Exception:
        by_itself = False  # e.g. a supervisor left running after its writer's cut
        srv.kill()
    for t in ts:
        t.join()
    srv.kill()
    line = next((l for l in srv.log if l.startswith("powerloss: cut")), None)
    check(SUITE, f"{label}:power_cut", line is not None and by_itself and srv.proc.returncode == -9,
          f"exit {srv.proc.returncode} (by itself: {by_itself}), no cut after {after} operations: {srv.log[-5:]}")
    # The power goes for every process (--model processes: the writer cut, the
    # supervisor and workers die with it), so none writes on after the "cut".
    t_end = time.time() + DEADLINE
    while survivors(srv.db) and time.time() < t_end:
        time.sleep(0.01)
    check(SUITE, f"{label}:whole_server_down", not survivors(srv.db), f"still running: {survivors(srv.db)}")
    srv.env = {}
    forget_shm(srv.db)
    lost = lost_orders(srv, sale, acked)
    if control:
        return len(acked), (len(acked) if lost is None else len(lost)), line
    check(SUITE, f"{label}:integrity_check", srv.sql("PRAGMA integrity_check") == [("ok",)])
    if durability == "full":
        check(SUITE, f"{label}:acknowledged_orders_survive", lost == [],
              f"{len(lost)} of {len(acked)} acknowledged orders lost: {lost[:3]}")
    total, left, units, n, over = db_truth(srv, sale)
    check(SUITE, f"{label}:stock_adds_up", left + units == total and over == 0,
          f"left {left} + sold {units} != {total}, over limit {over}")
    srv.start(timeout=DEADLINE)
    c = srv.client()
    s = c.get(f"/api/v1/sales/{sale}").json
    audit = c.get(f"/api/v1/sales/{sale}/audit").json
    c.close()
    check(SUITE, f"{label}:restart_consistent",
          s["stock_left"] == left and s["sold"] == units and audit["consistent"] is True,
          f"memory {s} vs db left {left} sold {units}; audit {audit}")
    code, _ = srv.stop()
    check(SUITE, f"{label}:clean_stop_after_restart", code == 0, f"exit {code}")
    return len(acked), len(lost), line


def new_database(tmp, name):
    """A database with one big sale, made by a normal run of the server."""
    srv = Server(db=os.path.join(tmp, name))
    srv.start()
    sale = srv.client().create_sale(name="Power cut", stock=50_000_000, per_user_limit=2)
    srv.stop()
    return srv, sale


def series(tmp, durability, cuts):
    """`cuts` power cuts in a row on one database file, each restart on what the last left."""
    srv, sale = new_database(tmp, f"{durability}.db")
    acked = lost = mid_crowd = 0
    try:
        for k in range(1, cuts + 1):
            strategy = STRATEGIES[k % len(STRATEGIES)]
            a, l, line = cut_once(srv, sale, durability, strategy, f"{durability}:cut{k}:{strategy}",
                                  armed=k % 5 != 0)
            acked, lost, mid_crowd = acked + a, lost + l, mid_crowd + (a > 0)
            print(f"  {durability} cut {k} ({strategy}): {l} of {a} acknowledged orders lost; {line}", flush=True)
    finally:
        srv.cleanup()
    print(f"# power loss: {cuts} cuts, {lost:,} of {acked:,} acknowledged orders lost (durability {durability}); "
          f"{mid_crowd} cuts after orders were acknowledged", flush=True)
    return acked, lost


def control(tmp, cuts):
    """fsync ignored: each cut on a fresh copy, since such a disk may corrupt the file."""
    pristine, sale = new_database(tmp, "control-pristine.db")
    acked = lost = 0
    try:
        for k in range(1, cuts + 1):
            srv = Server(db=os.path.join(tmp, f"control{k}.db"))
            shutil.copy(pristine.db, srv.db)
            try:
                a, l, line = cut_once(srv, sale, "full", STRATEGIES[k % len(STRATEGIES)], f"control:cut{k}", True)
            finally:
                srv.cleanup()
            acked, lost = acked + a, lost + l
            print(f"  control cut {k}: {l} of {a} acknowledged orders lost; {line}", flush=True)
    finally:
        pristine.cleanup()
    print(f"# power loss: {cuts} cuts, {lost:,} of {acked:,} acknowledged orders lost "
          f"(durability full, fsync ignored: the control)", flush=True)
    check(SUITE, "control:shim_loses_unsynced_orders", lost > 0,
          f"no acknowledged order lost in {cuts} cuts with fsync ignored: the shim cut nothing")


def main():
    full, normal, ctl = ([int(a) for a in sys.argv[1:4]] + [10, 3, 3][len(sys.argv[1:4]):])
    if not os.path.exists(SHIM):
        check(SUITE, "shim_built", False, f"{SHIM} missing: make build/powerloss.so")
        finish()
    tmp = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"flashsale-powerloss-{os.getpid()}")
    os.makedirs(tmp, exist_ok=True)
    t0 = time.time()
    try:
        series(tmp, "full", full)
        if normal:
            series(tmp, "normal", normal)
        if ctl:
            control(tmp, ctl)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"  {time.time() - t0:.0f} s", flush=True)
    finish()


if __name__ == "__main__":
    main()
