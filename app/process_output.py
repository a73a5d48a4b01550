"""The supervisor event listener of `make run`: each process's output in the terminal, named.

supervisord (see app/runner.py) captures the output of web, worker and clock and sends it as
PROCESS_LOG events; this listener writes every line to its stderr, which supervisord passes to the
terminal, as `name | line`. The event protocol on stdin/stdout is supervisor's own (childutils).
"""

from __future__ import annotations

import sys

from supervisor import childutils


def main() -> None:
    """Print each PROCESS_LOG event's lines with the process name until stdin closes."""
    partial: dict[str, str] = {}
    while True:
        childutils.listener.ready(sys.stdout)
        headers = childutils.get_headers(sys.stdin.buffer.readline().decode())
        # `len` counts bytes (childutils.listener.wait reads it as characters: wrong for UTF-8).
        payload = sys.stdin.buffer.read(int(headers["len"])).decode("utf-8", "replace")
        if headers["eventname"].startswith("PROCESS_LOG"):
            process, data = childutils.eventdata(payload)
            name = process["processname"]
            # A read may end inside a line: keep the rest until the next event of that process.
            lines = (partial.pop(name, "") + data).split("\n")
            if lines[-1]:
                partial[name] = lines[-1]
            for line in lines[:-1]:
                sys.stderr.write(f"{name:<6} | {line}\n")
            sys.stderr.flush()
        childutils.listener.ok(sys.stdout)


if __name__ == "__main__":
    main()
