"""多进程服务 Several uvicorn worker processes, each listening on its own SO_REUSEPORT socket.

uvicorn's ``--workers`` shares one listening socket between the workers: whichever wakes first
accepts, so the long-lived keep-alive connections opened in a burst can split unevenly (17 / 33 of
50 seen in the issue 4 benchmark) and the busier worker's requests wait about twice as long. Here
each worker binds its own socket with ``SO_REUSEPORT`` and the kernel spreads new connections over
them by a hash of the connection's addresses (the way nginx ``reuseport`` does).

The supervisor (``run``) first checks with a plain bind that nothing else holds the port (with
``SO_REUSEPORT`` a second server would otherwise share the port silently), starts the workers
(``spawn``: a fresh interpreter each), restarts a worker that dies, gives up when workers keep dying
right after start (bad configuration), and stops them all on SIGINT / SIGTERM. Where the platform
has no ``SO_REUSEPORT``, uvicorn's own shared-socket supervisor is used.
"""

from __future__ import annotations

import multiprocessing
import signal
import socket
import sys
import time

from registry.errors import InvalidInput

QUICK_EXIT_SECONDS = 5.0  # a worker that dies sooner than this after its start counts as failing
MAX_QUICK_EXITS = 3


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens on (host, port): a plain bind without SO_REUSEPORT fails."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) with SO_REUSEPORT; uvicorn calls ``listen`` on it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _worker(app: str, host: str, port: int, options: dict) -> None:  # runs in the child process
    import uvicorn  # noqa: PLC0415

    sock = listening_socket(host, port)
    uvicorn.Server(uvicorn.Config(app, factory=True, host=host, port=port, **options)).run(sockets=[sock])


def run(app: str, *, host: str, port: int, workers: int, **options) -> int:
    """Serve the app factory ``app`` ("module:function") from ``workers`` processes until stopped.

    ``options`` go to ``uvicorn.Config`` (log_level, access_log, loop, http, ...). Returns the exit
    status: 0 when stopped by a signal, 1 when workers kept dying at start.
    """
    if not hasattr(socket, "SO_REUSEPORT"):  # pragma: no cover - not Linux
        import uvicorn  # noqa: PLC0415

        uvicorn.run(app, factory=True, host=host, port=port, workers=workers, **options)
        return 0
    if port_in_use(host, port):
        raise InvalidInput.single("PORT_IN_USE", f"端口 {host}:{port} 已被占用（另一个服务正在监听）",
                                  column="port", value=str(port))
    ctx = multiprocessing.get_context("spawn")

    def start():
        process = ctx.Process(target=_worker, args=(app, host, port, options), daemon=False)
        process.start()
        return process, time.monotonic()

    procs = [start() for _ in range(workers)]
    stopping = False

    def stop(signum, frame):
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    quick_exits, status = 0, 0
    try:
        while not stopping:
            for i, (process, started) in enumerate(procs):
                if process.is_alive():
                    continue
                if time.monotonic() - started < QUICK_EXIT_SECONDS:
                    quick_exits += 1
                if quick_exits >= MAX_QUICK_EXITS:
                    print(f"网页进程启动后反复退出（退出码 {process.exitcode}），停止服务", file=sys.stderr)
                    stopping, status = True, 1
                    break
                print(f"网页进程 {process.pid} 已退出（退出码 {process.exitcode}），重新启动", file=sys.stderr)
                procs[i] = start()
            time.sleep(0.2)
    finally:
        for process, _ in procs:
            if process.is_alive():
                process.terminate()
        for process, _ in procs:
            process.join(timeout=30)
            if process.is_alive():  # pragma: no cover - a worker that ignores SIGTERM
                process.kill()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return status


def main(argv: list[str] | None = None) -> None:
    """``python -m registry.web.serving APP --port P --workers N`` (the web benchmark's server)."""
    import argparse  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("app", help="app factory, module:function")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    sys.exit(run(args.app, host=args.host, port=args.port, workers=args.workers, log_level="warning",
                 access_log=False))


__all__ = ["run", "port_in_use", "listening_socket"]

if __name__ == "__main__":
    main()
