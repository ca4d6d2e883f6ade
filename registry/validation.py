"""输入校验 One validation path for every input: import rows, web forms, API bodies.

Each entity has field specs (English name, Chinese label, parser) and a row check for the
rules that span fields — including the ones that need the database (the patient's birth,
registration and status dates: ``PatientFacts``; the region levels: ``check_village``).
Parsers take the raw text of a cell or form field and return a typed value or raise
``FieldError``; ``check_*`` return issues and ``validate_*`` return ``(values, issues)``,
where each issue names the field by its Chinese label and gives a stable code (contract.md
import files; rules.md §1–§5).

The importer (``registry.importing``, column-wise parsing, one fetch of the database facts),
the web forms and the API (``registry.web.writes``) call the same checks. Where a path
deliberately accepts what another refuses, ``DELIBERATE_DIFFERENCES`` names it, and the
checks consult that table (``applies``) — the table is the behaviour, not a comment on it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Callable, Collection, Iterable, Mapping

import sqlalchemy as sa

from registry import codes
from registry.errors import Issue
from registry.ids import id_problem
from registry.rules import classification_conflict, complete_sql, is_complete
from registry.storable_text import BAD_CHARS, BAD_CHARS_SINGLE_LINE, bad_text_message


class FieldError(Exception):
    """字段错误 One bad value: a stable code and a Chinese reason."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class FieldSpec:
    """字段 One column/field: its English name, Chinese label and parser."""

    name: str
    label: str
    parse: Callable[[str], Any]
    required: bool = False
    default: Any = None
    multiline: bool = False  # tab and line breaks allowed inside (registry.storable_text)


# ---------------------------------------------------------------- parsers

def text(max_len: int) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if len(raw) > max_len:
            raise FieldError("TOO_LONG", f"长度 {len(raw)} 超过上限 {max_len} 个字符")
        return raw

    def column(cells: list[str], default, required: bool) -> list:
        if max(map(len, cells), default=0) > max_len or (required and "" in cells):
            raise ValueError
        return [c if c else default for c in cells]

    parse.column = column
    return parse


_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))


def normalise_id(raw: str) -> str:
    """编号规范化 An id as keys are compared (issue 18): NFKC (full-width letters and digits become
    ASCII), zero-width characters removed, trimmed."""
    return unicodedata.normalize("NFKC", raw).translate(_ZERO_WIDTH).strip()


def identifier(max_len: int) -> Callable[[str], str]:
    """编号 An id (patient, village, region, team member): normalised (``normalise_id``), then bounded."""

    def parse(raw: str) -> str | None:
        value = normalise_id(raw)
        if len(value) > max_len:
            raise FieldError("TOO_LONG", f"长度 {len(value)} 超过上限 {max_len} 个字符")
        return value or None  # nothing but zero-width characters: blank (parse_fields, ``_invisible_only``)

    def column(cells: list[str], default, required: bool) -> list:
        if not "".join(cells).isascii():
            cells = [normalise_id(c) for c in cells]
        if max(map(len, cells), default=0) > max_len or (required and "" in cells):
            raise ValueError
        return [c if c else default for c in cells]

    parse.column = column
    return parse


def coded(enum_cls) -> Callable[[str], Any]:
    """A coded value: its code or its Chinese label (e.g. '1' or '男')."""
    lookup: dict[str, Any] = {}
    for member in enum_cls:
        value = member.value
        lookup[str(value)] = value
        lookup[member.label] = value
    choices = enum_cls.choices()

    def parse(raw: str):
        value = lookup.get(raw)
        if value is None:
            if raw.endswith(".0") and raw[:-2] in lookup:  # "1.0" from spreadsheets
                return lookup[raw[:-2]]
            raise FieldError("BAD_CODE", f"值“{raw}”不是有效编码，应为 {choices}")
        return value

    parse.column = _lookup_column(lookup)
    return parse


def _lookup_column(lookup: dict):
    """Vectorised parse of a whole column by dictionary lookup (KeyError → per-cell path)."""

    def column(cells: list[str], default, required: bool) -> list:
        table = lookup if required else {**lookup, "": default}
        return list(map(table.__getitem__, cells))

    return column


def diagnosis(raw: str) -> str:
    try:
        return codes.Diagnosis.parse(raw).value
    except ValueError:
        raise FieldError(
            "BAD_DIAGNOSIS",
            f"诊断“{raw}”不属于六类严重精神障碍：应为编码、中文名称或 ICD-10 编码（F20/F25/F22/F31/F06/F70–F79）",
        ) from None


_DIAGNOSIS_CODES = {m.value: m.value for m in codes.Diagnosis}
diagnosis.column = _lookup_column(_DIAGNOSIS_CODES)


def risk(raw: str) -> int:
    try:
        return int(codes.RiskLevel.parse(raw))
    except (ValueError, KeyError):
        raise FieldError("BAD_CODE", f"危险性“{raw}”无效，应为 0–5 级") from None


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


_ISO_DATES = re.compile(r"(?:\d{4}-\d{2}-\d{2})*", re.ASCII)


def _date_column(cells: list[str], default, required: bool) -> list:
    if required and "" in cells:
        raise ValueError
    filled = list(filter(None, cells))
    # every filled cell 10 characters, so one match over the joined column checks each as YYYY-MM-DD
    if (filled and set(map(len, filled)) != {10}) or _ISO_DATES.fullmatch("".join(filled)) is None:
        raise ValueError
    fromiso = date.fromisoformat
    if len(filled) == len(cells):
        return list(map(fromiso, cells))
    return [fromiso(c) if c else default for c in cells]


def iso_date(raw: str) -> date:
    try:
        # contract.md: dates are ISO YYYY-MM-DD (not the other forms fromisoformat takes, e.g. 2026-W45-1)
        if len(raw) == 10 and _ISO_DATE.fullmatch(raw):
            return date.fromisoformat(raw)
        if len(raw) == 19 and _ISO_DATE.fullmatch(raw[:10]) and raw[10] in " T" and raw.endswith("00:00:00"):  # spreadsheet datetime
            return date.fromisoformat(raw[:10])
    except ValueError:
        pass
    raise FieldError("BAD_DATE", f"日期“{raw}”无效，应为 YYYY-MM-DD 格式的真实日期")


iso_date.column = _date_column
risk.column = _lookup_column({str(i): i for i in range(6)})


def count(raw: str) -> int:
    text_ = raw[:-2] if raw.endswith(".0") else raw
    if not text_.isdigit():
        raise FieldError("BAD_NUMBER", f"次数“{raw}”无效，应为 0 或正整数")
    value = int(text_)
    if value > 999:
        raise FieldError("BAD_NUMBER", f"次数 {value} 不合理（超过 999）")
    return value


def _count_column(cells: list[str], default, required: bool) -> list:
    if required and "" in cells:
        raise ValueError
    filled = list(filter(None, cells))
    if not all(map(str.isdigit, filled)) or max(map(len, filled), default=0) > 3:
        raise ValueError
    return [int(c) if c else default for c in cells]


count.column = _count_column


def positive_int(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        text_ = raw[:-2] if raw.endswith(".0") else raw
        if not text_.isdigit() or not (low <= int(text_) <= high):
            raise FieldError("BAD_NUMBER", f"数值“{raw}”无效，应为 {low}–{high} 的整数")
        return int(text_)

    return parse


def population(raw: str) -> int:
    text_ = raw[:-2] if raw.endswith(".0") else raw
    if not text_.isdigit():
        raise FieldError("BAD_NUMBER", f"常住人口“{raw}”无效，应为非负整数")
    return int(text_)


_FLAGS = {"0": False, "1": True, "否": False, "是": True, "无": False, "有": True}


def flag(raw: str) -> bool:
    value = _FLAGS.get(raw[:-2] if raw.endswith(".0") else raw)
    if value is None:
        raise FieldError("BAD_CODE", f"值“{raw}”无效，应为 0 否 / 1 是")
    return value


flag.column = _lookup_column(_FLAGS)


def symptom_list(raw: str) -> str:
    """目前症状 Comma/space/、-separated symptom codes 1–12, stored sorted as '1,5'."""
    parts = [p for p in raw.replace("、", ",").replace(" ", ",").split(",") if p]
    parse = coded(codes.Symptom)
    return ",".join(str(v) for v in sorted({parse(p) for p in parts}))


# ---------------------------------------------------------------- field specs per entity

REGION_FIELDS = [
    FieldSpec("code", "编码", identifier(32), required=True),
    FieldSpec("name", "名称", text(100), required=True),
    FieldSpec("level", "级别", coded(codes.RegionLevel), required=True),
    FieldSpec("parent_code", "上级编码", identifier(32)),
    FieldSpec("population", "常住人口", population),
]

PATIENT_FIELDS = [
    FieldSpec("patient_id", "患者编号", identifier(64), required=True),
    FieldSpec("name", "姓名", text(100), required=True),
    FieldSpec("sex", "性别", coded(codes.Sex), required=True),
    FieldSpec("birth_date", "出生日期", iso_date, required=True),
    FieldSpec("id_number", "身份证号", text(18)),
    FieldSpec("village_code", "村编码", identifier(32), required=True),
    FieldSpec("address", "现住址", text(255)),
    FieldSpec("phone", "联系电话", text(32)),
    FieldSpec("diagnosis", "诊断", diagnosis, required=True),
    FieldSpec("diagnosed_on", "确诊日期", iso_date),
    FieldSpec("registered_on", "建档日期", iso_date, required=True),
    FieldSpec("report_type", "报告类型", coded(codes.ReportType), default=2),
    FieldSpec("consent", "知情同意", coded(codes.Consent), default=1),
    FieldSpec("guardian_name", "监护人", text(100)),
    FieldSpec("guardian_phone", "监护人电话", text(32)),
    FieldSpec("economic_status", "经济状况", coded(codes.EconomicStatus)),
    FieldSpec("status", "状态", coded(codes.PatientStatus), default="active"),
    FieldSpec("status_on", "状态日期", iso_date),
    FieldSpec("lai_drug", "长效针剂", text(100)),
    FieldSpec("lai_interval_weeks", "注射间隔周", positive_int(1, 52)),
    FieldSpec("lai_last_on", "末次注射日期", iso_date),
]
# 个人信息补充表 (2018) and 以奖代补 (contract.md [2026-12] "patients.csv gains"): optional import
# columns — a file without the column leaves the stored value alone (registry.importing.KEPT_WHEN_ABSENT) —
# and fields of the registration form and the API.
PATIENT_SUPPLEMENT_FIELDS = [
    FieldSpec("guardian_relation", "与患者关系", text(20)),
    FieldSpec("guardian_address", "监护人住址", text(255)),
    FieldSpec("village_contact", "村(居)委会联系人", text(100)),
    FieldSpec("village_contact_phone", "村(居)委会联系人电话", text(32)),
    FieldSpec("household_type", "户别", coded(codes.HouseholdType)),
    FieldSpec("employment", "就业情况", coded(codes.Employment)),
    FieldSpec("first_onset_on", "初次发病时间", iso_date),
    FieldSpec("past_lockup", "既往关锁情况", coded(codes.PastLockup)),
    FieldSpec("outpatient_treatment", "门诊治疗情况", coded(codes.OutpatientTreatment)),
    FieldSpec("admissions", "曾住院次数", count),
    FieldSpec("diagnosing_hospital", "确诊医院", text(100)),
    FieldSpec("guardian_reward", "以奖代补", flag, default=False),
    FieldSpec("lai_dose", "针剂剂量", text(50)),
]
# Accepted on forms and the API, not named by the import contract.
PATIENT_EXTRA_FIELDS = [
    FieldSpec("status_detail", "死亡原因/迁往地", text(255)),
    *PATIENT_SUPPLEMENT_FIELDS,
]

SOCIAL_FUNCTION = coded(codes.Condition)
FOLLOW_UP_FIELDS = [
    FieldSpec("patient_id", "患者编号", identifier(64), required=True),
    FieldSpec("visit_on", "随访日期", iso_date, required=True),
    FieldSpec("mode", "随访方式", coded(codes.FollowUpMode)),
    FieldSpec("lost_reason", "失访原因", coded(codes.LostReason)),
    FieldSpec("risk_level", "危险性", risk),
    FieldSpec("insight", "自知力", coded(codes.Insight)),
    FieldSpec("symptoms_obvious", "精神症状明显", flag),
    FieldSpec("sf_self_care", "个人生活料理", SOCIAL_FUNCTION),
    FieldSpec("sf_housework", "家务劳动", SOCIAL_FUNCTION),
    FieldSpec("sf_work", "生产劳动及工作", coded(codes.SocialFunction)),
    FieldSpec("sf_study", "学习能力", SOCIAL_FUNCTION),
    FieldSpec("sf_social", "社会人际交往", SOCIAL_FUNCTION),
    FieldSpec("incidents_mild", "轻度滋事", count),
    FieldSpec("incidents_disturbance", "肇事", count),
    FieldSpec("incidents_crime", "肇祸", count),
    FieldSpec("self_harm", "自伤", count),
    FieldSpec("suicide_attempt", "自杀未遂", count),
    FieldSpec("hospital_status", "住院情况", coded(codes.HospitalStatus)),
    FieldSpec("adherence", "服药依从性", coded(codes.Adherence)),
    FieldSpec("adverse_reaction_serious", "严重药物不良反应", flag),
    FieldSpec("physical_illness_serious", "严重躯体疾病", flag),
    FieldSpec("classification", "随访分类", coded(codes.Classification)),
    FieldSpec("psych_support_patient", "心理疏导(患者)", flag),
    FieldSpec("psych_support_family", "心理疏导(家属)", flag),
    FieldSpec("rehabilitation", "社区康复", flag),
    FieldSpec("next_visit_on", "下次随访日期", iso_date),  # contract.md [2026-12]; rules.md §5 the doctor's own date
]
# The rest of the 2018 随访服务记录表 (forms and API; rules.md §3).
FOLLOW_UP_EXTRA_FIELDS = [
    FieldSpec("met_with", "随访对象", text(50)),
    FieldSpec("death_on", "死亡日期", iso_date),
    FieldSpec("death_cause", "死亡原因", text(100)),
    FieldSpec("symptoms", "目前症状", symptom_list),
    FieldSpec("symptoms_other", "其他症状", text(255), multiline=True),
    FieldSpec("sleep", "睡眠情况", coded(codes.Condition)),
    FieldSpec("diet", "饮食情况", coded(codes.Condition)),
    FieldSpec("incidents_other", "其他危害行为", count),
    FieldSpec("lock_status", "关锁情况", coded(codes.LockStatus)),
    FieldSpec("last_discharge_on", "末次出院日期", iso_date),
    FieldSpec("lab_tests", "实验室检查", text(255), multiline=True),
    FieldSpec("adverse_reaction", "药物不良反应", coded(codes.AdverseReaction)),
    FieldSpec("treatment_effect", "治疗效果", coded(codes.TreatmentEffect)),
    FieldSpec("referral", "是否转诊", flag),
    FieldSpec("referral_reason", "转诊原因", text(255), multiline=True),
    FieldSpec("referral_to", "转诊至机构及科室", text(255)),
    FieldSpec("specialist_contacted", "是否联系精神专科医师", flag),
    FieldSpec("joint_notified", "是否通知联席部门", flag),
    FieldSpec("notified_police", "受理人(公安)", text(100)),
    FieldSpec("notified_community", "受理人(社区)", text(100)),
    FieldSpec("medication", "用药情况", text(1000), multiline=True),
    FieldSpec("advised_medication", "用药指导", text(1000), multiline=True),
    FieldSpec("lai_drug", "长效针剂", text(100)),
    FieldSpec("lai_interval_weeks", "注射间隔周", positive_int(1, 52)),
    FieldSpec("lai_dose", "针剂剂量", text(50)),
    FieldSpec("rehabilitation_measures", "康复措施", text(255), multiline=True),
    FieldSpec("doctor_signature", "随访医生签名", text(100)),
    FieldSpec("family_signature", "患者(家属)签名", text(100)),
]

HEALTH_CHECK_FIELDS = [
    FieldSpec("patient_id", "患者编号", identifier(64), required=True),
    FieldSpec("checked_on", "体检日期", iso_date, required=True),
]

# contract.md injections.csv; the form and API carry the date only (the plan names the drug and dose).
INJECTION_FIELDS = [
    FieldSpec("patient_id", "患者编号", identifier(64), required=True),
    FieldSpec("given_on", "注射日期", iso_date, required=True),
    FieldSpec("drug", "药品", text(100)),
    FieldSpec("dose", "剂量", text(50)),
]

LEAVING_STATUSES = (codes.PatientStatus.DEAD, codes.PatientStatus.MOVED_OUT)


def leaving_status(raw: str) -> str:
    """离册状态 Death or move-out, by code or label (``codes.PatientStatus``; the status form cannot set 在册)."""
    value = next((s.value for s in LEAVING_STATUSES if raw in (s.value, s.label)), None)
    if value is None:
        choices = " / ".join(f"{s.value} {s.label}" for s in LEAVING_STATUSES)
        raise FieldError("BAD_STATUS", f"值“{raw[:40]}”无效，应为 {choices}")
    return value


# 死亡/迁出 The status-change form: a stored patient leaves the register (rules.md §1).
STATUS_FIELDS = [
    FieldSpec("status", "状态", leaving_status),
    FieldSpec("status_on", "状态日期", iso_date),
    FieldSpec("status_detail", "死亡原因/迁往地", text(255)),
]

# contract.md [2026-12] participants.csv: attendance per person on a follow-up (rules.md §6.2); the
# follow-up is the patient's row of that date, the n-th of that date with ``seq`` (default 1).
PARTICIPANT_FIELDS = [
    FieldSpec("patient_id", "患者编号", identifier(64), required=True),
    FieldSpec("visit_on", "随访日期", iso_date, required=True),
    FieldSpec("role", "角色", coded(codes.TeamRole), required=True),
    FieldSpec("member_id", "成员编号", identifier(64)),
    FieldSpec("present", "到场", flag, required=True),
    FieldSpec("reason", "未到场原因", text(200)),
    FieldSpec("seq", "当日第几次随访", positive_int(1, 99), default=1),
]

TEAM_MEMBER_FIELDS = [
    FieldSpec("member_id", "成员编号", identifier(64), required=True),
    FieldSpec("name", "姓名", text(100), required=True),
    FieldSpec("role", "角色", coded(codes.TeamRole), required=True),
    FieldSpec("phone", "电话", text(32)),
    FieldSpec("region_code", "服务地区编码", identifier(32), required=True),
    # contract.md [2026-12]: the region's primary member for the role (rules.md §6.1)
    FieldSpec("primary", "主责成员", flag, default=False),
]

# 个案管理团队 contract.md [2026-12] care_team.csv, the web form and the API: one dated assignment
# (rules.md §6.1); ``to_on`` blank = open, both ends inclusive.
CARE_TEAM_FIELDS = [
    FieldSpec("patient_id", "患者编号", identifier(64), required=True),
    FieldSpec("member_id", "成员编号", identifier(64), required=True),
    FieldSpec("role", "角色", coded(codes.TeamRole), required=True),
    FieldSpec("from_on", "开始日期", iso_date, required=True),
    FieldSpec("to_on", "结束日期", iso_date),
]


def check_assignment(values: Mapping[str, Any], member_role: str | None) -> list[Issue]:
    """团队指派 One assignment (rules.md §6.1) on every channel: the member exists (``member_role`` its
    stored or imported role, None when unknown), the role is the member's own role, and it does not
    end before it starts."""
    issues = _member_role_issues(values, member_role, "指派")
    start, end = values.get("from_on"), values.get("to_on")
    if start and end and end < start:
        issues.append(Issue("ASSIGNMENT_ENDS_BEFORE_START", f"结束日期 {end.isoformat()} 早于开始日期 {start.isoformat()}",
                            column="to_on", value=end.isoformat()))
    return issues


def _member_role_issues(values: Mapping[str, Any], member_role: str | None, verb: str) -> list[Issue]:
    """A named member exists (``member_role`` its stored or imported role, None when unknown) and the
    row's role is the member's own (rules.md §6.1: members are people with a role)."""
    member, role = values.get("member_id"), values.get("role")
    if member and member_role is None:
        return [Issue("UNKNOWN_MEMBER", f"团队成员编号 {member} 不存在", column="member_id", value=member)]
    if member and role and role != member_role:
        return [Issue("ROLE_MISMATCH", f"角色应与成员 {member} 的角色一致（{codes.TeamRole(member_role).label}），"
                      f"不能{verb}为{codes.TeamRole(role).label}", column="role", value=role)]
    return []


def check_participant(values: Mapping[str, Any], member_role: str | None) -> list[Issue]:
    """参加人员 One person's attendance row (rules.md §6.2) on every channel (``participants.csv``, the
    API): a named member exists and the row's role is the member's own — else a village cadre's row
    could mark the police present (§6.2: every required role has a participant marked present).
    A row without ``member_id`` is the role's unnamed row."""
    return _member_role_issues(values, member_role, "登记")


@dataclass(frozen=True)
class PrimaryMark:
    """主责标记 One team-member row of an import as it would be stored: its position (``key``), file and
    line, member, region, role and ``primary`` flag."""

    key: Any
    file: str
    line: int
    member_id: str
    region_code: str
    role: str
    primary: bool


def duplicate_primaries(marks: list[PrimaryMark], stored: Mapping[str, tuple[str, str]]) -> dict[Any, Issue]:
    """一区一角色一主责 rules.md §6.1 "the county marks one primary per region and role": the rows
    (``marks``, file order, the rows without other issues) refused so that, once the rest applies, each
    (region, role) has at most one primary member. ``stored``: the stored primaries, member_id →
    (region, role); a row replaces its member's stored values (importing upserts by member_id).

    The primary that stays is the stored one the file leaves alone, else the stored one the file marks
    again, else the file's first; every other row marking a primary in that (region, role) is refused
    (``DUPLICATE_PRIMARY``, naming the other member). Moving the primary in one file (old row 0, new
    row 1) and re-marking the current primary pass. A refused row leaves its member as stored, which
    may clash in turn: repeated until nothing changes. Stored duplicates the file does not touch are
    not the file's fault and refuse nothing."""
    refused: dict[Any, Issue] = {}
    while True:
        rows = [m for m in marks if m.key not in refused]
        in_file = {m.member_id: m for m in rows}
        groups: dict[tuple[str, str], list[tuple[str, PrimaryMark | None]]] = {}
        for member, (region, role) in stored.items():
            if member not in in_file:
                groups.setdefault((region, role), []).append((member, None))
        for m in rows:
            if m.primary:
                groups.setdefault((m.region_code, m.role), []).append((m.member_id, m))
        new = False
        for (region, role), members in groups.items():
            marked = [m for _member, m in members if m is not None]
            if len(members) < 2 or not marked:
                continue
            untouched = [member for member, m in members if m is None]
            again = [m for m in marked if stored.get(m.member_id) == (region, role)]
            keeper, keeper_row = (untouched[0], None) if untouched else (
                (again[0].member_id, again[0]) if again else (marked[0].member_id, marked[0]))
            where = f"第{keeper_row.line}行的成员 {keeper}" if keeper_row is not None else f"已入库的成员 {keeper}"
            label = codes.TeamRole(role).label if role in {r.value for r in codes.TeamRole} else role
            for m in marked:
                if m is keeper_row:
                    continue
                refused[m.key] = Issue(
                    "DUPLICATE_PRIMARY",
                    f"{m.file} 第{m.line}行：成员 {m.member_id} 与{where}同为地区 {region} 的{label}主责成员；"
                    f"每个地区每个角色只能有一名主责成员（请把原主责成员标为0，或本行标为0）",
                    column="primary", value="1")
                new = True
        if not new:
            return refused


def _shown(cell: str) -> str:
    """A refused value as an issue may show it: its control characters as U+ codes."""
    return BAD_CHARS_SINGLE_LINE.sub(lambda m: f"<U+{ord(m.group()):04X}>", cell[:80])


def _bad_text_rows(cells: list[str], spec: FieldSpec) -> set[int]:
    """Rows of a column whose cell holds a refused character (one search over the column first)."""
    pattern = BAD_CHARS if spec.multiline else BAD_CHARS_SINGLE_LINE
    if pattern.search("".join(cells)) is None:
        return set()
    return {i for i, c in enumerate(cells) if pattern.search(c)}


def parse_fields(raw: dict[str, str], specs: list[FieldSpec]) -> tuple[dict[str, Any], list[Issue]]:
    """Parse every field of one row; blank = unknown (the default). Issues name the field."""
    values: dict[str, Any] = {}
    issues: list[Issue] = []
    for spec in specs:
        cell = raw.get(spec.name)
        cell = cell.strip(" \t\r\n") if cell is not None else ""
        bad = bad_text_message(cell, multiline=spec.multiline)
        if bad:
            issues.append(Issue("BAD_TEXT", f"{spec.label}：{bad}", column=spec.name, value=_shown(cell)))
            values[spec.name] = None
            continue
        cell = cell.strip()
        if cell == "":
            if spec.required:
                issues.append(Issue("REQUIRED", f"{spec.label}不能为空", column=spec.name))
            values[spec.name] = spec.default
            continue
        try:
            values[spec.name] = spec.parse(cell)
        except FieldError as err:
            issues.append(Issue(err.code, f"{spec.label}：{err.message}", column=spec.name, value=cell))
            continue
        if values[spec.name] is None:  # an id of only invisible characters is blank (``_invisible_only``)
            if spec.required:
                issues.append(_invisible_only(spec, cell))
            values[spec.name] = spec.default
    return values, issues


def _invisible_only(spec: FieldSpec, cell: str) -> Issue:
    """A parser returns None for a cell that is blank once normalised (an id of nothing but zero-width
    characters, ``normalise_id``): blank as an empty cell is, so REQUIRED for a required field — never
    an empty key naming no row (the import wrote one and failed on the foreign key, input audit)."""
    return Issue("REQUIRED", f"{spec.label}不能为空（只含不可见字符）", column=spec.name, value=_shown(cell))


def parse_columns(columns: dict[str, list[str]], n: int, specs: list[FieldSpec]) -> tuple[dict[str, list], dict[int, list[Issue]]]:
    """Parse whole columns at once (the import path): a vectorised parse per column, falling
    back to the per-cell parser — with the same issues as ``parse_fields`` — only for a column
    that holds a bad or unusual value. Missing columns take their defaults."""
    values: dict[str, list] = {}
    issues: dict[int, list[Issue]] = {}
    for spec in specs:
        cells = columns.get(spec.name)
        if cells is None:
            values[spec.name] = [spec.default] * n
            continue
        if (BAD_CHARS if spec.multiline else BAD_CHARS_SINGLE_LINE).search("".join(cells)) is None:
            # no refused character anywhere in the raw column (one search): nothing to report, and
            # the two strips below come to one (import speed)
            bad_rows: set[int] = set()
        else:
            cells = [c.strip(" \t\r\n") for c in cells]
            bad_rows = _bad_text_rows(cells, spec)
        if bad_rows:
            for i in bad_rows:
                issues.setdefault(i, []).append(Issue("BAD_TEXT", f"{spec.label}：{bad_text_message(cells[i], multiline=spec.multiline)}",
                                                      column=spec.name, value=_shown(cells[i])))
                cells[i] = ""
        cells = list(map(str.strip, cells))
        fast = None if bad_rows else getattr(spec.parse, "column", None)
        if fast is not None:
            try:
                values[spec.name] = fast(cells, spec.default, spec.required)
                continue
            except (KeyError, ValueError, TypeError):
                pass
        out = []
        for i, cell in enumerate(cells):
            if i in bad_rows:
                out.append(None)
                continue
            if cell == "":
                if spec.required:
                    issues.setdefault(i, []).append(Issue("REQUIRED", f"{spec.label}不能为空", column=spec.name))
                out.append(spec.default)
                continue
            try:
                value = spec.parse(cell)
            except FieldError as err:
                issues.setdefault(i, []).append(Issue(err.code, f"{spec.label}：{err.message}", column=spec.name, value=cell))
                out.append(None)
                continue
            if value is None:  # blank once normalised, as in parse_fields
                if spec.required:
                    issues.setdefault(i, []).append(_invisible_only(spec, cell))
                value = spec.default
            out.append(value)
        values[spec.name] = out
    return values, issues


# ---------------------------------------------------------------- paths and their deliberate differences

class Channel(StrEnum):
    """录入途径 Where a row comes from. Forms and the API share one code path (registry.web.writes)."""

    IMPORT = "import"
    FORM = "form"
    API = "api"


ENTRY = frozenset({Channel.FORM, Channel.API})
ACTIVE = codes.PatientStatus.ACTIVE.value
EVERY_CHANNEL = frozenset(Channel)


@dataclass(frozen=True)
class Difference:
    """有意差异 One thing a path deliberately refuses while another accepts it (or handles otherwise)."""

    code: str
    entity: str
    refused_by: frozenset[Channel]
    import_does: str
    entry_does: str
    why: str


# The one table of deliberate differences between the import and the forms/API (docs/import.md
# carries the same table; tests/test_validation_paths.py checks both). A check whose code is here
# runs only on the channels in ``refused_by``; every other check runs on every channel.
DELIBERATE_DIFFERENCES: tuple[Difference, ...] = (
    Difference(
        "VISIT_BEFORE_REGISTRATION", "followups", ENTRY,
        "accepted: kept as history", "refused",
        "A county's history may hold visits from before (re-)registration, e.g. a transfer-in; rules.md §5 "
        "counts only follow-ups on or after registration, so such a row changes no task or rate. A doctor "
        "recording a visit of a registered patient has mistyped the date.",
    ),
    Difference(
        "RISK_REQUIRED", "followups", ENTRY,
        "accepted: the follow-up is simply not complete", "refused",
        "rules.md §3: a reached follow-up without a risk level is not complete (it drives no schedule and "
        "counts in no rate), and old paper records lack it; the form marks 危险性 as required for a reached "
        "patient (rules.md §2: every follow-up).",
    ),
    Difference(
        "BEFORE_REGISTRATION", "health_checks", ENTRY,
        "accepted: kept as history", "refused (health checks and injections)",
        "As for visits: history may predate registration; rules.md §5 counts any check dated in the year.",
    ),
    Difference(
        "DUPLICATE", "health_checks", ENTRY,
        "unchanged: re-importing a stored row changes nothing", "refused",
        "contract.md: rows are keyed, importing the same file twice changes nothing; a form that records the "
        "same check again is a double submission. (Twice in one file is DUPLICATE_ID on the import.)",
    ),
    Difference(
        "NO_LAI_PLAN", "injections", ENTRY,
        "accepted: the LAI history of a plan since stopped", "refused",
        "injections.csv is the LAI history (contract.md [2026-12]); a patient whose plan stopped keeps it. A "
        "doctor records an injection under the current plan (rules.md §5 long-acting injection).",
    ),
    Difference(
        "BEFORE_LAST_INJECTION", "injections", ENTRY,
        "accepted: history rows in any order; the plan's last injection is the latest row", "refused",
        "A county's history arrives whole; a doctor recording an injection older than the last one has "
        "mistyped the date.",
    ),
    Difference(
        "PATIENT_EXISTS", "patients", ENTRY,
        "updated: the row is keyed by patient_id", "refused",
        "The import corrects stored patients by key; registration (新患者建档) creates a new one only.",
    ),
    Difference(
        "ALREADY_INACTIVE", "patients", ENTRY,
        "the row carries the whole status (updated by key)", "refused",
        "The status form changes a 在册 patient once; the import states the status as it is.",
    ),
    Difference(
        "STATUS_ON_REGISTRATION", "patients", ENTRY,
        "status and status_on imported", "ignored: a new registration is 在册",
        "Death or move-out has its own form (record_status), which checks the date against registration.",
    ),
    Difference(
        "VILLAGE_OUT_OF_SCOPE", "patients", ENTRY,
        "any village of the county", "refused outside the doctor's township",
        "The import is the operator's, for the whole register; a doctor registers in their own township "
        "(rules.md §8).",
    ),
    Difference(
        "PATIENT_FORBIDDEN", "followups", ENTRY,
        "UNKNOWN_PATIENT (an issue on the row)", "403 PATIENT_FORBIDDEN (also when it does not exist)",
        "The web never tells a user whether a patient outside their scope exists (rules.md §8).",
    ),
    Difference(
        "UNKNOWN_FIELD", "every", ENTRY,
        "UNKNOWN_COLUMN on the header (line 1)", "UNKNOWN_FIELD per field; BAD_VALUE for a non-scalar",
        "The same rule (only named fields) in the shape of each input.",
    ),
)
_ONLY = {d.code: d.refused_by for d in DELIBERATE_DIFFERENCES}


def applies(code: str, channel: Channel) -> bool:
    """适用 Whether the check with ``code`` runs on ``channel`` (DELIBERATE_DIFFERENCES)."""
    return channel in _ONLY.get(code, EVERY_CHANNEL)


@dataclass(frozen=True, slots=True)
class PatientFacts:
    """患者事实 What the checks of a follow-up, health check or injection need from its patient row."""

    birth_date: date | None
    registered_on: date | None
    status: str = codes.PatientStatus.ACTIVE.value
    status_on: date | None = None
    lai_drug: str | None = None
    lai_last_on: date | None = None

    @classmethod
    def of(cls, patient) -> "PatientFacts":
        """From a stored ``Patient`` (or anything with the same attributes)."""
        return cls(patient.birth_date, patient.registered_on, patient.status or ACTIVE, patient.status_on,
                   getattr(patient, "lai_drug", None), getattr(patient, "lai_last_on", None))

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "PatientFacts":
        """From a parsed patient row (the import file)."""
        return cls(values.get("birth_date"), values.get("registered_on"), values.get("status") or ACTIVE,
                   values.get("status_on"), values.get("lai_drug"), values.get("lai_last_on"))


# ---------------------------------------------------------------- row checks

def _date_issue(field: str, label: str, value: date | None, today: date, birth: date | None) -> Issue | None:
    if value is None:
        return None
    if value > today:
        return Issue("FUTURE_DATE", f"{label} {value.isoformat()} 晚于今天 {today.isoformat()}", column=field, value=value.isoformat())
    if birth is not None and value < birth:
        return Issue("BEFORE_BIRTH", f"{label} {value.isoformat()} 早于出生日期 {birth.isoformat()}", column=field, value=value.isoformat())
    return None


def unknown_patient(patient_id: str) -> Issue:
    """未知患者 A follow-up, health check or injection of a patient the register does not hold."""
    return Issue("UNKNOWN_PATIENT", f"患者编号 {patient_id} 不存在", column="patient_id", value=patient_id)


def check_village(village: str | None, levels: Mapping[str, str]) -> list[Issue]:
    """村校验 A patient belongs to a village (rules.md §1); ``levels`` maps known region codes to levels."""
    if not village:
        return []
    level = levels.get(village)
    if level is None:
        return [Issue("UNKNOWN_VILLAGE", f"村编码 {village} 不存在（请先导入 regions.csv）", column="village_code", value=village)]
    if level != codes.RegionLevel.VILLAGE.value:
        return [Issue("NOT_A_VILLAGE", f"村编码 {village} 是{codes.RegionLevel.label_of(level)}级，患者必须属于村(社区)", column="village_code", value=village)]
    return []


def is_reached_visit(values: Mapping[str, Any]) -> bool:
    """访到患者的随访 A follow-up that reached the patient: complete per rules.md §3 (no lost reason and a
    risk level, or hospital status 1). A follow-up that records the death (死亡日期 on the form, the
    patient not reached) is not one."""
    return is_complete(values.get("lost_reason"), values.get("risk_level"), values.get("hospital_status"))


def latest_reached_visit(follow_ups: Iterable[Any]) -> date | None:
    """最近访到日期 The date of a patient's latest follow-up that reached them (``is_reached_visit``,
    rules.md §3), None when there is none. ``follow_ups``: one patient's rows (attributes
    ``visit_on``, ``lost_reason``, ``risk_level``, ``hospital_status``). SQL twin:
    ``latest_reached_visits_sql`` (tests/test_rule_twins.py and tests/test_status_dates.py keep them equal)."""
    return max((f.visit_on for f in follow_ups
                if is_complete(f.lost_reason, f.risk_level, f.hospital_status)), default=None)


def latest_reached_visits_sql(f) -> sa.Select:
    """最近访到日期 SQL twin of ``latest_reached_visit``: (patient_id, latest reached visit_on) per
    patient with one; ``f`` the follow_up table. Callers add a ``where`` on the patient ids."""
    return sa.select(f.c.patient_id, sa.func.max(f.c.visit_on)).where(complete_sql(f)).group_by(f.c.patient_id)


def reached_visits_sql(f) -> sa.Select:
    """访到患者的随访 SQL twin of ``is_reached_visit`` as rows: (patient_id, visit_on, seq) — the key of
    each follow-up that reached its patient; ``f`` the follow_up table. Callers add a ``where``. The
    import reads it where a row of the file may replace a stored one (``STATUS_BEFORE_VISIT`` once
    the import applies)."""
    return sa.select(f.c.patient_id, f.c.visit_on, f.c.seq).where(complete_sql(f))


def status_before_visit(status: str | None, status_on: date | None, latest_reached: date | None, *,
                        field: str = "status_on", label: str = "状态日期") -> Issue | None:
    """状态日期早于访到日期 A death or move-out is not dated before the patient's latest follow-up that
    reached them (rules.md §1 status, §3 complete follow-up): nobody is reached after they died, and
    the township they left does not visit them any more (a move within the county is the transfer,
    迁出 → 待接收 → 接收, registry.patient_edits, and keeps them 在册). The same rule, read the other
    way, refuses a reached follow-up dated after the status date (``check_follow_up``,
    ``PATIENT_NOT_ACTIVE``). ``STATUS_BEFORE_VISIT`` on every path: the status form and API, the
    patient edit, ``patients.csv``, and the death date of a follow-up (the form makes it the status
    date, ``field`` ``death_on``)."""
    if (status or ACTIVE) == ACTIVE or status_on is None or latest_reached is None or status_on >= latest_reached:
        return None
    what = codes.PatientStatus(status).label if status in codes.values(codes.PatientStatus) else status
    return Issue("STATUS_BEFORE_VISIT",
                 f"{label} {status_on} 早于最近一次访到患者的随访日期 {latest_reached}（{what}后不可能访到患者；"
                 f"请核对{label}或该次随访）", column=field, value=str(status_on))


MEMBER_REGION_LEVELS = (codes.RegionLevel.TOWNSHIP.value, codes.RegionLevel.VILLAGE.value)


def check_member_region(region: str | None, levels: Mapping[str, str]) -> list[Issue]:
    """服务地区校验 A team member serves a township or a village (contract.md ``team_members.csv``:
    ``region_code``, the township or village served; rules.md §6): an unknown code is
    ``UNKNOWN_REGION``, a county (or any other level) ``NOT_TOWNSHIP_OR_VILLAGE``. ``levels`` maps
    the known region codes to their levels (once the import applies)."""
    if not region:
        return []
    level = levels.get(region)
    if level is None:
        return [Issue("UNKNOWN_REGION", f"服务地区编码 {region} 不存在", column="region_code", value=region)]
    if level not in MEMBER_REGION_LEVELS:
        shown = codes.RegionLevel.label_of(level)
        return [Issue("NOT_TOWNSHIP_OR_VILLAGE", f"服务地区编码 {region} 是{shown}级；团队成员服务的地区须为乡镇(街道)或村(社区)",
                      column="region_code", value=region)]
    return []


def check_status(values: dict[str, Any], *, today: date, birth: date | None, date_checked: bool = False,
                 latest_reached: date | None = None) -> list[Issue]:
    """状态校验 A death or move-out needs its date, not in the future, not before registration and not
    before the patient's latest reached follow-up (rules.md §1, §3: ``status_before_visit``).

    Shared by the patient row (import, registration, edit) and the status form (``date_checked``: the
    caller has already checked ``status_on`` against today and the birth date). ``latest_reached``:
    the stored patient's ``latest_reached_visit`` (None for a new patient)."""
    issues: list[Issue] = []
    status = values.get("status") or ACTIVE
    status_on = values.get("status_on")
    if not date_checked:
        issue = _date_issue("status_on", "状态日期", status_on, today, birth)
        if issue:
            issues.append(issue)
    if status != ACTIVE and status_on is None:
        label = codes.PatientStatus(status).label
        issues.append(Issue("STATUS_DATE_REQUIRED", f"状态为“{label}”时必须填写状态日期", column="status_on"))
    reg = values.get("registered_on")
    if status != ACTIVE and reg and status_on and status_on < reg:
        issues.append(Issue("STATUS_BEFORE_REGISTRATION", f"状态日期 {status_on} 早于建档日期 {reg}", column="status_on"))
    issue = status_before_visit(status, status_on, latest_reached)
    if issue:
        issues.append(issue)
    return issues


def check_patient(values: dict[str, Any], *, today: date, latest_reached: date | None = None) -> list[Issue]:
    """患者校验 Cross-field rules of a patient row (rules.md §1, contract.md). ``latest_reached``: the
    stored patient's latest reached follow-up (``check_status``)."""
    issues: list[Issue] = []
    birth = values.get("birth_date")
    if birth is not None and birth > today:
        issues.append(Issue("FUTURE_DATE", f"出生日期 {birth.isoformat()} 晚于今天 {today.isoformat()}", column="birth_date"))
        birth = None
    for field, label in (("diagnosed_on", "确诊日期"), ("registered_on", "建档日期"), ("status_on", "状态日期"), ("lai_last_on", "末次注射日期"),
                         ("first_onset_on", "初次发病时间")):
        issue = _date_issue(field, label, values.get(field), today, birth)
        if issue:
            issues.append(issue)
    number = values.get("id_number")
    if number:
        problem = id_problem(number, birth)
        if problem:
            issues.append(Issue(problem[0], f"身份证号: {problem[1]}", column="id_number", value=number))
        else:
            values["id_number"] = number.upper()
    issues += check_status(values, today=today, birth=birth, date_checked=True, latest_reached=latest_reached)
    if (values.get("status") or ACTIVE) == ACTIVE and values.get("status_on") is not None:
        values["status_on"] = None  # a date without a status change carries no meaning
    lai = [values.get("lai_drug"), values.get("lai_interval_weeks"), values.get("lai_last_on")]
    if any(v is not None for v in lai) and not all(v is not None for v in lai):
        issues.append(
            Issue("LAI_INCOMPLETE", "长效针剂计划须同时填写 长效针剂、注射间隔周、末次注射日期", column="lai_drug")
        )
    return issues


def _after_status(field: str, label: str, on: date | None, patient: PatientFacts, what: str) -> Issue | None:
    """An event dated after the patient's death or move-out (rules.md §1: no longer 在册): a health
    check or an injection, or a follow-up that reached the patient (``status_before_visit`` read the
    other way)."""
    if on is None or patient.status == ACTIVE:
        return None
    if patient.status_on is not None and on <= patient.status_on:
        return None
    status = codes.PatientStatus(patient.status).label
    when = f"（{patient.status_on}）" if patient.status_on else ""
    return Issue("PATIENT_NOT_ACTIVE", f"{label} {on}: 患者已{status}{when}，不能录入之后的{what}", column=field, value=str(on))


def check_follow_up(
    values: dict[str, Any],
    *,
    today: date,
    patient: PatientFacts | None,
    channel: Channel,
    failed: Collection[str] = (),
    latest_reached: date | None = None,
) -> list[Issue]:
    """随访校验 Cross-field rules of a follow-up (rules.md §2–§5), and those against its patient row.

    ``patient`` None: the patient is unknown (the caller reports that). ``failed``: fields whose
    value did not parse (no second issue for them). ``latest_reached``: the patient's latest other
    follow-up that reached them (``latest_reached_visit``; the caller passes it when the row records
    a death): the death date is not before it (``STATUS_BEFORE_VISIT``)."""
    issues: list[Issue] = []
    birth = patient.birth_date if patient else None
    for field, label in (("visit_on", "随访日期"), ("death_on", "死亡日期"), ("last_discharge_on", "末次出院日期")):
        on = values.get(field)
        if on is not None:  # (runs once per imported row: no call for a blank date)
            issue = _date_issue(field, label, on, today, birth)
            if issue:
                issues.append(issue)
    conflict = classification_conflict(values.get("classification"), values.get("risk_level"))
    if conflict:
        issues.append(Issue("CLASSIFICATION_CONFLICT", conflict, column="classification", value=str(values.get("classification"))))
    visit_on = values.get("visit_on")
    # the data conditions first, the channel only when they hold: this runs once per imported row
    if patient is not None and visit_on is not None:
        if patient.registered_on and visit_on < patient.registered_on and applies("VISIT_BEFORE_REGISTRATION", channel):
            issues.append(Issue("VISIT_BEFORE_REGISTRATION", f"随访日期 {visit_on} 早于建档日期 {patient.registered_on}",
                                column="visit_on", value=str(visit_on)))
        if patient.status != ACTIVE and is_reached_visit(values):
            # only a visit that reached the patient: an attempt that found them dead or gone (the
            # 随访服务记录表 recording the death, 失访原因 迁居他处) is a true record (rules.md §1, §3)
            issue = _after_status("visit_on", "随访日期", visit_on, patient, "访到患者的随访")
            if issue:
                issues.append(issue)
    if visit_on is not None and (values.get("death_on") is not None or values.get("last_discharge_on") is not None):
        issues += _after_visit(values, visit_on, patient, latest_reached)
    next_on = values.get("next_visit_on")
    if visit_on is not None and next_on is not None and next_on <= visit_on:
        # rules.md §5 [2026-12]: the doctor's own date is a date after the visit
        issues.append(Issue("NEXT_VISIT_NOT_AFTER_VISIT",
                            f"下次随访日期 {next_on} 必须晚于随访日期 {visit_on}", column="next_visit_on", value=str(next_on)))
    if (visit_on is not None and values.get("risk_level") is None and values.get("lost_reason") is None
            and values.get("hospital_status") != codes.HospitalStatus.IN_HOSPITAL and "risk_level" not in failed and applies("RISK_REQUIRED", channel)):
        issues.append(Issue("RISK_REQUIRED", "访到患者时必须填写危险性评估；未访到请填写失访原因",
                            column="risk_level"))
    return issues


def _after_visit(values: Mapping[str, Any], visit_on: date, patient: PatientFacts | None,
                 latest_reached: date | None = None) -> list[Issue]:
    """随访所记日期 Dates a follow-up records about the past (rules.md §3): the death date and the last
    discharge are on or before the visit (``DEATH_AFTER_VISIT``, ``DISCHARGE_AFTER_VISIT``), and a
    death is not before registration (``STATUS_BEFORE_REGISTRATION``) nor before a visit that reached
    the patient, this one or ``latest_reached`` (``STATUS_BEFORE_VISIT``) — as the patient row's and
    the status form's status date: the form makes the death date the patient's status date (rules.md
    §1). A follow-up recording the death with the patient not reached, dated after it, is a true record."""
    issues: list[Issue] = []
    death, discharge = values.get("death_on"), values.get("last_discharge_on")
    if death is not None and death > visit_on:
        issues.append(Issue("DEATH_AFTER_VISIT", f"死亡日期 {death} 晚于随访日期 {visit_on}", column="death_on", value=str(death)))
    elif death is not None and patient is not None and patient.registered_on and death < patient.registered_on:
        issues.append(Issue("STATUS_BEFORE_REGISTRATION", f"死亡日期 {death} 早于建档日期 {patient.registered_on}",
                            column="death_on", value=str(death)))
    elif death is not None:
        reached = max([on for on in (latest_reached, visit_on if is_reached_visit(values) else None) if on is not None],
                      default=None)
        issue = status_before_visit(codes.PatientStatus.DEAD.value, death, reached, field="death_on", label="死亡日期")
        if issue:
            issues.append(issue)
    if discharge is not None and discharge > visit_on:
        issues.append(Issue("DISCHARGE_AFTER_VISIT", f"末次出院日期 {discharge} 晚于随访日期 {visit_on}",
                            column="last_discharge_on", value=str(discharge)))
    return issues


def check_event(field: str, label: str, on: date | None, patient: PatientFacts, *, today: date, channel: Channel) -> list[Issue]:
    """事件日期 The date of a health check or an injection against today and its patient (rules.md §1, §5)."""
    issues: list[Issue] = []
    issue = _date_issue(field, label, on, today, patient.birth_date)
    if issue:
        issues.append(issue)
    if on is not None and applies("BEFORE_REGISTRATION", channel) and patient.registered_on and on < patient.registered_on:
        issues.append(Issue("BEFORE_REGISTRATION", f"{label} {on} 早于建档日期 {patient.registered_on}", column=field, value=str(on)))
    issue = _after_status(field, label, on, patient, label.removesuffix("日期"))
    if issue:
        issues.append(issue)
    return issues


def check_health_check(values: dict[str, Any], patient: PatientFacts, *, today: date, channel: Channel) -> list[Issue]:
    """体检校验 A health check (rules.md §5 annual health check)."""
    return check_event("checked_on", "体检日期", values.get("checked_on"), patient, today=today, channel=channel)


def check_injection(values: dict[str, Any], patient: PatientFacts, *, today: date, channel: Channel) -> list[Issue]:
    """注射校验 An injection given under the patient's LAI plan (rules.md §5 long-acting injection)."""
    on = values.get("given_on")
    issues = check_event("given_on", "注射日期", on, patient, today=today, channel=channel)
    if not applies("NO_LAI_PLAN", channel):  # the import takes the history (DELIBERATE_DIFFERENCES)
        return issues
    if not patient.lai_drug:
        issues.append(Issue("NO_LAI_PLAN", "注射日期: 该患者没有长效针剂计划", column="given_on"))
    elif on is not None and patient.lai_last_on and on < patient.lai_last_on and applies("BEFORE_LAST_INJECTION", channel):
        issues.append(Issue("BEFORE_LAST_INJECTION", f"注射日期 {on} 早于末次注射日期 {patient.lai_last_on}",
                            column="given_on", value=str(on)))
    return issues


def validate_patient(raw: dict[str, str], *, today: date, extra: bool = False) -> tuple[dict[str, Any], list[Issue]]:
    """患者录入 Parse and check a patient (import row, form or API body)."""
    values, issues = parse_fields(raw, PATIENT_FIELDS + (PATIENT_EXTRA_FIELDS if extra else []))
    if not any(i.column == "birth_date" and i.code in ("BAD_DATE", "REQUIRED") for i in issues):
        issues += check_patient(values, today=today)
    return values, issues


def validate_follow_up(
    raw: dict[str, str], *, today: date, patient: PatientFacts | None, channel: Channel, extra: bool = False,
    latest_reached: date | None = None,
) -> tuple[dict[str, Any], list[Issue]]:
    """随访录入 Parse and check a follow-up (import row, form or API body)."""
    values, issues = parse_fields(raw, FOLLOW_UP_FIELDS + (FOLLOW_UP_EXTRA_FIELDS if extra else []))
    issues += check_follow_up(values, today=today, patient=patient, channel=channel, failed={i.column for i in issues},
                              latest_reached=latest_reached)
    return values, issues


def validate_health_check(raw: dict[str, str], patient: PatientFacts, *, today: date, channel: Channel) -> tuple[dict[str, Any], list[Issue]]:
    """体检录入 Parse and check a health check."""
    values, issues = parse_fields(raw, HEALTH_CHECK_FIELDS)
    return values, issues + check_health_check(values, patient, today=today, channel=channel)


def validate_injection(raw: dict[str, str], patient: PatientFacts, *, today: date, channel: Channel) -> tuple[dict[str, Any], list[Issue]]:
    """注射录入 Parse and check an injection given."""
    values, issues = parse_fields(raw, INJECTION_FIELDS)
    return values, issues + check_injection(values, patient, today=today, channel=channel)


def validate_status_change(
    raw: dict[str, str], patient: PatientFacts, *, today: date, channel: Channel = Channel.FORM,
    latest_reached: date | None = None,
) -> tuple[dict[str, Any], list[Issue]]:
    """死亡/迁出 Parse and check a status change of a stored patient (rules.md §1, §5 cancellation);
    ``latest_reached``: the patient's ``latest_reached_visit`` (``STATUS_BEFORE_VISIT``)."""
    values, issues = parse_fields(raw, STATUS_FIELDS)
    status = values.get("status")
    if status is None and not any(i.column == "status" for i in issues):
        issues.append(Issue("BAD_STATUS", "状态应为 死亡 或 迁出", column="status"))
    if status is not None:
        issues += check_status({**values, "registered_on": patient.registered_on}, today=today, birth=patient.birth_date,
                               latest_reached=latest_reached)
    if patient.status != ACTIVE and applies("ALREADY_INACTIVE", channel):
        issues.append(Issue("ALREADY_INACTIVE", f"状态: 患者已为“{codes.PatientStatus(patient.status).label}”状态", column="status"))
    return values, issues


# ---------------------------------------------------------------- emergencies (rules.md §9) [2026-12]

_ISO_DATETIME = re.compile(r"(\d{4}-\d{2}-\d{2})[ T](\d{2}):(\d{2})(?::(\d{2}))?", re.ASCII)


def local_datetime(raw: str) -> datetime:
    """时间 A wall-clock time "YYYY-MM-DD HH:MM" (or with "T", or with seconds), Asia/Shanghai as on the form."""
    match = _ISO_DATETIME.fullmatch(raw)
    if match:
        try:
            day = date.fromisoformat(match.group(1))
            return datetime(day.year, day.month, day.day, int(match.group(2)), int(match.group(3)), int(match.group(4) or 0))
        except ValueError:
            pass
    raise FieldError("BAD_DATETIME", f"时间“{raw[:40]}”无效，应为 YYYY-MM-DD HH:MM 格式的真实时间")


def code_list(enum_cls) -> Callable[[str], str]:
    """多选 A comma/space/、-separated list of codes (or Chinese labels), stored sorted in enum order: "1,2"."""
    parse = coded(enum_cls)
    order = {m.value: i for i, m in enumerate(enum_cls)}

    def parse_list(raw: str) -> str:
        parts = [p for p in raw.replace("、", ",").replace("，", ",").replace(" ", ",").split(",") if p]
        return ",".join(str(v) for v in sorted({parse(p) for p in parts}, key=order.__getitem__))

    return parse_list


# 应急处置记录单 The record's fields (form, API); names as in registry.models.Emergency.
EMERGENCY_FIELDS = [
    FieldSpec("situations", "应急处置情形", code_list(codes.EmergencySituation), required=True),
    FieldSpec("place", "地点", text(255)),
    FieldSpec("reporter", "报告人", text(100)),
    FieldSpec("reported_at", "报告时间", local_datetime, required=True),
    FieldSpec("report_route", "报告途径", text(100)),
    FieldSpec("reporter_identity", "报告人身份", text(100)),
    FieldSpec("started_at", "处置开始时间", local_datetime),
    FieldSpec("ended_at", "处置结束时间", local_datetime),
    FieldSpec("scene", "现场情况", text(2000), multiline=True),
    FieldSpec("measures", "处置措施", code_list(codes.EmergencyMeasure)),
    FieldSpec("measures_other", "其他措施", text(255)),
    FieldSpec("participant_doctor", "参与医生", text(100)),
    FieldSpec("participant_psychiatrist", "参与精神科医生", text(100)),
    FieldSpec("participant_nurse", "参与护士", text(100)),
    FieldSpec("participant_police", "参与民警", text(100)),
    FieldSpec("police_organ", "公安机关名称", text(100)),
    FieldSpec("diagnosis", "诊断", text(100)),
    FieldSpec("diagnosis_certainty", "诊断类别(确诊/疑似)", coded(codes.DiagnosisCertainty)),
    FieldSpec("effect", "处置效果", text(1000), multiline=True),
    FieldSpec("filled_by", "填表医生", text(100)),
    FieldSpec("filled_on", "填表日期", iso_date),
    FieldSpec("police_signed_by", "公安签字", text(100)),
    FieldSpec("police_signed_at", "公安签字时间", local_datetime),
]
# the fields police never write nor read (rules.md §8: no diagnosis)
EMERGENCY_MEDICAL_FIELDS = ("diagnosis", "diagnosis_certainty")
# the completion of rules.md §9 (end time, measures, effect; the police sign-off): written by the doctor or the
# police, not by an account that only opens the record (registry.web.emergencies.COMPLETE_ROLES)
EMERGENCY_COMPLETION_FIELDS = ("ended_at", "measures", "measures_other", "effect", "police_signed_by", "police_signed_at")


def check_emergency(values: Mapping[str, Any], patient: PatientFacts, *, now_local: datetime,
                    failed: Collection[str] = ()) -> list[Issue]:
    """应急处置校验 A record's cross-field rules (rules.md §9): no time in the future (the report time
    above all), the end not before the start (nor before the report), the police sign-off only when
    police took part, not before registration nor after death or move-out. ``values``: the record as
    it will be stored (an update merged into the stored record); ``now_local``: the wall clock now."""
    issues: list[Issue] = []
    labels = {spec.name: spec.label for spec in EMERGENCY_FIELDS}
    reported, started, ended = values.get("reported_at"), values.get("started_at"), values.get("ended_at")
    if reported is not None and reported > now_local:
        issues.append(Issue("EMERGENCY_REPORT_IN_FUTURE", f"报告时间 {reported:%Y-%m-%d %H:%M} 晚于现在 {now_local:%Y-%m-%d %H:%M}",
                            column="reported_at", value=f"{reported:%Y-%m-%d %H:%M}"))
    for field in ("started_at", "ended_at", "police_signed_at"):
        at = values.get(field)
        if at is not None and at > now_local:
            issues.append(Issue("EMERGENCY_TIME_IN_FUTURE", f"{labels[field]} {at:%Y-%m-%d %H:%M} 晚于现在 {now_local:%Y-%m-%d %H:%M}",
                                column=field, value=f"{at:%Y-%m-%d %H:%M}"))
    if ended is not None and started is not None and ended < started:
        issues.append(Issue("EMERGENCY_END_BEFORE_START",
                            f"处置结束时间 {ended:%Y-%m-%d %H:%M} 早于处置开始时间 {started:%Y-%m-%d %H:%M}",
                            column="ended_at", value=f"{ended:%Y-%m-%d %H:%M}"))
    elif ended is not None and reported is not None and ended < reported and "ended_at" not in failed:
        issues.append(Issue("EMERGENCY_END_BEFORE_REPORT",
                            f"处置结束时间 {ended:%Y-%m-%d %H:%M} 早于报告时间 {reported:%Y-%m-%d %H:%M}",
                            column="ended_at", value=f"{ended:%Y-%m-%d %H:%M}"))
    signed = (values.get("police_signed_by") or "").strip() or values.get("police_signed_at") is not None
    if signed and not (values.get("participant_police") or "").strip():
        issues.append(Issue("EMERGENCY_SIGNOFF_WITHOUT_POLICE", "公安签字：参与人员中没有民警，不能有公安签字（请先填写参与民警）",
                            column="police_signed_by"))
    if reported is not None:
        day = (started or reported).date()
        if patient.registered_on and day < patient.registered_on:
            issues.append(Issue("BEFORE_REGISTRATION", f"应急处置日期 {day} 早于建档日期 {patient.registered_on}",
                                column="reported_at", value=str(day)))
        issue = _after_status("reported_at", "应急处置日期", day, patient, "应急处置")
        if issue:
            issues.append(issue)
    return issues


def validate_emergency(raw: dict[str, str], patient: PatientFacts, *, now_local: datetime,
                       stored: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], list[Issue]]:
    """应急处置录入 Parse and check an emergency record (form or API, one path). ``stored``: the
    record being completed — a field not sent keeps its stored value, a field sent blank clears it.
    Returns the record as it will be stored."""
    sent = [spec for spec in EMERGENCY_FIELDS if stored is None or spec.name in raw]
    values, issues = parse_fields(raw, sent)
    merged = {**(stored or {}), **values}
    issues += check_emergency(merged, patient, now_local=now_local, failed={i.column for i in issues})
    return merged, issues
