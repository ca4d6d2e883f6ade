"""导入基准 100,000 patients and 400,000 follow-ups imported into PostgreSQL and SQLite.

Prints follow-up rows per second for each (target ≥ 20,000 rows/s on PostgreSQL), then the export
of the whole register back to the import files (``registry.exporting``, COPY TO on PostgreSQL) in rows
per second (issue 13: target ≥ 50,000 rows/s on PostgreSQL). Printed, never asserted.
Usage: scripts/bench_import [--patients 100000] [--followups 400000] [--db-name jf_bench_import]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

from benchmarks.scratch import TODAY, migrated, scratch_database, sqlite_url, write_county
from registry.exporting import export_register
from registry.importing import import_path

DB_NAME = "jf_bench_import"


def make_files(folder: Path, patients: int, followups: int) -> int:
    write_county(folder, patients, seed=1, followups_per_patient=max(1, -(-followups // patients) + 1))
    path = folder / "followups.csv"
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    rows = rows[: followups + 1]
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    return len(rows) - 1


def run(url: str, folder: Path, n_followups: int, label: str) -> None:
    """Import the register (regions, team, patients), then the follow-up file on its own —
    the monthly upload — and print follow-up rows/s; then the whole folder again (no change)."""
    engine = migrated(url)
    register = folder.parent / "register"
    register.mkdir(exist_ok=True)
    for name in ("regions.csv", "team_members.csv", "patients.csv"):
        (register / name).write_bytes((folder / name).read_bytes())
    start = time.perf_counter()
    import_path(engine, register, today=TODAY)
    reg_time = time.perf_counter() - start
    start = time.perf_counter()
    result = import_path(engine, folder / "followups.csv", today=TODAY)
    fu_time = time.perf_counter() - start
    assert result.tables["followups"].written == n_followups
    start = time.perf_counter()
    again = import_path(engine, folder, today=TODAY)
    second = time.perf_counter() - start
    assert all(t.written == 0 for t in again.tables.values() if t is not again.tables.get("health_checks"))
    print(f"{label:<11} follow-ups.csv {n_followups:,} rows in {fu_time:5.1f} s = {n_followups / fu_time:9,.0f} rows/s | "
          f"register ({result and 'regions+team+patients'}) {reg_time:4.1f} s | "
          f"all files, whole import {(n_followups) / (fu_time + reg_time):,.0f} follow-up rows/s | "
          f"re-import of everything (no change) {second:5.1f} s")
    export_run(engine, folder.parent / f"export-{label}", label)
    engine.dispose()


def export_run(engine, out: Path, label: str) -> None:
    """导出 The whole register back to the import files; rows/s over every file (issue 13)."""
    result = export_register(engine, directory=out, actor="bench")
    rows = result.total
    size = sum(p.stat().st_size for p in result.paths) / 1e6
    print(f"{label:<11} export {rows:,} rows ({result.rows.get('followups', 0):,} follow-ups, {size:,.0f} MB) in "
          f"{result.seconds:5.1f} s = {rows / result.seconds:9,.0f} rows/s (target ≥ 50,000 on PostgreSQL)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--followups", type=int, default=400_000)
    parser.add_argument("--pg", help="PostgreSQL server URL (default JINGFANG_BENCH_PG)")
    parser.add_argument("--db-name", default=DB_NAME, help=f"scratch PostgreSQL database (default {DB_NAME}; dropped after)")
    args = parser.parse_args()
    if args.pg:  # the command line wins over the environment
        from registry.config import export_for_children

        export_for_children(bench_pg=args.pg)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "files"
        t = time.perf_counter()
        n = make_files(folder, args.patients, args.followups)
        print(f"generated {args.patients:,} patients and {n:,} follow-ups in {time.perf_counter() - t:.1f} s")
        with scratch_database(args.db_name) as url:
            run(url, folder, n, "PostgreSQL")
        run(sqlite_url(tmp), folder, n, "SQLite")


if __name__ == "__main__":
    main()
