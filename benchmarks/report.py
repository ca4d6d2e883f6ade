"""月报基准 Benchmark of the monthly report (issue 17): ``jingfang report`` as a new process
against ``jingfang rates --json`` for the same region and month (a new process too); target
≤ 3× (printed, not asserted).

The synthetic county (``registry.synthetic``, ~3,000 patients) is imported into a scratch
PostgreSQL database (``JINGFANG_BENCH_PG``, ``jf_bench_report``, dropped afterwards). Each
figure is taken ``--rounds`` times, alternating, with wall and CPU seconds and the load average,
after one report that is printed but not counted: the first report after the import builds the
patient-month state of the trend's trailing months, which on a live register the scheduler's
``publish_month`` has done on the 1st.
Usage: scripts/bench_report [--patients 3000] [--month 2026-05] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from datetime import date
from pathlib import Path

import sqlalchemy as sa

from benchmarks.lists import jingfang, load, timed
from benchmarks.scratch import migrated, scratch_database

DB = "jf_bench_report"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=3000)
    parser.add_argument("--month", default="2026-05")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from registry.importing import import_path  # noqa: PLC0415
    from registry.periods import Period  # noqa: PLC0415
    from registry.synthetic import write_county_csv  # noqa: PLC0415

    today = Period.parse(args.month).as_of.replace(day=1)
    today = date(today.year + (today.month == 12), today.month % 12 + 1, 1)  # the 1st after the month: closed
    with tempfile.TemporaryDirectory() as tmp, scratch_database(DB) as url:
        tmp = Path(tmp)
        counts = write_county_csv(tmp / "data", patients=args.patients, seed=20261123, today=today)
        engine = migrated(url)
        import_path(engine, tmp / "data", today=today)
        with engine.connect() as conn:
            county = conn.execute(sa.text("SELECT code FROM region WHERE level = 'county'")).scalar_one()
        engine.dispose()
        print(f"report benchmark: {counts['patients']:,} patients, {counts['followups']:,} follow-ups; "
              f"county {county}, month {args.month}; {load()}")
        # the first report after the import builds the patient-month state of the trend's trailing
        # months, which on a live register the scheduler's publish_month did on the 1st: printed, not counted
        first = timed(jingfang("report", "--month", args.month, "--region", county, "--out", str(tmp / "first.pdf"),
                               "--db", url))
        print(f"  first report after the import (builds the trailing months' state): {first:.2f} s (CPU {first.cpu:.2f} s)"
              f", not counted", flush=True)
        rates_t, report_t = [], []
        for r in range(args.rounds):
            rates_t.append(timed(jingfang("rates", "--month", args.month, "--region", county, "--json", "--db", url)))
            report_t.append(timed(jingfang("report", "--month", args.month, "--region", county,
                                           "--out", str(tmp / f"report{r}.pdf"), "--db", url)))
            print(f"  round {r + 1}: rates --json {rates_t[-1]:.2f} s (CPU {rates_t[-1].cpu:.2f} s), report "
                  f"{report_t[-1]:.2f} s (CPU {report_t[-1].cpu:.2f} s); ratio {report_t[-1] / rates_t[-1]:.1f} wall, "
                  f"{report_t[-1].cpu / rates_t[-1].cpu:.1f} CPU; {load()}", flush=True)
        med = statistics.median
        print(f"report median {med(report_t):.2f} s, rates --json median {med(rates_t):.2f} s, "
              f"ratio {med(report_t) / med(rates_t):.1f} (target ≤ 3); CPU ratio "
              f"{med(t.cpu for t in report_t) / med(t.cpu for t in rates_t):.1f}")


if __name__ == "__main__":
    main()
