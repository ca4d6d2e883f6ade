"""关爱帮扶小组 Named people on every task (issue 14, rules.md §6.1; contract.md [2026-12] ``primary``,
``care_team.csv``, ``members`` in the tasks JSON), through the real command line on both databases."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import time_machine
from typer.testing import CliRunner

from jingfang.cli import app

TEAM = """member_id,name,role,phone,region_code,primary
M1,王医生,doctor,0750-1,T,1
M2,李警官,police,0750-2,T,1
M3,赵警官,police,0750-3,T,0
M4,张网格,village,0750-4,V,1
M5,钱网格,village,0750-5,V,0
M6,孙专干,civil_affairs,0750-6,T,0
"""
# B's village assignment ended before its first visit's due date (06-03); its civil-affairs one is
# valid on that day only (both ends inclusive); C1's police assignment is open
CARE_TEAM = """patient_id,member_id,role,from_on,to_on
B,M5,village,2026-01-01,2026-06-02
B,M6,civil_affairs,2026-06-03,2026-06-03
C1,M3,police,2026-01-01,
"""


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, f"{args}: {result.output}{result.exception!r}"
    return result.stdout if code == 0 else result.output


def _county(tmp_path: Path, small_county: Path, care_team: str = CARE_TEAM) -> Path:
    out = tmp_path / "county"
    shutil.copytree(small_county, out)
    (out / "team_members.csv").write_text(TEAM, "utf-8")
    (out / "care_team.csv").write_text(care_team, "utf-8")
    return out


def _members(db: list[str]) -> dict[tuple[str, str], dict]:
    tasks = json.loads(run("tasks", "--as-of", "2026-06-10", "--json", *db))
    return {(t["patient_id"], t["kind"]): t["members"] for t in tasks}


@time_machine.travel("2026-06-10 09:00 +0800", tick=False)
def test_members_in_tasks_json_follow_assignments_and_primaries(database, small_county, tmp_path):
    """Assignment valid on the due date wins; an ended one does not count; else the village's primary,
    then the township's; else null. A changed assignment shows at the next read, without a new schedule."""
    db = ["--db", database.url]
    run("import", str(_county(tmp_path, small_county)), *db)
    run("schedule", "--as-of", "2026-06-10", *db)
    members = _members(db)
    assert members[("A", "follow_up")] == {"doctor": "M1"}  # the township's primary doctor
    assert members[("B", "first_visit")] == {"doctor": "M1", "village": "M4", "civil_affairs": "M6"}
    assert members[("C1", "locate")] == {"doctor": "M1", "police": "M3", "village": "M4"}
    assert list(members[("C1", "locate")]) == ["doctor", "police", "village"]  # the roles' order

    # the police assignment of C1 ends before the locate task's due date (04-22): the primary (M2) again;
    # importing the same row with an end date updates it (keyed by patient, member, role, start)
    ended = CARE_TEAM.replace("C1,M3,police,2026-01-01,", "C1,M3,police,2026-01-01,2026-03-31")
    run("import", str(_county(tmp_path / "2", small_county, ended)), *db)
    assert database.count("care_team_assignment") == 3
    assert _members(db)[("C1", "locate")] == {"doctor": "M1", "police": "M2", "village": "M4"}


@time_machine.travel("2026-06-10 09:00 +0800", tick=False)
def test_without_primary_or_assignment_the_member_is_null(database, small_county, tmp_path):
    """No primary civil-affairs member, no assignment: ``null`` (shown as 未指定)."""
    db = ["--db", database.url]
    run("import", str(_county(tmp_path, small_county, "patient_id,member_id,role,from_on,to_on\n")), *db)
    run("schedule", "--as-of", "2026-06-10", *db)
    assert _members(db)[("B", "first_visit")] == {"doctor": "M1", "village": "M4", "civil_affairs": None}


@time_machine.travel("2026-06-10 09:00 +0800", tick=False)
def test_bad_assignments_are_refused_and_nothing_is_written(database, small_county, tmp_path):
    """care_team.csv rows: the role must be the member's, the member and patient must exist, the end
    not before the start; one bad row and nothing is imported (contract.md)."""
    bad = ("patient_id,member_id,role,from_on,to_on\n"
           "B,M2,village,2026-01-01,\n"        # M2 is police
           "B,M9,police,2026-01-01,\n"         # no such member
           "ZZ,M2,police,2026-01-01,\n"        # no such patient
           "C1,M3,police,2026-05-01,2026-04-01\n")  # ends before it starts
    db = ["--db", database.url]
    out = run("import", str(_county(tmp_path, small_county, bad)), *db, code=1)
    assert "care_team.csv" in out
    assert "角色应与成员 M2" in out and "团队成员编号 M9 不存在" in out and "早于开始日期" in out
    assert database.count("care_team_assignment") == 0 and database.count("patient") == 0
