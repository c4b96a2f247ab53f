"""The OpenAPI contract (static/openapi.json), checked by third-party tools.

  1. Redocly CLI lints the document (its recommended rules; tests/contract/redocly.yaml): zero problems.
  2. Every (status, error code) of src/outcome.c's table is declared in the document.
  3. The API suite (tests/test_api.py), then the lifecycle and security suites, run against
     the real binary while the harness records every answer they get; Prism's router and
     response validator (tests/contract/replay.mjs) then check each answer against the
     document: an undeclared status, field, error code or header fails.
  4. The check can fail: the same answers against a copy of the document with one field and
     one status taken out must be refused (a validator that passes everything tests nothing).

Usage: tests/test_contract.py [--doc FILE] [BINARY]   (--doc: check another document)
Needs `make deps-contract` (node and tests/contract/node_modules).
"""
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ROOT, check, finish  # noqa: E402

SUITE = "contract"
TOOLS = os.path.join(ROOT, "tests", "contract")
BIN = os.path.join(TOOLS, "node_modules", ".bin")


def run(cmd, env=None, timeout=600):
    e = dict(os.environ)
    # Redocly would otherwise try to send usage data and look for updates.
    e.update({"REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true", "NO_COLOR": "1"})
    e.update(env or {})
    return subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=timeout, cwd=ROOT)


def lint(doc):
    p = run([os.path.join(BIN, "redocly"), "lint", doc, "--config", os.path.join(TOOLS, "redocly.yaml"),
             "--format", "stylish"])
    out = p.stdout + p.stderr
    problems = [l for l in out.splitlines() if re.search(r"\b(error|warning)\b", l) and re.match(r"\s+\d+:\d+", l)]
    check(SUITE, "redocly_lint_no_problems", p.returncode == 0 and not problems, out[-3000:])


def outcome_codes():
    """(status, code) of every row of src/outcome.c's table but OK."""
    with open(os.path.join(ROOT, "src", "outcome.c")) as f:
        text = f.read()
    rows = re.findall(r'\[OUTCOME_\w+\]\s*=\s*\{(\d+),\s*"(\w+)"', text)
    return [(int(s), c) for s, c in rows if c != "ok"]


def declared_codes(doc):
    """(status, code) pairs the document declares in any response, $refs followed."""
    pairs = set()

    def resolve(node):
        while isinstance(node, dict) and "$ref" in node:
            at = doc
            for part in node["$ref"].lstrip("#/").split("/"):
                at = at[part]
            node = at
        return node

    def responses_of(responses):
        for status, resp in responses.items():
            resp = resolve(resp)
            for media in (resp.get("content") or {}).values():
                schema = resolve(media.get("schema") or {})
                err = resolve((schema.get("properties") or {}).get("error") or {})
                for code in err.get("enum", []):
                    pairs.add((int(status), code))

    for item in doc["paths"].values():
        for method, op in item.items():
            if isinstance(op, dict) and "responses" in op:
                responses_of(op["responses"])
    responses_of(doc.get("x-unrouted", {}))
    return pairs


def replay(doc, recording):
    p = run(["node", os.path.join(TOOLS, "replay.mjs"), doc, recording])
    return p.returncode, p.stdout, p.stderr


def broken_copy(doc, tmp):
    """The document less Order.paid_at and less createOrder's 409: answers the suite gets."""
    d = json.loads(json.dumps(doc))
    order = d["components"]["schemas"]["Order"]
    del order["properties"]["paid_at"]
    order["required"].remove("paid_at")
    del d["paths"]["/api/v1/sales/{sale_id}/orders"]["post"]["responses"]["409"]
    path = os.path.join(tmp, "broken.json")
    with open(path, "w") as f:
        json.dump(d, f)
    return path


def main():
    args = sys.argv[1:]
    doc_path = os.path.join(ROOT, "static", "openapi.json")
    if args[:1] == ["--doc"]:
        doc_path, args = os.path.abspath(args[1]), args[2:]
    binary = args[0] if args else None
    if not os.path.isdir(os.path.join(TOOLS, "node_modules", "@stoplight")):
        check(SUITE, "tools_installed", False, "run `make deps-contract` (npm ci in tests/contract)")
        finish()
    with open(doc_path) as f:
        doc = json.load(f)
    check(SUITE, "openapi_3_1", doc.get("openapi", "").startswith("3.1."), doc.get("openapi"))
    lint(doc_path)

    declared = declared_codes(doc)
    missing = [p for p in outcome_codes() if p not in declared]
    check(SUITE, "every_outcome_code_declared", len(outcome_codes()) > 10 and not missing, f"not in the document: {missing}")

    with tempfile.TemporaryDirectory(prefix="flashsale-contract-") as tmp:
        recording = os.path.join(tmp, "answers.jsonl")
        # The API suite is the contract's own; lifecycle (pay, cancel, expiry) and security
        # (signed tokens, rate limits) add the answers it does not provoke.  Their verdicts
        # are their own suites' business: here only their answers count.
        n = 0
        for name, least in [("api", 100), ("lifecycle", 100), ("security", 10)]:
            cmd = [sys.executable, os.path.join(ROOT, "tests", f"test_{name}.py")] + ([binary] if binary else [])
            p = run(cmd, env={"FLASHSALE_TEST_RECORD": recording})
            if name == "api":
                fails = [l for l in p.stdout.splitlines() if l.startswith("FAIL ")]
                check(SUITE, "api_suite_passes_while_recorded", p.returncode == 0 and not fails,
                      "; ".join(fails[:5]) or (p.stdout + p.stderr)[-2000:])
            before, n = n, sum(1 for _ in open(recording)) if os.path.exists(recording) else 0
            check(SUITE, f"{name}_suite_answers_recorded", n - before >= least, f"{n - before} answers recorded")

        rc, out, err = replay(doc_path, recording)
        print(out, end="", flush=True)  # its PASS/FAIL lines, one per kind of answer
        bad = [l for l in out.splitlines() if l.startswith("FAIL ")]
        check(SUITE, "every_answer_matches_the_document", rc == 0 and "answers in" in out,
              f"{len(bad)} kinds of answer do not match (FAIL lines above) {err[-1500:]}")

        rc, out, err = replay(broken_copy(doc, tmp), recording)
        fails = [l for l in out.splitlines() if l.startswith("FAIL ")]
        check(SUITE, "catches_an_undocumented_field",
              rc == 1 and any("additional properties" in l and "paid_at" in l for l in fails), out[-1500:] + err[-500:])
        check(SUITE, "catches_an_undeclared_status",
              any(re.search(r"orders(\}?) 409 sold_out: .*Unable to match the returned status code", l) for l in fails),
              out[-1500:] + err[-500:])
    finish()


if __name__ == "__main__":
    main()
