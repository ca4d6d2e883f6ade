"""权限范围 Who may see which patients and which fields (issue 4, rules.md §8).

* county_admin — every patient under their region (the region tree cascades down).
* township_doctor — every patient under their township (cascade), full record.
* police / civil_affairs — ONLY the patients on their lists in their region, and only the
  fields those lists need: never diagnosis, never medication, ID numbers always masked.

  - police (民警): 联合入户单 tasks requiring police and the 风险预警单 (rules.md §6, §7.2–3);
  - civil_affairs (民政): tasks requiring civil affairs and the 帮扶救助单 (rules.md §6, §7.5);
  both by the rule profile's ``roles``, the rule the tasks follow (one home: registry.audiences).
* governance (综治, [2026-12]) — the police lists and every open joint visit (rules.md §7 lists 2–3);
  village (村(社区), [2026-12]) — the police lists and the visits requiring the village (§6, §7.2).
  Both read lists like the police: no diagnosis, no medication.
* A list account linked to its team member (``user.member_id``, rules.md §6.1) and not flagged
  ``supervisor`` works from its own patients: those it is responsible for on an open task, plus
  those of its lists it is responsible for today (registry.audiences.own_patient_ids). A supervisor
  (派出所/民政办/综治 lead), or an account not linked to a member, sees its region's lists.

A patient outside the caller's scope is a :class:`PermissionDenied` (403), on pages and API.
Membership is computed set-based in SQL from the stored facts (follow-ups, patient fields)
and from the scheduler's open tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from sqlmodel import Session, select

from registry.care_team import responsible_member_sql, role_required_sql
from registry.codes import TaskStatus
from registry import audiences
from registry.accounts import User, UserRole
from registry.errors import PermissionDenied
from registry.models import Patient, VisitTask
from registry.profile import RoleRules, current_profile
from registry.regions import LiveRegionTree, villages_under
from registry.register import in_register_sql
from registry.storable_text import bad_text

FULL_RECORD_ROLES = (UserRole.COUNTY_ADMIN.value, UserRole.TOWNSHIP_DOCTOR.value)
LIST_ROLES = (UserRole.POLICE.value, UserRole.CIVIL_AFFAIRS.value, UserRole.GOVERNANCE.value, UserRole.VILLAGE.value)
# the team role (rules.md §6) whose tasks a list account takes part in; governance: every joint visit
# 五单存档 readers (registry.web.list_archive): here, beside the other role sets, so the week page and the
# notices can link the archive without importing the archive's routes (no import cycle)
ARCHIVE_ROLES = (UserRole.COUNTY_ADMIN.value, UserRole.TOWNSHIP_DOCTOR.value, UserRole.POLICE.value,
                 UserRole.CIVIL_AFFAIRS.value)
TASK_ROLE_OF = {UserRole.POLICE.value: "police", UserRole.CIVIL_AFFAIRS.value: "civil_affairs",
                UserRole.VILLAGE.value: "village"}


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

    def patient_clause(self, region=None):
        """可见患者 A WHERE clause on Patient selecting exactly the patients this user may see.

        ``region``: an SQL expression standing for the user's region code (a bind parameter, so that
        one compiled statement serves every region of the same level; full-record roles only)."""
        if region is not None and not self.full_record:
            raise ValueError("a region parameter is for the full-record roles only")
        in_region = Patient.village_code.in_(villages_under(self.user.region_code if region is None else region,
                                                            self.region_level))
        if self.full_record:
            return in_region
        # the region's patients once (a CTE is materialised when used several times)
        cte = sa.select(Patient.patient_id.label("patient_id")).where(
            Patient.village_code.in_(villages_under(self.user.region_code, self.region_level))).cte("scope_patients")
        region_patients = sa.select(cte.c.patient_id)
        clause = list_clause(self.role, self.today, region_patients)
        if self.linked:
            clause = sa.and_(clause, Patient.patient_id.in_(audiences.own_patient_ids(
                self.user.member_id, TASK_ROLE_OF[self.role], self.today, region_patients)))
        return sa.and_(in_region, in_register_sql(Patient.__table__, self.today), clause)  # 在册 today (rules.md §1)

    @property
    def cache_key(self) -> tuple:
        """缓存键 Everything the scope's clauses depend on (``patient_clause``, ``task_clause``): role,
        region, date and, for a linked account, its member (rules.md §6.1, §8). A page computed for one
        scope may be served from a cache only to a scope with the same key: two police accounts of one
        township, one linked to its member and one not (or a supervisor), see different patients."""
        return (self.role, self.user.region_code, self.today, getattr(self.user, "member_id", None) if self.linked else None)

    @property
    def linked(self) -> bool:
        """关联成员 A list account linked to its team member and not a supervisor: its own patients only
        (rules.md §6.1)."""
        return (self.role in TASK_ROLE_OF and bool(getattr(self.user, "member_id", None))
                and not getattr(self.user, "supervisor", False))

    def require_township_lists(self) -> None:
        """乡镇名单 The township's lists (the week's 五单, their issued archive) go to its supervisor; a
        linked, non-supervisor account works from its own patients (rules.md §6.1): PermissionDenied
        ``SUPERVISOR_ONLY``. Every route serving a township list calls this."""
        if self.linked:
            raise PermissionDenied("本乡镇的名单仅限负责人查看；您的患者见“我的名单”", code="SUPERVISOR_ONLY")

    def task_clause(self, tasks):
        """可见任务 The open tasks (``tasks``: the visit_task table) a list account takes part in: those
        requiring its team role (a linked account: those it is responsible for, rules.md §6.1); 综治:
        every joint visit. Full-record roles: every task. The query joins ``patient`` to the tasks."""
        if self.full_record:
            return sa.true()
        role = TASK_ROLE_OF.get(self.role)
        if role is None:
            return tasks.c.joint.is_(True)
        clause = role_required_sql(tasks.c.roles, role)
        if self.linked:
            clause = sa.and_(clause, responsible_member_sql(role, patient_id=tasks.c.patient_id,
                                                            village_code=Patient.village_code,
                                                            on=tasks.c.due_on) == self.user.member_id)
        return clause

    def attendance_clause(self, tasks, village_col):
        """本人到场登记 The closed joint tasks (``tasks``: the visit_task table; ``village_col``: the
        patient's village) on whose closing follow-up this account records its own attendance
        (rules.md §6.2): police, civil affairs and village accounts; tasks requiring the account's
        team role, in its region; a linked account (rules.md §6.1): only those it was responsible for
        on the task's due date. Not ``patient_clause``: the patient may have left the lists since."""
        role = TASK_ROLE_OF.get(self.role)
        if role is None:
            return sa.false()
        clause = sa.and_(tasks.c.closed_by.is_not(None), role_required_sql(tasks.c.roles, role),
                         village_col.in_(villages_under(self.user.region_code, self.region_level)))
        if self.linked:
            clause = sa.and_(clause, responsible_member_sql(role, patient_id=tasks.c.patient_id, village_code=village_col,
                                                            on=tasks.c.due_on) == self.user.member_id)
        return clause

    def takes_part(self, task: dict) -> bool:
        """The task (a dict with ``roles``, ``joint`` and ``people`` or ``members``) is one of this account's
        (``task_clause`` in Python)."""
        if self.full_record:
            return True
        role = TASK_ROLE_OF.get(self.role)
        if role is None:
            return bool(task.get("joint"))
        if role not in task["roles"]:
            return False
        if self.linked:
            people = {p["role"]: p.get("member_id") for p in task.get("people", [])}
            return people.get(role) == self.user.member_id
        return True

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


def list_clause(role: str, today: date, among, rules: RoleRules | None = None):
    """名单条件 Patients (of ``among``: a select of patient_ids) on the lists of ``role``, by the rule
    profile's ``roles`` (``rules``, else the selected profile's): registry.audiences."""
    if role not in LIST_ROLES:
        return sa.false()
    rules = rules or current_profile().roles
    if role == UserRole.POLICE.value:
        return Patient.patient_id.in_(audiences.police_patient_ids(rules, today, among))
    if role == UserRole.CIVIL_AFFAIRS.value:
        return Patient.patient_id.in_(audiences.civil_affairs_patient_ids(rules, today, among))
    t = VisitTask.__table__
    open_tasks = sa.select(t.c.patient_id).where(t.c.status == TaskStatus.OPEN.value, t.c.patient_id.in_(among))
    if role == UserRole.GOVERNANCE.value:  # 综治: 联合入户单 (every joint visit) and 风险预警单 (rules.md §7.2–3)
        extra = open_tasks.where(t.c.joint.is_(True))
    else:  # 村(社区): the visits requiring the village (rules.md §6) and the police lists
        extra = open_tasks.where(role_required_sql(t.c.roles, TASK_ROLE_OF[role]))
    return sa.or_(Patient.patient_id.in_(audiences.police_patient_ids(rules, today, among)), Patient.patient_id.in_(extra))


def scope_for(user: User, tree: LiveRegionTree, today: date) -> Scope:
    """权限范围 The scope of a user on a date."""
    return Scope(user=user, region_codes=tree.descendants(user.region_code), today=today,
                 region_level=tree.level(user.region_code))
