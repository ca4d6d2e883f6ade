"""Seeded synthetic populations for the scheduler tests (rows written directly, set-based)."""

from __future__ import annotations

import random
from datetime import date, timedelta

import sqlalchemy as sa

from registry.models import FollowUp, HealthCheck, Patient, Region, TeamMember
from schedules.planning import PatientRecord

REGIONS = [
    {"code": "C", "name": "县", "level": "county", "parent_code": None, "population": None},
    {"code": "T1", "name": "东镇", "level": "township", "parent_code": "C", "population": None},
    {"code": "T2", "name": "西镇", "level": "township", "parent_code": "C", "population": None},
    {"code": "V11", "name": "一村", "level": "village", "parent_code": "T1", "population": 1000},
    {"code": "V12", "name": "二村", "level": "village", "parent_code": "T1", "population": 1000},
    {"code": "V21", "name": "三村", "level": "village", "parent_code": "T2", "population": 1000},
]
TEAM = [
    {"member_id": "M1", "name": "王医生", "role": "doctor", "phone": "13800000001", "region_code": "T1"},
    {"member_id": "M2", "name": "李警官", "role": "police", "phone": "13800000002", "region_code": "T1"},
    {"member_id": "M3", "name": "张网格", "role": "village", "phone": "13800000003", "region_code": "V11"},
    {"member_id": "M4", "name": "赵专干", "role": "civil_affairs", "phone": "13800000004", "region_code": "T1"},
    {"member_id": "M5", "name": "刘网格", "role": "village", "phone": "13800000005", "region_code": "V12"},
    {"member_id": "M6", "name": "陈医生", "role": "doctor", "phone": "13800000006", "region_code": "T2"},
]


def _followup(rng: random.Random, pid: str, day: date, seq: int) -> dict:
    row = {c: None for c in ("mode", "lost_reason", "risk_level", "insight", "symptoms_obvious", "symptoms",
                             "sf_self_care", "sf_housework", "sf_work", "sf_study", "sf_social",
                             "incidents_disturbance", "incidents_crime", "hospital_status", "adherence",
                             "adverse_reaction_serious", "physical_illness_serious", "classification", "medication")}
    row.update(patient_id=pid, visit_on=day, seq=seq, mode=rng.choice([1, 2, 3]))
    kind = rng.random()
    if kind < 0.18:
        row["lost_reason"] = rng.choice([1, 2, 3, 4, 5, 1, 5])
        if rng.random() < 0.1:
            row["hospital_status"] = 1
        return row
    if kind < 0.22:
        row["hospital_status"] = 1
        return row
    if kind < 0.25:
        return row  # reached, no risk level: incomplete
    risk = rng.choice([0, 0, 0, 0, 1, 1, 2, 3, 4, 5])
    row.update(
        risk_level=risk,
        insight=rng.choice([1, 1, 1, 2, 3, None]),
        symptoms_obvious=rng.random() < 0.1,
        symptoms=rng.choice([None, None, None, "1,3", ""]),
        sf_work=rng.choice([1, 2, 3, 9, None]),
        sf_social=rng.choice([1, 1, 2, 3]),
        incidents_disturbance=rng.choice([0, 0, 0, 0, 0, 0, 1, None]),
        incidents_crime=rng.choice([0, 0, 0, 0, 0, 0, 0, 0, 1]),
        hospital_status=rng.choice([0, 0, 2, None]),
        adherence=rng.choice([1, 1, 2, 3, 4]),
        adverse_reaction_serious=rng.random() < 0.03,
        physical_illness_serious=rng.random() < 0.03,
        medication="利培酮 2mg bid" if rng.random() < 0.7 else None,
    )
    if rng.random() < 0.4:  # a recorded classification consistent with the risk
        row["classification"] = 1 if risk >= 3 else rng.choice([1, 2] if risk else [1, 2, 3])
    return row


def populate(engine, *, patients: int, seed: int, today: date, start: date | None = None) -> None:
    """Regions, team and ``patients`` patients with histories up to ``today`` (every case of §5)."""
    rng = random.Random(seed)
    start = start or today - timedelta(days=500)
    pats, fus, hcs = [], [], []
    seqs: dict = {}
    villages = ["V11", "V12", "V21"]
    for i in range(patients):
        pid = f"P{seed % 1000:03d}{i:05d}"
        registered = start + timedelta(days=rng.randrange(0, (today - start).days + 20))
        status, status_on = "active", None
        r = rng.random()
        if r < 0.04:
            status, status_on = "dead", registered + timedelta(days=rng.randrange(1, 400))
        elif r < 0.07:
            status, status_on = "moved_out", registered + timedelta(days=rng.randrange(1, 400))
        lai = rng.random() < 0.15
        pats.append({
            "patient_id": pid, "name": f"患者{i}", "sex": rng.choice([1, 2]), "birth_date": date(1970, 1, 1),
            "id_number": None, "village_code": rng.choice(villages), "address": "某路1号", "phone": None,
            "diagnosis": rng.choice(["schizophrenia", "bipolar"]), "diagnosed_on": None, "registered_on": registered,
            "report_type": rng.choice([1, 2, 2, 2]), "consent": 0 if rng.random() < 0.06 else 1,
            "guardian_name": None if rng.random() < 0.15 else "监护人", "guardian_phone": None,
            "guardian_reward": rng.random() < 0.2,
            "economic_status": rng.choice([1, 2, 2, 3, None]), "status": status, "status_on": status_on,
            "lai_drug": "棕榈酸帕利哌酮" if lai else None, "lai_interval_weeks": rng.choice([2, 4]) if lai else None,
            "lai_last_on": registered + timedelta(days=rng.randrange(0, 300)) if lai else None,
        })
        day = registered - timedelta(days=rng.choice([0, 0, 0, 20]))  # sometimes one before registration
        while True:
            day += timedelta(days=rng.choice([0, 7, 7, 14, 30, 30, 90, 90]))
            if day > today + timedelta(days=10) or rng.random() < 0.08:
                break
            seqs[(pid, day)] = seqs.get((pid, day), 0) + 1
            fus.append(_followup(rng, pid, day, seq=seqs[(pid, day)]))
        if rng.random() < 0.5:
            hcs.append({"patient_id": pid, "checked_on": today - timedelta(days=rng.randrange(0, 400))})
    rng.shuffle(fus)  # entry order (id) independent of date order: ties on the same day
    # 下次随访日期 (rules.md §5, the doctor's own date): before, on, between and after the table's
    # dates; its own generator, so the histories above stay the same for every seed
    doctor = random.Random(seed * 7919 + 17)
    for row in fus:
        row["next_visit_on"] = None
        if doctor.random() < 0.35:
            row["next_visit_on"] = row["visit_on"] + timedelta(days=doctor.choice([-3, 0, 1, 7, 13, 14, 20, 30, 45, 60, 92, 120]))
    with engine.begin() as conn:
        if not conn.execute(sa.select(sa.func.count()).select_from(Region.__table__)).scalar_one():
            conn.execute(sa.insert(Region), REGIONS)
            conn.execute(sa.insert(TeamMember), TEAM)
        conn.execute(sa.insert(Patient), pats)
        if fus:
            conn.execute(sa.insert(FollowUp), fus)
        seen = set()
        hcs = [h for h in hcs if (h["patient_id"], h["checked_on"]) not in seen and not seen.add((h["patient_id"], h["checked_on"]))]
        if hcs:
            conn.execute(sa.insert(HealthCheck), hcs)


def records(engine) -> list[PatientRecord]:
    """Every patient's record as the pure planner reads it."""
    p, f, h = Patient.__table__, FollowUp.__table__, HealthCheck.__table__
    with engine.connect() as conn:
        fus: dict[str, list] = {}
        for row in conn.execute(sa.select(f)):
            fus.setdefault(row.patient_id, []).append(row)
        checks: dict[str, list] = {}
        for row in conn.execute(sa.select(h.c.patient_id, h.c.checked_on)):
            checks.setdefault(row.patient_id, []).append(row.checked_on)
        out = []
        for r in conn.execute(sa.select(p)):
            out.append(PatientRecord(
                patient_id=r.patient_id, registered_on=r.registered_on, status=r.status, status_on=r.status_on,
                report_type=r.report_type, consent=r.consent,
                has_guardian=bool(r.guardian_name and r.guardian_name.strip()), poor=r.economic_status == 1,
                lai_drug=r.lai_drug, lai_interval_weeks=r.lai_interval_weeks, lai_last_on=r.lai_last_on,
                attempts=tuple(fus.get(r.patient_id, ())), health_checks=tuple(checks.get(r.patient_id, ())),
            ))
    return out
