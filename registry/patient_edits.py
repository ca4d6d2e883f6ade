"""患者信息修改 Editing a stored patient with history, and moves between townships (issue 13).

Pure rules (no clock, no database; ``today`` a parameter): which fields a change may touch,
how a change is validated (the one validation path: the field specs and ``check_patient`` of
``registry.validation``, the same as the import and registration), which changes need a reason,
which ones replan the patient, and the history rows (``patient_change``) a change leaves. The web
and API glue (``registry.web.edits``) fetches the row, checks the scope, writes the rows with
the audit row in one transaction and replans.

* Editable fields: every patient field spec (``PATIENT_FIELDS`` + ``PATIENT_EXTRA_FIELDS``)
  but the key ``patient_id`` — computed from the specs on each call, so a field added to the
  specs (个人信息补充表) is editable on the form and the API without code here.
* A reason (变更原因) is required for the identity fields (姓名, 性别, 出生日期, 身份证号),
  the status (状态, 状态日期) and consent (知情同意): ``REASON_REQUIRED`` (rules.md §1, §8).
* A change of a field the schedule reads (rules.md §1, §5, §6: village, registration, report
  type, consent, status, guardian, economic status, LAI plan) replans the patient at once.
* 迁出/迁入 (rules.md §5 "transferred in"): the sending township names the receiving one (the
  move is 待接收); the receiving township accepts — the patient's village becomes one of its
  villages and the registration date becomes the acceptance date, so the scheduler's "newly
  registered or transferred in, no follow-up attempt yet" row applies (first visit due within
  14 days; earlier follow-ups stay as history, counted by nothing dated before registration,
  as for any re-registration: ``validation.DELIBERATE_DIFFERENCES`` VISIT_BEFORE_REGISTRATION)
  — or refuses with a reason, and the patient stays where they were, still 在册.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Mapping

from registry import codes
from registry.errors import Issue
from registry.validation import (PATIENT_EXTRA_FIELDS, PATIENT_FIELDS, FieldSpec, check_patient, parse_fields, text)

REASON_FIELD = FieldSpec("reason", "变更原因", text(255))
# rules.md §1 (identity, status, consent) — issue 13: "reason required for identity fields, status and consent"
REASON_ORDER = ("name", "sex", "birth_date", "id_number", "status", "status_on", "consent")
REASON_FIELDS = frozenset(REASON_ORDER)
# rules.md §1: a status and its date are checked together (``plan_edit``: a change of either is a change of both)
STATUS_PAIR = frozenset({"status", "status_on"})
# The fields the schedule reads (rules.md §1 在册 and consent, §5 registration and LAI plan, §6 guardian,
# economic status and the village's team): a change of one replans the patient at once.
SCHEDULE_FIELDS = frozenset({"village_code", "registered_on", "report_type", "consent", "status", "status_on",
                             "guardian_name", "economic_status", "lai_drug", "lai_interval_weeks", "lai_last_on"})
# Coded fields shown with their Chinese label in the history (display only).
CODED_FIELDS = {"sex": codes.Sex, "report_type": codes.ReportType, "consent": codes.Consent,
                "economic_status": codes.EconomicStatus, "status": codes.PatientStatus, "diagnosis": codes.Diagnosis}
# History rows of a move (field names of ``patient_change`` that are not patient columns).
TRANSFER_OUT, TRANSFER_ACCEPTED, TRANSFER_REFUSED = "transfer_out", "transfer_accepted", "transfer_refused"
EVENT_LABELS = {TRANSFER_OUT: "迁出（待接收）", TRANSFER_ACCEPTED: "迁入接收", TRANSFER_REFUSED: "拒绝接收（退回）"}


def editable_specs() -> list[FieldSpec]:
    """可修改字段 Every patient field spec except the key, in form order (read from the specs each call)."""
    seen: set[str] = set()
    out = []
    for spec in PATIENT_FIELDS + PATIENT_EXTRA_FIELDS:
        if spec.name != "patient_id" and spec.name not in seen:
            seen.add(spec.name)
            out.append(spec)
    return out


def editable_names() -> set[str]:
    """可修改字段名 The names a change (form or PATCH body) may carry, plus ``reason``."""
    return {s.name for s in editable_specs()} | {REASON_FIELD.name}


def field_label(field: str) -> str:
    """字段名称 The Chinese label of a patient field or a move event."""
    return EVENT_LABELS.get(field) or next((s.label for s in editable_specs() if s.name == field), field)


def as_text(value: Any) -> str | None:
    """存储文本 A value as the history stores it: ISO dates, codes, booleans 1/0, None for blank."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, date):
        return value.isoformat()
    return str(getattr(value, "value", value))


def shown(field: str, value: str | None) -> str:
    """显示值 A stored history value for people: a code with its Chinese label, blank as （空）."""
    if value is None:
        return "（空）"
    enum_cls = CODED_FIELDS.get(field)
    if enum_cls is not None:
        try:
            member = enum_cls.parse(value)
        except ValueError:
            return value
        # an integer code is printed on the national forms (1 贫困); a string code is internal: its label only
        return member.label if isinstance(member, str) else f"{value} {member.label}"
    if field == "guardian_reward":
        return {"1": "是", "0": "否"}.get(value, value)
    return value


@dataclass(frozen=True)
class FieldChange:
    """字段变更 One field's old and new value (as stored in ``patient_change``)."""

    field: str
    old: str | None
    new: str | None


@dataclass(frozen=True)
class Edit:
    """修改 The patient row after a change, the changed fields and the reason."""

    values: dict[str, Any]
    changes: tuple[FieldChange, ...]
    reason: str | None

    @property
    def changed(self) -> set[str]:
        """The names of the changed fields."""
        return {c.field for c in self.changes}

    @property
    def replans(self) -> bool:
        """Whether a changed field is read by the schedule (SCHEDULE_FIELDS)."""
        return bool(self.changed & SCHEDULE_FIELDS)


def plan_edit(current: Mapping[str, Any], raw: Mapping[str, str], *, today: date,
              latest_reached: date | None = None) -> tuple[Edit, list[Issue]]:
    """修改校验 Parse the given fields (only those in ``raw``), merge them into ``current`` (the stored
    row as typed values) and check the whole row as the import and registration do
    (``validation.check_patient``: dates against today and birth, the ID number's check digit, the
    status date, the LAI plan's three fields); a problem the stored row already had is reported
    only when its own field changes, so a legacy value never blocks another edit (the web form
    posts every field) — the status and its date count as one field (``STATUS_PAIR``: a new
    status with the stored date is checked as a new date). ``latest_reached``: the patient's
    latest follow-up that reached them (``validation.latest_reached_visit``): a death or move-out
    is not dated before it (``STATUS_BEFORE_VISIT``, rules.md §1, §3). Returns the edit and the issues; a reason is
    required when an identity field, the status or consent changes (``REASON_REQUIRED``)."""
    specs = [s for s in editable_specs() if s.name in raw]
    values, issues = parse_fields(dict(raw), specs + [REASON_FIELD])
    reason = values.pop(REASON_FIELD.name, None)
    merged = {**current, **values}
    if not any(i.column == "birth_date" for i in issues):
        # a problem the stored row already has (e.g. an imported ID number) blocks only a change of that field
        stored = {(i.code, i.column) for i in check_patient(dict(current), today=today, latest_reached=latest_reached)}
        touched = {k for k in values if as_text(values[k]) != as_text(current.get(k))}
        if touched & STATUS_PAIR:
            # 状态 and 状态日期 are one fact: a new status re-asserts the kept date, so the date's checks
            # (STATUS_BEFORE_VISIT, STATUS_BEFORE_REGISTRATION, STATUS_DATE_REQUIRED …) apply to it
            touched |= STATUS_PAIR
        issues += [i for i in check_patient(merged, today=today, latest_reached=latest_reached)
                   if ((i.code, i.column) not in stored or i.column in touched) and not any(j.column == i.column for j in issues)]
    changes = tuple(
        FieldChange(s.name, as_text(current.get(s.name)), as_text(merged.get(s.name)))
        for s in editable_specs() if as_text(current.get(s.name)) != as_text(merged.get(s.name)))
    needing = [c.field for c in changes if c.field in REASON_FIELDS]
    if needing and not reason:
        labels = "、".join(field_label(f) for f in needing)
        issues.append(Issue("REASON_REQUIRED", f"变更原因：修改{labels}时必须填写变更原因", column="reason"))
    return Edit(values=merged, changes=changes, reason=reason), issues


# ---------------------------------------------------------------- 迁出/迁入

TRANSFER_PENDING_MESSAGE = "该患者已有一条待接收的迁出申请，请等待接收方处理"  # also the database's refusal (web.edits)


def check_transfer_request(*, status: str, from_township: str | None, to_township: str | None,
                           to_level: str | None, pending: bool) -> list[Issue]:
    """迁出申请校验 A move needs a 在册 patient, a named receiving township other than the patient's own,
    and no move already waiting (rules.md §1, §5)."""
    issues: list[Issue] = []
    if status != codes.PatientStatus.ACTIVE.value:
        issues.append(Issue("PATIENT_NOT_ACTIVE", f"迁出：患者状态为“{codes.PatientStatus(status).label}”，只有在册患者可以迁出",
                            column="to_township"))
    if not to_township:
        issues.append(Issue("REQUIRED", "迁入乡镇不能为空", column="to_township"))
    elif to_level is None:
        issues.append(Issue("UNKNOWN_TOWNSHIP", f"迁入乡镇 {to_township[:32]} 不存在", column="to_township", value=to_township[:32]))
    elif to_level != codes.RegionLevel.TOWNSHIP.value:
        issues.append(Issue("NOT_A_TOWNSHIP", f"迁入乡镇 {to_township[:32]} 不是乡镇(街道)级", column="to_township",
                            value=to_township[:32]))
    elif to_township == from_township:
        issues.append(Issue("SAME_TOWNSHIP", "迁入乡镇与患者现所在乡镇相同；同一乡镇内换村请直接修改村编码", column="to_township"))
    if pending:
        issues.append(Issue("TRANSFER_PENDING", TRANSFER_PENDING_MESSAGE, column="to_township"))
    return issues


def check_transfer_decision(*, accept: bool, village: str | None, village_parent: str | None, village_level: str | None,
                            to_township: str, reason: str | None) -> list[Issue]:
    """接收/拒收校验 Accepting names a village of the receiving township; refusing needs a reason."""
    if not accept:
        return [] if reason else [Issue("REASON_REQUIRED", "拒收原因：拒绝接收时必须填写原因", column="reason")]
    if not village:
        return [Issue("REQUIRED", "接收村(社区)不能为空", column="village_code")]
    if village_level != codes.RegionLevel.VILLAGE.value or village_parent != to_township:
        return [Issue("VILLAGE_OUT_OF_SCOPE", f"村编码 {village[:32]} 不是接收乡镇的村(社区)", column="village_code",
                      value=village[:32])]
    return []


def accept_changes(current: Mapping[str, Any], *, village: str, accepted_on: date) -> tuple[FieldChange, ...]:
    """迁入 The patient fields an accepted move changes: the village, and the registration date, which
    becomes the acceptance date (rules.md §5 "transferred in": first visit due registered + 14 days)."""
    new = {"village_code": village, "registered_on": accepted_on}
    return tuple(FieldChange(k, as_text(current.get(k)), as_text(v)) for k, v in new.items()
                 if as_text(current.get(k)) != as_text(v))
