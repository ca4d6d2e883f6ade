"""Shared data for the web tests: a two-township county, five patients, one user per role.

Not a test module (no ``test_`` prefix); imported by tests/test_web_*.py.
"""

from __future__ import annotations

from datetime import date

from sqlmodel import Session

from registry.models import FollowUp, FollowUpParticipant, Patient, Region, TeamMember

TODAY = date(2026, 6, 10)
PASSWORD = "correct-horse-9"
USERS = {  # username: (role, region)
    "admin": ("county_admin", "C"),
    "doc": ("township_doctor", "T1"),
    "doc2": ("township_doctor", "T2"),
    "police": ("police", "T1"),
    "civil": ("civil_affairs", "T1"),
}
ID_P1 = "440781198001010018"  # check digit valid (GB 11643)


def seed(engine) -> dict:
    """Regions, patients, follow-ups, team members and users. Returns ids for the tests.

    P1 (V1): latest follow-up risk 3, 不稳定 → police list; has a joint-visit participant row.
    P2 (V1): stable, guardian, not poor → on no list.
    P3 (V2): poor, no guardian → civil-affairs list.
    P4 (V3, other township T2): stable.
    P5 (V1): dead → only doctors / admin see it.
    """
    with Session(engine) as s:
        s.add_all([
            Region(code="C", name="台山市", level="county"),
            Region(code="T1", name="台城街道", level="township", parent_code="C"),
            Region(code="T2", name="大江镇", level="township", parent_code="C"),
            Region(code="V1", name="东坑村", level="village", parent_code="T1", population=3000),
            Region(code="V2", name="西坑村", level="village", parent_code="T1", population=2000),
            Region(code="V3", name="江南村", level="village", parent_code="T2", population=2500),
        ])
        s.flush()
        common = dict(sex=1, birth_date=date(1980, 1, 1), diagnosis="schizophrenia", registered_on=date(2025, 1, 10))
        s.add_all([
            Patient(patient_id="P1", name="陈一", id_number=ID_P1, village_code="V1", guardian_name="陈父", guardian_phone="13800000001",
                    economic_status=2, address="东坑村1号", phone="13900000001", **common),
            Patient(patient_id="P2", name="李二", village_code="V1", guardian_name="李母", economic_status=2, **common),
            Patient(patient_id="P3", name="张三", village_code="V2", guardian_name=None, economic_status=1, **common),
            Patient(patient_id="P4", name="黄四", village_code="V3", guardian_name="黄妻", economic_status=2, **common),
            Patient(patient_id="P5", name="周五", village_code="V1", guardian_name="周兄", economic_status=2, status="dead",
                    status_on=date(2026, 3, 1), **common),
        ])
        s.add_all([
            TeamMember(member_id="M-DOC", name="王医生", role="doctor", phone="0750-1000", region_code="T1", primary=True),
            TeamMember(member_id="M-POL", name="刘警官", role="police", phone="0750-1100", region_code="T1", primary=True),
            TeamMember(member_id="M-VIL", name="赵网格员", role="village", phone="0750-1200", region_code="V1", primary=True),
            TeamMember(member_id="M-CIV", name="孙专干", role="civil_affairs", phone="0750-1300", region_code="T1", primary=True),
        ])
        s.flush()
        f1 = FollowUp(patient_id="P1", visit_on=date(2026, 5, 20), mode=2, risk_level=3, insight=2, classification=1,
                      adherence=2, medication='[{"drug": "利培酮", "dose": "2mg bid"}]', incidents_disturbance=1)
        f2 = FollowUp(patient_id="P2", visit_on=date(2026, 4, 1), mode=2, risk_level=0, insight=1, classification=3, adherence=1,
                      medication='[{"drug": "奥氮平"}]')
        f3 = FollowUp(patient_id="P3", visit_on=date(2026, 5, 1), mode=3, risk_level=0, insight=1, adherence=1)
        f4 = FollowUp(patient_id="P4", visit_on=date(2026, 5, 2), mode=2, risk_level=0, insight=1, adherence=1)
        s.add_all([f1, f2, f3, f4])
        s.flush()
        s.add(FollowUpParticipant(follow_up_id=f1.id, role="police", member_id="M-POL", attended=False))
        ids = {"f1": f1.id, "f2": f2.id}
        s.commit()
    add_users(engine)
    return ids


_HASH: list[str] = []


def add_users(engine) -> None:
    """One user per role; the argon2 hash is computed once per test process (it is slow by design)."""
    from registry.accounts import User, hash_password

    if not _HASH:
        _HASH.append(hash_password(PASSWORD))
    with Session(engine) as s:
        for username, (role, region) in USERS.items():
            s.add(User(username=username, password_hash=_HASH[0], role=role, region_code=region, display_name=username))
        s.commit()


def session_token(engine, username: str) -> str:
    """A logged-in session for ``username`` without going through the (slow) password check."""
    from registry.accounts import User, start_session

    with Session(engine) as s:
        token, _row = start_session(s, s.get(User, username), source="test")
        s.commit()
    return token


# Who may open which patient (rules.md §8, issue 4).
VISIBLE = {
    "admin": {"P1", "P2", "P3", "P4", "P5"},
    "doc": {"P1", "P2", "P3", "P5"},
    "doc2": {"P4"},
    "police": {"P1"},
    "civil": {"P3"},
}


DEFAULT_TASKS = [
    ("P1", "follow_up", date(2026, 6, 3), "doctor,police,village", True, 3),
    ("P2", "follow_up", date(2026, 7, 1), "doctor", False, 0),
    ("P3", "follow_up", date(2026, 6, 12), "doctor,civil_affairs", True, 0),
    ("P4", "follow_up", date(2026, 6, 1), "doctor", False, 0),
]


def seed_tasks(engine, rows=None, basis: str = "test") -> None:
    """Open visit tasks as the scheduler would store them (real visit_task table): ``rows`` of
    (patient, kind, due, roles, joint, risk level), by default ``DEFAULT_TASKS``; each task's basis is
    ``<basis>:<patient>`` (and ``:<kind>`` for given rows)."""
    from registry.models import VisitTask

    with Session(engine) as s:
        for pid, kind, due, roles, joint, risk in rows or DEFAULT_TASKS:
            key = f"{basis}:{pid}" if rows is None else f"{basis}:{pid}:{kind}"
            s.add(VisitTask(patient_id=pid, kind=kind, basis=key, basis_on=date(2026, 5, 20), due_on=due,
                            nominal_due_on=due, roles=roles, joint=joint, rule="national-2018:test", risk_level=risk))
        s.commit()
