"""The conventions of a C daemon, checked with the ecosystem's own tools (issue 14 §3-4).

make install/uninstall into a DESTDIR, the installed binary serving its dashboard;
--version and flashsale_build_info against the libraries dpkg says are installed;
the man page rendered by man and groff without a warning, every --help flag in it;
the systemd unit through `systemd-analyze verify` and `security`; the environment
file against --help; --log-format json; `promtool check metrics` on a live /metrics
after a crowd; the alert rules through `promtool test rules`, and each alert shown to
be needed by that test.
Usage: tests/test_ecosystem.py [BINARY]
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ROOT, Server, check, crowd, finish  # noqa: E402

SUITE = "ecosystem"
BINARY = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(ROOT, "build", "flashsale")
DOCKER = os.path.join(ROOT, "docker")


def run(cmd, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 120)
    return subprocess.run(cmd, **kw)


_HAVE = {}


def have(tool, package):
    """Whether a tool is installed; reported once (a missing tool fails, not skips)."""
    if tool not in _HAVE:
        _HAVE[tool] = shutil.which(tool) is not None
        check(SUITE, f"{tool}_installed", _HAVE[tool], f"{tool} missing: apt-get install {package} (make deps)")
    return _HAVE[tool]


def help_text():
    return run([BINARY, "--help"]).stdout


def help_flags():
    """Every flag --help lists, in its order."""
    return re.findall(r"^  (--[a-z][a-z-]*)", help_text(), re.M)


def help_env():
    """{FLASHSALE_X: default} from --help."""
    return dict(re.findall(r"env (FLASHSALE_\w+), default '(.*)'", help_text()))


def start(binary, cwd, args=(), env=None, wrap=()):
    """The binary as a user would start it (no --static unless given); returns (proc, port, log).
    wrap: a command's arguments between `binary` (then that command) and the service's."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("FLASHSALE_")}
    e.update(env or {})
    proc = subprocess.Popen([binary] + list(wrap) + ["--port", "0", "--admin-token", "t"] + list(args), cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=e)
    log, ready = [], threading.Event()
    port = [None]

    def read():
        for raw in proc.stderr:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            log.append(line)
            m = re.search(r"listening on http://[\d.]+:(\d+)", line)
            if m:
                port[0] = int(m.group(1))
                ready.set()
        ready.set()
    threading.Thread(target=read, daemon=True).start()
    ready.wait(15)
    return proc, port[0], log


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# ---- --version and flashsale_build_info ---------------------------------------------

def dpkg_version(package):
    r = run(["dpkg-query", "-W", "-f", "${Version}", package])
    return r.stdout if r.returncode == 0 else None


def version():
    header = open(os.path.join(ROOT, "src", "version.h")).read()
    want = re.search(r'#define FLASHSALE_VERSION "([^"]+)"', header).group(1)
    r = run([BINARY, "--version"])
    lines = dict(l.split(" ", 1) for l in r.stdout.splitlines() if " " in l)
    check(SUITE, "version_exit_0", r.returncode == 0 and not r.stderr, repr(r))
    check(SUITE, "version_first_line", r.stdout.startswith(f"flashsale {want}\n"), r.stdout)
    # What the loaded libraries say must be what dpkg installed (the upstream part of
    # the Debian version): a test of the numbers, not only of their presence.
    libs = [  # --version name, Debian package, how the upstream version starts
        ("libmicrohttpd", "libmicrohttpd12", lambda v: v.split("-")[0]),
        ("SQLite", "libsqlite3-0", lambda v: v.split("-")[0]),
        ("jansson", "libjansson4", lambda v: v.split("-")[0]),
        ("libpq", "libpq5", lambda v: v.split("-")[0]),
    ]
    for name, pkg, upstream in libs:
        deb = dpkg_version(pkg)
        got = lines.get(name)
        check(SUITE, f"version_{name.lower()}", got is not None and deb is not None and got == upstream(deb),
              f"--version says {got!r}, dpkg says {pkg} {deb!r}")
    return want, lines


def build_info(text, want, lines):
    m = re.search(r'^flashsale_build_info\{(.*)\} (\S+)$', text, re.M)
    labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1))) if m else {}
    expect = {"version": want, "libmicrohttpd": lines.get("libmicrohttpd"), "sqlite": lines.get("SQLite"),
              "jansson": lines.get("jansson"), "libpq": lines.get("libpq")}
    check(SUITE, "metrics_build_info", m is not None and m.group(2) == "1" and labels == expect,
          f"{m and m.group(0)!r} want {expect}")
    check(SUITE, "metrics_build_info_is_gauge", "# TYPE flashsale_build_info gauge" in text)


# ---- /metrics through promtool --------------------------------------------------------

def families(text):
    """{family: number of samples} for every # TYPE line."""
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    count = {f: 0 for f in types}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
        for f, t in types.items():
            if name == f or (t == "histogram" and name in (f + "_bucket", f + "_sum", f + "_count")):
                count[f] += 1
    return count


def metrics_promtool(want, lines):
    srv = Server(binary=BINARY, args=["--user-rate", "50"]).start()
    try:
        c = srv.client()
        # Every route and outcome, so that every metric family has samples: sold out,
        # limits, payment window, pay, cancel, 404, 405, 415, bad JSON, rate limits.
        a = c.create_sale(name="Crowd", stock=40, per_user_limit=1)
        b = c.create_sale(name="Window", stock=10, per_user_limit=2, payment_window=60)
        statuses, _ = crowd(srv.port, a, [f"u{i}" for i in range(80)], tries=2, threads=16)
        o1 = c.post(f"/api/v1/sales/{b}/orders", {"user_id": "payer"}).json["order_id"]
        o2 = c.post(f"/api/v1/sales/{b}/orders", {"user_id": "quitter"}).json["order_id"]
        c.post(f"/api/v1/orders/{o1}/pay", {"user_id": "payer"})
        c.post(f"/api/v1/orders/{o2}/cancel", {"user_id": "quitter"})
        c.get("/api/v1/sales")
        c.get(f"/api/v1/sales/{a}/audit")
        c.get("/api/v1/stats")
        c.get("/nope")
        c.request("DELETE", "/api/v1/sales")
        c.request("POST", f"/api/v1/sales/{a}/orders", body="x", headers={"Content-Type": "text/plain"})
        c.request("POST", f"/api/v1/sales/{a}/orders", body="{", headers={"Content-Type": "application/json"})
        for _ in range(60):
            c.post(f"/api/v1/sales/{b}/orders", {"user_id": "eager"})
        c.get("/healthz")
        c.get("/")
        text = c.get("/metrics").raw.decode()
        text = c.get("/metrics").raw.decode()  # the /metrics route itself now has samples
        check(SUITE, "crowd_sold_out", statuses.get(201) == 40 and statuses.get(409, 0) > 0, repr(statuses))
        empty = [f for f, n in families(text).items() if n == 0]
        check(SUITE, "metrics_every_family_has_samples", not empty, repr(empty))
        check(SUITE, "metrics_sale_stock_renamed", 'flashsale_sale_stock{sale="1"} 40' in text
              and "flashsale_sale_stock_total" not in text, text[-1500:])
        build_info(text, want, lines)
        if have("promtool", "prometheus"):
            r = run(["promtool", "check", "metrics"], input=text)
            check(SUITE, "promtool_check_metrics", r.returncode == 0 and not (r.stdout + r.stderr).strip(),
                  f"rc {r.returncode}: {r.stdout}{r.stderr}")
    finally:
        srv.cleanup()


# ---- alert rules ----------------------------------------------------------------------

def alerts():
    if not have("promtool", "prometheus"):
        return
    r = run(["promtool", "check", "config", "prometheus.yml"], cwd=DOCKER)
    check(SUITE, "promtool_check_config", r.returncode == 0 and "1 rule files found" in r.stdout,
          r.stdout + r.stderr)
    r = run(["promtool", "check", "rules", "alerts.yml"], cwd=DOCKER)
    check(SUITE, "promtool_check_rules", r.returncode == 0, r.stdout + r.stderr)
    r = run(["promtool", "test", "rules", "alerts.test.yml"], cwd=DOCKER)
    check(SUITE, "promtool_test_rules", r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr)
    # Each alert is needed by the unit test: with that one alert renamed away, the
    # test must fail.  (A test that passes without the alert would prove nothing.)
    rules = open(os.path.join(DOCKER, "alerts.yml")).read()
    names = re.findall(r"^\s+- alert: (\w+)$", rules, re.M)
    check(SUITE, "alerts_required_present", {"FlashsaleOversold", "FlashsaleOverloaded",
                                             "FlashsaleCommitSlow"} <= set(names), repr(names))
    with tempfile.TemporaryDirectory(prefix="fs-alerts-") as tmp:
        shutil.copy(os.path.join(DOCKER, "alerts.test.yml"), tmp)
        for name in names:
            with open(os.path.join(tmp, "alerts.yml"), "w") as f:
                f.write(rules.replace(f"- alert: {name}\n", f"- alert: {name}Gone\n"))
            r = run(["promtool", "test", "rules", "alerts.test.yml"], cwd=tmp)
            check(SUITE, f"alert_test_needs_{name}", r.returncode != 0 and name in r.stdout + r.stderr,
                  f"promtool test rules passed without {name}")


# ---- --log-format json ----------------------------------------------------------------

def log_json():
    tmp = tempfile.mkdtemp(prefix="fs-log-")
    try:
        # A database path with a quote, a backslash, a tab and a byte that is not
        # UTF-8 appears in a log line: the line must stay one valid JSON object.
        odd = os.path.join(tmp.encode(), b'odd "dir\\\t\xff')
        os.mkdir(odd)
        db = os.path.join(odd, b"f.db")
        proc, port, log = start(BINARY, tmp, [b"--db", db, "--log-format", "json", "--log-level", "debug",
                                              "--static", os.path.join(ROOT, "static")])
        check(SUITE, "json_log_started", port is not None, "\n".join(log[-5:]))
        rc = stop(proc)
        objs, bad = [], []
        for line in log:
            try:
                objs.append(json.loads(line))
            except ValueError:
                bad.append(line)
        check(SUITE, "json_log_every_line_json", rc == 0 and objs and not bad, repr(bad[:3]))
        keys_ok = all({"time", "level", "msg"} <= set(o) and set(o) <= {"time", "level", "msg", "file", "line"}
                      for o in objs)
        check(SUITE, "json_log_fields", objs and keys_ok, repr(objs[:3]))
        check(SUITE, "json_log_time_utc_ms", objs and all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", o["time"])
                                                 for o in objs), repr(objs[:1]))
        check(SUITE, "json_log_levels", {o["level"] for o in objs} <= {"debug", "info", "warn", "error", "fatal"}
              and any(o["level"] == "info" for o in objs), repr({o["level"] for o in objs}))
        debug = [o for o in objs if o["level"] == "debug"]
        check(SUITE, "json_log_debug_has_file_line", debug and all(
            re.fullmatch(r"[a-z_]+\.c", o.get("file", "")) and isinstance(o.get("line"), int) for o in debug),
            repr(debug[:2]))
        path = [o["msg"] for o in objs if "created schema" in o["msg"]]
        check(SUITE, "json_log_escapes_message", path and 'odd "dir\\\t\ufffd' in path[0], repr(path))
        check(SUITE, "json_log_listening_line", any(re.search(r"listening on http://127\.0\.0\.1:\d+", o["msg"])
                                                    for o in objs))
        # The default stays the readable text.
        proc, port, log = start(BINARY, tmp, ["--db", os.path.join(tmp, "t.db"),
                                              "--static", os.path.join(ROOT, "static")])
        stop(proc)
        check(SUITE, "text_log_by_default", port is not None and log and all(
            re.match(r"\d{4}-\d\d-\d\dT[\d:.]+Z (debug|info |warn |error) ", l) for l in log), repr(log[:3]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- the man page ---------------------------------------------------------------------

def man_page(page, tag):
    check(SUITE, f"man_{tag}_exists", os.path.exists(page), page)
    if not os.path.exists(page):
        return
    fresh = run([BINARY, "--help-man"]).stdout
    check(SUITE, f"man_{tag}_is_generated", open(page).read() == fresh, "build/flashsale.1 differs from --help-man")
    if have("groff", "groff-base"):
        r = run(["groff", "-man", "-Tutf8", "-ww", "-z", page])
        check(SUITE, f"man_{tag}_groff_no_warnings", r.returncode == 0 and not r.stderr, r.stderr)
    if not have("man", "man-db"):
        return
    env = dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="", LC_ALL="C.UTF-8")
    r = run(["man", "--warnings", "-l", page], env=env)
    text = re.sub(r".\x08", "", r.stdout)
    check(SUITE, f"man_{tag}_renders_no_warnings", r.returncode == 0 and not r.stderr and "FLASHSALE(1)" in text,
          r.stderr[:500])
    tags = set(re.findall(r"^ {7}(--[a-z][a-z-]*)", text, re.M))
    flags = help_flags()
    missing = [f for f in flags if f not in tags]
    check(SUITE, f"man_{tag}_has_every_help_flag", flags and not missing, f"missing {missing}")
    check(SUITE, f"man_{tag}_has_no_unknown_flag", tags <= set(flags), repr(tags - set(flags)))
    envs = help_env()
    missing = [v for v in envs if v not in text]
    check(SUITE, f"man_{tag}_has_every_env_var", envs and not missing, f"missing {missing}")
    check(SUITE, f"man_{tag}_sections", all(s in text for s in ("NAME", "SYNOPSIS", "OPTIONS", "ENVIRONMENT", "FILES",
                                                         "EXIT STATUS")))


# ---- the environment file -------------------------------------------------------------

def env_file():
    text = open(os.path.join(DOCKER, "flashsale.env")).read()
    listed = dict(re.findall(r"^#?(FLASHSALE_\w+)=(.*)$", text, re.M))
    envs = help_env()
    check(SUITE, "env_file_has_every_variable", envs and set(envs) <= set(listed), repr(set(envs) - set(listed)))
    check(SUITE, "env_file_no_unknown_variable", set(listed) <= set(envs), repr(set(listed) - set(envs)))
    wrong = {k: (v, envs[k]) for k, v in listed.items() if k in envs and k != "FLASHSALE_DB" and v != envs[k]}
    check(SUITE, "env_file_defaults_match_help", not wrong, repr(wrong))
    for flag in help_flags():
        if flag.startswith("--help") or flag == "--version":
            continue
        if f"# {flag} " not in text:
            check(SUITE, "env_file_describes_every_flag", False, flag)
            return
    check(SUITE, "env_file_describes_every_flag", True)


# ---- the systemd unit -----------------------------------------------------------------

def unit_settings(path):
    out = {}
    for line in open(path):
        m = re.match(r"^(\w+)=(.*)$", line.strip())
        if m:
            out.setdefault(m.group(1), []).append(m.group(2))
    return out


def systemd_unit(dest, prefix, tag):
    unit = f"{dest}{prefix}/lib/systemd/system/flashsale.service"
    s = unit_settings(unit)
    one = lambda k: (s.get(k) or [None])[-1]  # noqa: E731
    check(SUITE, f"unit_{tag}_exec_start_installed_binary", one("ExecStart") == f"{prefix}/bin/flashsale", one("ExecStart"))
    max_conn = int(help_env()["FLASHSALE_MAX_CONNECTIONS"])
    hardening = [  # setting, what it must be
        ("DynamicUser", lambda v: v == "yes"),
        ("StateDirectory", lambda v: v == "flashsale"),
        ("ProtectSystem", lambda v: v == "strict"),
        ("NoNewPrivileges", lambda v: v == "yes"),
        ("Restart", lambda v: v == "on-failure"),
        ("LimitNOFILE", lambda v: v.isdigit() and int(v) >= max_conn + 1024),
        ("EnvironmentFile", lambda v: v.lstrip("-") == "/etc/flashsale/flashsale.env"),
        ("Environment", lambda v: v == "FLASHSALE_DB=/var/lib/flashsale/flashsale.db"),
        ("CapabilityBoundingSet", lambda v: v == ""),
    ]
    for key, ok in hardening:
        v = one(key)
        check(SUITE, f"unit_{tag}_{key}", v is not None and ok(v), f"{key}={v!r}")
    if not have("systemd-analyze", "systemd"):
        return
    # No systemd runs as PID 1 here.  verify checks that ExecStart exists and that
    # `man flashsale(1)` finds the page: point both at the DESTDIR copy.
    with tempfile.TemporaryDirectory(prefix="fs-unit-") as tmp:
        copy = os.path.join(tmp, "flashsale.service")
        with open(copy, "w") as f:
            f.write(open(unit).read().replace(f"ExecStart={prefix}/bin/", f"ExecStart={dest}{prefix}/bin/"))
        env = dict(os.environ, MANPATH=f"{dest}{prefix}/share/man")
        r = run(["systemd-analyze", "verify", copy], env=env, cwd=tmp)
        # verify exits 0 on an unknown key or a bad value, printing a warning: any
        # output at all fails the check.
        check(SUITE, f"systemd_analyze_verify_{tag}", r.returncode == 0 and not (r.stdout + r.stderr).strip(),
              f"rc {r.returncode}: {r.stdout}{r.stderr}")
        with open(copy, "w") as f:
            f.write(open(unit).read().replace(f"ExecStart={prefix}/bin/", f"ExecStart={dest}{prefix}/bin/")
                    .replace("ProtectSystem=", "ProtectSytem="))
        r = run(["systemd-analyze", "verify", copy], env=env, cwd=tmp)
        check(SUITE, f"systemd_analyze_verify_{tag}_catches_typo", "ProtectSytem" in r.stdout + r.stderr,
              "a misspelled key went unnoticed")
        os.remove(copy)
        shutil.copy(unit, copy)
        r = run(["systemd-analyze", "security", "--offline=yes", copy], cwd=tmp)
        m = re.search(r"Overall exposure level for flashsale\.service: ([\d.]+)", r.stdout)
        check(SUITE, f"systemd_security_{tag}_exposure_low", m is not None and float(m.group(1)) <= 2.0,
              (m and m.group(0)) or r.stdout[-300:] + r.stderr)


def syscall_group(name, cache={}):
    """The system calls of a systemd group such as @system-service, nested groups expanded."""
    if name not in cache:
        out = run(["systemd-analyze", "syscall-filter", name]).stdout
        calls = set()
        for line in out.splitlines()[1:]:
            t = line.strip()
            if t and not t.startswith("#"):
                calls |= syscall_group(t) if t.startswith("@") else {t}
        cache[name] = calls
    return cache[name]


def unit_syscalls(unit):
    """What the unit's SystemCallFilter= lines allow: the allow lists, minus the ~ lists."""
    allow, deny = set(), set()
    for v in unit_settings(unit).get("SystemCallFilter", []):
        calls = set()
        for item in v.lstrip("~").split():
            calls |= syscall_group(item) if item.startswith("@") else {item}
        (deny if v.startswith("~") else allow).update(calls)
    return allow - deny


def syscalls_allowed(binary, unit, dest):
    """The installed binary, as an unprivileged user (like the unit's DynamicUser), under
    strace through a purchase, a payment, the dashboard, /metrics, the audit and a
    SIGTERM drain: every system call it makes must pass the unit's SystemCallFilter
    (a refused one would fail with EPERM in production, and no test here would know)."""
    if not (have("strace", "strace") and have("systemd-analyze", "systemd")):
        return
    work = tempfile.mkdtemp(prefix="fs-strace-")
    try:
        for d in (dest, work):
            os.chmod(d, 0o777)
        trace = os.path.join(work, "trace")
        proc, port, log = start("setpriv", work, [], wrap=["--reuid=65534", "--regid=65534", "--clear-groups",
                                                         "strace", "-f", "-qq", "-o", trace, binary])
        try:
            c_ok = port is not None
            if c_ok:
                from harness import Client
                c = Client(port)
                sale = c.request("POST", "/api/v1/sales", json_body={"name": "s", "stock": 5, "payment_window": 60},
                                 headers={"Authorization": "Bearer t"}).json["id"]
                o = c.post(f"/api/v1/sales/{sale}/orders", {"user_id": "a"}).json["order_id"]
                c.post(f"/api/v1/orders/{o}/pay", {"user_id": "a"})
                for path in ("/", "/app.js", "/metrics", f"/api/v1/sales/{sale}/audit", "/api/v1/stats"):
                    c.get(path)
                c.close()
        finally:
            # proc is strace (setpriv exec'd it): SIGTERM goes to the service, its child,
            # and strace exits with the service's status.
            try:
                kids = open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()
            except OSError:
                kids = []
            for k in kids:
                os.kill(int(k), signal.SIGTERM)
            rc = stop(proc)
        calls = set(re.findall(r"^\d+ +([a-z_0-9]+)\(", open(trace).read(), re.M)) if os.path.exists(trace) else set()
        check(SUITE, "strace_unprivileged_run", c_ok and rc == 0 and len(calls) > 20,
              f"rc {rc}, {len(calls)} calls: " + "\n".join(log[-5:]))
        refused = sorted(calls - unit_syscalls(unit) - {"execve"})  # execve: strace's, before the filter
        check(SUITE, "unit_syscall_filter_allows_every_call", calls and not refused, f"refused: {refused}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---- make install / uninstall ---------------------------------------------------------

def installed_files(dest):
    return sorted(os.path.relpath(os.path.join(d, f), dest) for d, _, fs in os.walk(dest) for f in fs)


def install(prefix):
    tag = "usr_local" if prefix == "/usr/local" else "opt"
    dest = tempfile.mkdtemp(prefix="fs-destdir-")
    cwd = tempfile.mkdtemp(prefix="fs-cwd-")  # no ./static here
    try:
        args = ["make", "-s", "-C", ROOT, "install", f"DESTDIR={dest}"]
        if prefix != "/usr/local":
            args.append(f"PREFIX={prefix}")
        # A make of its own: not the jobserver of a `make test` this suite may run under.
        env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
        r = run(args, timeout=600, env=env)
        check(SUITE, f"install_{tag}_ok", r.returncode == 0, r.stdout + r.stderr)
        if r.returncode != 0:
            return
        files = set(installed_files(dest))
        p = prefix.lstrip("/")
        statics = {os.path.relpath(os.path.join(d, f), os.path.join(ROOT, "static"))
                   for d, _, fs in os.walk(os.path.join(ROOT, "static")) for f in fs}
        want = {f"{p}/bin/flashsale", f"{p}/share/man/man1/flashsale.1", f"{p}/lib/systemd/system/flashsale.service",
                f"{p}/share/flashsale/flashsale.env"} | {f"{p}/share/flashsale/static/{s}" for s in statics}
        check(SUITE, f"install_{tag}_files", files == want, f"extra {files - want}, missing {want - files}")
        binary = f"{dest}{prefix}/bin/flashsale"
        check(SUITE, f"install_{tag}_binary_executable", os.access(binary, os.X_OK))
        # The installed binary, run from a folder without ./static, serves the
        # installed dashboard.
        proc, port, log = start(binary, cwd, ["--db", os.path.join(cwd, "f.db")])
        try:
            st, body = get(port, "/") if port else (None, b"")
            index = open(os.path.join(ROOT, "static", "index.html"), "rb").read()
            check(SUITE, f"installed_{tag}_serves_dashboard", st == 200 and body == index, f"{st} {body[:80]!r}")
            st, body = get(port, "/healthz") if port else (None, b"")
            check(SUITE, f"installed_{tag}_healthz", st == 200 and b'"ok"' in body, f"{st} {body!r}")
        finally:
            check(SUITE, f"installed_{tag}_stops_cleanly", stop(proc) == 0, "\n".join(log[-5:]))
        if prefix == "/usr/local":
            # --static given wins over the installed dashboard.
            mine = os.path.join(cwd, "mine")
            os.mkdir(mine)
            with open(os.path.join(mine, "index.html"), "w") as f:
                f.write("<p>mine</p>")
            proc, port, log = start(binary, cwd, ["--db", os.path.join(cwd, "g.db"), "--static", mine])
            st, body = get(port, "/") if port else (None, b"")
            stop(proc)
            check(SUITE, "installed_explicit_static_wins", st == 200 and body == b"<p>mine</p>", f"{st} {body!r}")
            # A ./static in the working folder comes before the installed one (the
            # default --static is ./static; the installed folder is the fallback).
            os.rename(mine, os.path.join(cwd, "static"))
            proc, port, log = start(binary, cwd, ["--db", os.path.join(cwd, "h.db")])
            st, body = get(port, "/") if port else (None, b"")
            stop(proc)
            check(SUITE, "installed_cwd_static_first", st == 200 and body == b"<p>mine</p>", f"{st} {body!r}")
            shutil.rmtree(os.path.join(cwd, "static"))
            man_page(f"{dest}{prefix}/share/man/man1/flashsale.1", "installed")
            syscalls_allowed(binary, f"{dest}{prefix}/lib/systemd/system/flashsale.service", dest)
        systemd_unit(dest, prefix, tag)
        args[args.index("install")] = "uninstall"
        r = run(args, env=env)
        left = installed_files(dest)
        check(SUITE, f"uninstall_{tag}_removes_every_file", r.returncode == 0 and not left, repr(left) + r.stderr)
    finally:
        shutil.rmtree(dest, ignore_errors=True)
        shutil.rmtree(cwd, ignore_errors=True)


def uninstall_guards():
    """A DESTDIR with a space installs and uninstalls whole; a DATADIR that is not
    flashsale's own folder is never removed (the rm -rf must not widen)."""
    dest = tempfile.mkdtemp(prefix="fs destdir ")
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    try:
        base = ["make", "-s", "-C", ROOT, f"DESTDIR={dest}", "PREFIX=/opt/fs"]
        r = run(base + ["install"], timeout=600, env=env)
        n = len(installed_files(dest))
        check(SUITE, "install_destdir_with_space", r.returncode == 0 and n > 5, f"{n} files; {r.stderr}")
        keep = os.path.join(dest, "opt", "keep-me")
        with open(keep, "w") as f:
            f.write("not flashsale's")
        r = run(base + ["uninstall", "DATADIR=/opt"], env=env)
        check(SUITE, "uninstall_refuses_foreign_datadir", r.returncode != 0 and os.path.exists(keep),
              f"exit {r.returncode}; {r.stderr}")
        os.remove(keep)
        r = run(base + ["uninstall"], env=env)
        left = installed_files(dest)
        check(SUITE, "uninstall_destdir_with_space", r.returncode == 0 and not left, repr(left) + r.stderr)
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def main():
    want, lines = version()
    man_page(os.path.join(os.path.dirname(BINARY), "flashsale.1"), "built")
    env_file()
    log_json()
    metrics_promtool(want, lines)
    alerts()
    for prefix in ("/usr/local", "/opt/flashsale"):
        install(prefix)
    uninstall_guards()
    finish()


if __name__ == "__main__":
    main()
