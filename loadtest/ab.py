#!/usr/bin/env python3
"""ab.py OLD_BINARY NEW_BINARY — is a change slower?  Alternating runs, one machine.

A change's cost is smaller than this machine's noise from one minute to the next, so
the two binaries take turns (old, new, old, new, ...) on the flash crowd and on the
durable path, with nginx's fixed 200 measured in every round as the anchor, and the
table gives each binary's median ratio to nginx.  ROUNDS (3), DURATION (5 s),
STRATEGY (atomic).  Build the old binary in a worktree, e.g.
    git worktree add /tmp/base <commit> && make -C /tmp/base all
    python3 loadtest/ab.py /tmp/base/build/flashsale build/flashsale
"""
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import flashsale_run, nginx_anchor  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "3"))
STRATEGY = os.environ.get("STRATEGY", "atomic")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    binaries = {"old": sys.argv[1], "new": sys.argv[2]}
    ratios = {(b, w): [] for b in binaries for w in ("crowd", "durable")}
    figures = {(b, w): [] for b in binaries for w in ("crowd", "durable")}
    for rnd in range(1, ROUNDS + 1):
        print(f"-- round {rnd}/{ROUNDS}: nginx", file=sys.stderr, flush=True)
        anchor = nginx_anchor()["rps"]
        order = ("old", "new") if rnd % 2 else ("new", "old")
        for b in order:
            os.environ["FLASHSALE_BIN"] = binaries[b]
            for what, stock in (("crowd", 1000), ("durable", 10 ** 9)):
                print(f"-- round {rnd}/{ROUNDS}: {b} {what}", file=sys.stderr, flush=True)
                r = flashsale_run(STRATEGY, stock, f"ab {what}")
                value = r["rps"] if what == "crowd" else r["orders_per_s"]
                figures[(b, what)].append(value)
                ratios[(b, what)].append(value / anchor)
    print(f"\n{STRATEGY}, {ROUNDS} alternating rounds; medians, ratio to nginx measured in the same round\n")
    print("| path | old per s | old × nginx | new per s | new × nginx | new / old |")
    print("|---|---:|---:|---:|---:|---:|")
    for what in ("crowd", "durable"):
        o, n = statistics.median(figures[("old", what)]), statistics.median(figures[("new", what)])
        ro, rn = statistics.median(ratios[("old", what)]), statistics.median(ratios[("new", what)])
        unit = "req" if what == "crowd" else "orders"
        print(f"| {what} | {o:,.0f} {unit} | {ro:.3f} | {n:,.0f} {unit} | {rn:.3f} | {rn / ro:.3f} |")


if __name__ == "__main__":
    main()
