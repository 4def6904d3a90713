"""Debian's unbound as an independent DoT and DoH server on loopback, for the upstream tests.

It answers only the local data it is given (`local-zone` static, no recursion, no
root hints used) and never queries anything: `do-not-query-localhost`, and no
name outside its zone is ever asked in the tests. Runs in the foreground as the
current user, in a temporary directory, on free ports.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path


def available() -> bool:
    return shutil.which("unbound") is not None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Unbound:
    """`tls_port` serves DNS over TLS, `https_port` DNS over HTTPS at /dns-query."""

    def __init__(self, directory: Path, cert: Path, key: Path, records: dict[str, str]) -> None:
        self.directory = Path(directory)
        self.tls_port = _free_port()
        self.https_port = _free_port()
        data = "\n".join(f'  local-data: "{name}. 300 IN A {address}"' for name, address in records.items())
        zones = sorted({name.split(".", 1)[1] for name in records})
        zone_lines = "\n".join(f'  local-zone: "{zone}." static' for zone in zones)
        self.config = self.directory / "unbound.conf"
        self.config.write_text(f"""server:
  interface: 127.0.0.1@{self.tls_port}
  interface: 127.0.0.1@{self.https_port}
  tls-port: {self.tls_port}
  https-port: {self.https_port}
  http-endpoint: "/dns-query"
  tls-service-key: "{key}"
  tls-service-pem: "{cert}"
  username: ""
  chroot: ""
  directory: "{self.directory}"
  pidfile: ""
  use-syslog: no
  logfile: ""
  do-daemonize: no
  do-ip6: no
  num-threads: 1
  do-not-query-localhost: yes
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  auto-trust-anchor-file: ""
  verbosity: 1
{zone_lines}
{data}
remote-control:
  control-enable: no
""")
        self.log = self.directory / "unbound.log"
        self._proc: subprocess.Popen | None = None

    def start(self) -> Unbound:
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(["unbound", "-d", "-c", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        for port in (self.tls_port, self.https_port):
            while True:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"unbound exited: {self.log.read_text()[-2000:]}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"unbound did not listen: {self.log.read_text()[-2000:]}") from None
                    time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None

    def __enter__(self) -> Unbound:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
