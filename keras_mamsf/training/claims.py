"""Atomic run claims, so that several workers can share one output folder and no run is done twice.

A worker owns a run folder while it holds the newest claim file `claim.K` in it (K = 1, 2, ...) and
removes it when it is done with the run (finished or failed).
Claiming is `open(O_CREAT | O_EXCL)` of the next K: of any number of workers (processes, Slurm
array tasks, machines on one shared file system) exactly one creates a given file. A claim is
stale when its owner is gone: on the same host, when its process no longer exists; elsewhere,
when its file has not been touched for `stale_after` seconds (the owner touches it every
`heartbeat` seconds while it trains). A stale claim is taken over by creating `claim.K+1`, so
two workers that both judge it stale still cannot both win.
"""

import json
import os
import socket
import threading
import time

CLAIM_PREFIX = "claim."


def worker_id():
    return f"{socket.gethostname()}:{os.getpid()}"


def _claims(run_dir):
    numbers = []
    for name in os.listdir(run_dir) if os.path.isdir(run_dir) else []:
        if name.startswith(CLAIM_PREFIX) and name[len(CLAIM_PREFIX):].isdigit():
            numbers.append(int(name[len(CLAIM_PREFIX):]))
    return sorted(numbers)


def _alive(host, pid):
    if host != socket.gethostname():
        return None  # unknown: judged by the heartbeat
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(path, stale_after):
    try:
        with open(path, encoding="utf-8") as handle:
            owner = json.load(handle)
        age = time.time() - os.stat(path).st_mtime
    except (FileNotFoundError, json.JSONDecodeError):
        return False  # being written or replaced right now: not ours to judge
    alive = _alive(owner.get("host"), int(owner.get("pid", -1)))
    if alive is not None:
        return not alive
    return age > stale_after


class Claim:
    """A held claim on a run folder; `release()` (or leaving the `with` block) lets it go.

    Use `try_claim(run_dir)`; while held, a daemon thread touches the claim file every
    `heartbeat` seconds so that workers on other hosts see the owner is alive.
    """

    def __init__(self, path, heartbeat):
        self.path = path
        self.took_over = os.path.basename(path) != f"{CLAIM_PREFIX}1"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(heartbeat,), daemon=True)
        self._thread.start()

    def _beat(self, heartbeat):
        while not self._stop.wait(heartbeat):
            try:
                os.utime(self.path)
            except FileNotFoundError:
                return

    def release(self):
        """Stops the heartbeat and removes the claim file: the run is free again (a finished run is
        recognised by its summary.json, not by a claim)."""
        self._stop.set()
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def try_claim(run_dir, extra=None, stale_after=900.0, heartbeat=60.0):
    """A `Claim` on `run_dir`, or None when another live worker holds it."""
    os.makedirs(run_dir, exist_ok=True)
    while True:
        numbers = _claims(run_dir)
        if numbers and not is_stale(os.path.join(run_dir, f"{CLAIM_PREFIX}{numbers[-1]}"), stale_after):
            return None
        path = os.path.join(run_dir, f"{CLAIM_PREFIX}{(numbers[-1] if numbers else 0) + 1}")
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            continue  # another worker got this number first: look again
        host, pid = worker_id().rsplit(":", 1)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump({"host": host, "pid": int(pid), "time": time.time(), **(extra or {})}, handle)
        return Claim(path, heartbeat)
