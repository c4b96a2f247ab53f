"""pgserver — a throw-away PostgreSQL cluster in a temporary folder, on a free loopback port.

PostgreSQL refuses to run as root, so as root it runs as the 'postgres' user (from
Debian's package).  Used by tests/test_cluster.py, and by tests/run.sh to run the
black-box suites against PostgreSQL:

    python3 tests/pgserver.py -- python3 tests/test_api.py
runs the command with FLASHSALE_TEST_PG set to the cluster's base URI, then stops it.
"""
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def pg_bin(name):
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is missing (make deps-pg installs it)")
    return found[-1]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class PgServer:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="flashsale-pg-")
        self.port = free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.uri = f"postgresql://flashsale@127.0.0.1:{self.port}"

    def start(self):
        if self.as_user:
            shutil.chown(self.dir, user="postgres")
        data = os.path.join(self.dir, "data")
        subprocess.run(self.as_user + [pg_bin("initdb"), "-D", data, "-A", "trust", "-U", "flashsale", "-E", "UTF8"],
                       check=True, capture_output=True)
        return self.restart()

    def restart(self):
        """Starts the cluster (again, after halt(): same data, same port)."""
        data = os.path.join(self.dir, "data")
        # fsync stays on: the durability claims are tested here too.
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200"
        subprocess.run(self.as_user + [pg_bin("pg_ctl"), "-D", data, "-o", opts, "-l",
                                       os.path.join(self.dir, "log"), "-w", "start"], check=True, capture_output=True)
        for _ in range(100):
            if subprocess.run(["psql", "-X", "-q", f"{self.uri}/postgres", "-c", "SELECT 1"],
                              capture_output=True).returncode == 0:
                return self
            time.sleep(0.1)
        raise RuntimeError("PostgreSQL did not start: " + open(os.path.join(self.dir, "log")).read()[-2000:])

    def create_db(self, name):
        subprocess.run(["psql", "-X", "-q", f"{self.uri}/postgres", "-c", f"CREATE DATABASE {name}"], check=True,
                       capture_output=True)
        return f"{self.uri}/{name}"

    def halt(self):
        """pg_ctl stop -m immediate, keeping the data: a crash, recovered at restart()."""
        data = os.path.join(self.dir, "data")
        return subprocess.run(self.as_user + [pg_bin("pg_ctl"), "-D", data, "-m", "immediate", "stop"],
                              capture_output=True).returncode

    def stop(self):
        self.halt()
        shutil.rmtree(self.dir, ignore_errors=True)


if __name__ == "__main__":
    if "--" not in sys.argv:
        sys.exit("usage: pgserver.py -- COMMAND...")
    cmd = sys.argv[sys.argv.index("--") + 1:]
    pg = PgServer().start()
    try:
        rc = subprocess.run(cmd, env=dict(os.environ, FLASHSALE_TEST_PG=pg.uri)).returncode
    finally:
        pg.stop()
    sys.exit(rc)
