"""The load test's encrypted upstreams: Debian's unbound on loopback, serving plain DNS, DoT
and DoH from one process, so the `udpub`, `dot` and `doh` variants differ only in the
transport between the engine and the same upstream (docs/encrypted-dns.md).

unbound answers every name under `example.` (all the load's names) from a redirect
zone, without recursion. The certificate is self-signed, made with the `openssl`
command at start (the runtime venv has no `cryptography`), and is the engine's
`ca=` file.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from devtools.load.harness import Processes
from gloryhole_site.testing.unbound import Unbound

TLS_NAME = "loadtest.test"


def start_unbound(work: Path, procs: Processes) -> tuple[subprocess.Popen, dict[str, str]]:
    """Start unbound; returns it and the GLORYHOLE_UPSTREAMS value of each transport."""
    for tool in ("unbound", "openssl"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed (apt-get install {tool}): the encrypted variants need it")
    directory = work / "unbound"
    directory.mkdir()
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={TLS_NAME}",
         "-addext", f"subjectAltName=DNS:{TLS_NAME}"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    server = Unbound(directory, cert, key, redirect=("example",))
    out, err = directory / "unbound.out", directory / "unbound.err"
    proc = procs.start("unbound", server.argv, stdout=out, stderr=err)
    server.wait_listening(proc, err)
    upstreams = {
        "udp": f"127.0.0.1:{server.plain_port}",
        "tls": f"tls://127.0.0.1:{server.tls_port}#{TLS_NAME}?ca={cert}",
        "https": f"https://127.0.0.1:{server.https_port}/dns-query#{TLS_NAME}?ca={cert}",
    }
    return proc, upstreams
