"""网页基准 Work lists and patient pages under load (issue 4 benchmark, target p99 < 100 ms).

``python -m registry.web.bench`` (scripts/bench_web):
1. seeds a PostgreSQL database with a synthetic county (default 100,000 patients, through the
   importer, registry.importing), runs the scheduler once, and creates one doctor per
   township with a logged-in session (kept for re-runs: ``--reuse``);
2. starts uvicorn serving ``create_app`` in a subprocess on 127.0.0.1;
3. drives it from a second process: ``--clients`` concurrent clients (default 50), after an
   unmeasured ``--warmup`` (default 5 s), for
   ``--seconds`` (default 30), each alternating its township's work list and a patient page;
4. prints requests/s and p50/p99 latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import sqlalchemy as sa

TODAY = date(2026, 11, 23)
DB_NAME = "jf_bench_web"
SERVER = os.environ.get("JINGFANG_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")


def seed(url: str, patients: int) -> None:
    """造数 Seed a PostgreSQL database through the importer and run the scheduler once."""
    from registry.db import make_engine, upgrade
    from registry.importing import import_path
    from registry.synthetic import write_county_csv
    from schedules.generation import generate

    admin = sa.create_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.exec_driver_sql(f"CREATE DATABASE {DB_NAME} ENCODING 'UTF8' TEMPLATE template0")
    admin.dispose()
    engine = make_engine(url)
    upgrade(engine)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        counts = write_county_csv(Path(tmp), patients=patients, seed=4, today=TODAY, followups_per_patient=4)
        import_path(engine, Path(tmp), today=TODAY)
        print(f"seeded {counts['patients']:,} patients, {counts['followups']:,} follow-ups in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    generate(engine, as_of=TODAY)
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    print(f"scheduler generated tasks in {time.perf_counter() - t:.1f} s")
    engine.dispose()


def prepare_clients(url: str, out: Path) -> dict:
    """压测账号 One doctor per township with a session token, and each township's patient ids."""
    from sqlmodel import Session

    from registry.accounts import User, hash_password, start_session
    from registry.db import make_engine
    from registry.models import Patient, Region

    engine = make_engine(url)
    plan: dict = {"doctors": []}
    password_hash = hash_password("bench-password")
    with Session(engine) as s:
        townships = s.execute(sa.select(Region.code).where(Region.level == "township").order_by(Region.code)).scalars().all()
        s.execute(sa.text("DELETE FROM web_session"))
        s.execute(sa.text("DELETE FROM app_user WHERE username LIKE 'bench-%'"))
        for code in townships:
            user = User(username=f"bench-{code}", password_hash=password_hash, role="township_doctor", region_code=code,
                        display_name=f"医生{code}")
            s.add(user)
            s.flush()
            token, _ = start_session(s, user, source="bench")
            village = sa.select(Region.code).where(Region.parent_code == code)
            pids = s.execute(sa.select(Patient.patient_id).where(Patient.village_code.in_(village)).limit(2000)).scalars().all()
            plan["doctors"].append({"township": code, "token": token, "patients": list(pids)})
        s.commit()
        plan["patients"] = s.execute(sa.select(sa.func.count()).select_from(Patient)).scalar_one()
    engine.dispose()
    out.write_text(json.dumps(plan))
    return plan


def free_port() -> int:
    """空闲端口 A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_factory():
    """压测应用 uvicorn factory for the server subprocess (URL and date from the environment)."""
    from registry.db import make_engine
    from registry.web.app import create_app

    # many small concurrent queries: parallel plans only add overhead on a 2-core machine
    engine = make_engine(os.environ["JINGFANG_BENCH_URL"], pool_size=20, max_overflow=20,
                         connect_args={"options": "-c max_parallel_workers_per_gather=0"})
    return create_app(engine, today=lambda: TODAY)


async def drive(base: str, plan: dict, clients: int, seconds: float, warmup: float = 0.0) -> dict:
    """压测 Closed-loop clients fetching work lists and patient pages; latencies in ms."""
    import httpx

    latencies: list[float] = []
    errors: dict[int, int] = {}
    measure_from = time.perf_counter() + warmup
    deadline = measure_from + seconds

    async def client(n: int) -> None:
        rng = random.Random(n)
        doctor = plan["doctors"][n % len(plan["doctors"])]
        cookies = {"jf_session": doctor["token"]}
        async with httpx.AsyncClient(base_url=base, cookies=cookies, timeout=30) as http:
            i = 0
            while time.perf_counter() < deadline:
                path = "/worklist" if i % 2 == 0 else f"/patients/{rng.choice(doctor['patients'])}"
                i += 1
                start = time.perf_counter()
                r = await http.get(path)
                if start < measure_from:  # warm-up: not measured
                    continue
                latencies.append(time.perf_counter() - start)
                if r.status_code != 200:
                    errors[r.status_code] = errors.get(r.status_code, 0) + 1

    await asyncio.gather(*(client(n) for n in range(clients)))
    elapsed = time.perf_counter() - measure_from
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")

    return {"requests": len(latencies), "seconds": elapsed, "rps": len(latencies) / elapsed, "p50_ms": pct(0.50),
            "p99_ms": pct(0.99), "errors": errors}


def main() -> None:
    """网页基准 Seed, serve, drive from a second process, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of unmeasured load first")
    parser.add_argument("--reuse", action="store_true", help="keep the seeded database from an earlier run")
    parser.add_argument("--drive", help=argparse.SUPPRESS)  # internal: the load-generator process
    args = parser.parse_args()
    if args.drive:
        base, plan_path = args.drive.split("|")
        result = asyncio.run(drive(base, json.loads(Path(plan_path).read_text()), args.clients, args.seconds, args.warmup))
        print(json.dumps(result))
        return

    url = f"{SERVER}/{DB_NAME}"
    if not args.reuse:
        seed(url, args.patients)
    with tempfile.TemporaryDirectory() as tmp:
        plan = prepare_clients(url, Path(tmp) / "plan.json")
        port = free_port()
        env = dict(os.environ, JINGFANG_BENCH_URL=url)
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "registry.web.bench:app_factory", "--factory", "--host", "127.0.0.1",
             "--port", str(port), "--workers", str(args.workers), "--log-level", "warning", "--no-access-log"], env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    time.sleep(0.1)
            time.sleep(1.0)
            # the load comes from a second process
            driver = subprocess.run([sys.executable, "-m", "registry.web.bench", "--drive", f"{base}|{Path(tmp) / 'plan.json'}",
                                     "--clients", str(args.clients), "--seconds", str(args.seconds),
                                     "--warmup", str(args.warmup)],
                                    capture_output=True, text=True, check=True)
            result = json.loads(driver.stdout.strip().splitlines()[-1])
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"web benchmark: {plan['patients']:,} patients on PostgreSQL, {len(plan['doctors'])} township doctors, "
          f"{args.clients} concurrent clients for {args.seconds:.0f} s (after {args.warmup:.0f} s warm-up), "
          f"uvicorn workers={args.workers}")
    print(f"  requests      {result['requests']:,} (work lists and patient pages, half each)")
    print(f"  throughput    {result['rps']:.1f} requests/s")
    print(f"  latency p50   {result['p50_ms']:.1f} ms")
    print(f"  latency p99   {result['p99_ms']:.1f} ms   (target < 100 ms)")
    print(f"  non-200       {result['errors'] or 'none'}")


if __name__ == "__main__":
    main()
