"""指标基准 Benchmark: all indicators of one month for every township on PostgreSQL.

Builds (set-based, generate_series INSERT…SELECT, no CSV) a county of N patients with 4
follow-ups each in database ``jf_bench_rates`` (reused when it already holds N patients), then
prints: the time to build the month's patient-month state (from scratch, and incrementally
from the previous month), then, measured in interleaved rounds (the machine is shared; ranges
and load averages are printed): the county's indicators from the state (every township and
village, freshness check included), the bare SQL pass over the same follow-up rows in W, their
ratio, the live computation without the state (its result is checked identical), an extra
baseline (the same rows grouped per patient); then the county PDF: computing the month
itself, rendered from already computed counts, and of a frozen (published) month.
Usage: scripts/bench_rates [--patients 1000000] [--month 2026-10] [--today 2026-11-23] [--rounds 3] [--rebuild]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import sqlalchemy as sa

from benchmarks.population import RATES_SHAPE, region_statements, village_of
from benchmarks.scratch import prepared_database
from registry.db import make_engine

DB = "jf_bench_rates"

BUILD = [
    *region_statements(RATES_SHAPE),  # B, B01…B20, B01001…B20025
    """INSERT INTO patient (patient_id, name, sex, birth_date, village_code, diagnosis, registered_on,
                            report_type, consent, guardian_reward, status, status_on, created_at, updated_at)
        SELECT 'P' || lpad(i::text, 7, '0'), '患者' || i, 1 + i % 2, DATE '1960-01-01' + ((i * 37) % 15000)::int,
               {VILLAGE},
               CASE WHEN i % 5 = 0 THEN 'bipolar' WHEN i % 11 = 0 THEN 'epilepsy_psychosis' ELSE 'schizophrenia' END,
               DATE '2016-01-01' + ((i * 7919) % 3950)::int, 2, CASE WHEN i % 40 = 0 THEN 0 ELSE 1 END, false,
               CASE WHEN i % 53 = 0 THEN 'dead' WHEN i % 61 = 0 THEN 'moved_out' ELSE 'active' END,
               CASE WHEN i % 53 = 0 OR i % 61 = 0 THEN DATE '2025-06-01' + ((i * 13) % 500)::int END,
               now() - interval '1 day', now() - interval '1 day'
        FROM generate_series(1::bigint, {N}) i""",
    """INSERT INTO follow_up (patient_id, visit_on, seq, mode, lost_reason, risk_level, insight, symptoms_obvious,
                              sf_self_care, sf_housework, sf_work, sf_study, sf_social, incidents_disturbance,
                              incidents_crime, hospital_status, adherence, psych_support_patient,
                              psych_support_family, rehabilitation, entered_at, updated_at)
        SELECT 'P' || lpad((1 + (g - 1) / 4)::text, 7, '0'), DATE '2025-10-01' + ((g * 104729) % 420)::int, 1 + g % 4,
               1 + g % 3, CASE WHEN g % 17 = 0 THEN 1 END, CASE WHEN g % 17 <> 0 THEN (g / 7) % 4 END,
               1 + g % 3, g % 13 = 0, 1 + g % 3, 1 + (g / 3) % 3, 1, 1, 1 + (g / 5) % 2,
               CASE WHEN g % 97 = 0 THEN 1 ELSE 0 END, 0, CASE WHEN g % 10 = 0 THEN 1 ELSE 0 END, 1 + g % 4,
               g % 3 = 0, g % 7 = 0, g % 5 = 0, now() - interval '1 day', now() - interval '1 day'
        FROM generate_series(1::bigint, {N} * 4) g""",
    """INSERT INTO health_check (patient_id, checked_on, updated_at)
        SELECT 'P' || lpad(i::text, 7, '0'), DATE '2026-01-01' + ((i * 31) % 300)::int, now()
        FROM generate_series(1::bigint, {N}, 2) i""",
]


def ensure_data(patients: int, rebuild: bool) -> str:
    def build(engine) -> None:
        with engine.begin() as conn:
            for stmt in BUILD:
                conn.execute(sa.text(stmt.replace("{N}", str(patients)).replace("{VILLAGE}", village_of(RATES_SHAPE, "i"))))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")

    return prepared_database(DB, patients, build, rebuild)


def clock(fn) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def span(values: list[float]) -> str:
    return f"{min(values):.2f}–{max(values):.2f} s" if len(values) > 1 else f"{values[0]:.2f} s"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"[load {one:.1f} {five:.1f} {fifteen:.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--month", default="2026-10")
    parser.add_argument("--today", default="2026-11-23", help="decides which months are closed (Asia/Shanghai date)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds (noisy shared machine)")
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()

    from registry.rates import month_state
    from registry.rates.indicators import Period
    from registry.rates.compute import compute_rates_and_counts, freeze, region_counts
    from registry.rates.reporting import write_monthly_report
    from registry.rates.snapshots import unfreeze

    url = ensure_data(args.patients, args.rebuild)
    engine = make_engine(url)
    period = Period.parse(args.month)
    today = date.fromisoformat(args.today)
    if not month_state.is_closed(period, today):
        sys.exit(f"{period.label} is not closed on {today}: the state figures need a closed month")
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

    # 1. the patient-month state of the month: from scratch, and incrementally from M−1
    previous = period.previous()
    month_state.invalidate(engine, from_year_month=month_state.year_month(previous))
    t_prev, r_prev = clock(lambda: month_state.ensure(engine, previous, today, incremental=False))
    print(f"state of {previous.label} from scratch (needed for the incremental build): {t_prev:.2f} s"
          f" ({r_prev.action}) {load()}")
    t_inc, r_inc = clock(lambda: month_state.ensure(engine, period, today))
    print(f"state of {period.label} incrementally from {previous.label}: {t_inc:.2f} s ({r_inc.action}) {load()}")
    rows_incremental = month_state.state_rows_digest(engine, period)
    month_state.invalidate(engine, from_year_month=month_state.year_month(period))
    t_scr, r_scr = clock(lambda: month_state.ensure(engine, period, today, incremental=False))
    print(f"state of {period.label} from scratch: {t_scr:.2f} s ({r_scr.action}) {load()}")
    assert month_state.state_rows_digest(engine, period) == rows_incremental, "incremental != scratch"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # the two rebuilds above left a month of dead rows each; autovacuum would get to them
        t_vac, _ = clock(lambda: conn.exec_driver_sql("VACUUM ANALYZE patient_month_state"))
    print(f"VACUUM ANALYZE patient_month_state (dead rows of the rebuilds above): {t_vac:.2f} s")
    with engine.connect() as conn:
        t_check, fresh = clock(lambda: month_state.is_fresh(conn, period))
    print(f"freshness check alone: {t_check * 1000:.0f} ms (fresh: {fresh}); incremental and scratch states identical")

    def rates():  # closed month: from the state, freshness check included
        return compute_rates_and_counts(engine, month=period.label, variant="quarterly", today=today)

    def live():
        return compute_rates_and_counts(engine, month=period.label, variant="quarterly", today=today, use_state=False)

    rates()  # warm the cache once
    t_rates, t_bare, t_group, t_live, ratios, loads = [], [], [], [], [], []
    for _ in range(args.rounds):  # interleaved, so every figure sees the same machine load
        t, (doc, counts) = clock(rates)
        b, (rows, _) = clock(lambda: run(bare_sql))
        g, _ = clock(lambda: run(group_sql))
        lv, (live_doc, _) = clock(live)
        assert live_doc == doc, "state-based and live results differ"
        t_rates.append(t), t_bare.append(b), t_group.append(g), t_live.append(lv), ratios.append(t / b)
        loads.append(os.getloadavg()[0])
    print(f"patients in register: {doc['indicators']['registered']['numerator']:,}; follow-ups in W: {rows:,};"
          f" load average during the rounds {min(loads):.1f}–{max(loads):.1f}")
    print(f"ALL INDICATORS, {period.label}, county + {len(doc['children'])} townships + villages, from the state"
          f" (freshness check included): {span(t_rates)}")
    print(f"BARE SQL PASS over the same follow-up rows (count, max): {span(t_bare)}")
    print(f"RATIO all indicators / bare pass (target <= 3x): {min(t_rates) / min(t_bare):.1f}x best-to-best"
          f" (per round {min(ratios):.1f}–{max(ratios):.1f}x)")
    print(f"live computation of the same month (no state; identical results, checked): {span(t_live)};"
          f" live / bare pass: {min(t_live) / min(t_bare):.1f}x")
    print(f"extra baseline, bare per-patient GROUP BY of the same rows: {span(t_group)} {load()}")
    t_town, _ = clock(lambda: region_counts(engine, period=period, variant="quarterly", region_code="B01",
                                            use_snapshot=False, today=today))
    print(f"one township from the state: {t_town:.2f} s {load()}")

    started = time.perf_counter()
    pub_today = date(period.as_of.year + (period.month == 12), period.month % 12 + 1, 1)
    for past in period.trailing(12)[:-1]:
        freeze(engine, month=past.label, variant="quarterly", today=pub_today)
    print(f"freezing the 11 previous months (once, as publish_month does monthly; skipped when frozen):"
          f" {time.perf_counter() - started:.1f} s {load()}")
    out = Path(tempfile.mkdtemp()) / "county.pdf"

    def pdf(**kw):
        return write_monthly_report(engine, month=period.label, region_code="B", out_path=out, variant="quarterly",
                                    today=pub_today, **kw)

    t_whole, _ = clock(pdf)
    print(f"county PDF of a month not frozen yet, computing the month itself (from its state): {t_whole:.2f} s {load()}")
    walls, cpus = [], []
    for _ in range(3):
        cpu = time.process_time()
        wall, _ = clock(lambda: pdf(counts=counts))
        walls.append(wall), cpus.append(time.process_time() - cpu)
    print(f"county PDF from the month's already computed counts (frozen trend + patient list + chart + WeasyPrint):"
          f" {span(walls)} wall; CPU of this process: {span(cpus)} {load()} -> {out}")
    freeze(engine, month=period.label, variant="quarterly", today=pub_today)
    walls = [clock(pdf)[0] for _ in range(3)]
    print(f"COUNTY PDF of a published (frozen) month, write_monthly_report in this process (target <= 3 s):"
          f" {span(walls)} {load()}")
    cli = [str(Path(sys.executable).with_name("jingfang")), "report", "--month", period.label, "--region", "B",
           "--variant", "quarterly", "--db", url, "--out", str(out)]
    walls = [clock(lambda: subprocess.run(cli, check=True, capture_output=True))[0] for _ in range(3)]
    print(f"the same as a command, `jingfang report` end to end (new process: imports ~1 s incl. WeasyPrint 0.7-0.9 s,"
          f" the CLI's migration check ~0.4 s, first render): {span(walls)} {load()}")
    engine.dispose()


if __name__ == "__main__":
    main()
