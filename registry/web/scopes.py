"""权限范围 Who may see which patients and which fields (issue 4, rules.md §8).

* county_admin — every patient under their region (the region tree cascades down).
* township_doctor — every patient under their township (cascade), full record.
* police / civil_affairs — ONLY the patients on their lists in their region, and only the
  fields those lists need: never diagnosis, never medication, ID numbers always masked.

  - police (民警): 联合入户单 tasks requiring police and the 风险预警单 (rules.md §6, §7.2–3);
  - civil_affairs (民政): tasks requiring civil affairs and the 帮扶救助单 (rules.md §6, §7.5);
  both by the rule profile's ``roles``, the rule the tasks follow (one home: registry.audiences).

A patient outside the caller's scope is a :class:`PermissionDenied` (403), on pages and API.
Membership is computed set-based in SQL from the stored facts (follow-ups, patient fields)
and from the scheduler's open tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from sqlmodel import Session, select

from registry.codes import PatientStatus
from registry import audiences
from registry.accounts import User, UserRole
from registry.errors import PermissionDenied
from registry.models import Patient
from registry.profile import RoleRules, current_profile
from registry.regions import LiveRegionTree, villages_under
from registry.storable_text import bad_text

FULL_RECORD_ROLES = (UserRole.COUNTY_ADMIN.value, UserRole.TOWNSHIP_DOCTOR.value)
LIST_ROLES = (UserRole.POLICE.value, UserRole.CIVIL_AFFAIRS.value)


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
        in_region = Patient.village_code.in_(villages_under(self.user.region_code, self.region_level))
        if self.full_record:
            return in_region
        # the region's patients once (a CTE is materialised when used several times)
        cte = sa.select(Patient.patient_id.label("patient_id")).where(
            Patient.village_code.in_(villages_under(self.user.region_code, self.region_level))).cte("scope_patients")
        region_patients = sa.select(cte.c.patient_id)
        return sa.and_(in_region, Patient.status == PatientStatus.ACTIVE.value, list_clause(self.role, self.today, region_patients))

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
    return Patient.patient_id.in_(audiences.civil_affairs_patient_ids(rules, today, among))


def scope_for(user: User, tree: LiveRegionTree, today: date) -> Scope:
    """权限范围 The scope of a user on a date."""
    return Scope(user=user, region_codes=tree.descendants(user.region_code), today=today,
                 region_level=tree.level(user.region_code))
