"""权限范围 Who may see which patients and which fields (issue 4, rules.md §8).

* county_admin — every patient under their region (the region tree cascades down).
* township_doctor — every patient under their township (cascade), full record.
* police / civil_affairs — ONLY the patients on their lists in their region, and only the
  fields those lists need: never diagnosis, never medication, ID numbers always masked.

  - police (民警): 联合入户单 tasks requiring police and the 风险预警单 (rules.md §6, §7.2–3):
    risk ≥ 3 or 不稳定 at the latest complete follow-up, a 肇事/肇祸 in the 12 months up to
    today, a 失访 (lost, locate task) patient.
  - civil_affairs (民政): tasks requiring civil affairs and the 帮扶救助单 (rules.md §6, §7.5):
    贫困, no guardian, 以奖代补 guardian reward, community rehabilitation.

A patient outside the caller's scope is a :class:`PermissionDenied` (403), on pages and API.
Membership is computed set-based in SQL from the stored facts (follow-ups, patient fields)
and from the scheduler's open tasks when its ``visit_task`` table exists.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import aliased
from sqlmodel import Session, select

from registry.accounts import User, UserRole
from registry.errors import PermissionDenied
from registry.models import FollowUp, Patient, Region
from registry.storable_text import bad_text

FULL_RECORD_ROLES = (UserRole.COUNTY_ADMIN.value, UserRole.TOWNSHIP_DOCTOR.value)
LIST_ROLES = (UserRole.POLICE.value, UserRole.CIVIL_AFFAIRS.value)


class RegionTree:
    """行政区划树 Region codes below each region (cached briefly; regions change rarely)."""

    TTL_SECONDS = 300.0

    def __init__(self, engine):
        self.engine = engine
        self._lock = threading.Lock()
        self._loaded_at: float | None = None  # never loaded (not 0.0: monotonic time starts near 0 at boot)
        self._children: dict[str, list[str]] = {}
        self._regions: dict[str, tuple[str, str, str | None]] = {}
        self._descendants: dict[str, tuple[dict, frozenset[str]]] = {}

    def _load(self) -> None:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(Region.code, Region.name, Region.level, Region.parent_code)).all()
        children: dict[str, list[str]] = {}
        regions = {}
        for code, name, level, parent in rows:
            regions[code] = (name, level, parent)
            if parent:
                children.setdefault(parent, []).append(code)
        self._children, self._regions = children, regions
        self._descendants = {}
        self._loaded_at = time.monotonic()

    def _fresh(self) -> None:
        with self._lock:
            if self._loaded_at is None or time.monotonic() - self._loaded_at > self.TTL_SECONDS:
                self._load()

    def invalidate(self) -> None:
        """刷新 Reload the tree on next use."""
        with self._lock:
            self._loaded_at = None

    def descendants(self, code: str) -> frozenset[str]:
        """下级地区 The region itself and everything below it (memoised until the tree reloads)."""
        self._fresh()
        children = self._children
        memo = self._descendants
        hit = memo.get(code)
        if hit is not None and hit[0] is children:  # computed on the current tree
            return hit[1]
        out, stack = set(), [code]
        while stack:
            current = stack.pop()
            if current in out:
                continue
            out.add(current)
            stack.extend(children.get(current, ()))
        result = frozenset(out)
        memo[code] = (children, result)
        return result

    def name(self, code: str | None) -> str:
        """地区名称 The region's name (the code when unknown)."""
        self._fresh()
        return self._regions.get(code, (code or "",))[0] if code else ""

    def level(self, code: str) -> str | None:
        """级别 The region's level."""
        self._fresh()
        entry = self._regions.get(code)
        return entry[1] if entry else None

    def parent(self, code: str) -> str | None:
        """上级 The region's parent code."""
        self._fresh()
        entry = self._regions.get(code)
        return entry[2] if entry else None

    def township_of(self, code: str) -> str | None:
        """所属乡镇 The township a village (or the township itself) belongs to."""
        current: str | None = code
        while current is not None:
            if self.level(current) == "township":
                return current
            current = self.parent(current)
        return None

    def townships_under(self, code: str) -> list[str]:
        """下辖乡镇 Township codes at or below a region."""
        return sorted(c for c in self.descendants(code) if self.level(c) == "township")


@dataclass(frozen=True)
class Scope:
    """权限范围 A user's role, region and the region codes below it."""

    user: User
    region_codes: frozenset[str]
    today: date
    region_level: str | None = None

    @property
    def role(self) -> str:
        """角色 The user's role."""
        return self.user.role

    @property
    def full_record(self) -> bool:
        """完整档案 Whether the role sees the full record."""
        return self.role in FULL_RECORD_ROLES

    @property
    def sees_unmasked_id(self) -> bool:
        """身份证号 Only the doctor, on their own (township's) patient page (rules.md §8)."""
        return self.role == UserRole.TOWNSHIP_DOCTOR.value

    def patient_clause(self):
        """可见患者 A WHERE clause on Patient selecting exactly the patients this user may see."""
        in_region = Patient.village_code.in_(region_subquery(self.user.region_code, self.region_level))
        if self.full_record:
            return in_region
        # the region's patients once (a CTE is materialised when used several times)
        cte = sa.select(Patient.patient_id.label("patient_id")).where(
            Patient.village_code.in_(region_subquery(self.user.region_code, self.region_level))).cte("scope_patients")
        region_patients = sa.select(cte.c.patient_id)
        return sa.and_(in_region, Patient.status == "active", list_clause(self.role, self.today, region_patients))

    def require_role(self, *roles: str) -> None:
        """角色限制 PermissionDenied unless the user has one of ``roles``."""
        if self.role not in roles:
            labels = "、".join(UserRole(r).label for r in roles)
            raise PermissionDenied(f"此操作仅限{labels}，当前角色为{UserRole(self.role).label}", code="ROLE_FORBIDDEN")

    def check_patient(self, session: Session, patient_id: str) -> Patient:
        """患者权限 The patient, or PermissionDenied when outside scope (also when it does not exist,
        so a probe cannot learn which IDs exist elsewhere)."""
        if bad_text(patient_id) or len(patient_id) > 64:
            raise PermissionDenied("无权查看该患者：患者编号无效", code="PATIENT_FORBIDDEN")
        patient = session.exec(select(Patient).where(Patient.patient_id == patient_id, self.patient_clause())).first()
        if patient is None:
            raise PermissionDenied(f"无权查看患者 {patient_id[:64]}：不在您的管辖范围或名单内", code="PATIENT_FORBIDDEN")
        return patient


def region_subquery(code: str, level: str | None = None):
    """下级地区 The villages at or below region ``code`` as a subquery (county → township → village,
    RegionLevel). Shaped by the region's level so the planner's row estimate is right (an OR over
    levels makes PostgreSQL scan every patient)."""
    if level == "village":
        return sa.select(sa.literal(code))
    if level == "township":
        return sa.select(Region.code).where(Region.parent_code == code)
    child = aliased(Region)
    if level == "county":
        return sa.select(Region.code).where(Region.parent_code.in_(sa.select(child.code).where(child.parent_code == code)))
    return sa.select(Region.code).where(sa.or_(
        Region.code == code,
        Region.parent_code == code,
        Region.parent_code.in_(sa.select(child.code).where(child.parent_code == code)),
    ))


def _latest_complete(among):
    """Each patient's latest complete follow-up (rules.md §3, §5 order: date, then entry order)."""
    complete = sa.or_(sa.and_(FollowUp.lost_reason.is_(None), FollowUp.risk_level.is_not(None)), FollowUp.hospital_status == 1)
    ranked = (
        sa.select(
            FollowUp.patient_id,
            FollowUp.risk_level,
            FollowUp.classification,
            sa.func.row_number().over(partition_by=FollowUp.patient_id, order_by=(FollowUp.visit_on.desc(), FollowUp.id.desc())).label("rn"),
        )
        .where(complete, FollowUp.patient_id.in_(among))
        .subquery()
    )
    return ranked


def _latest_attempt(among):
    return (
        sa.select(
            FollowUp.patient_id,
            FollowUp.lost_reason,
            sa.func.row_number().over(partition_by=FollowUp.patient_id, order_by=(FollowUp.visit_on.desc(), FollowUp.id.desc())).label("rn"),
        ).where(FollowUp.patient_id.in_(among)).subquery()
    )


def _open_tasks_with_role(role: str, among):
    """patient_ids with an open scheduler task requiring ``role`` (when the table exists)."""
    try:
        from schedules import models as sched_models  # noqa: PLC0415
    except ImportError:
        return None
    task = getattr(sched_models, "VisitTask", None)
    if task is None or not hasattr(task, "roles"):
        return None
    status_col = getattr(task, "status", None)
    cond = [task.roles.contains(role), task.patient_id.in_(among)]
    if status_col is not None:
        cond.append(status_col == "open")
    return sa.select(task.patient_id).where(*cond)


def minus_months(day: date, months: int) -> date:
    """往前推月 ``day`` minus ``months`` calendar months, clamped to month end."""
    import calendar

    month0 = day.month - 1 - months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def police_patient_ids(today: date, among):
    """民警名单 patient_ids (of those in ``among``) on the 风险预警单 / police joint visits (rules.md §6, §7.3)."""
    latest = _latest_complete(among)
    attempt = _latest_attempt(among)
    since = minus_months(today, 12)
    parts = [
        sa.select(latest.c.patient_id).where(latest.c.rn == 1, sa.or_(latest.c.risk_level >= 3, latest.c.classification == 1)),
        sa.select(FollowUp.patient_id).where(
            FollowUp.visit_on >= since, FollowUp.visit_on <= today, FollowUp.patient_id.in_(among),
            sa.or_(FollowUp.incidents_disturbance > 0, FollowUp.incidents_crime > 0),
        ),
        sa.select(attempt.c.patient_id).where(attempt.c.rn == 1, attempt.c.lost_reason.is_not(None)),
    ]
    tasks = _open_tasks_with_role("police", among)
    if tasks is not None:
        parts.append(tasks)
    return sa.union(*parts)


def civil_affairs_patient_ids(today: date, among):
    """民政名单 patient_ids (of those in ``among``) on the 帮扶救助单 / civil-affairs joint visits (rules.md §6, §7.5)."""
    parts = [
        sa.select(Patient.patient_id).where(
            sa.or_(Patient.economic_status == 1, Patient.guardian_name.is_(None), Patient.guardian_name == "",
                   Patient.guardian_reward.is_(True)),
            Patient.patient_id.in_(among),
        ),
        sa.select(FollowUp.patient_id).where(FollowUp.rehabilitation.is_(True), FollowUp.visit_on >= minus_months(today, 12),
                                             FollowUp.patient_id.in_(among)),
    ]
    tasks = _open_tasks_with_role("civil_affairs", among)
    if tasks is not None:
        parts.append(tasks)
    return sa.union(*parts)


def list_clause(role: str, today: date, among):
    """名单条件 Patients (of ``among``: a select of patient_ids) on the lists of ``role``."""
    if role == UserRole.POLICE.value:
        return Patient.patient_id.in_(police_patient_ids(today, among))
    if role == UserRole.CIVIL_AFFAIRS.value:
        return Patient.patient_id.in_(civil_affairs_patient_ids(today, among))
    return sa.false()


def scope_for(user: User, tree: RegionTree, today: date) -> Scope:
    """权限范围 The scope of a user on a date."""
    return Scope(user=user, region_codes=tree.descendants(user.region_code), today=today,
                 region_level=tree.level(user.region_code))
