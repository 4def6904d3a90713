"""Debian's unbound as an independent DoT and DoH server on loopback, for the upstream tests
and the load test's encrypted-upstream variants (devtools/load/encrypted.py).

It answers only the local data it is given (`local-zone` static or redirect, no
recursion) and never queries anything: `do-not-query-localhost`, and no name
outside its zones is ever asked. Runs in the foreground as the current user, in
a temporary directory, on free loopback ports.
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
    """`tls_port` serves DNS over TLS, `https_port` DNS over HTTPS at /dns-query, `plain_port`
    plain DNS over UDP and TCP.

    `records` maps names to IPv4 addresses (each in a static zone of its parent);
    `redirect` names zones whose every name is answered with `redirect_address` (and
    ::1 for AAAA), which is what a load test with random names needs."""

    def __init__(self, directory: Path, cert: Path, key: Path, records: dict[str, str] | None = None,
                 redirect: tuple[str, ...] = (), redirect_address: str = "192.0.2.1",
                 threads: int = 1) -> None:  # fmt: skip
        self.directory = Path(directory)
        self.tls_port = _free_port()
        self.https_port = _free_port()
        self.plain_port = _free_port()
        records = records or {}
        lines = [f'  local-zone: "{zone}." static' for zone in sorted({n.split(".", 1)[1] for n in records})]
        lines += [f'  local-data: "{name}. 300 IN A {address}"' for name, address in records.items()]
        for zone in redirect:
            lines += [
                f'  local-zone: "{zone}." redirect',
                f'  local-data: "{zone}. 300 IN A {redirect_address}"',
                f'  local-data: "{zone}. 300 IN AAAA ::1"',
            ]
        local = "\n".join(lines)
        self.config = self.directory / "unbound.conf"
        self.config.write_text(f"""server:
  interface: 127.0.0.1@{self.tls_port}
  interface: 127.0.0.1@{self.https_port}
  interface: 127.0.0.1@{self.plain_port}
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
  num-threads: {threads}
  do-not-query-localhost: yes
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  auto-trust-anchor-file: ""
  verbosity: 1
{local}
remote-control:
  control-enable: no
""")
        self.argv = ["unbound", "-d", "-c", str(self.config)]
        self.log = self.directory / "unbound.log"
        self._proc: subprocess.Popen | None = None

    def wait_listening(self, proc: subprocess.Popen, log: Path, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        for port in (self.tls_port, self.https_port, self.plain_port):
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"unbound exited: {log.read_text(errors='replace')[-2000:]}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"unbound did not listen: {log.read_text(errors='replace')[-2000:]}"
                        ) from None
                    time.sleep(0.05)

    def start(self) -> Unbound:
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(self.argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        self.wait_listening(self._proc, self.log)
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
