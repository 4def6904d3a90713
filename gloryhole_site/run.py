"""`make run`: prepare the database, then run the DNS engine and the web UI in the foreground.

    python -m gloryhole_site.run [--dns-host H] [--dns-port P] [--web 127.0.0.1:8000] [--workers 2]

Steps: migrate and collectstatic (quietly), ensureadmin (a first-run password,
boxed, or how to reset it), then `manage.py rundns` and gunicorn side by side:
the password is the last thing printed before their "listening" lines. Ctrl-C (or SIGTERM) stops
both; if either exits on its own the other is stopped too, and the launcher
exits with the first one's status, so a supervisor sees the failure.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from dnsengine.runtime.signals import signal_events

BASE_DIR = Path(__file__).resolve().parent.parent
STOP_GRACE_SECONDS = 15.0


def _manage(*args: str) -> list[str]:
    return [sys.executable, str(BASE_DIR / "manage.py"), *args]


def prepare_steps(web: str) -> list[list[str]]:
    """The one-off steps, in order; each must succeed before anything serves.

    migrate's ~25 "Applying ..." lines on a first run would push the admin
    password off the screen, so it runs quietly (errors still show) and
    ensureadmin comes last.
    """
    return [
        _manage("migrate", "--noinput", "--verbosity", "0"),
        _manage("collectstatic", "--noinput", "--verbosity", "0"),
        _manage("ensureadmin", "--login-url", f"http://{web}/"),
    ]


def without_traceback(stderr: str) -> str:
    """A failed step's stderr, a Python traceback reduced to the exception's own line.

    Frames are indented and the exception's message is not (its continuation
    lines, as libpq's, are): keep from the last unindented line on, as one line.
    """
    if "Traceback (most recent call last):" not in stderr:
        return stderr.rstrip()
    lines = stderr.rstrip().splitlines()
    start = max(i for i, line in enumerate(lines) if line[:1].strip())
    return " ".join(" ".join(lines[start:]).split())


def prepare(web: str) -> None:
    print("[run] preparing: migrate, collectstatic, ensureadmin", flush=True)
    for step in prepare_steps(web):
        # stderr is held back so that a failure (PostgreSQL down, say) reads as one line.
        result = subprocess.run(step, cwd=BASE_DIR, stderr=subprocess.PIPE, text=True)
        if result.returncode != 0:
            print(without_traceback(result.stderr), file=sys.stderr, flush=True)
            raise subprocess.CalledProcessError(result.returncode, step)
        sys.stderr.write(result.stderr)


def commands(args: argparse.Namespace) -> dict[str, list[str]]:
    return {
        "rundns": _manage("rundns", "--host", args.dns_host, "--port", str(args.dns_port)),
        "gunicorn": [
            sys.executable,
            "-m",
            "gunicorn",
            "gloryhole_site.wsgi",
            "--bind",
            args.web,
            "--workers",
            str(args.workers),
            "--access-logfile",
            "-",
            # A CSV export streams for a while; the default 30 s would cut a large one off.
            "--timeout",
            "120",
        ],
    }


def supervise(procs: dict[str, subprocess.Popen], stop: threading.Event) -> int:
    """Wait until a signal or one child's exit, then stop the rest; the exit status to report."""
    first_exit: int | None = None
    while not stop.is_set():
        for name, proc in procs.items():
            code = proc.poll()
            if code is not None:
                print(f"[run] {name} exited with status {code}; stopping the others", flush=True)
                first_exit = code or 1
                stop.set()
                break
        stop.wait(0.2)
    for name, proc in procs.items():
        if proc.poll() is None:
            print(f"[run] stopping {name} (pid {proc.pid})", flush=True)
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for name, proc in procs.items():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"[run] {name} did not stop within {STOP_GRACE_SECONDS:.0f} s; killing it", flush=True)
            proc.kill()
            proc.wait()
    return first_exit or 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dns-host", default=os.environ.get("GLORYHOLE_DNS_HOST", "127.0.0.1"))
    parser.add_argument("--dns-port", type=int, default=int(os.environ.get("GLORYHOLE_DNS_PORT", "5300")))
    parser.add_argument("--web", default=os.environ.get("GLORYHOLE_WEB_BIND", "127.0.0.1:8000"), help="host:port")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--skip-prepare", action="store_true", help="no migrate/ensureadmin/collectstatic")
    args = parser.parse_args(argv)

    os.chdir(BASE_DIR)
    if not args.skip_prepare:
        try:
            prepare(args.web)
        except subprocess.CalledProcessError as exc:
            step = exc.cmd[2]
            hint = " (is the database up, and DATABASE_URL right?)" if step == "migrate" and exc.returncode == 1 else ""
            print(f"[run] manage.py {step} failed with status {exc.returncode}{hint}", file=sys.stderr)
            return exc.returncode or 1

    # Ctrl-C reaches the children too (same process group); the signal only makes the
    # launcher stop waiting and make sure they are gone. Through the relay: Event.set()
    # inside a handler can deadlock the wait below (dnsengine/runtime/signals.py).
    stop = threading.Event()
    signal_events({signal.SIGINT: stop, signal.SIGTERM: stop})
    procs: dict[str, subprocess.Popen] = {}
    for name, cmd in commands(args).items():
        procs[name] = subprocess.Popen(cmd, cwd=BASE_DIR)
    print(
        f"[run] DNS on {args.dns_host}:{args.dns_port}, web UI on http://{args.web}/ — Ctrl-C stops both",
        flush=True,
    )
    return supervise(procs, stop)


if __name__ == "__main__":
    sys.exit(main())
