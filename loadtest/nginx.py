"""nginx — throw-away nginx servers for the benchmark and the cluster test.

fixed(body): answers every request 200 with a fixed JSON body (the HTTP ceiling).
balancer(ports): round-robin load balancer in front of flashsale nodes.
Both run one worker in a temporary folder on a free loopback port; stop() ends them.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Nginx:
    def __init__(self, http_block):
        self.dir = tempfile.mkdtemp(prefix="flashsale-nginx-")
        self.port = _free_port()
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""worker_processes 1;
daemon off;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log;
worker_rlimit_nofile 20000;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path {self.dir};
  proxy_temp_path {self.dir};
{http_block.replace("PORT", str(self.port))}
}}
""")
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc = subprocess.Popen([nginx, "-c", conf, "-p", self.dir], stderr=subprocess.PIPE)
        for _ in range(50):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def fixed(body):
    return Nginx(f"""  server {{
    listen 127.0.0.1:PORT reuseport backlog=4096;
    location / {{ default_type application/json; return 200 '{body}'; }}
  }}""")


def balancer(ports):
    servers = "\n".join(f"    server 127.0.0.1:{p} max_fails=0;" for p in ports)
    return Nginx(f"""  upstream flashsale {{
{servers}
    keepalive 128;
  }}
  server {{
    listen 127.0.0.1:PORT backlog=4096;
    location / {{
      proxy_pass http://flashsale;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_next_upstream error timeout;
    }}
  }}""")
