"""指标基准 Benchmark: all indicators of one month for every township on PostgreSQL.

Builds (set-based, generate_series INSERT…SELECT, no CSV) a county of N patients with 4
follow-ups each in database ``jf_bench_rates`` (reused when it already holds N patients), then
prints, measured in interleaved rounds (the machine is shared; ranges are printed): the time
of the county's indicators (every township and village), the time of a bare SQL pass over the
same follow-up rows in W, their ratio, an extra baseline (the same rows grouped per patient),
then the county PDF: computing the month itself, rendered from already computed counts, and of
a frozen (published) month. Usage: scripts/bench_rates [--patients 1000000] [--month 2026-10] [--rounds 3] [--rebuild]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402

from registry.db import make_engine, upgrade  # noqa: E402

SERVER = os.environ.get("JINGFANG_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
DB = "jf_bench_rates"
TOWNSHIPS, VILLAGES_PER_TOWNSHIP = 20, 25

BUILD = [
    "INSERT INTO region (code, name, level, parent_code, population) VALUES ('B', '基准县', 'county', NULL, NULL)",
    f"""INSERT INTO region (code, name, level, parent_code, population)
        SELECT 'B' || lpad(t::text, 2, '0'), '第' || t || '镇', 'township', 'B', NULL
        FROM generate_series(1, {TOWNSHIPS}) t""",
    f"""INSERT INTO region (code, name, level, parent_code, population)
        SELECT 'B' || lpad(t::text, 2, '0') || lpad(v::text, 3, '0'), '第' || t || '镇' || v || '村', 'village',
               'B' || lpad(t::text, 2, '0'), 20000
        FROM generate_series(1, {TOWNSHIPS}) t, generate_series(1, {VILLAGES_PER_TOWNSHIP}) v""",
    """INSERT INTO patient (patient_id, name, sex, birth_date, village_code, diagnosis, registered_on,
                            report_type, consent, guardian_reward, status, status_on, created_at, updated_at)
        SELECT 'P' || lpad(i::text, 7, '0'), '患者' || i, 1 + i % 2, DATE '1960-01-01' + ((i * 37) % 15000)::int,
               'B' || lpad((1 + i % {T})::text, 2, '0') || lpad((1 + (i / {T}) % {V})::text, 3, '0'),
               CASE WHEN i % 5 = 0 THEN 'bipolar' WHEN i % 11 = 0 THEN 'epilepsy_psychosis' ELSE 'schizophrenia' END,
               DATE '2016-01-01' + ((i * 7919) % 3950)::int, 2, CASE WHEN i % 40 = 0 THEN 0 ELSE 1 END, false,
               CASE WHEN i % 53 = 0 THEN 'dead' WHEN i % 61 = 0 THEN 'moved_out' ELSE 'active' END,
               CASE WHEN i % 53 = 0 OR i % 61 = 0 THEN DATE '2025-06-01' + ((i * 13) % 500)::int END, now(), now()
        FROM generate_series(1::bigint, {N}) i""",
    """INSERT INTO follow_up (patient_id, visit_on, seq, mode, lost_reason, risk_level, insight, symptoms_obvious,
                              sf_self_care, sf_housework, sf_work, sf_study, sf_social, incidents_disturbance,
                              incidents_crime, hospital_status, adherence, psych_support_patient,
                              psych_support_family, rehabilitation, entered_at)
        SELECT 'P' || lpad((1 + (g - 1) / 4)::text, 7, '0'), DATE '2025-10-01' + ((g * 104729) % 420)::int, 1 + g % 4,
               1 + g % 3, CASE WHEN g % 17 = 0 THEN 1 END, CASE WHEN g % 17 <> 0 THEN (g / 7) % 4 END,
               1 + g % 3, g % 13 = 0, 1 + g % 3, 1 + (g / 3) % 3, 1, 1, 1 + (g / 5) % 2,
               CASE WHEN g % 97 = 0 THEN 1 ELSE 0 END, 0, CASE WHEN g % 10 = 0 THEN 1 ELSE 0 END, 1 + g % 4,
               g % 3 = 0, g % 7 = 0, g % 5 = 0, now()
        FROM generate_series(1::bigint, {N} * 4) g""",
    """INSERT INTO health_check (patient_id, checked_on)
        SELECT 'P' || lpad(i::text, 7, '0'), DATE '2026-01-01' + ((i * 31) % 300)::int FROM generate_series(1::bigint, {N}, 2) i""",
]


def ensure_data(patients: int, rebuild: bool) -> str:
    admin = sa.create_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")
    url = f"{SERVER}/{DB}"
    with admin.connect() as conn:
        exists = conn.exec_driver_sql(f"SELECT 1 FROM pg_database WHERE datname = '{DB}'").first() is not None
    if exists and not rebuild:
        engine = make_engine(url)
        upgrade(engine)
        with engine.connect() as conn:
            have = conn.exec_driver_sql("SELECT count(*) FROM patient").scalar_one()
        engine.dispose()
        if have == patients:
            return url
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.exec_driver_sql(f"CREATE DATABASE {DB} ENCODING 'UTF8' TEMPLATE template0")
    admin.dispose()
    engine = make_engine(url)
    upgrade(engine)
    started = time.perf_counter()
    with engine.begin() as conn:
        for stmt in BUILD:
            conn.execute(sa.text(stmt.replace("{N}", str(patients)).replace("{T}", str(TOWNSHIPS))
                                 .replace("{V}", str(VILLAGES_PER_TOWNSHIP))))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
    print(f"built {patients:,} patients / {patients * 4:,} follow-ups in {time.perf_counter() - started:.1f} s")
    engine.dispose()
    return url


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    """Best of ``repeat`` wall-clock runs (the first one warms the cache)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def clock(fn) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def span(values: list[float]) -> str:
    return f"{min(values):.2f}–{max(values):.2f} s" if len(values) > 1 else f"{values[0]:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--month", default="2026-10")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds (noisy shared machine)")
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()

    from registry.indicators import Period, compute_rates_and_counts, region_counts
    from registry.reporting import write_monthly_report
    from registry.snapshots import freeze, unfreeze

    url = ensure_data(args.patients, args.rebuild)
    engine = make_engine(url)
    period = Period.parse(args.month)
    unfreeze(engine, month=period.label, variant="quarterly")
    window = {"s": period.start, "d": period.as_of}
    # The bare pass: the follow-up rows in W, counted, nothing else (the baseline).
    bare_sql = sa.text("SELECT count(*), max(visit_on) FROM follow_up WHERE visit_on BETWEEN :s AND :d")
    # Extra information: the same rows grouped per patient, no indicator logic at all.
    group_sql = sa.text("SELECT count(*) FROM (SELECT patient_id, count(*) FROM follow_up"
                        " WHERE visit_on BETWEEN :s AND :d GROUP BY patient_id) per_patient")

    def run(sql):
        with engine.connect() as conn:
            return conn.execute(sql, window).one()

    def rates():
        return compute_rates_and_counts(engine, month=period.label, variant="quarterly")

    rates()  # warm the cache once
    t_rates, t_bare, t_group, ratios = [], [], [], []
    for _ in range(args.rounds):  # interleaved, so every figure sees the same machine load
        t, (doc, counts) = clock(rates)
        b, (rows, _) = clock(lambda: run(bare_sql))
        g, _ = clock(lambda: run(group_sql))
        t_rates.append(t), t_bare.append(b), t_group.append(g), ratios.append(t / b)
    t_plain, _ = clock(lambda: region_counts(engine, period=period, variant="quarterly", region_code="B",
                                             use_snapshot=False, plain=True))
    print(f"patients in register: {doc['indicators']['registered']['numerator']:,}; follow-ups in W: {rows:,}")
    print(f"all indicators, {period.label}, county + {len(doc['children'])} townships + villages: {span(t_rates)}"
          f" (the previous plain join plan, once: {t_plain:.2f} s)")
    print(f"bare SQL pass over the same follow-up rows (count, max): {span(t_bare)}")
    print(f"ratio all indicators / bare pass: {min(t_rates) / min(t_bare):.1f}x best-to-best"
          f" (per round {min(ratios):.1f}–{max(ratios):.1f}x)")
    print(f"extra baseline, bare per-patient GROUP BY of the same rows: {span(t_group)};"
          f" all indicators / it: {min(t_rates) / min(t_group):.1f}x")

    started = time.perf_counter()
    today = date(period.as_of.year + (period.month == 12), period.month % 12 + 1, 1)
    for past in period.trailing(12)[:-1]:
        freeze(engine, month=past.label, variant="quarterly", today=today)
    print(f"freezing the 11 previous months (once, as publish_month does monthly; skipped when frozen):"
          f" {time.perf_counter() - started:.1f} s")
    out = Path(tempfile.mkdtemp()) / "county.pdf"

    def pdf(**kw):
        return write_monthly_report(engine, month=period.label, region_code="B", out_path=out, variant="quarterly",
                                    today=today, **kw)

    t_whole, _ = clock(pdf)
    print(f"county PDF of a month not frozen yet (as the open month), computing the month itself: {t_whole:.2f} s"
          f" (= the all-indicators compute above + rendering)")
    walls, cpus = [], []
    for _ in range(3):
        cpu = time.process_time()
        wall, _ = clock(lambda: pdf(counts=counts))
        walls.append(wall), cpus.append(time.process_time() - cpu)
    print(f"county PDF from the month's already computed counts (frozen trend + patient list + chart + WeasyPrint):"
          f" {span(walls)} wall; CPU of this process (chart + WeasyPrint, less load-sensitive): {span(cpus)} -> {out}")
    freeze(engine, month=period.label, variant="quarterly", today=today)
    walls = [clock(pdf)[0] for _ in range(3)]
    print(f"county PDF of a published (frozen) month: {span(walls)}")
    engine.dispose()


if __name__ == "__main__":
    main()
