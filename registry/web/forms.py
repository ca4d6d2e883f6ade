"""表单 Layout of the web forms: every field of the national 随访服务记录表 (2018) and the
patient registration form, with widgets and choices. Parsing and messages come from
``registry.validation`` (the one validation path shared with the importer)."""

from __future__ import annotations

import re
from datetime import date
from dataclasses import dataclass, field

from registry import codes
from registry.validation import FOLLOW_UP_EXTRA_FIELDS, FOLLOW_UP_FIELDS, PATIENT_EXTRA_FIELDS, PATIENT_FIELDS

_LABELS = {f.name: f.label for f in FOLLOW_UP_FIELDS + FOLLOW_UP_EXTRA_FIELDS}
_PATIENT_LABELS = {f.name: f.label for f in PATIENT_FIELDS + PATIENT_EXTRA_FIELDS}
FLAG_CHOICES = [("0", "否"), ("1", "是")]


@dataclass(frozen=True)
class Widget:
    """控件 One form control."""

    name: str
    label: str
    kind: str  # date | select | radio | number | text | longtext | textarea | symptoms
    choices: list[tuple[str, str]] = field(default_factory=list)
    hint: str = ""
    required: bool = False


# rules.md §5 [decision, 2026-12]: "the form says so next to the field"
NEXT_VISIT_HINT = "须晚于本次随访日期；早于规则规定的下次随访日期时，按此日期安排随访；晚于规则日期不会推迟随访"


def _choices(enum_cls) -> list[tuple[str, str]]:
    return [(str(m.value), f"{m.value} {m.label}") for m in enum_cls]


def fu(name: str, kind: str, choices=None, hint: str = "", required: bool = False) -> Widget:
    """随访控件 A follow-up form control labelled from registry.validation."""
    return Widget(name, _LABELS.get(name, name), kind, choices or [], hint, required)


def pt(name: str, kind: str, choices=None, hint: str = "", required: bool = False) -> Widget:
    """患者控件 A patient form control labelled from registry.validation."""
    return Widget(name, _PATIENT_LABELS.get(name, name), kind, choices or [], hint, required)


COND = _choices(codes.Condition)

# rules.md §3: the 2018 随访服务记录表, section by section, plus the project additions.
FOLLOW_UP_SECTIONS: list[tuple[str, list[Widget]]] = [
    ("随访基本情况", [
        fu("visit_on", "date", required=True),
        fu("mode", "radio", _choices(codes.FollowUpMode)),
        fu("met_with", "text", hint="本人 / 家属 / 其他"),
        fu("lost_reason", "select", _choices(codes.LostReason), hint="访到患者时留空"),
        fu("death_on", "date", hint="患者死亡时填写"),
        fu("death_cause", "text"),
    ]),
    ("危险性评估与症状", [
        Widget("risk_level", _LABELS["risk_level"], "select", [(str(m.value), m.label) for m in codes.RiskLevel],
               hint="访到患者时必填"),
        fu("symptoms", "symptoms", [(str(m.value), m.label) for m in codes.Symptom]),
        fu("symptoms_other", "textarea"),
        fu("symptoms_obvious", "select", FLAG_CHOICES),
        fu("insight", "radio", _choices(codes.Insight)),
        fu("sleep", "radio", COND),
        fu("diet", "radio", COND),
    ]),
    ("社会功能情况", [
        fu("sf_self_care", "radio", COND),
        fu("sf_housework", "radio", COND),
        fu("sf_work", "radio", _choices(codes.SocialFunction)),
        fu("sf_study", "radio", COND),
        fu("sf_social", "radio", COND),
    ]),
    ("危险行为（自上次随访以来，次数）", [
        fu("incidents_mild", "number"),
        fu("incidents_disturbance", "number"),
        fu("incidents_crime", "number"),
        fu("incidents_other", "number"),
        fu("self_harm", "number"),
        fu("suicide_attempt", "number"),
    ]),
    ("关锁、住院与检查", [
        fu("lock_status", "radio", _choices(codes.LockStatus)),
        fu("hospital_status", "radio", _choices(codes.HospitalStatus)),
        fu("last_discharge_on", "date"),
        fu("lab_tests", "textarea"),
        fu("physical_illness_serious", "select", FLAG_CHOICES),
    ]),
    ("用药情况", [
        fu("adherence", "radio", _choices(codes.Adherence)),
        fu("adverse_reaction", "radio", _choices(codes.AdverseReaction)),
        fu("adverse_reaction_serious", "select", FLAG_CHOICES),
        fu("treatment_effect", "radio", _choices(codes.TreatmentEffect)),
        fu("medication", "textarea", hint="药名、剂量、用法，每行一种"),
        fu("advised_medication", "textarea", hint="用药指导"),
        fu("lai_drug", "text", hint="长效针剂药名"),
        fu("lai_interval_weeks", "number", hint="每N周一次"),
        fu("lai_dose", "text"),
    ]),
    ("转诊与联系", [
        fu("referral", "select", FLAG_CHOICES),
        fu("referral_reason", "textarea"),
        fu("referral_to", "longtext"),
        fu("specialist_contacted", "select", FLAG_CHOICES),
        fu("joint_notified", "select", FLAG_CHOICES),
        fu("notified_police", "text"),
        fu("notified_community", "text"),
    ]),
    ("康复与心理支持", [
        fu("rehabilitation_measures", "textarea", hint="生活劳动能力、职业训练、学习能力、社会交往等"),
        fu("rehabilitation", "select", FLAG_CHOICES),
        fu("psych_support_patient", "select", FLAG_CHOICES),
        fu("psych_support_family", "select", FLAG_CHOICES),
    ]),
    ("本次随访分类与下次随访", [
        fu("classification", "radio", _choices(codes.Classification), hint="留空时按规则自动计算"),
        fu("next_visit_on", "date", hint=NEXT_VISIT_HINT),
        fu("doctor_signature", "text"),
        fu("family_signature", "text"),
    ]),
]

ATTENDANCE_CHOICES = [("", "未邀请"), ("1", "到场"), ("0", "未到场")]
# the doctor's own row (rules.md §6, §6.2): blank = no row, the doctor who records the visit was there
DOCTOR_ATTENDANCE_CHOICES = [("", "到场"), ("0", "未到场")]

PATIENT_SECTIONS: list[tuple[str, list[Widget]]] = [
    ("基本信息", [
        pt("patient_id", "text", required=True),
        pt("name", "text", required=True),
        pt("sex", "radio", _choices(codes.Sex), required=True),
        pt("birth_date", "date", required=True),
        pt("id_number", "text", hint="18位，末位可为X"),
        pt("village_code", "select", required=True),
        pt("address", "longtext"),
        pt("phone", "text"),
    ]),
    ("诊断与建档", [
        pt("diagnosis", "select", [(m.value, f"{m.label}（{m.icd10}）") for m in codes.Diagnosis], required=True),
        pt("diagnosed_on", "date"),
        pt("registered_on", "date", required=True),
        pt("report_type", "radio", _choices(codes.ReportType)),
        pt("consent", "radio", _choices(codes.Consent)),
    ]),
    ("监护与帮扶", [
        pt("guardian_name", "text"),
        pt("guardian_phone", "text"),
        pt("economic_status", "radio", _choices(codes.EconomicStatus)),
        pt("guardian_reward", "select", FLAG_CHOICES),
    ]),
    ("个人信息补充表", [
        pt("guardian_relation", "text", hint="如 父亲、配偶"),
        pt("guardian_address", "longtext"),
        pt("village_contact", "text"),
        pt("village_contact_phone", "text"),
        pt("household_type", "radio", _choices(codes.HouseholdType)),
        pt("employment", "select", _choices(codes.Employment)),
        pt("first_onset_on", "date"),
        pt("past_lockup", "radio", _choices(codes.PastLockup)),
        pt("outpatient_treatment", "radio", _choices(codes.OutpatientTreatment)),
        pt("admissions", "number", hint="曾住精神专科医院/综合医院精神科的次数"),
        pt("diagnosing_hospital", "longtext"),
    ]),
    ("长效针剂计划", [
        pt("lai_drug", "text"),
        pt("lai_interval_weeks", "number"),
        pt("lai_last_on", "date"),
        pt("lai_dose", "text"),
    ]),
]


# 长文本 Kinds of control (Widget.kind) for free text a township doctor writes long — an address, a
# hospital, a lab result: "textarea" for a field that may hold line breaks (FieldSpec.multiline),
# "longtext" for one line of text shown whole: a box across the form's width that wraps and grows
# with its value (session 13: a long 现住址 was cut off in a 280 px input). The patient edit form's
# status detail and the reason fields are written the same way (templates).
ONE_LINE_FIELDS = frozenset({w.name for _t, ws in FOLLOW_UP_SECTIONS + PATIENT_SECTIONS for w in ws if w.kind == "longtext"}
                            | {"status_detail", "reason"})


def one_line(value: str) -> str:
    """单行文本 A one-line field as a wrapping box posts it: a line break (typed, or pasted from a
    document) becomes a space — the box only wraps the line; other characters are judged by
    ``registry.validation`` as on every path."""
    return value.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


def errors_by_field(issues) -> dict[str, list[str]]:
    """字段错误 Issues grouped by field for the form template."""
    out: dict[str, list[str]] = {}
    for issue in issues:
        out.setdefault(issue.column or "_", []).append(issue.message)
    return out


DATE_FIELDS = frozenset({w.name for _t, ws in FOLLOW_UP_SECTIONS + PATIENT_SECTIONS for w in ws if w.kind == "date"}
                        | {"status_on", "checked_on", "given_on"})
_COMPACT_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})")


def typed_date(value: str) -> str:
    """日期输入 A date as typed into a form: ``YYYYMMDD`` (a phone's numeric pad has no "-", issue 16)
    that is a real date becomes ``YYYY-MM-DD``; anything else is passed on unchanged for
    ``registry.validation`` to judge (its message then quotes what was typed)."""
    m = _COMPACT_DATE.fullmatch(value.strip())
    if not m:
        return value
    try:
        return date(int(m[1]), int(m[2]), int(m[3])).isoformat()
    except ValueError:
        return value
