"""PostgreSQL faults: the link to the database breaks, or the database crashes, under a crowd.

An open crowd of purchasers (each request a new user with an Idempotency-Key of its
own) records every answer; after the fault heals, every purchase not answered 201
is retried with its own key, and the database is read directly (psql, not through
the node) to check: every 201 is a committed order with that user and key; every
order in the database reached its client (as a 201, first or on the retry); no
key has two orders; a retry gets the one order that exists or a clean refusal;
stock_total == stock_left + units sold; and the node's memory comes back to what
the database says.

lost_commit_answer  tests/pgproxy.py lets COMMIT reach PostgreSQL and commit there,
                    then resets the node's link before the answer arrives: the
                    ambiguous case.  The node must not say 201 before it knows; it
                    reconnects by itself and asks, so those purchases end 201 (a retry
                    with the key would find the order either way).
partition           every link RST in the middle of the crowd, new links refused for a
                    while, then healed; several rounds.  No answer hangs, none is 201
                    unless committed, and the node reconnects by itself.
silent_cut          two nodes on one database, one of them behind the proxy, which
                    stops moving bytes at that node's next COMMIT (a cut that drops
                    packets: nothing is reset, the COMMIT never arrives).  The cut
                    node answers 503 within a bounded time, not when the cut heals;
                    the other node sells on although the cut node's transaction held
                    the sale's row lock; after the heal the cut node sells again.
pg_crash            `pg_ctl stop -m immediate` in the middle of a crowd on two nodes
                    (atomic and sqlite strategies), then a restart: meanwhile every
                    purchase sent and answered is 503, never 201; the nodes reconnect
                    by themselves; every 201 is in the database after recovery.

Loops are bounded in count and time; the only deadlines are liveness ones (LIVENESS).
Usage: tests/test_pgfaults.py [BINARY [CASE...]]   (it starts its own PostgreSQL)
"""
import collections
import http.client
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Client, Server, check, finish, psql  # noqa: E402
from pgproxy import PgProxy  # noqa: E402
from pgserver import PgServer  # noqa: E402

SUITE = "pg-faults"
BINARY = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] != "-" else None
CASES = sys.argv[2:]
LIVENESS = 30  # s: generous; only "it happens at all" is waited for this long
TIMEOUT = 60   # s: an HTTP answer slower than this counts as a hang
LINK = "sslmode=disable&gssencmode=disable"  # the proxy reads the protocol in the clear


def post(conn, port, sale, user, key):
    """One purchase; returns (conn or None, status or 'error', order id or error text)."""
    if conn is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("POST", f"/api/v1/sales/{sale}/orders", body=json.dumps({"user_id": user}),
                     headers={"Content-Type": "application/json", "Idempotency-Key": key})
        r = conn.getresponse()
        body = json.loads(r.read() or b"null")
        if (r.getheader("Connection") or "").lower() == "close":
            conn.close()
            conn = None
        what = body.get("order_id") if r.status == 201 else (body or {}).get("error")
        return conn, r.status, what
    except Exception as e:  # noqa: BLE001 - a reset or a timeout is an outcome here
        conn.close()
        return None, "error", repr(e)


class Crowd:
    """`threads` purchasers on one node, each request a new user and key, until stop()
    or `each` requests per thread; `pause` seconds between a thread's requests."""

    def __init__(self, name, port, sale, threads=8, each=3000, pause=0.0, stop_on_sold_out=False):
        self.name, self.port, self.sale = name, port, sale
        self.records = []  # (user, key, status, order id or error, sent, answered)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.pause, self.each, self.stop_on_sold_out = pause, each, stop_on_sold_out
        self.ts = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]
        for t in self.ts:
            t.start()

    def _run(self, i):
        conn = None
        for n in range(self.each):
            if self.stopping.is_set():
                break
            user = f"{self.name}-{i}-{n}"
            t0 = time.monotonic()
            conn, st, what = post(conn, self.port, self.sale, user, "k-" + user)
            with self.lock:
                self.records.append((user, "k-" + user, st, what, t0, time.monotonic()))
            if self.stop_on_sold_out and what == "sold_out":
                break
            if self.pause or st != 201:
                time.sleep(self.pause or 0.01)  # a refused client backs off a little
        if conn:
            conn.close()

    def count(self, status, since=0.0, at=4):
        with self.lock:
            return sum(1 for r in self.records if r[2] == status and r[at] >= since)

    def wait(self, status, n, since=0.0, limit=LIVENESS, answered=False):
        """True once n answers with status were sent (or answered) after `since`;
        False after limit s."""
        at = 5 if answered else 4
        end = time.monotonic() + limit
        while time.monotonic() < end:
            if self.count(status, since, at) >= n:
                return True
            if not any(t.is_alive() for t in self.ts):
                return self.count(status, since, at) >= n
            time.sleep(0.05)
        return False

    def stop(self):
        self.stopping.set()
        for t in self.ts:
            t.join(TIMEOUT + 5)


def orders_by_key(direct, sale):
    """{(user, key): order id} of the sale's live orders, read from the database directly."""
    rows = psql(direct, f"SELECT id, user_id, coalesce(idempotency_key, '') FROM orders WHERE sale_id = {sale}"
                        " AND status IN ('pending','paid','confirmed')")
    return {(u, k): i for i, u, k in rows}


def doubts(nodes):
    """What the nodes' logs say they learned about commits whose answer was lost."""
    said = collections.Counter()
    for node in nodes:
        for line in node.log:
            if "lost its answer, but had committed" in line or "whose answer was lost had committed" in line:
                said["committed"] += 1
            elif "whose answer was lost had not committed" in line:
                said["not committed"] += 1
            elif "whose answer was lost is still unknown" in line:
                said["unknown"] += 1
    return dict(said)


def retry_failed(port, sale, records, limit=2 * LIVENESS):
    """Every purchase not answered 201 again, with its own user and key, until a 201 or
    a refusal other than 503 (bounded by `limit` s in all).  {(user, key): (status, what)}"""
    final, conn = {}, None
    end = time.monotonic() + limit
    for user, key, st, _, _, _ in records:
        if st == 201:
            continue
        while True:
            conn, st2, what = post(conn, port, sale, user, key)
            if st2 not in (503, "error") or time.monotonic() > end:
                break
            time.sleep(0.1)
        final[(user, key)] = (st2, what)
    if conn:
        conn.close()
    return final


def verify(case, direct, sale, records, before, retried, nodes):
    """The checks against the database named in the module's comment; `before` is
    orders_by_key before the retries.  Returns (acknowledged, found, orders that had
    committed unacknowledged, how many of them the retry with their key was given)."""
    live = "status IN ('pending','paid','confirmed')"
    rows = psql(direct, f"SELECT id, user_id, coalesce(idempotency_key, '') FROM orders WHERE sale_id = {sale}"
                        f" AND {live}")
    by_key = {(u, k): i for i, u, k in rows}
    per_user = collections.Counter(u for _, u, _ in rows)
    acked = [(u, k, what) for u, k, st, what, _, _ in records if st == 201]
    missing = [a for a in acked if by_key.get((a[0], a[1])) != a[2]]
    check(SUITE, f"{case}:every_201_is_committed",
          not missing, f"{len(missing)} of {len(acked)} acknowledged orders not in the database: {missing[:5]}")
    check(SUITE, f"{case}:one_order_per_key", max(per_user.values(), default=0) <= 1,
          repr([u for u, n in per_user.items() if n > 1][:5]))
    bad, replayed = [], 0
    for (u, k), (st, what) in retried.items():
        if st == 201:
            if by_key.get((u, k)) != what:
                bad.append((u, k, st, what, by_key.get((u, k))))
        elif (u, k) in by_key or not isinstance(st, int) or st in (500, 503) or st < 400:
            bad.append((u, k, st, what, by_key.get((u, k))))
    unacked = [uk for uk in before if uk in retried]
    lost_found = sum(1 for uk in unacked if retried[uk] == (201, before[uk]))
    check(SUITE, f"{case}:retry_gets_the_order_committed_unacknowledged", lost_found == len(unacked),
          f"{len(unacked) - lost_found} of {len(unacked)}: {[(uk, before[uk], retried[uk]) for uk in unacked][:5]}")
    check(SUITE, f"{case}:retry_with_key_gets_the_one_order_or_a_clean_refusal", not bad,
          f"{len(bad)} of {len(retried)} retries: (user, key, status, answer, order in db) {bad[:5]}")
    told = {(u, k) for u, k, _ in acked} | {uk for uk, (st, _) in retried.items() if st == 201}
    orphans = [uk for uk in by_key if uk not in told]
    first = {(r[0], r[1]): r[2:4] for r in records}
    if not check(SUITE, f"{case}:every_committed_order_reached_its_client", not orphans,
                 f"{len(orphans)} orders in the database never answered 201 (first answer, retry): "
                 f"{[(uk, first.get(uk), retried.get(uk)) for uk in orphans[:5]]}"):
        for node in nodes:
            print("\n".join(l for l in node.log if " pg: " in l or " store: " in l), flush=True)
    total, left = psql(direct, f"SELECT stock_total, stock_left FROM sales WHERE id = {sale}")[0]
    units = psql(direct, f"SELECT coalesce(sum(quantity), 0) FROM orders WHERE sale_id = {sale} AND {live}")[0][0]
    check(SUITE, f"{case}:stock_adds_up", left >= 0 and total == left + units,
          f"total {total}, left {left}, sold {units}")
    for k, node in enumerate(nodes):
        c = node.client(timeout=TIMEOUT)
        a = c.get(f"/api/v1/sales/{sale}/audit").json or {}
        check(SUITE, f"{case}:audit_consistent_on_node_{k}",
              a.get("consistent") is True and a.get("units_sold") == units and a.get("users_over_limit") == 0,
              repr(a))
        # memory follows the database again (the refresh runs every second)
        end, seen = time.monotonic() + LIVENESS, None
        while time.monotonic() < end:
            seen = (c.get(f"/api/v1/sales/{sale}").json or {}).get("stock_left")
            if seen == left:
                break
            time.sleep(0.2)
        check(SUITE, f"{case}:memory_agrees_with_the_database_on_node_{k}", seen == left,
              f"node says {seen} left, the database {left}")
        reports = node.sanitizer_reports()  # with a sanitizer build as BINARY
        check(SUITE, f"{case}:no_sanitizer_reports_on_node_{k}", not reports, "\n".join(reports[:20]))
        c.close()
    return len(acked), len(acked) - len(missing), len(unacked), lost_found


def lost_commit_answer(pg, rounds=3):
    """The COMMIT commits, its answer is lost: 503, reconnect, the retry finds the order."""
    case = "lost_commit_answer"
    direct = pg.create_db("lost_commit")
    px = PgProxy(pg.port)
    node = Server(binary=BINARY, db=f"postgresql://flashsale@127.0.0.1:{px.port}/lost_commit?{LINK}",
                  args=["--inventory", "atomic"]).start()
    crowd = None
    try:
        sale = node.client().create_sale(name="Lost commit", stock=1_000_000, per_user_limit=1)
        crowd = Crowd("lc", node.port, sale, threads=8)
        live = True
        for rnd in range(rounds):
            if not crowd.wait(201, 20, since=time.monotonic()):
                live = False
                break
            before = sum(px.stats()["swallowed"].values())
            px.swallow_commits(1)
            end = time.monotonic() + LIVENESS
            while sum(px.stats()["swallowed"].values()) == before and time.monotonic() < end:
                time.sleep(0.02)
            if not crowd.wait(201, 20, since=time.monotonic()):  # reconnected by itself
                live = False
                break
        check(SUITE, f"{case}:node_sells_again_after_each_lost_answer", live,
              f"no 201 within {LIVENESS} s after round {rnd + 1}; last log: {node.log[-5:]}")
        crowd.stop()
        st = px.stats()
        check(SUITE, f"{case}:commits_answered_by_postgresql_were_cut_off",
              st["swallowed"].get("COMMIT", 0) == rounds, repr(st))
        hangs = [r for r in crowd.records if r[2] == "error"]
        check(SUITE, f"{case}:no_answer_hangs_or_breaks", not hangs, f"{len(hangs)}: {hangs[:3]}")
        others = collections.Counter(r[2] for r in crowd.records if r[2] not in (201, 503))
        check(SUITE, f"{case}:failures_are_503", not others, repr(others))
        before = orders_by_key(direct, sale)
        retried = retry_failed(node.port, sale, crowd.records)
        acked, found, unacked, lost_found = verify(case, direct, sale, crowd.records, before, retried, [node])
        # the node asks the database whether a COMMIT whose answer it lost committed
        check(SUITE, f"{case}:node_learns_the_lost_commits_committed_and_says_201", unacked == 0,
              f"{unacked} committed orders were answered otherwise (their retries got {lost_found})")
        print(f"# {case}: {rounds} COMMIT answers cut off; {acked} acknowledged, {found} found; "
              f"{unacked} committed but answered otherwise; {len(retried)} refused and retried with their key; "
              f"lost answers: {doubts([node])}", flush=True)
        check(SUITE, f"{case}:node_alive", node.alive())
    finally:
        if crowd:
            crowd.stop()
        node.cleanup()
        px.close()


def partition(pg, rounds=4, hold=0.5):
    """Every link RST mid-crowd, new links refused for `hold` s, then healed."""
    case = "partition"
    direct = pg.create_db("partition")
    px = PgProxy(pg.port)
    node = Server(binary=BINARY, db=f"postgresql://flashsale@127.0.0.1:{px.port}/partition?{LINK}",
                  args=["--inventory", "atomic"]).start()
    crowd = None
    try:
        sale = node.client().create_sale(name="Partition", stock=1_000_000, per_user_limit=1)
        crowd = Crowd("pt", node.port, sale, threads=8)
        live, windows = True, []
        for rnd in range(rounds):
            if not crowd.wait(201, 20, since=time.monotonic()):
                live = False
                break
            t0 = time.monotonic()
            px.partition()
            crowd.wait(503, 5, since=t0, limit=hold)
            time.sleep(hold)
            windows.append((t0, time.monotonic()))
            px.heal()
            if not crowd.wait(201, 20, since=time.monotonic()):
                live = False
                break
        check(SUITE, f"{case}:node_sells_again_after_each_heal", live,
              f"no 201 within {LIVENESS} s after round {rnd + 1}; last log: {node.log[-5:]}")
        crowd.stop()
        during = collections.Counter(r[2] for r in crowd.records
                                     if any(a <= r[4] and r[5] <= b for a, b in windows))
        check(SUITE, f"{case}:cut_off_answers_are_503", set(during) <= {503} and during[503] > 0,
              f"answers sent and answered while partitioned: {dict(during)}")
        hangs = [r for r in crowd.records if r[2] == "error"]
        check(SUITE, f"{case}:no_answer_hangs_or_breaks", not hangs, f"{len(hangs)}: {hangs[:3]}")
        before = orders_by_key(direct, sale)
        retried = retry_failed(node.port, sale, crowd.records)
        acked, found, unacked, lost_found = verify(case, direct, sale, crowd.records, before, retried, [node])
        print(f"# {case}: {rounds} partitions ({px.stats()['resets']} links reset); {acked} acknowledged, "
              f"{found} found; {sum(during.values())} answered while cut off; {len(retried)} retried with their key, "
              f"{unacked} of them had committed unacknowledged, {lost_found} got that order; lost answers: "
              f"{doubts([node])}", flush=True)
        check(SUITE, f"{case}:node_alive", node.alive())
    finally:
        if crowd:
            crowd.stop()
        node.cleanup()
        px.close()


def silent_cut(pg):
    """A cut that drops packets in the middle of a commit, beside a node that is not cut."""
    case = "silent_cut"
    direct = pg.create_db("silent")
    px = PgProxy(pg.port)
    nodes, crowds = [], []
    try:
        nodes = [Server(binary=BINARY, db=f"postgresql://flashsale@127.0.0.1:{px.port}/silent?{LINK}",
                        args=["--inventory", "atomic"]).start(),
                 Server(binary=BINARY, db=direct, args=["--inventory", "atomic"]).start()]
        sale = nodes[0].client().create_sale(name="Silent cut", stock=1_000_000, per_user_limit=1)
        end = time.monotonic() + LIVENESS
        while time.monotonic() < end and nodes[1].client().get(f"/api/v1/sales/{sale}").status != 200:
            time.sleep(0.1)
        crowds = [Crowd(f"sc{k}", n.port, sale, threads=6) for k, n in enumerate(nodes)]
        check(SUITE, f"{case}:crowds_buy", all(c.wait(201, 20) for c in crowds))
        px.hold_at_commit()
        end = time.monotonic() + LIVENESS
        while not px.stats()["held"] and time.monotonic() < end:
            time.sleep(0.02)
        t_cut = time.monotonic()
        check(SUITE, f"{case}:cut_at_a_commit", px.stats()["held"])
        # first the purchases caught in the cut (they wait for the answer, a reconnect and a
        # while to learn whether they committed: bounded, but long), then ones sent into it
        answered = (crowds[0].wait(503, 1, since=t_cut, answered=True, limit=2 * LIVENESS)
                    and crowds[0].wait(503, 1, since=t_cut))
        t_answered = time.monotonic()
        other_sells = crowds[1].wait(201, 20, since=t_cut)
        t_heal = time.monotonic()
        px.heal()
        check(SUITE, f"{case}:cut_node_answers_503_while_cut", answered,
              f"no answer within {2 * LIVENESS} s of the cut; they hang until the heal")
        check(SUITE, f"{case}:other_node_sells_while_one_is_cut", other_sells,
              f"no 201 on the other node within {LIVENESS} s of the cut: the cut node's locks held it")
        back = crowds[0].wait(201, 20, since=time.monotonic())
        check(SUITE, f"{case}:cut_node_sells_again_after_the_heal", back,
              f"no 201 within {LIVENESS} s of the heal; last log: {nodes[0].log[-5:]}")
        for c in crowds:
            c.stop()
        during = collections.Counter(r[2] for r in crowds[0].records if r[4] >= t_cut and r[5] <= t_heal)
        check(SUITE, f"{case}:cut_node_never_201_while_cut", 201 not in during, repr(dict(during)))
        records = [r for c in crowds for r in c.records]
        hangs = [r for r in records if r[2] == "error"]
        check(SUITE, f"{case}:no_answer_hangs_or_breaks", not hangs, f"{len(hangs)}: {hangs[:3]}")
        before, retried = orders_by_key(direct, sale), {}
        for c, n in zip(crowds, nodes):
            retried.update(retry_failed(n.port, sale, c.records))
        acked, found, unacked, lost_found = verify(case, direct, sale, records, before, retried, nodes)
        print(f"# {case}: 1 cut ({t_heal - t_cut:.1f} s, the cut node's first 503 after {t_answered - t_cut:.1f} s); {acked} acknowledged, {found} found; cut node answered "
              f"{dict(during)} while cut; {len(retried)} retried with their key, {unacked} of them had "
              f"committed unacknowledged; lost answers: {doubts(nodes)}", flush=True)
        check(SUITE, f"{case}:nodes_alive", all(n.alive() for n in nodes))
    finally:
        for c in crowds:
            c.stop()
        for n in nodes:
            n.cleanup()
        px.close()


def pg_crash(pg, stock=2000):
    """pg_ctl stop -m immediate under two nodes' crowds, then a restart."""
    case = "pg_crash"
    db = pg.create_db("crash")
    nodes, crowds = [], []
    try:
        nodes = [Server(binary=BINARY, db=db, args=["--inventory", inv]).start() for inv in ("atomic", "sqlite")]
        sale = nodes[0].client().create_sale(name="Crash", stock=stock, per_user_limit=1)
        end = time.monotonic() + LIVENESS
        while time.monotonic() < end and any(n.client().get(f"/api/v1/sales/{sale}").status != 200 for n in nodes):
            time.sleep(0.1)
        # a paced crowd (at most 6 x 2 x 50 a second), so the sale is far from sold out at the crash
        crowds = [Crowd(f"cr{k}", n.port, sale, threads=6, each=1500, pause=0.02, stop_on_sold_out=True)
                  for k, n in enumerate(nodes)]
        started = all(c.wait(201, 20) for c in crowds)
        check(SUITE, f"{case}:crowd_buys_before_the_crash", started)
        t_down = time.monotonic()
        check(SUITE, f"{case}:pg_ctl_stop_immediate", pg.halt() == 0)
        t_halted = time.monotonic()
        for c in crowds:
            c.wait(503, 10, since=t_halted, limit=5)
        t_up = time.monotonic()
        pg.restart()
        back = all(c.wait(201, 20, since=time.monotonic()) for c in crowds)
        check(SUITE, f"{case}:nodes_reconnect_by_themselves", back,
              f"no 201 within {LIVENESS} s of the restart; logs: {[n.log[-3:] for n in nodes]}")
        for c in crowds:
            c.stop()
        records = [r for c in crowds for r in c.records]
        down = collections.Counter(r[2] for r in records if r[4] >= t_halted and r[5] <= t_up)
        check(SUITE, f"{case}:answers_while_down_are_503", set(down) <= {503} and down[503] > 0,
              f"answers sent and answered while PostgreSQL was down: {dict(down)}")
        hangs = [r for r in records if r[2] == "error"]
        check(SUITE, f"{case}:no_answer_hangs_or_breaks", not hangs, f"{len(hangs)}: {hangs[:3]}")
        before, retried = orders_by_key(db, sale), {}
        for c, n in zip(crowds, nodes):
            retried.update(retry_failed(n.port, sale, c.records))
        acked, found, unacked, lost_found = verify(case, db, sale, records, before, retried, nodes)
        sold = psql(db, f"SELECT stock_total - stock_left FROM sales WHERE id = {sale}")[0][0]
        print(f"# {case}: 1 crash ({t_up - t_down:.1f} s down); {acked} acknowledged, {found} found after "
              f"recovery; {sum(down.values())} answered while down; {len(retried)} retried with their key, "
              f"{unacked} of them had committed unacknowledged; {sold} of {stock} units sold; lost answers: "
              f"{doubts(nodes)}", flush=True)
        check(SUITE, f"{case}:nodes_alive", all(n.alive() for n in nodes))
    finally:
        for c in crowds:
            c.stop()
        for n in nodes:
            n.cleanup()


def main():
    pg = PgServer().start()
    try:
        for case in (lost_commit_answer, partition, silent_cut, pg_crash):
            if CASES and case.__name__ not in CASES:
                continue
            try:
                case(pg)
            except Exception as e:  # noqa: BLE001 - one broken case must not hide the others
                check(SUITE, f"{case.__name__}:ran", False, repr(e))
    finally:
        pg.stop()
    finish()


if __name__ == "__main__":
    main()
