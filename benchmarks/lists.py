"""五单基准 Benchmark of the 五单 (issue 17): one township's five lists (PDF + XLSX) as a new
``jingfang lists`` process against ``jingfang tasks --json`` for the same township (a new process
too), and a county's Monday run (every township's lists, ``schedules.jobs.run_weekly_lists`` in a
new process) against ``tasks --json`` for the whole county.

The synthetic county (``registry.synthetic``, 12 townships, ~3,000 patients by default) is
written as contract.md CSV files and imported into a scratch PostgreSQL database
(``JINGFANG_BENCH_PG``, ``jf_bench_lists``, dropped afterwards); tasks are generated as of the
week's Monday. The default week is the June 30 health-check wave (2026-06-29), the heaviest
随访任务单 of the year. The machine may be shared: each measurement is taken ``--rounds`` times,
alternating, and every figure is printed with the load average. Targets (printed, not asserted):
one township ≤ 3× ``tasks --json``; the county's Monday run ≤ 30 s on 2 cores.
Usage: scripts/bench_lists [--patients 3000] [--week 2026-06-29] [--rounds 2] [--township CODE]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import sqlalchemy as sa

from benchmarks.scratch import migrated, scratch_database

DB = "jf_bench_lists"
# the weekly archive (schedules/models.py): cleared before each measured run, so every round renders
ARCHIVE_TABLES = ("list_download", "list_sign_in", "list_issue_row", "list_issue_file", "list_issue")
ROOT = Path(__file__).resolve().parent.parent


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env




class Seconds(float):
    """Wall seconds of a run, with ``cpu``: the CPU seconds (user + system) of the process and its
    children — steadier than wall time on a shared machine."""

    cpu: float = 0.0


def timed(args: list[str]) -> Seconds:
    """Wall (and CPU) time of ``python args`` as a new process (fails loudly when it fails)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, *args], cwd=ROOT, env=_env(), capture_output=True, text=True)
    took = Seconds(time.perf_counter() - started)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    took.cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{result.stderr}")
    return took


def jingfang(*args: str) -> list[str]:
    return ["-m", "jingfang.cli", *args]


def load() -> str:
    return f"load average {os.getloadavg()[0]:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=3000)
    parser.add_argument("--week", default="2026-06-29", help="a day of the week (its Monday is used)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--township", help="the township of the one-township figures (default: the largest)")
    args = parser.parse_args()
    day = date.fromisoformat(args.week)
    from registry.importing import import_path  # noqa: PLC0415
    from registry.synthetic import write_county_csv  # noqa: PLC0415
    from schedules.generation import generate  # noqa: PLC0415
    from schedules.jobs import week_start  # noqa: PLC0415

    monday = week_start(day)
    with tempfile.TemporaryDirectory() as tmp, scratch_database(DB) as url:
        tmp = Path(tmp)
        counts = write_county_csv(tmp / "data", patients=args.patients, seed=20261123, today=monday)
        engine = migrated(url)
        import_path(engine, tmp / "data", today=monday)
        generate(engine, as_of=monday)
        with engine.connect() as conn:
            towns = conn.execute(sa.text(
                "SELECT t.code, count(p.patient_id) AS n FROM region t JOIN region v ON v.parent_code = t.code "
                "JOIN patient p ON p.village_code = v.code WHERE t.level = 'township' GROUP BY t.code ORDER BY n DESC, t.code"
            )).all()
            county = conn.execute(sa.text("SELECT code FROM region WHERE level = 'county'")).scalar_one()
        engine.dispose()
        township = args.township or towns[0].code
        print(f"五单 benchmark: {counts['patients']:,} patients, {counts['followups']:,} follow-ups, {len(towns)} townships; "
              f"week of {monday}; township {township} ({dict((t.code, t.n) for t in towns)[township]} patients); "
              f"{os.cpu_count()} CPUs, {load()}")
        tasks_t, lists_t, county_tasks_t, county_t = [], [], [], []

        def forget_issued() -> None:
            """Every round renders: a week already issued is served from its archive (issue 15)."""
            with engine.begin() as conn:
                conn.execute(sa.text(f"TRUNCATE {', '.join(ARCHIVE_TABLES)} CASCADE"))

        for r in range(args.rounds):
            forget_issued()
            tasks_t.append(timed(jingfang("tasks", "--as-of", str(monday), "--region", township, "--json", "--db", url)))
            lists_t.append(timed(jingfang("lists", "--week", str(monday), "--township", township,
                                          "--out", str(tmp / f"one{r}"), "--db", url)))
            print(f"  round {r + 1}: tasks --json {tasks_t[-1]:.2f} s (CPU {tasks_t[-1].cpu:.2f} s), lists {lists_t[-1]:.2f} s "
                  f"(CPU {lists_t[-1].cpu:.2f} s); ratio {lists_t[-1] / tasks_t[-1]:.1f} wall, "
                  f"{lists_t[-1].cpu / tasks_t[-1].cpu:.1f} CPU; {load()}", flush=True)
        archived = timed(jingfang("lists", "--week", str(monday), "--township", township,
                                  "--out", str(tmp / "archived"), "--db", url))
        print(f"  the same township's week again, served from the archive: {archived:.2f} s (CPU {archived.cpu:.2f} s)"
              f" (information)", flush=True)
        for r in range(args.rounds):
            forget_issued()
            county_tasks_t.append(timed(jingfang("tasks", "--as-of", str(monday), "--region", county, "--json", "--db", url)))
            county_t.append(timed(["-c", "import sys; from schedules.jobs import run_weekly_lists; "
                                         "run_weekly_lists(sys.argv[1], sys.argv[2], sys.argv[3], 'bench')",
                                   url, str(tmp / f"county{r}"), str(monday)]))
            print(f"  round {r + 1}: county tasks --json {county_tasks_t[-1]:.2f} s (CPU {county_tasks_t[-1].cpu:.2f} s), "
                  f"Monday run {county_t[-1]:.2f} s (CPU {county_t[-1].cpu:.2f} s, so ≥ {county_t[-1].cpu / 2:.1f} s on 2 "
                  f"idle cores); {load()}", flush=True)
        files = sorted(p.name for p in (tmp / "one0").iterdir())
        pages = 0
        for pdf in (tmp / "one0").glob("*.pdf"):
            info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True).stdout
            pages += int(next(line.split()[1] for line in info.splitlines() if line.startswith("Pages:")))
        med = statistics.median
        print(f"one township: {len(files)} files, {pages} PDF pages; tasks --json median {med(tasks_t):.2f} s, "
              f"lists median {med(lists_t):.2f} s, ratio {med(lists_t) / med(tasks_t):.1f} (target ≤ 3)")
        print(f"county Monday run ({len(towns)} townships): median {med(county_t):.2f} s (target ≤ 30 s), "
              f"county tasks --json median {med(county_tasks_t):.2f} s, ratio {med(county_t) / med(county_tasks_t):.1f}; {load()}")


if __name__ == "__main__":
    main()
