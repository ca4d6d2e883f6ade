"""分类干预规则 Pure registry rules: completeness (rules.md §3) and classification (rules.md §4).

No clock and no database here: every function takes plain values (or any object with the
follow-up's attribute names) and returns plain values.
"""

from __future__ import annotations

from typing import Protocol

from registry.codes import Classification, FollowUpMode, HospitalStatus


class FollowUpLike(Protocol):
    mode: int | None
    lost_reason: int | None
    risk_level: int | None
    insight: int | None
    symptoms_obvious: bool | None
    symptoms: str | None
    sf_self_care: int | None
    sf_housework: int | None
    sf_work: int | None
    sf_study: int | None
    sf_social: int | None
    hospital_status: int | None
    adverse_reaction_serious: bool | None
    physical_illness_serious: bool | None
    classification: int | None


SOCIAL_FUNCTION_FIELDS = ("sf_self_care", "sf_housework", "sf_work", "sf_study", "sf_social")


def is_reached(lost_reason: int | None) -> bool:
    """访到 The patient was reached: no 失访原因 recorded (rules.md §3)."""
    return lost_reason is None


def is_complete(lost_reason: int | None, risk_level: int | None, hospital_status: int | None) -> bool:
    """有效随访 Complete follow-up (rules.md §3).

    Reached (no lost reason) with a risk level recorded, or hospital status 1 (目前正在住院).
    """
    if hospital_status == HospitalStatus.IN_HOSPITAL:
        return True
    return lost_reason is None and risk_level is not None


def is_face_to_face(mode: int | None) -> bool:
    """面访 Mode 1 (门诊) or 2 (家庭访视) (rules.md §3)."""
    return mode in (FollowUpMode.CLINIC, FollowUpMode.HOME)


def compute_classification(
    *,
    risk_level: int | None,
    insight: int | None = None,
    symptoms_obvious: bool | None = None,
    symptoms_present: bool = False,
    adverse_reaction_serious: bool | None = None,
    physical_illness_serious: bool | None = None,
    social_functions: tuple[int | None, ...] = (),
) -> Classification | None:
    """计算分类 The classification when the doctor left it blank (rules.md §4, first match wins).

    1. 不稳定: risk 3–5, insight 3 (缺失), obvious psychotic symptoms, a serious adverse drug
       reaction, or a serious physical illness.
    2. 基本稳定: risk 1–2, insight 2, any social-function item 3 (较差), or symptoms present.
    3. 稳定: everything else, which requires risk 0; with no risk level recorded and nothing
       above matching, there is no classification (None).
    """
    if (
        (risk_level is not None and risk_level >= 3)
        or insight == 3
        or bool(symptoms_obvious)
        or bool(adverse_reaction_serious)
        or bool(physical_illness_serious)
    ):
        return Classification.UNSTABLE
    if (
        (risk_level is not None and 1 <= risk_level <= 2)
        or insight == 2
        or any(item == 3 for item in social_functions)
        or symptoms_present
    ):
        return Classification.FAIRLY_STABLE
    if risk_level == 0:
        return Classification.STABLE
    return None


def classification_of(fu: FollowUpLike) -> Classification | None:
    """随访分类 The recorded classification, or the computed one when blank (indicators.md)."""
    if fu.classification is not None:
        return Classification(fu.classification)
    return compute_classification(
        risk_level=fu.risk_level,
        insight=fu.insight,
        symptoms_obvious=fu.symptoms_obvious,
        symptoms_present=bool(fu.symptoms),
        adverse_reaction_serious=fu.adverse_reaction_serious,
        physical_illness_serious=fu.physical_illness_serious,
        social_functions=tuple(getattr(fu, name) for name in SOCIAL_FUNCTION_FIELDS),
    )


def classification_conflict(classification: int | None, risk_level: int | None) -> str | None:
    """分类与危险性矛盾 Why a recorded classification contradicts the risk level (rules.md §4).

    稳定 with risk ≥ 1, or anything but 不稳定 with risk ≥ 3, is rejected; the message names
    both values. Returns None when consistent.
    """
    if classification is None or risk_level is None:
        return None
    label = Classification(classification).label
    if classification == Classification.STABLE and risk_level >= 1:
        return f"随访分类为“{label}”({classification})，但危险性评估为{risk_level}级：稳定要求危险性为0级"
    if classification != Classification.UNSTABLE and risk_level >= 3:
        return f"随访分类为“{label}”({classification})，但危险性评估为{risk_level}级：危险性3级及以上只能为不稳定"
    return None
