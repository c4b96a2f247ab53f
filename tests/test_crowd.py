"""Crowds against each inventory strategy: exactly the stock is sold, nobody passes the
per-user limit, the database agrees after a clean stop; the unsafe strategy's
overselling is exposed by the audit and /metrics.

Usage: tests/test_crowd.py [BINARY] [STRATEGY ...]
"""
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ROOT, Server, check, crowd, db_truth, finish, metric, same_key_retries  # noqa: E402

SUITE = "crowd"


def wrk_until_sold_out(c, port, sale_id, deadline=300, seconds=2, connections=64):
    """Closed-loop crowds from wrk (C, keep-alive: far more pressure than Python threads),
    round after round until the sale is sold out.  How fast a strategy sells is the
    machine's business: a busy machine needs more rounds, and only a sale still open
    after the (generous) deadline fails.  Returns (wrk's output, rounds), or (None, 0)."""
    if not shutil.which("wrk"):
        return None, 0
    outs, t_end, rounds = [], time.time() + deadline, 0
    while True:
        rounds += 1
        run = f"{os.getpid()}r{rounds}"  # new user ids every round
        p = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s",
                            os.path.join(ROOT, "loadtest", "crowd.lua"), f"http://127.0.0.1:{port}", "--",
                            str(sale_id), run], capture_output=True, text=True, timeout=seconds + 60)
        outs.append(p.stdout)
        if c.get(f"/api/v1/sales/{sale_id}").json["stock_left"] == 0 or time.time() > t_end:
            return "\n".join(outs), rounds


def strategy(binary, name):
    srv = Server(binary=binary, args=["--inventory", name, "--workers", "4"]).start()
    tag = f"{name}:" + ("tsan:" if binary and "tsan" in binary else "")
    try:
        c = srv.client()
        stock, limit = 300, 2
        sale = c.create_sale(name="Crowd", stock=stock, per_user_limit=limit)
        users = [f"user-{i}" for i in range(600)]
        statuses, orders = crowd(srv.port, sale, users, tries=2, threads=48)
        units = sum(o["quantity"] for o in orders)
        per_user = {}
        for o in orders:
            per_user[o["user_id"]] = per_user.get(o["user_id"], 0) + o["quantity"]
        safe = name != "unsafe"
        if safe:
            check(SUITE, tag + "threads_sell_exactly_the_stock", units == stock and statuses.get(201) == stock,
                  f"{statuses}, {units} units acknowledged")
            check(SUITE, tag + "threads_nobody_over_limit", max(per_user.values()) <= limit,
                  f"max {max(per_user.values())}")
            check(SUITE, tag + "threads_only_201_409", set(statuses) <= {201, 409}, repr(statuses))
        ids = [o["order_id"] for o in orders]
        in_db = {r[0] for r in srv.sql(f"SELECT id FROM orders WHERE sale_id={sale}")}
        check(SUITE, tag + "every_acknowledged_order_in_db", len(set(ids)) == len(ids) and set(ids) <= in_db,
              f"{len(set(ids) - in_db)} missing")

        # wrk: 64 connections, every request a new user, far beyond the stock.
        # Sanitizer builds run several times slower: a smaller stock still sells out.
        big_stock = 600 if binary and "san" in binary else 3000
        big = c.create_sale(name="Wrk crowd", stock=big_stock, per_user_limit=1)
        out, rounds = wrk_until_sold_out(c, srv.port, big)
        audit = c.get(f"/api/v1/sales/{big}/audit").json
        text = c.get("/metrics").raw.decode()
        oversold_metric = metric(text, "flashsale_oversold", f'sale="{big}"')
        total, left, sold, n, over = db_truth(srv, big)
        db_oversold = max(0, sold - total)
        check(SUITE, tag + "wrk_ran", out is not None and "Requests/sec" in out, out)
        if safe:
            check(SUITE, tag + "wrk_sells_exactly_the_stock", (left, sold, over) == (0, big_stock, 0) and audit["consistent"],
                  f"db left={left} sold={sold} over={over} after {rounds} wrk rounds, audit={audit}")
            check(SUITE, tag + "wrk_oversold_gauge_zero", oversold_metric == 0, repr(oversold_metric))
        else:
            # The lesson: the race loses updates.  Whatever happened, the audit and the
            # gauge must tell the truth the database holds.
            check(SUITE, tag + "oversell_exposed_by_audit",
                  audit["oversold"] == db_oversold and audit["units_sold"] == sold
                  and (audit["consistent"] is False) == (db_oversold > 0 or left + sold != total),
                  f"audit={audit} db sold={sold} left={left}")
            check(SUITE, tag + "oversell_exposed_by_metrics", oversold_metric == db_oversold,
                  f"gauge {oversold_metric} vs db {db_oversold}")
            check(SUITE, tag + "unsafe_oversold", db_oversold > 0, f"sold {sold} of {total}: the race did not show")
            print(f"# unsafe: {sold} units sold of {total} ({db_oversold} oversold), audit consistent={audit['consistent']}")
        # One client retrying with one Idempotency-Key, 8 tries at once, across 4 workers.
        mixed, rows_bad = same_key_retries(srv, c, rounds=10)
        check(SUITE, tag + "same_key_retries_get_one_order", not mixed and rows_bad == 0,
              f"{len(mixed)} of 10 rounds mixed (e.g. {mixed[:1]}), {rows_bad} without exactly one row")
        code, secs = srv.stop()
        check(SUITE, tag + "clean_stop", code == 0 and secs < 10, f"exit {code} in {secs:.1f}s")
        if safe:
            check(SUITE, tag + "database_after_stop", db_truth(srv, sale) == (stock, 0, stock, len(orders), 0)
                  and db_truth(srv, big)[:3] == (big_stock, 0, big_stock), f"{db_truth(srv, sale)} {db_truth(srv, big)}")
        check(SUITE, tag + "integrity_check", srv.sql("PRAGMA integrity_check") == [("ok",)])
        reports = srv.sanitizer_reports()
        check(SUITE, tag + "no_sanitizer_reports", not reports, "\n".join(reports[:30]))
    finally:
        srv.cleanup()


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 and "/" in sys.argv[1] else None
    names = [a for a in sys.argv[1:] if "/" not in a] or ["atomic", "mutex", "sqlite", "unsafe"]
    for name in names:
        strategy(binary, name)
    finish()


if __name__ == "__main__":
    main()
