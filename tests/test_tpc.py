"""--model thread-per-connection, the parts only that model has: a thread per
connection, bounded by --max-connections (the connections beyond it wait in the
kernel's backlog and are served later; nothing crashes), per-thread store connections opened lazily and
closed with their thread, and 10,000 connections attempted at once survived.

The shared black-box suites (api, crowd, kill, lifecycle) run against this model as
tpc-* in tests/run.sh, through FLASHSALE_TEST_ARGS.

Usage: tests/test_tpc.py [BINARY] [CONNECTIONS]   (default 10000 for the last case)
"""
import os
import resource
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, check, finish  # noqa: E402

SUITE = "tpc"
TPC = ["--model", "thread-per-connection"]
GET = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
GET_CLOSE = b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"  # frees its slot once served


def proc_status(pid):
    out = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def threads(pid):
    return int(proc_status(pid)["Threads"])


def db_fds(pid, db):
    """Descriptors the server holds on its database file: one per open store connection."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == db:
                n += 1
        except OSError:
            pass
    return n


def wait_for(fn, deadline=30.0):
    """Polls fn() until true; a generous deadline on liveness only."""
    end = time.time() + deadline
    while time.time() < end:
        if fn():
            return True
        time.sleep(0.05)
    return fn()


def connect_many(port, n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
    return socks


def answered(s, timeout):
    """The status line of the answer on s, or '' when none came in time."""
    s.settimeout(timeout)
    try:
        data = s.recv(4096)
    except OSError:
        return ""
    return data.split(b"\r\n")[0].decode(errors="replace")


def raise_fd_limit(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, n + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want >= n + 256


def bounded(binary):
    """Past --max-connections no thread is made: the extra clients wait in the backlog
    (our acceptor stops taking them) and are served once slots free up."""
    limit, extra = 32, 200
    srv = Server(binary=binary, args=TPC + ["--max-connections", str(limit)]).start()
    try:
        pid = srv.proc.pid
        base = threads(pid)
        held = connect_many(srv.port, limit)
        for s in held:
            s.setblocking(True)
            s.sendall(GET)
        # Each is served on a thread of its own, then kept alive: every slot is held.
        first = [answered(s, 30) for s in held]
        check(SUITE, "within_limit_served", all(a.startswith("HTTP/1.1 200") for a in first),
              repr(sorted(set(first))))
        more = connect_many(srv.port, extra)
        for s in more:
            s.setblocking(True)
            s.sendall(GET_CLOSE)  # the kernel takes it: the connection waits in the backlog
        waiting = [answered(s, 0.2) for s in more[:5]]
        check(SUITE, "beyond_limit_waits", waiting == [""] * 5, repr(waiting))
        peak = threads(pid)
        check(SUITE, "threads_bounded_by_max_connections", peak <= base + limit, f"{peak} threads, base {base}")
        for s in held:
            s.close()
        rest = [answered(s, 30) for s in more]
        check(SUITE, "beyond_limit_served_later", all(a.startswith("HTTP/1.1 200") for a in rest),
              f"{sum(a.startswith('HTTP/1.1 200') for a in rest)} of {extra} answered; {sorted(set(rest))[:3]}")
        check(SUITE, "threads_still_bounded", threads(pid) <= base + limit, f"{threads(pid)} threads, base {base}")
        for s in more:
            s.close()
        check(SUITE, "threads_exit_with_connections", wait_for(lambda: threads(pid) <= base), f"{threads(pid)} vs {base}")
        code, secs = srv.stop()
        check(SUITE, "bounded_clean_stop", code == 0, f"exit {code}")
    finally:
        srv.cleanup()


def lazy_store_connections(binary):
    """A connection that only reads the health check opens no store connection; one that
    reads an order does, and its thread closes it when the client leaves."""
    srv = Server(binary=binary, args=TPC, demo_stock=10).start()
    try:
        pid = srv.proc.pid
        start = threads(pid)
        c = srv.client()
        order = c.post("/api/v1/sales/1/orders", {"user_id": "lazy", "quantity": 1})
        check(SUITE, "purchase_201", order.status == 201, repr(order))
        c.close()
        wait_for(lambda: threads(pid) <= start)
        base = db_fds(pid, srv.db)
        n = 20
        socks = connect_many(srv.port, n)
        for s in socks:
            s.setblocking(True)
            s.sendall(GET)
        ok = [answered(s, 30).startswith("HTTP/1.1 200") for s in socks]
        check(SUITE, "health_checks_open_no_store_connection", all(ok) and db_fds(pid, srv.db) == base,
              f"{db_fds(pid, srv.db)} database descriptors, {base} before")
        req = (f"GET /api/v1/orders/{order.json['order_id']} HTTP/1.1\r\nHost: t\r\n"
               f"X-Order-Token: {order.json['order_token']}\r\n\r\n").encode()
        for s in socks:
            s.sendall(req)
        ok = [answered(s, 30).startswith("HTTP/1.1 200") for s in socks]
        opened = db_fds(pid, srv.db)
        # SQLite parks the descriptor of a closed connection while others hold locks on
        # the file, and the next connection takes it: the purchase's closed connection
        # may be reused here, so n or n - 1 new descriptors.
        check(SUITE, "order_reads_open_one_each", all(ok) and n - 1 <= opened - base <= n,
              f"{opened - base} opened for {n} connections")
        for s in socks:
            s.close()
        wait_for(lambda: threads(pid) <= start)
        # Had the exiting threads leaked their connections, n more would open now.
        socks = connect_many(srv.port, n)
        for s in socks:
            s.setblocking(True)
            s.sendall(req)
        ok = [answered(s, 30).startswith("HTTP/1.1 200") for s in socks]
        check(SUITE, "store_connections_close_with_their_thread", all(ok) and db_fds(pid, srv.db) == opened,
              f"{db_fds(pid, srv.db)} database descriptors, {opened} before")
        for s in socks:
            s.close()
        code, _ = srv.stop()
        check(SUITE, "lazy_clean_stop", code == 0, f"exit {code}")
    finally:
        srv.cleanup()


def ten_thousand(binary, n):
    """n connections attempted at once with the default --max-connections: the server
    makes a thread for each it can, serves them, and is still healthy afterwards."""
    if not raise_fd_limit(n):
        check(SUITE, f"connections_{n}_fd_limit", False, "cannot raise this process's descriptor limit")
        return
    srv = Server(binary=binary, args=TPC).start()
    try:
        pid = srv.proc.pid
        base = threads(pid)
        socks = connect_many(srv.port, n)
        for s in socks:
            s.setblocking(True)
            try:
                s.sendall(GET)
            except OSError:
                pass
        answers = [answered(s, 60) for s in socks]
        served = sum(a.startswith("HTTP/1.1 200") for a in answers)
        st = proc_status(pid)
        peak = int(st["Threads"])
        print(f"# {n} connections: {served} served, {peak} threads, VmRSS {st['VmRSS']}, VmHWM {st['VmHWM']}, "
              f"VmSize {st['VmSize']}")
        check(SUITE, f"connections_{n}_survived", srv.alive(), "the server died")
        # Every connection is either served or (thread or memory limits) closed: none may hang.
        check(SUITE, f"connections_{n}_none_hangs", all(answers), f"{answers.count('')} got nothing")
        check(SUITE, f"connections_{n}_threads_bounded", peak <= base + n, f"{peak} threads")
        for s in socks:
            s.close()
        check(SUITE, f"connections_{n}_threads_exit", wait_for(lambda: threads(pid) <= base, 60),
              f"{threads(pid)} vs {base}")
        c = srv.client()
        check(SUITE, f"connections_{n}_healthy_after", c.get("/healthz").status == 200)
        code, _ = srv.stop()
        check(SUITE, f"connections_{n}_clean_stop", code == 0, f"exit {code}")
    finally:
        srv.cleanup()


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] != "-" else None
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    bounded(binary)
    lazy_store_connections(binary)
    ten_thousand(binary, n)
    finish()


if __name__ == "__main__":
    main()
