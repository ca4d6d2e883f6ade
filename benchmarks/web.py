"""网页基准 Work lists and patient pages under load (issue 4 benchmark, target p99 < 100 ms).

``python -m benchmarks.web`` (scripts/bench_web):
1. seeds a PostgreSQL database, runs the scheduler's full generation once and ANALYZEs (kept for
   re-runs: ``--reuse``), and creates one doctor per township with a logged-in session. Below
   500,000 patients (the default 100,000, comparable with earlier sessions) the synthetic county
   (registry.synthetic) goes through the importer (registry.importing) into ``jf_bench_web``; from
   500,000 on (``--patients 1000000``: a province of 120 counties, 1,920 townships, 42,240 villages,
   ~520 patients per township) the rows are written set-based (benchmarks/population.py, about
   2–3 minutes at 1,000,000 patients where the importer path did not finish in 15) into
   ``jf_bench_web_<size>`` (``jf_bench_web_1m``); ``--seed sql|import`` chooses, ``--database`` names;
2. starts uvicorn serving ``create_app`` in a subprocess on 127.0.0.1 (uvloop + httptools,
   ``--workers`` processes, each with its own SO_REUSEPORT socket as ``jingfang serve`` does,
   no access log);
3. drives it from a second process: ``--clients`` concurrent keep-alive connections (default 50),
   after an unmeasured ``--warmup`` (default 5 s), for ``--seconds`` (default 30); requests
   alternate a township's work list and a patient page of that township (one of its first 200
   patients), each with that township doctor's session cookie, the doctors in turn. The load
   generator is ``wrk`` (C; a Lua script rotates the URLs and cookies) — installed with apt-get
   when missing — else the Python httpx clients (``--generator python``), which need much of the
   CPU the server would use. Before the load, the work list and a patient page of up to 40
   doctors (spread over the townships) are fetched once and must render;
4. prints requests/s, p50/p99 latency, the number of non-200 answers (counted by the wrk script:
   a redirect to the login page is a failure), CPU per request (web workers, PostgreSQL backends)
   and the load average before and after the run.

Every request is a real page: the session is looked up, the work list comes from the per-worker
cache (its version read in the request's statement) or the database, the patient page reads the
record, and every read writes its audit row (rules.md §8) — on PostgreSQL in one statement per
page (registry/web/fast.py).
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
from pathlib import Path

import sqlalchemy as sa

from benchmarks import scratch
from benchmarks.scratch import TODAY
from registry.config import child_environment, get_settings

DB_NAME = "jf_bench_web"
PATIENTS_PER_DOCTOR = 200  # the patient pages a doctor's requests choose from
CHECKED_DOCTORS = 40  # check_pages: at most this many doctors, spread over the townships
ROOT = Path(__file__).resolve().parent.parent


SQL_SEED_FROM = 500_000  # the set-based seed from this size on; below it the importer (figures comparable with earlier runs)


def default_seed(patients: int) -> str:
    """造数方式 ``import`` below ``SQL_SEED_FROM`` patients, else ``sql``."""
    return "sql" if patients >= SQL_SEED_FROM else "import"


def database_name(patients: int, how: str) -> str:
    """The database of a size and seed: ``jf_bench_web`` for the default run (100,000 patients through
    the importer, as earlier sessions), else ``jf_bench_web_<size>`` (``jf_bench_web_1m``), with
    ``_<seed>`` when the seed is not the size's default; so several can be kept for ``--reuse``."""
    if patients == 100_000 and how == "import":
        return DB_NAME
    size = (f"{patients // 1_000_000}m" if patients % 1_000_000 == 0 else
            f"{patients // 1000}k" if patients % 1000 == 0 else str(patients))
    return f"{DB_NAME}_{size}" + ("" if how == default_seed(patients) else f"_{how}")


def seed(patients: int, how: str = "import", name: str = DB_NAME) -> None:
    """造数 Seed PostgreSQL database ``name`` — through the importer (``import``: the synthetic county's CSV
    files, registry.importing) or set-based (``sql``: a province, benchmarks/population.py) — then run
    the scheduler's full generation once and ANALYZE."""
    from schedules.generation import generate

    engine = scratch.migrated(scratch.recreate_database(name))
    t = time.perf_counter()
    if how == "import":
        with tempfile.TemporaryDirectory() as tmp:
            counts = scratch.load_county(engine, Path(tmp), patients, seed=4, followups_per_patient=4)
        print(f"seeded {counts['patients']:,} patients, {counts['followups']:,} follow-ups through the importer"
              f" in {time.perf_counter() - t:.1f} s")
    else:
        from benchmarks.population import build_province

        shape = build_province(engine, patients, TODAY)
        with engine.connect() as conn:
            followups = conn.execute(sa.text("SELECT count(*) FROM follow_up")).scalar_one()
        print(f"seeded {patients:,} patients, {followups:,} follow-ups set-based (a province: {shape.counties} counties,"
              f" {shape.township_count:,} townships, {shape.village_count:,} villages) in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    generate(engine, as_of=TODAY)
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    print(f"scheduler generated tasks in {time.perf_counter() - t:.1f} s")
    engine.dispose()


def prepare_clients(url: str, out: Path) -> dict:
    """压测账号 One doctor per township (with patients) with a session token, and up to
    ``PATIENTS_PER_DOCTOR`` of the township's patient ids."""
    from sqlmodel import Session

    from registry.accounts import User, hash_password, start_session
    from registry.db import make_engine
    from registry.models import Patient, Region

    engine = make_engine(url)
    plan: dict = {"doctors": []}
    password_hash = hash_password("bench-password")
    # up to PATIENTS_PER_DOCTOR patients of each township, in one statement
    sample = sa.text("""
        SELECT township, array_agg(patient_id ORDER BY patient_id) FROM (
          SELECT v.parent_code AS township, p.patient_id,
                 row_number() OVER (PARTITION BY v.parent_code ORDER BY p.patient_id) AS n
          FROM patient p JOIN region v ON v.code = p.village_code
        ) s WHERE n <= :per GROUP BY township""")
    with Session(engine) as s:
        townships = s.execute(sa.select(Region.code).where(Region.level == "township").order_by(Region.code)).scalars().all()
        patients = {t: list(ids) for t, ids in s.execute(sample, {"per": PATIENTS_PER_DOCTOR})}
        s.execute(sa.text("DELETE FROM web_session"))
        s.execute(sa.text("DELETE FROM app_user WHERE username LIKE 'bench-%'"))
        users = [User(username=f"bench-{code}", password_hash=password_hash, role="township_doctor", region_code=code,
                      display_name=f"医生{code}") for code in townships if patients.get(code)]
        s.add_all(users)
        s.flush()
        for user in users:
            token, _ = start_session(s, user, source="bench")
            plan["doctors"].append({"township": user.region_code, "token": token, "patients": patients[user.region_code]})
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
    engine = make_engine(get_settings().bench_url, pool_size=20, max_overflow=20,
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


WRK_SCRIPT = """
local reqs = {%s}
local threads = 0
local thread_list = {}
function setup(thread)
  thread:set("offset", threads * 997)
  threads = threads + 1
  table.insert(thread_list, thread)
end
local i = 0
non200 = 0
function init(args)
  i = offset or 0
end
function request()
  i = i + 1
  local r = reqs[(i %% #reqs) + 1]
  return wrk.format("GET", r[1], {["Cookie"] = "jf_session=" .. r[2]})
end
-- wrk itself counts only statuses >= 400; a redirect to the login page must count as a failure too
function response(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
end
function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(thread_list) do n = n + (t:get("non200") or 0) end
  io.write(string.format("NON200 %%d\\n", n))
end
"""


def ensure_wrk() -> str | None:
    """压测工具 The wrk binary, installed quietly with apt-get when missing (None when impossible)."""
    import shutil

    found = shutil.which("wrk")
    if found or not shutil.which("apt-get"):
        return found
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=False)
    return shutil.which("wrk")


def wrk_script(plan: dict, path: Path, requests: int | None = None) -> Path:
    """压测脚本 The Lua script: work list and patient page alternately, each township's doctor in turn
    (by default 4,000 requests, or two work lists and two patient pages per doctor when there are
    more than 1,000 doctors, at most 20,000: a province's 1,920 doctors make 7,680, about 0.5 MB)."""
    rng = random.Random(4)
    doctors = plan["doctors"]
    if requests is None:
        requests = min(max(4000, 4 * len(doctors)), 20_000)
    rows = []
    for i in range(requests):
        doctor = doctors[(i // 2) % len(doctors)]
        url = "/worklist" if i % 2 == 0 else f"/patients/{rng.choice(doctor['patients'])}"
        rows.append('{"%s","%s"}' % (url, doctor["token"]))
    path.write_text(WRK_SCRIPT % ",\n".join(rows))
    return path


def _ms(value: str) -> float:
    units = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
    for unit in ("us", "ms", "s", "m"):
        if value.endswith(unit) and value[: -len(unit)].replace(".", "", 1).isdigit():
            return float(value[: -len(unit)]) * units[unit]
    raise ValueError(value)


def parse_wrk(out: str, seconds: float) -> dict:
    """wrk 输出 requests, requests/s, p50/p99 (from ``--latency``) and non-2xx/socket errors."""
    import re

    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))
    done = re.search(r"^\s+(\d+) requests in ([\d.]+)(\w+),", out, re.M)
    elapsed = _ms(done.group(2) + done.group(3)) / 1000
    errors: dict = {}
    non200 = re.search(r"^NON200 (\d+)$", out, re.M)
    if non200 is None:
        raise SystemExit("bench: wrk did not report its non-200 count")
    if int(non200.group(1)):
        errors["non-200"] = int(non200.group(1))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock and any(int(x) for x in sock.groups()):
        errors["socket connect/read/write/timeout"] = "/".join(sock.groups())
    return {"requests": int(done.group(1)), "seconds": elapsed, "rps": int(done.group(1)) / elapsed,
            "p50_ms": _ms(pct["50"]), "p99_ms": _ms(pct["99"]), "errors": errors}


def check_pages(base: str, plan: dict) -> int:
    """预检 The work list and one patient page of every doctor — at most ``CHECKED_DOCTORS``, spread over
    the townships (a province has ~2,000) — answer 200 with the page itself (the sessions are made by
    the same code for all). Returns the number of doctors checked."""
    import urllib.request

    doctors = plan["doctors"]
    step = max(1, -(-len(doctors) // CHECKED_DOCTORS))
    for doctor in doctors[::step]:
        for path, marker in (("/worklist", "今日工作清单"), (f"/patients/{doctor['patients'][0]}", doctor["patients"][0])):
            req = urllib.request.Request(base + path, headers={"Cookie": f"jf_session={doctor['token']}"})
            with urllib.request.urlopen(req, timeout=60) as r:
                body = r.read().decode()
                if r.status != 200 or r.url != base + path or marker not in body:
                    raise SystemExit(f"bench: {path} for {doctor['township']} did not render (status {r.status})")
    return len(doctors[::step])


def _ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0


def cpu_snapshot(server_pid: int, url: str) -> dict[str, dict[int, int]]:
    """CPU 快照 CPU ticks of the uvicorn processes and of the benchmark database's PostgreSQL backends
    (Linux /proc; empty where unreadable)."""
    procs = Path("/proc")
    app = {server_pid: _ticks(server_pid)}
    for stat in procs.glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == server_pid:
                pid = int(stat.parent.name)
                app[pid] = _ticks(pid)
        except (OSError, IndexError, ValueError):
            continue
    pg: dict[int, int] = {}
    try:
        engine = sa.create_engine(scratch.database_url("postgres"))
        with engine.connect() as conn:
            pids = conn.execute(sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :d"),
                                {"d": sa.engine.make_url(url).database}).scalars().all()
        engine.dispose()
        pg = {pid: _ticks(pid) for pid in pids}
    except Exception:  # noqa: BLE001 - the figure is informative only
        pass
    return {"app": app, "pg": pg}


def cpu_ms_per_request(before: dict, after: dict, requests: int) -> dict[str, float]:
    """每请求 CPU Milliseconds of CPU per request in the web workers and in PostgreSQL."""
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    out = {}
    for part in ("app", "pg"):
        ticks = sum(t - before[part].get(pid, 0) for pid, t in after[part].items())
        out[part] = ticks * 1000 / hz / max(requests, 1)
    return out


def drive_wrk(wrk: str, base: str, script: Path, clients: int, seconds: float, warmup: float,
              server_pid: int | None = None, url: str = "") -> dict:
    """wrk 压测 An unmeasured warm-up run, then the measured run (one wrk thread: it needs little CPU)."""
    common = [wrk, "-t1", f"-c{clients}", "--timeout", "60s", "-s", str(script)]
    if warmup > 0:
        subprocess.run(common + [f"-d{max(1, round(warmup))}s", base + "/"], capture_output=True, text=True, check=True)
    before = cpu_snapshot(server_pid, url) if server_pid else None
    out = subprocess.run(common + ["--latency", f"-d{max(1, round(seconds))}s", base + "/"], capture_output=True, text=True,
                         check=True).stdout
    result = parse_wrk(out, seconds)
    if before is not None:
        result["cpu_ms"] = cpu_ms_per_request(before, cpu_snapshot(server_pid, url), result["requests"])
    return result


def main() -> None:
    """网页基准 Seed, serve, drive from a second process, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of unmeasured load first")
    parser.add_argument("--reuse", action="store_true", help="keep the seeded database from an earlier run")
    parser.add_argument("--seed", choices=("auto", "sql", "import"), default="auto",
                        help=f"how to seed: import (the synthetic county through the importer), sql (a province, "
                             f"set-based); auto: import below {SQL_SEED_FROM:,} patients, else sql")
    parser.add_argument("--doctors", type=int, help="only this many township doctors' requests, spread over the townships"
                                                     " (default: every township's; each uvicorn worker caches 256 work lists)")
    parser.add_argument("--database", help="the database name (default: jf_bench_web for 100,000 patients through the "
                                           "importer, else jf_bench_web_<size>, e.g. jf_bench_web_1m)")
    parser.add_argument("--generator", choices=("wrk", "python"), default="wrk",
                        help="load generator: wrk (C, installed with apt-get when missing) or Python httpx clients")
    parser.add_argument("--drive", help=argparse.SUPPRESS)  # internal: the load-generator process
    args = parser.parse_args()
    if args.drive:
        base, plan_path = args.drive.split("|")
        result = asyncio.run(drive(base, json.loads(Path(plan_path).read_text()), args.clients, args.seconds, args.warmup))
        print(json.dumps(result))
        return

    how = default_seed(args.patients) if args.seed == "auto" else args.seed
    name = args.database or database_name(args.patients, how)
    url = scratch.database_url(name)
    if not args.reuse:
        print(f"seed: {'set-based (benchmarks/population.py, a province)' if how == 'sql' else 'through the importer'}"
              f" into {name}{' (--seed auto)' if args.seed == 'auto' else ''}", flush=True)
        seed(args.patients, how, name)
    else:  # an earlier seed: bring its schema up to the current migrations
        if not scratch.database_exists(name):
            raise SystemExit(f"bench: --reuse: database {name} does not exist (run once without --reuse)")
        print(f"reusing database {name}", flush=True)
        scratch.migrated(url).dispose()
    with tempfile.TemporaryDirectory() as tmp:
        plan = prepare_clients(url, Path(tmp) / "plan.json")
        if args.doctors and args.doctors < len(plan["doctors"]):
            step = len(plan["doctors"]) // args.doctors
            plan["doctors"] = plan["doctors"][::step][:args.doctors]
            (Path(tmp) / "plan.json").write_text(json.dumps(plan))
        port = free_port()
        env = child_environment(bench_url=url)
        # the server subprocess imports benchmarks.web:app_factory from the repository root
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        fast = []
        try:
            import httptools  # noqa: F401, PLC0415
            import uvloop  # noqa: F401, PLC0415

            fast = ["--loop", "uvloop", "--http", "httptools"]
        except ImportError:
            pass
        wrk = ensure_wrk() if args.generator == "wrk" else None
        if args.generator == "wrk" and wrk is None:
            print("note: wrk is not installed and apt-get could not install it; using the Python load generator")
        # as `jingfang serve --workers N`: one SO_REUSEPORT socket per worker (registry.web.serving);
        # uvicorn picks uvloop + httptools when installed ("auto")
        server = subprocess.Popen(
            [sys.executable, "-m", "registry.web.serving", "benchmarks.web:app_factory", "--host", "127.0.0.1",
             "--port", str(port), "--workers", str(args.workers)],
            env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    time.sleep(0.1)
            time.sleep(1.0)
            checked = check_pages(base, plan)
            load_before = os.getloadavg()
            # the load comes from a second process
            if wrk is not None:
                result = drive_wrk(wrk, base, wrk_script(plan, Path(tmp) / "bench.lua"), args.clients, args.seconds,
                                   args.warmup, server_pid=server.pid, url=url)
                result["generator"] = "wrk (1 thread)"
            else:
                result = drive_python(base, Path(tmp) / "plan.json", args)
                result["generator"] = "Python httpx clients"
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"web benchmark: {plan['patients']:,} patients on PostgreSQL ({name}), {len(plan['doctors']):,} township doctors"
          f" ({checked} checked first: work list and a patient page render), "
          f"{args.clients} concurrent clients for {args.seconds:.0f} s (after {args.warmup:.0f} s warm-up), "
          f"uvicorn workers={args.workers}{' (uvloop, httptools)' if fast else ''}, load from {result['generator']}")
    print(f"  requests      {result['requests']:,} (work lists and patient pages, half each)")
    print(f"  throughput    {result['rps']:.1f} requests/s")
    print(f"  latency p50   {result['p50_ms']:.1f} ms")
    print(f"  latency p99   {result['p99_ms']:.1f} ms   (target < 100 ms)")
    errors = result["errors"]
    non200 = sum(v for k, v in errors.items() if isinstance(v, int))
    print(f"  non-200       {non200}" + (f"   {errors}" if errors else ""))
    if result.get("cpu_ms"):
        cpu = result["cpu_ms"]
        print(f"  CPU/request   {cpu['app']:.2f} ms web workers + {cpu['pg']:.2f} ms PostgreSQL backends")
    load_after = os.getloadavg()
    print(f"  load average  {load_before[0]:.2f} before, {load_after[0]:.2f} after (1 min; {os.cpu_count()} cores; "
          "other jobs on the machine inflate latency)")


def drive_python(base: str, plan_path: Path, args) -> dict:
    """Python 压测 The httpx load generator (``drive``) in a second Python process."""
    driver = subprocess.run([sys.executable, "-m", "benchmarks.web", "--drive", f"{base}|{plan_path}",
                             "--clients", str(args.clients), "--seconds", str(args.seconds), "--warmup", str(args.warmup)],
                            capture_output=True, text=True, check=True)
    return json.loads(driver.stdout.strip().splitlines()[-1])

if __name__ == "__main__":
    main()
