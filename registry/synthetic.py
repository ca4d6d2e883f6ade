"""合成数据 A seeded synthetic county: regions, team, patients and two years of follow-ups.

Everything here is invented by this code — no real person's data. The county writes the
contract.md CSV files, so the demo and the benchmarks go through the real importer.
Trajectories follow the 分类干预 rhythm (rules.md §5) with realistic imperfection: some
visits late or missed, unreached attempts, 失访 streaks, hospital stays, deaths, moves,
long-acting injections, poverty and missing guardians (rules.md §6 joint visits).
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from registry import ids
from registry.validation import FOLLOW_UP_FIELDS, PATIENT_FIELDS

COUNTY_CODE = "449901"
COUNTY_NAME = "青山县"
TOWNSHIPS = ["城关镇", "东城街道", "西河镇", "南山镇", "北坪镇", "石桥镇", "柳溪乡", "大坝镇", "青龙镇", "白沙镇", "枫林乡", "金田镇",
             "云岭镇", "桃源乡", "双河镇", "龙泉镇"]
VILLAGE_HEADS = "东西南北上下前后新老大小高低长平安和兴旺富民丰泰永宁福康林竹松柏桃李梅杏溪河湖塘坪岗岭山田"
VILLAGE_TAILS = ["村", "村", "村", "村", "社区"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国建华志强国庆海燕春梅小红文杰玉兰凤英德明金凤振华红梅淑珍宝山学军永红丽华立新秋菊"
DIAGNOSES = [("schizophrenia", 0.66), ("bipolar", 0.10), ("intellectual_disability_psychosis", 0.08),
             ("paranoid_psychosis", 0.06), ("epilepsy_psychosis", 0.05), ("schizoaffective", 0.05)]
LAI_DRUGS = ["棕榈酸帕利哌酮注射液", "癸氟奋乃静注射液", "哌普嗪棕榈酸酯注射液", "氟哌啶醇癸酸酯注射液"]

REGION_COLUMNS = ["code", "name", "level", "parent_code", "population"]
TEAM_COLUMNS = ["member_id", "name", "role", "phone", "region_code", "primary"]
PATIENT_COLUMNS = [s.name for s in PATIENT_FIELDS]
FOLLOW_UP_COLUMNS = [s.name for s in FOLLOW_UP_FIELDS]


@dataclass
class CountySize:
    """合成县规模 How many of each; ~3,000 patients over 12 townships and ~150 villages by default."""

    patients: int = 3000
    townships: int = 12
    villages: int = 150


def _name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))


def _phone(rng: random.Random) -> str:
    return "1" + rng.choice("3578") + "".join(rng.choice("0123456789") for _ in range(9))


def _pick(rng: random.Random, weighted):
    x, acc = rng.random(), 0.0
    for value, weight in weighted:
        acc += weight
        if x < acc:
            return value
    return weighted[-1][0]


def regions_and_team(size: CountySize, rng: random.Random) -> tuple[list[list], list[list], list[str]]:
    """地区与团队 Regions (county → townships → villages) and a team for every village; the first member
    of each role in a region is its primary (主责成员, rules.md §6.1)."""
    regions = [[COUNTY_CODE, COUNTY_NAME, "county", "", ""]]
    team: list[list] = []
    villages: list[str] = []
    n_town = min(size.townships, len(TOWNSHIPS))
    per_town = [size.villages // n_town + (1 if i < size.villages % n_town else 0) for i in range(n_town)]
    member = 0
    primaries: set[tuple[str, str]] = set()

    def add_member(role: str, region: str) -> None:
        nonlocal member
        member += 1
        primary = (role, region) not in primaries
        primaries.add((role, region))
        team.append([f"M{member:05d}", _name(rng), role, _phone(rng), region, 1 if primary else 0])

    for t in range(n_town):
        tcode = f"{COUNTY_CODE}{101 + t:03d}"
        regions.append([tcode, TOWNSHIPS[t], "township", COUNTY_CODE, ""])
        for role, n in (("doctor", 2), ("police", 2), ("civil_affairs", 1), ("disability", 1)):
            for _ in range(n):
                add_member(role, tcode)
        used: set[str] = set()
        for v in range(max(1, per_town[t])):
            vcode = f"{tcode}{v + 1:03d}"
            name = rng.choice(VILLAGE_HEADS) + rng.choice(VILLAGE_HEADS) + rng.choice(VILLAGE_TAILS)
            while name in used:
                name = rng.choice(VILLAGE_HEADS) + rng.choice(VILLAGE_HEADS) + rng.choice(VILLAGE_TAILS)
            used.add(name)
            regions.append([vcode, name, "village", tcode, rng.randint(1500, 6500)])
            villages.append(vcode)
            add_member("village", vcode)
            if rng.random() < 0.4:
                add_member("volunteer", vcode)
    return regions, team, villages


def _assessment(rng: random.Random, state: int) -> dict:
    """The clinical part of a reached follow-up for a hidden state 1 不稳定 / 2 基本稳定 / 3 稳定."""
    row = {f: "1" for f in ("sf_self_care", "sf_housework", "sf_work", "sf_study", "sf_social")}
    row.update(insight="1", symptoms_obvious="0", adverse_reaction_serious="0", physical_illness_serious="0", risk_level="0")
    if state == 1:
        kind = rng.random()
        if kind < 0.55:
            row["risk_level"] = str(_pick(rng, [(3, 0.6), (4, 0.3), (5, 0.1)]))
        elif kind < 0.8:
            row["insight"] = "3"
            row["risk_level"] = str(rng.choice((0, 1, 2)))
        else:
            row["symptoms_obvious"] = "1"
            row["risk_level"] = str(rng.choice((0, 1, 2, 3)))
    elif state == 2:
        kind = rng.random()
        if kind < 0.45:
            row["risk_level"] = str(rng.choice((1, 2)))
        elif kind < 0.75:
            row["insight"] = "2"
        else:
            row[rng.choice(("sf_self_care", "sf_housework", "sf_work", "sf_social"))] = "3"
    if row["sf_work"] == "1" and rng.random() < 0.15:
        row["sf_work"] = "9"
    return row


def _patient_history(rng: random.Random, pid: str, registered: date, end: date, start: date, lai: bool) -> list[dict]:
    """Follow-up rows from max(registered, start) to end, following the classification rhythm."""
    rows: list[dict] = []
    state = _pick(rng, [(3, 0.6), (2, 0.3), (1, 0.1)])
    day = max(registered + timedelta(days=rng.randint(3, 20)), start + timedelta(days=rng.randint(0, 80)))
    misses = 0
    hospital = False
    diligence = rng.random()  # some patients' visits are often late
    while day <= end:
        row = {c: "" for c in FOLLOW_UP_COLUMNS}
        row["patient_id"], row["visit_on"] = pid, day.isoformat()
        if not hospital and rng.random() < (0.06 if misses == 0 else 0.35):
            misses += 1
            row["mode"] = "2"
            row["lost_reason"] = "4" if misses >= 3 and rng.random() < 0.5 else rng.choice(("1", "1", "3", "5"))
            rows.append(row)
            day += timedelta(days=7 + rng.randint(0, 3))
            if misses >= 3 and rng.random() < 0.5:
                day += timedelta(days=rng.randint(20, 120))  # 失访 for a while
            continue
        misses = 0
        if hospital:
            hospital = rng.random() < 0.3
        elif state == 1 and rng.random() < 0.2:
            hospital = True
        row.update(_assessment(rng, state))
        row["mode"] = "3" if state == 3 and rng.random() < 0.3 else rng.choice(("1", "2", "2"))
        row["hospital_status"] = "1" if hospital else rng.choice(("0", "0", "2"))
        row["adherence"] = str(_pick(rng, [(1, 0.68), (2, 0.16), (3, 0.11), (4, 0.05)]))
        if lai:
            row["adherence"] = "1" if rng.random() < 0.85 else "2"
        row["incidents_mild"] = "1" if rng.random() < 0.03 else "0"
        row["incidents_disturbance"] = "1" if state == 1 and rng.random() < 0.15 else "0"
        row["incidents_crime"] = "1" if state == 1 and rng.random() < 0.02 else "0"
        row["self_harm"] = "1" if state == 1 and rng.random() < 0.03 else "0"
        row["suicide_attempt"] = "0"
        row["psych_support_patient"] = "1" if rng.random() < 0.6 else "0"
        row["psych_support_family"] = "1" if rng.random() < 0.45 else "0"
        row["rehabilitation"] = "1" if rng.random() < 0.45 else "0"
        if rng.random() < 0.7:  # the doctor records it; otherwise computed (rules.md §4)
            from registry.rules import compute_classification

            cls = compute_classification(
                risk_level=int(row["risk_level"]), insight=int(row["insight"]),
                symptoms_obvious=row["symptoms_obvious"] == "1",
                social_functions=tuple(int(row[f]) for f in ("sf_self_care", "sf_housework", "sf_work", "sf_study", "sf_social")),
            )
            row["classification"] = str(int(cls)) if cls else ""
        rows.append(row)
        interval = {1: 14, 2: 30, 3: 91}[state] if not hospital else 30
        late = rng.randint(0, 4) if diligence > 0.25 else rng.randint(0, 40)
        day += timedelta(days=max(7, interval - rng.randint(0, 5) + late))
        # trajectory: mostly sticky, drifting towards stable
        r = rng.random()
        if state == 3:
            state = 2 if r < 0.08 else (1 if r < 0.10 else 3)
        elif state == 2:
            state = 3 if r < 0.35 else (1 if r < 0.42 else 2)
        else:
            state = 2 if r < 0.45 else (3 if r < 0.55 else 1)
    return rows


def write_county_csv(out_dir: Path, *, patients: int = 3000, seed: int = 20261123, today: date,
                     followups_per_patient: int | None = None, size: CountySize | None = None) -> dict[str, int]:
    """写出合成县 Write regions, team_members, patients, followups, health_checks CSVs to out_dir.

    ``followups_per_patient`` keeps only each patient's latest N attempts (benchmarks).
    Returns row counts per file.
    """
    rng = random.Random(seed)
    size = size or CountySize(patients=patients)
    size.patients = patients
    if patients > 20000 and size.villages == 150:  # a province-sized run gets more villages
        size.villages = max(150, patients // 20)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    regions, team, villages = regions_and_team(size, rng)
    history_start = date(today.year - 2, today.month, 1)
    counts = {"regions": len(regions), "team_members": len(team), "patients": 0, "followups": 0, "health_checks": 0}

    with (out_dir / "regions.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(REGION_COLUMNS)
        w.writerows(regions)
    with (out_dir / "team_members.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(TEAM_COLUMNS)
        w.writerows(team)

    with (out_dir / "patients.csv").open("w", newline="", encoding="utf-8") as pf, \
         (out_dir / "followups.csv").open("w", newline="", encoding="utf-8") as ff, \
         (out_dir / "health_checks.csv").open("w", newline="", encoding="utf-8") as hf:
        pw, fw, hw = csv.writer(pf), csv.DictWriter(ff, FOLLOW_UP_COLUMNS), csv.writer(hf)
        pw.writerow(PATIENT_COLUMNS)
        fw.writeheader()
        hw.writerow(["patient_id", "checked_on"])
        for n in range(1, patients + 1):
            pid = f"P{n:06d}"
            village = rng.choice(villages)
            birth = date(rng.randint(1950, 2004), rng.randint(1, 12), rng.randint(1, 28))
            r = rng.random()
            if r < 0.05:  # newly registered in the last weeks: first visits due
                registered = today - timedelta(days=rng.randint(0, 40))
            elif r < 0.25:
                registered = today - timedelta(days=rng.randint(41, 730))
            else:
                registered = date(rng.randint(2008, today.year - 2), rng.randint(1, 12), rng.randint(1, 28))
            registered = max(registered, birth + timedelta(days=365 * 12))
            diagnosed = registered - timedelta(days=rng.randint(0, 400))
            diagnosed = max(diagnosed, birth + timedelta(days=365 * 10))
            status, status_on = "active", ""
            end = today
            r = rng.random()
            if r < 0.02 and registered < today - timedelta(days=60):
                status, end = "dead", today - timedelta(days=rng.randint(1, 600))
            elif r < 0.04 and registered < today - timedelta(days=60):
                status, end = "moved_out", today - timedelta(days=rng.randint(1, 600))
            if status != "active":
                end = max(end, registered)
                status_on = end.isoformat()
            lai = rng.random() < 0.08
            lai_cols = ["", "", ""]
            if lai:
                interval = rng.choice((2, 4, 4))
                # never after the death or move (``end``): an injection then would be refused on import
                last = min(end, max(registered, end - timedelta(days=rng.randint(0, interval * 7 + 10))))
                lai_cols = [rng.choice(LAI_DRUGS), str(interval), last.isoformat()]
            has_guardian = rng.random() < 0.85
            consent = "0" if rng.random() < 0.03 else "1"
            report_type = "1" if rng.random() < 0.1 else "2"
            if report_type == "1":
                consent = "1" if rng.random() < 0.5 else "0"
            pw.writerow([
                pid, _name(rng), rng.choice("12"), birth.isoformat(),
                ids.make(village[:6], birth, n) if rng.random() < 0.9 else "",
                village, f"{COUNTY_NAME}{rng.randint(1, 99)}号", _phone(rng),
                _pick(rng, DIAGNOSES), diagnosed.isoformat(), registered.isoformat(), report_type, consent,
                _name(rng) if has_guardian else "", _phone(rng) if has_guardian else "",
                str(_pick(rng, [(1, 0.25), (2, 0.65), (3, 0.10)])), status, status_on, *lai_cols,
            ])
            counts["patients"] += 1
            if consent == "0" and report_type == "2":
                history = []  # refuses community management: no visits
            else:
                history = _patient_history(rng, pid, registered, end, history_start, lai)
            if followups_per_patient is not None:
                history = history[-followups_per_patient:]
            fw.writerows(history)
            counts["followups"] += len(history)
            for year in (today.year - 1, today.year):
                if consent == "1" and rng.random() < 0.6:
                    first = max(date(year, 1, 1), registered)
                    last = min(date(year, 12, 31), end)
                    if first <= last:
                        hw.writerow([pid, (first + timedelta(days=rng.randint(0, (last - first).days))).isoformat()])
                        counts["health_checks"] += 1
    return counts
