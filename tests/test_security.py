"""Rate limits (per user id, per client address) and signed purchase tokens (--user-secret).

Usage: tests/test_security.py [BINARY]
"""
import hashlib
import hmac
import http.client
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, check, finish, metric  # noqa: E402

SUITE = "security"
BINARY = sys.argv[1] if len(sys.argv) > 1 else None


def get_from(port, path, source):
    """A GET from a given loopback source address (127.0.0.x)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    c.request("GET", path)
    r = c.getresponse()
    r.read()
    c.close()
    return r.status, r.getheader("Retry-After")


def user_rate():
    srv = Server(binary=BINARY, args=["--user-rate", "2"]).start()
    try:
        c = srv.client()
        sale = c.create_sale(name="Rate", stock=100, per_user_limit=100)
        # Until the first refusal: a slow machine may earn a token back between two
        # requests, so how many get through is its business; the burst of two is not.
        statuses = []
        while len(statuses) < 50 and (not statuses or statuses[-1].status == 201):
            statuses.append(c.post(f"/api/v1/sales/{sale}/orders", {"user_id": "eager"}))
        r = statuses[-1]
        bought = sum(1 for s in statuses if s.status == 201)
        check(SUITE, "user_rate_burst_allowed", [s.status for s in statuses[:2]] == [201, 201], repr(statuses))
        check(SUITE, "user_rate_429", r.status == 429 and r.error() == "rate_limited"
              and int(r.header("Retry-After") or 0) >= 1, repr(r))
        r = c.post(f"/api/v1/sales/{sale}/orders", {"user_id": "patient"})
        check(SUITE, "user_rate_other_user_unaffected", r.status == 201, repr(r))
        time.sleep(1.1)  # two tokens a second: at least one is back
        r = c.post(f"/api/v1/sales/{sale}/orders", {"user_id": "eager"})
        check(SUITE, "user_rate_refills", r.status == 201, repr(r))
        audit = c.get(f"/api/v1/sales/{sale}/audit").json
        check(SUITE, "user_rate_refusal_moves_no_stock", audit["units_sold"] == bought + 2 and audit["consistent"], repr(audit))
        text = c.get("/metrics").raw.decode()
        check(SUITE, "user_rate_counted", (metric(text, "flashsale_rate_limited_total") or 0) >= 1)
        srv.stop()
    finally:
        srv.cleanup()


def ip_rate():
    srv = Server(binary=BINARY, args=["--ip-rate", "5"]).start()
    try:
        c = srv.client()
        got = []  # until the first refusal (a slow machine earns tokens back meanwhile)
        while len(got) < 200 and (not got or got[-1] == 200):
            got.append(c.get("/api/v1/sales").status)
        check(SUITE, "ip_rate_429_after_burst", got[:5] == [200] * 5 and got[-1] == 429, repr(got))
        check(SUITE, "ip_rate_spares_healthz", c.get("/healthz").status == 200)
        status, retry = get_from(srv.port, "/api/v1/sales", "127.0.0.2")
        check(SUITE, "ip_rate_other_address_unaffected", status == 200, f"{status} {retry}")
        srv.stop()
    finally:
        srv.cleanup()


def token(secret, user, expires):
    mac = hmac.new(secret.encode(), f"{user}\n{expires}".encode(), hashlib.sha256).hexdigest()
    return f"{expires}.{mac}"


def user_secret():
    secret = "front-end-shared-secret"
    srv = Server(binary=BINARY, args=["--user-secret", secret]).start()
    try:
        c = srv.client()
        sale = c.create_sale(name="Signed", stock=10, payment_window=60)
        path = f"/api/v1/sales/{sale}/orders"
        later = int(time.time()) + 300
        cases = [
            ("no_token_401", None),
            ("forged_token_401", f"{later}." + "0" * 64),
            ("expired_token_401", token(secret, "ann", int(time.time()) - 5)),
            ("other_users_token_401", token(secret, "bob", later)),
            ("wrong_secret_401", token("guess", "ann", later)),
            ("garbage_token_401", "not-a-token"),
            ("short_mac_401", f"{later}.abcd"),
        ]
        for name, tok in cases:
            headers = {"X-User-Token": tok} if tok else {}
            r = c.request("POST", path, json_body={"user_id": "ann"}, headers=headers)
            check(SUITE, "token:" + name, r.status == 401 and r.error() == "invalid_token", repr(r))
        r = c.request("POST", path, json_body={"user_id": "ann"}, headers={"X-User-Token": token(secret, "ann", later)})
        check(SUITE, "token:valid_201", r.status == 201, repr(r))
        oid = r.json["order_id"] if r.status == 201 else 0
        r = c.post(f"/api/v1/orders/{oid}/pay", {"user_id": "ann"})
        check(SUITE, "token:pay_needs_token", r.status == 401 and r.error() == "invalid_token", repr(r))
        r = c.request("POST", f"/api/v1/orders/{oid}/pay", json_body={"user_id": "ann"},
                      headers={"X-User-Token": token(secret, "ann", later)})
        check(SUITE, "token:pay_with_token", r.status == 200 and r.json["status"] == "paid", repr(r))
        audit = c.get(f"/api/v1/sales/{sale}/audit").json
        check(SUITE, "token:refusals_move_no_stock", audit["units_sold"] == 1 and audit["consistent"], repr(audit))
        srv.stop()
    finally:
        srv.cleanup()


def main():
    user_rate()
    ip_rate()
    user_secret()
    finish()


if __name__ == "__main__":
    main()
