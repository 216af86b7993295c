"""Several API processes on one port: the parent binds the socket, forks the workers (each with
its own NATS connection and views) and watches them.

The kernel hands each new connection to one of the workers accepting on the shared socket. When
a worker ends on its own (its NATS connection lost for good, a crash), the parent stops the others
and exits with that worker's code, so that the supervisor starts the whole API afresh, as it does
for a single process.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys
from collections.abc import Callable
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

from tingyu.api.config import ApiSettings

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
STOP_TIMEOUT_S = 15.0

Serve = Callable[[ApiSettings, socket.socket], int]


def listening(host: str, port: int) -> socket.socket:
    """The socket every worker accepts on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _worker(settings: ApiSettings, sock: socket.socket, serve: Serve) -> None:
    with contextlib.suppress(OSError, AttributeError):  # Linux: end with the parent, never orphaned
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    sys.exit(serve(settings, sock))


def run(settings: ApiSettings, count: int, serve: Serve) -> int:
    """Run `count` workers until told to stop (SIGTERM, SIGINT) or one ends; the exit code."""
    sock = listening(settings.host, settings.port)
    context = multiprocessing.get_context("fork")  # each worker builds its app after the fork
    procs: list[BaseProcess] = []
    for index in range(count):
        child = context.Process(target=_worker, args=(settings, sock, serve), name=f"tingyu-api-{index + 1}")
        child.start()
        procs.append(child)
    log.info("api: %d workers on %s:%d", count, settings.host, settings.port)
    asked: list[int] = []  # the signal that asked the API to stop

    def terminate() -> None:
        for proc in procs:
            if proc.pid is not None and proc.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)

    def stop(signum: int, _: FrameType | None) -> None:
        asked.append(signum)
        terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    wait([proc.sentinel for proc in procs])
    ended = next((proc for proc in procs if not proc.is_alive()), None)
    code = ended.exitcode if ended is not None and ended.exitcode is not None else 0
    code = code if code >= 0 else 1  # killed by a signal
    if not asked:
        log.critical("api: worker %s ended (code %s); stopping the others", ended and ended.name, code)
        terminate()
    for proc in procs:
        proc.join(STOP_TIMEOUT_S)
        if proc.is_alive():
            proc.kill()
            proc.join()
    sock.close()
    return 0 if asked else code or 1
