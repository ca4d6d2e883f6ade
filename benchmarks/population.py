"""合成人群（集合式） Set-based synthetic populations on PostgreSQL (generate_series INSERT…SELECT, no CSV).

One home for the region shape the set-based benchmarks share and for the province the web
benchmark seeds at a million patients:

- ``Shape``: counties × townships per county × villages per township, the code of a county
  (a SQL expression of ``c``), the digits a township and a village add to their parent's code,
  and the names; ``region_statements`` writes the three levels, ``village_of`` spreads patient
  ``i`` over the villages (county first, then township, then village: every township gets its share).
  The indicator benchmark (benchmarks/rates.py) is the one-county shape ``RATES_SHAPE``.
- ``province_statements`` / ``build_province``: a province (``Shape.province``): 6-digit county
  codes, 9-digit townships, 12-digit villages with Chinese names; a team for every township
  (2 doctors, 2 police, civil affairs, disability) and village (village cadre, a volunteer for
  some), the first of each role the region's primary (rules.md §6.1); patients with the columns
  the pages show (ID numbers with a valid check digit, phones, guardians, addresses, deaths and
  moves, LAI plans); up to 4 follow-ups each (complete and unreached visits, risk levels), none
  before registration or after a death or move; health checks of this and last year for about
  60%; the injection history of every LAI plan (its last injection is the latest row). Every row
  passes the importer's checks (tests/test_bench_population.py exports a small province and
  imports it again).

The scheduler benchmark (benchmarks/schedule.py) keeps its own population: its follow-ups and
health checks fall after some patients' deaths and its LAI plans have no injection rows, which
the scheduler does not mind and the importer refuses; making it valid would change the population
behind its earlier figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from sqlalchemy.engine import Engine

from registry.ids import check_digit_sql
from registry.synthetic import DIAGNOSES, GIVEN, LAI_DRUGS, SURNAMES, TOWNSHIPS, VILLAGE_HEADS


@dataclass(frozen=True)
class Shape:
    """地区形状 counties × townships × villages, their codes and names (SQL expressions)."""

    counties: int
    townships: int  # per county
    villages: int  # per township
    county_code: Callable[[str], str]  # SQL text of the county's code from the SQL expression of its number
    township_digits: int
    village_digits: int
    county_name: Callable[[str], str]
    township_name: Callable[[str, str], str]  # (county number, township number) → SQL text
    village_name: Callable[[str, str, str], str]  # (county, township, village number) → SQL text
    village_population: str = "3000"

    @property
    def township_count(self) -> int:
        return self.counties * self.townships

    @property
    def village_count(self) -> int:
        return self.township_count * self.villages

    def township_code(self, c: str, t: str) -> str:
        return f"{self.county_code(c)} || lpad(({t})::text, {self.township_digits}, '0')"

    def village_code(self, c: str, t: str, v: str) -> str:
        return f"{self.township_code(c, t)} || lpad(({v})::text, {self.village_digits}, '0')"

    @classmethod
    def province(cls, patients: int, *, per_township: int = 520, townships: int = 16, villages: int = 22) -> "Shape":
        """省 About ``per_township`` patients per township, ``townships`` per county (the synthetic county's
        township names), ``villages`` per township; as many counties as that takes (at least one):
        1,000,000 patients → 120 counties, 1,920 townships, 42,240 villages."""
        counties = max(1, round(patients / (per_township * townships)))
        heads = VILLAGE_HEADS
        return cls(
            counties=counties, townships=min(townships, len(TOWNSHIPS)), villages=villages,
            county_code=lambda c: f"'44' || lpad(({c})::text, 4, '0')", township_digits=3, village_digits=3,
            county_name=lambda c: (f"substr('{heads}', 1 + ({c}) * 7 % {len(heads)}, 1) || substr('{heads}', 1 + ({c}) * 13 % "
                                   f"{len(heads)}, 1) || CASE WHEN ({c}) % 9 = 0 THEN '区' ELSE '县' END"),
            township_name=lambda c, t: f"(ARRAY[{', '.join(repr(n) for n in TOWNSHIPS)}])[{t}]",
            village_name=lambda c, t, v: (f"substr('{heads}', 1 + (({c}) * 31 + ({t}) * 17 + ({v}) * 7) % {len(heads)}, 1)"
                                          f" || substr('{heads}', 1 + (({c}) * 3 + ({t}) * 11 + ({v}) * 29) % {len(heads)}, 1)"
                                          f" || CASE WHEN ({v}) % 5 = 0 THEN '社区' ELSE '村' END"),
            village_population="1500 + (c * 7919 + t * 104729 + v * 31) % 5000",
        )


# the indicator benchmark's county (benchmarks/rates.py): B, B01…B20, B01001…B20025
RATES_SHAPE = Shape(
    counties=1, townships=20, villages=25, county_code=lambda c: "'B'", township_digits=2, village_digits=3,
    county_name=lambda c: "'基准县'", township_name=lambda c, t: f"'第' || {t} || '镇'",
    village_name=lambda c, t, v: f"'第' || {t} || '镇' || {v} || '村'", village_population="20000",
)


def region_statements(shape: Shape) -> list[str]:
    """地区 The counties (no parent), their townships and villages: three INSERT…SELECT."""
    c, t, v = "c", "t", "v"
    return [
        f"""INSERT INTO region (code, name, level, parent_code, population)
            SELECT {shape.county_code(c)}, {shape.county_name(c)}, 'county', NULL, NULL
            FROM generate_series(1, {shape.counties}) c""",
        f"""INSERT INTO region (code, name, level, parent_code, population)
            SELECT {shape.township_code(c, t)}, {shape.township_name(c, t)}, 'township', {shape.county_code(c)}, NULL
            FROM generate_series(1, {shape.counties}) c, generate_series(1, {shape.townships}) t""",
        f"""INSERT INTO region (code, name, level, parent_code, population)
            SELECT {shape.village_code(c, t, v)}, {shape.village_name(c, t, v)}, 'village', {shape.township_code(c, t)},
                   {shape.village_population}
            FROM generate_series(1, {shape.counties}) c, generate_series(1, {shape.townships}) t,
                 generate_series(1, {shape.villages}) v""",
    ]


def village_of(shape: Shape, i: str) -> str:
    """The village code (SQL) of patient number ``i``: county ``1 + i % C``, township ``1 + (i / C) % T``,
    village ``1 + (i / (C T)) % V`` (for one county: township ``1 + i % T``, village ``1 + (i / T) % V``)."""
    n_c, n_t = shape.counties, shape.townships
    return shape.village_code(f"1 + {i} % {n_c}", f"1 + ({i} / {n_c}) % {n_t}", f"1 + ({i} / {n_c * n_t}) % {shape.villages}")


def run_statements(engine: Engine, statements: list[str], progress: Callable[[str, float], None] | None = None) -> None:
    """Run ``statements`` in one transaction (``progress(first words, seconds)`` after each)."""
    with engine.begin() as conn:
        for stmt in statements:
            started = time.perf_counter()
            conn.exec_driver_sql(stmt.replace("%", "%%"))
            if progress is not None:
                progress(" ".join(stmt.split()[:3]), time.perf_counter() - started)


def _pick(chars: str, r: str) -> str:
    """One character of ``chars`` chosen by ``r`` (a SQL expression in [0, 1))."""
    return f"substr('{chars}', 1 + floor({r} * {len(chars)})::int, 1)"


def _name(r1: str, r2: str, r3: str) -> str:
    """A Chinese name: a surname and one or two given characters (``registry.synthetic``'s characters)."""
    second = f"(({r3}) * 7919 - floor(({r3}) * 7919))"  # another number in [0, 1) from the same draw
    return f"{_pick(SURNAMES, r1)} || {_pick(GIVEN, r2)} || CASE WHEN {r3} < 0.5 THEN {_pick(GIVEN, second)} ELSE '' END"


def _phone(r: str) -> str:
    return f"'1' || {_pick('3578', r)} || lpad(floor(random() * 1000000000)::bigint::text, 9, '0')"


def _weighted(pairs, r: str) -> str:
    """A CASE choosing the value of ``pairs`` ((SQL literal, weight), …) by ``r`` in [0, 1)."""
    out, acc = [], 0.0
    for value, weight in pairs[:-1]:
        acc += weight
        out.append(f"WHEN {r} < {acc:.4f} THEN {value}")
    return f"CASE {' '.join(out)} ELSE {pairs[-1][0]} END"


# the team of every township and village (rules.md §6); the first member of a role in a region is its primary
TOWNSHIP_TEAM = (("doctor", "D", 2), ("police", "P", 2), ("civil_affairs", "C", 1), ("disability", "R", 1))


def province_statements(shape: Shape, patients: int, today: date) -> list[str]:
    """The province's rows as INSERT…SELECT statements (regions, team, patients, follow-ups, health
    checks, injections), seeded (``setseed``): the same statements give the same rows."""
    day = f"date '{today.isoformat()}'"
    team = ", ".join(f"('{role}', '{tag}', {n})" for role, tag, n in TOWNSHIP_TEAM)
    diagnoses = [(f"'{code}'", weight) for code, weight in DIAGNOSES]
    drugs = "ARRAY[" + ", ".join(f"'{d}'" for d in LAI_DRUGS) + "]"
    first17 = "left(vcode, 6) || to_char(birth, 'YYYYMMDD') || lpad((i % 1000)::text, 3, '0')"
    return [
        "SELECT setseed(0.17)",
        *region_statements(shape),
        f"""INSERT INTO team_member (member_id, name, role, phone, region_code, "primary")
            SELECT 'M' || code || '-' || tag || n, {_name('r1', 'r2', 'r3')}, role, {_phone('r4')}, code, n = 1
            FROM (SELECT r.code, tm.role, tm.tag, n, random() AS r1, random() AS r2, random() AS r3, random() AS r4
                  FROM region r CROSS JOIN (VALUES {team}) tm(role, tag, k) CROSS JOIN LATERAL generate_series(1, tm.k) n
                  WHERE r.level = 'township') m""",
        f"""INSERT INTO team_member (member_id, name, role, phone, region_code, "primary")
            SELECT 'M' || code || '-' || tag || '1', {_name('r1', 'r2', 'r3')}, role, {_phone('r4')}, code, true
            FROM (SELECT r.code, tm.role, tm.tag, random() AS r1, random() AS r2, random() AS r3, random() AS r4,
                         random() < tm.share AS serves
                  FROM region r CROSS JOIN (VALUES ('village', 'V', 1.0), ('volunteer', 'Z', 0.4)) tm(role, tag, share)
                  WHERE r.level = 'village') m
            WHERE serves""",
        # patients: a) the draws, b) birth and registration, c) status, d) the row
        f"""INSERT INTO patient (patient_id, name, sex, birth_date, id_number, village_code, address, phone, diagnosis,
                diagnosed_on, registered_on, report_type, consent, guardian_name, guardian_phone, guardian_relation,
                guardian_reward, economic_status, status, status_on, status_detail, lai_drug, lai_interval_weeks,
                lai_last_on, lai_dose, household_type, employment, created_at, updated_at)
            SELECT 'P' || lpad(i::text, 7, '0'), {_name('r1', 'r2', 'r3')}, 1 + i % 2, birth,
                   CASE WHEN r4 < 0.9 THEN {first17} || {check_digit_sql(first17)} END,
                   vcode, vname || (1 + i % 99) || '号', {_phone('r5')},
                   {_weighted(diagnoses, 'r6')}, greatest(reg - floor(r7 * 400)::int, birth + 3653), reg,
                   CASE WHEN r8 < 0.1 THEN 1 ELSE 2 END,
                   CASE WHEN r8 < 0.1 THEN (r9 < 0.5)::int WHEN r9 < 0.03 THEN 0 ELSE 1 END,
                   CASE WHEN guardian THEN {_name('r2', 'r3', 'r1')} END, CASE WHEN guardian THEN {_phone('r3')} END,
                   CASE WHEN guardian THEN (ARRAY['父母', '配偶', '子女', '兄弟姐妹'])[1 + floor(r3 * 4)::int] END,
                   false, {_weighted([('1', 0.25), ('2', 0.65), ('3', 0.10)], 'r7')},
                   status, status_on,
                   CASE status WHEN 'dead' THEN '病故' WHEN 'moved_out' THEN '迁往外省' END,
                   CASE WHEN lai THEN ({drugs})[1 + floor(r10 * {len(LAI_DRUGS)})::int] END,
                   CASE WHEN lai THEN (ARRAY[2, 4, 4])[1 + i % 3] END,
                   CASE WHEN lai THEN least(coalesce(status_on, {day}),
                                            greatest(reg, coalesce(status_on, {day}) - floor(r10 * 38)::int)) END,
                   CASE WHEN lai THEN '150mg' END,
                   1 + (r5 < 0.6)::int, {_weighted([('3', 0.45), ('4', 0.3), ('8', 0.1), ('1', 0.1), ('9', 0.05)], 'r6')},
                   now() - interval '1 day', now() - interval '1 day'
            FROM (
              SELECT *, CASE WHEN st = 'active' THEN NULL ELSE greatest(reg, {day} - 1 - floor(r9 * 600)::int) END AS status_on,
                     st AS status
              FROM (
                SELECT *, CASE WHEN reg >= {day} - 60 THEN 'active' WHEN r11 < 0.02 THEN 'dead'
                               WHEN r11 < 0.04 THEN 'moved_out' ELSE 'active' END AS st
                FROM (
                  SELECT b.*, greatest(birth + 4383,
                                       CASE WHEN r0 < 0.05 THEN {day} - floor(r1 * 41)::int
                                            WHEN r0 < 0.25 THEN {day} - 41 - floor(r2 * 690)::int
                                            ELSE date '2008-01-01' + floor(r3 * ({day} - 730 - date '2008-01-01'))::int END) AS reg,
                         v.name AS vname
                  FROM (
                    SELECT i, {village_of(shape, 'i')} AS vcode, date '1950-01-01' + floor(random() * 20000)::int AS birth,
                           random() AS r0, random() AS r1, random() AS r2, random() AS r3, random() AS r4, random() AS r5,
                           random() AS r6, random() AS r7, random() AS r8, random() AS r9, random() AS r10,
                           random() AS r11, random() < 0.85 AS guardian, random() < 0.08 AS lai
                    FROM generate_series(1, {patients}) i
                  ) b JOIN region v ON v.code = b.vcode
                ) r
              ) s
            ) p""",
        # up to 4 follow-ups 45 days apart up to today or the death / move; 12% not reached (失访 reasons);
        # none before registration; none for those who refuse community management (consent 0, 六类病种登记)
        f"""INSERT INTO follow_up (patient_id, visit_on, seq, mode, lost_reason, risk_level, insight, symptoms_obvious,
                sf_self_care, sf_housework, sf_work, sf_study, sf_social, incidents_mild, incidents_disturbance,
                incidents_crime, self_harm, suicide_attempt, hospital_status, adherence, adverse_reaction_serious,
                physical_illness_serious, psych_support_patient, psych_support_family, rehabilitation, entered_at, updated_at)
            SELECT patient_id, visit_on, 1, CASE WHEN lost THEN 2 ELSE 1 + (k + floor(r1 * 3)::int) % 3 END,
                   CASE WHEN lost THEN (ARRAY[1, 1, 3, 5, 4])[1 + floor(r3 * 5)::int] END,
                   CASE WHEN NOT lost THEN (ARRAY[0,0,0,0,0,0,0,0,0,0,0,0,1,1,1,2,2,3,3,4])[1 + floor(r3 * 20)::int] END,
                   CASE WHEN NOT lost THEN 1 + floor(r4 * 2.2)::int END, CASE WHEN NOT lost THEN r4 > 0.97 END,
                   CASE WHEN NOT lost THEN 1 END, CASE WHEN NOT lost THEN 1 + floor(r4 * 1.3)::int END,
                   CASE WHEN NOT lost THEN (ARRAY[1, 1, 2, 3, 9])[1 + floor(r5 * 5)::int] END,
                   CASE WHEN NOT lost THEN 1 END, CASE WHEN NOT lost THEN 1 + floor(r5 * 2.5)::int END,
                   CASE WHEN NOT lost THEN (r1 > 0.97)::int END, CASE WHEN NOT lost THEN (r4 > 0.985)::int END,
                   CASE WHEN NOT lost THEN (r4 > 0.998)::int END, CASE WHEN NOT lost THEN (r5 > 0.99)::int END,
                   CASE WHEN NOT lost THEN 0 END,
                   CASE WHEN NOT lost THEN CASE WHEN r1 < 0.02 THEN 1 WHEN r5 < 0.3 THEN 2 ELSE 0 END END,
                   CASE WHEN NOT lost THEN {_weighted([('1', 0.68), ('2', 0.16), ('3', 0.11), ('4', 0.05)], 'r6')} END,
                   CASE WHEN NOT lost THEN false END, CASE WHEN NOT lost THEN false END,
                   CASE WHEN NOT lost THEN r6 < 0.6 END, CASE WHEN NOT lost THEN r5 < 0.45 END,
                   CASE WHEN NOT lost THEN r3 < 0.45 END,
                   now() - interval '1 day', now() - interval '1 day'
            FROM (
              SELECT p.patient_id, p.registered_on, k, coalesce(p.status_on, {day}) - (k * 45 + floor(random() * 30)::int) AS visit_on,
                     random() < 0.12 AS lost, random() AS r1, random() AS r3, random() AS r4, random() AS r5, random() AS r6
              FROM patient p CROSS JOIN generate_series(0, 3) k
              WHERE NOT (p.consent = 0 AND p.report_type = 2)
            ) f
            WHERE visit_on >= registered_on""",
        # this year's and last year's health check for about 60% of those with consent, within their time on the register
        f"""INSERT INTO health_check (patient_id, checked_on, updated_at)
            SELECT patient_id, lo + floor(r * (hi - lo + 1))::int, now() - interval '1 day'
            FROM (
              SELECT p.patient_id, greatest(p.registered_on, make_date(y, 1, 1)) AS lo,
                     least(make_date(y, 12, 31), coalesce(p.status_on, {day})) AS hi, random() AS r, random() AS pick
              FROM patient p CROSS JOIN generate_series({today.year - 1}, {today.year}) y
              WHERE p.consent = 1
            ) h
            WHERE pick < 0.6 AND lo <= hi""",
        # the injection history of every LAI plan: the last injection and up to three before it
        """INSERT INTO injection (patient_id, given_on, drug, dose, updated_at)
            SELECT patient_id, lai_last_on - k * 7 * lai_interval_weeks, lai_drug, lai_dose, now() - interval '1 day'
            FROM patient CROSS JOIN generate_series(0, 3) k
            WHERE lai_drug IS NOT NULL AND lai_last_on - k * 7 * lai_interval_weeks >= registered_on""",
    ]


def build_province(engine: Engine, patients: int, today: date, progress: Callable[[str, float], None] | None = None) -> Shape:
    """造省 Write the province of ``patients`` patients into ``engine``'s (migrated, empty) database;
    its shape. Tasks and statistics are the caller's (``schedules.generation.generate``, ANALYZE)."""
    shape = Shape.province(patients)
    run_statements(engine, province_statements(shape, patients, today), progress)
    return shape
