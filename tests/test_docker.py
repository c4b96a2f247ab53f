"""docker/: no Docker engine runs here, so the files are checked in the cluster test's
terms: the compose client validates both compose files, and the Dockerfile's build
stage is replayed on this machine (the same packages as `make deps`, the same
command, from only what the Dockerfile copies), and the result must run.
Usage: tests/test_docker.py
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ROOT, Server, check, finish  # noqa: E402

SUITE = "docker"
DOCKER = os.path.join(ROOT, "docker")


def compose(file, token="t0ken"):
    env = dict(os.environ)
    env.pop("FLASHSALE_ADMIN_TOKEN", None)
    if token:
        env["FLASHSALE_ADMIN_TOKEN"] = token
    return subprocess.run(["docker-compose", "-f", os.path.join(DOCKER, file), "config"], capture_output=True,
                          text=True, env=env)


def compose_files():
    if not shutil.which("docker-compose"):
        check(SUITE, "docker_compose_installed", False, "docker-compose missing (make deps-pg)")
        return
    r = compose("docker-compose.yml")
    check(SUITE, "single_node_compose_valid", r.returncode == 0 and "flashsale-data:/var/lib/flashsale" in r.stdout,
          r.stderr + r.stdout[:500])
    r = compose("docker-compose.yml", token=None)
    check(SUITE, "admin_token_required", r.returncode != 0 and "FLASHSALE_ADMIN_TOKEN" in r.stderr, r.stderr)
    r = compose("docker-compose.cluster.yml")
    services = set(re.findall(r"^  (\w+):$", r.stdout, re.M))
    check(SUITE, "cluster_compose_valid", r.returncode == 0
          and {"postgres", "node1", "node2", "node3", "nginx", "prometheus"} <= services, r.stderr + repr(services))
    check(SUITE, "cluster_nodes_on_postgresql", r.stdout.count("FLASHSALE_DB: postgresql://") == 3, r.stdout[:800])
    check(SUITE, "cluster_waits_for_healthy_postgres", r.stdout.count("condition: service_healthy") == 3)
    nginx_conf = open(os.path.join(DOCKER, "nginx.conf")).read()
    prom = open(os.path.join(DOCKER, "prometheus.yml")).read()
    check(SUITE, "nginx_balances_every_node", all(f"server node{i}:8080" in nginx_conf for i in (1, 2, 3)))
    check(SUITE, "prometheus_scrapes_every_node", all(f"node{i}:8080" in prom for i in (1, 2, 3)))


def dockerfile():
    text = open(os.path.join(DOCKER, "Dockerfile")).read()
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    check(SUITE, "multi_stage_debian12_slim", stages == ["debian:12-slim", "debian:12-slim"], repr(stages))
    user = re.findall(r"^USER (\S+)", text, re.M)
    check(SUITE, "runs_as_non_root", user and user[-1] not in ("root", "0"), repr(user))
    check(SUITE, "healthcheck_on_healthz", re.search(r"^HEALTHCHECK .*\n?.*/healthz", text, re.M) is not None)
    check(SUITE, "database_on_volume", "VOLUME /var/lib/flashsale" in text
          and "FLASHSALE_DB=/var/lib/flashsale/flashsale.db" in text)
    check(SUITE, "final_image_binary_and_static_only",
          re.findall(r"^COPY (?:--from=build )?(\S+)", text.split("FROM debian:12-slim\n")[-1], re.M)
          == ["/src/build/flashsale", "static"], "")
    build, run = text.split("\nFROM debian:12-slim\n")
    build_pkgs = set(re.search(r"install -y --no-install-recommends \\\n(.*?)\\\n &&", build, re.S).group(1).split())
    makefile = open(os.path.join(ROOT, "Makefile")).read()
    deb_build = set(re.search(r"^DEB_BUILD\s*:=\s*(.*)$", makefile, re.M).group(1).split()) - {"sqlite3"}
    check(SUITE, "build_stage_same_packages_as_make_deps", build_pkgs == deb_build, f"{build_pkgs} vs {deb_build}")
    run_pkgs = re.search(r"install -y --no-install-recommends \\\n(.*?)\\\n &&", run, re.S).group(1).split()
    missing = [p for p in run_pkgs if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]
    check(SUITE, "runtime_packages_exist_in_debian12", not missing, f"not installed here: {missing}")
    # replay the build stage: only what it copies, the very command it runs
    copies = re.findall(r"^COPY (\S+) ", build, re.M)
    command = re.search(r"^RUN (make .*)$", build, re.M).group(1)
    tmp = tempfile.mkdtemp(prefix="flashsale-docker-")
    try:
        for path in copies:
            src = os.path.join(ROOT, path)
            (shutil.copytree if os.path.isdir(src) else shutil.copy)(src, os.path.join(tmp, path))
        r = subprocess.run(command, shell=True, cwd=tmp, capture_output=True, text=True)
        check(SUITE, "build_stage_command_builds", r.returncode == 0 and os.path.exists(f"{tmp}/build/flashsale"),
              r.stdout[-1500:] + r.stderr[-1500:])
        if r.returncode == 0:
            srv = Server(binary=f"{tmp}/build/flashsale", env={"FLASHSALE_BIND": "127.0.0.1"})
            try:
                srv.start()
                check(SUITE, "built_binary_serves", srv.client().get("/healthz").status == 200)
                srv.stop()
            finally:
                srv.cleanup()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    compose_files()
    dockerfile()
    finish()


if __name__ == "__main__":
    main()
