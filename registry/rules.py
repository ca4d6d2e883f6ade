"""分类干预规则 The follow-up rules: completeness, face-to-face, 肇事肇祸 (rules.md §3) and classification (rules.md §4).

The one home of each rule, in two forms side by side: the Python rule (pure: no clock and no
database; it takes plain values or any object with the follow-up's attribute names) and its SQL
twin (``*_sql``: a SQLAlchemy expression over a ``follow_up`` table, alias or subquery ``f``
with those column names) that computes the same thing set-based. The scheduler, the indicators,
the month state, the web scopes and the lists import them from here; ``tests/test_rule_twins.py``
compares each pair on random rows on both databases.

``RULES_VERSION`` names the version of the rules in this module, ``registry.register`` and
``registry.attempts``: derived data (the patient-month state, frozen indicator snapshots) records
it and is rebuilt when it changes; the scheduler's next whole-register run after a change is a full
run that also restates the stored outcomes of closed joint tasks (``schedules.generation``). Bump it
whenever the meaning of any of these rules, or of ``registry.joint_visits``, changes.
"""

from __future__ import annotations

from typing import Protocol

import sqlalchemy as sa

from registry.codes import Classification, FollowUpMode, HospitalStatus, Insight, RiskLevel, SocialFunction

RULES_VERSION = 7  # 2: psych_support counts 居家 only (indicators.md [2026-12]); 3: joint_visit_complete_rate counts (issue 14);
# 4: the health check needs consent, post-emergency visits and a doctor recorded absent are judged 到位 (session 11);
# 5: a post-emergency task is owed whether or not its closing visit came before a run (session 12): the
#    next whole-register run is full and creates, closed and judged, the tasks earlier runs left out
# 6: a task cancelled because the patient was not owed it (dead, moved out, refused consent; an LAI plan
#    stopped) is reopened when the rules owe it again (session 13, rules.md §5): the next whole-register
#    run is full and reopens the tasks earlier runs left cancelled
# 7: (session 13, edges) the working-day table covers every basis date, so a post-emergency visit of an
#    emergency that ended before the registration year is planned, not dropped (rules.md §9); a visit
#    task whose basis no longer belongs to the registration (transfer in, re-registration, a corrected
#    date) is cancelled ``re_registered``, not done ``follow_up`` (registry.register.basis_stands): the next
#    whole-register run is full, creates the dropped tasks and restates the tasks closed done that way


def rules_version(profile_tag: str | None = None) -> str:
    """规则版本 The version recorded with derived data: ``rules-<RULES_VERSION>``, and the rule
    profile's ``name@version`` when the data depends on it (read at call time: tests may change it)."""
    return f"rules-{RULES_VERSION}" + (f"|{profile_tag}" if profile_tag else "")


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


def reached_sql(f) -> sa.ColumnElement[bool]:
    """访到 SQL twin of ``is_reached`` (rules.md §3)."""
    return f.c.lost_reason.is_(None)


def is_complete(lost_reason: int | None, risk_level: int | None, hospital_status: int | None) -> bool:
    """有效随访 Complete follow-up (rules.md §3).

    Reached (no lost reason) with a risk level recorded, or hospital status 1 (目前正在住院).
    """
    if hospital_status == HospitalStatus.IN_HOSPITAL:
        return True
    return lost_reason is None and risk_level is not None


def complete_sql(f) -> sa.ColumnElement[bool]:
    """有效随访 SQL twin of ``is_complete`` (rules.md §3)."""
    return sa.or_(
        f.c.hospital_status == HospitalStatus.IN_HOSPITAL.value,
        sa.and_(reached_sql(f), f.c.risk_level.is_not(None)),
    )


FACE_TO_FACE_MODES = (FollowUpMode.CLINIC, FollowUpMode.HOME)


def is_face_to_face(mode: int | None) -> bool:
    """面访 Mode 1 (门诊) or 2 (家庭访视) (rules.md §3)."""
    return mode in FACE_TO_FACE_MODES


def face_to_face_sql(f) -> sa.ColumnElement[bool]:
    """面访 SQL twin of ``is_face_to_face`` (rules.md §3); NULL mode is not face-to-face."""
    return f.c.mode.in_([m.value for m in FACE_TO_FACE_MODES])


def is_incident(incidents_disturbance: int | None, incidents_crime: int | None) -> bool:
    """肇事肇祸 The follow-up counts any 肇事 or 肇祸 since the last visit (rules.md §3; read by the
    police rule §6, the 风险预警单 §7.3, the ledger §10, 以奖代补 §11 and the alerts §12)."""
    return (incidents_disturbance or 0) > 0 or (incidents_crime or 0) > 0


def incident_sql(f) -> sa.ColumnElement[bool]:
    """肇事肇祸 SQL twin of ``is_incident``."""
    return sa.or_(sa.func.coalesce(f.c.incidents_disturbance, 0) > 0, sa.func.coalesce(f.c.incidents_crime, 0) > 0)


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
        (risk_level is not None and risk_level >= RiskLevel.PUBLIC_PROPERTY)
        or insight == Insight.ABSENT
        or bool(symptoms_obvious)
        or bool(adverse_reaction_serious)
        or bool(physical_illness_serious)
    ):
        return Classification.UNSTABLE
    if (
        (risk_level is not None and RiskLevel.VERBAL <= risk_level <= RiskLevel.HOME_PROPERTY)
        or insight == Insight.PARTIAL
        or any(item == SocialFunction.POOR for item in social_functions)
        or symptoms_present
    ):
        return Classification.FAIRLY_STABLE
    if risk_level == RiskLevel.NONE:
        return Classification.STABLE
    return None


def _true(col):
    return col == sa.true()


def computed_classification_sql(f) -> sa.ColumnElement:
    """计算分类 SQL twin of ``compute_classification`` (rules.md §4, first match wins; NULL when none)."""
    sf_poor = sa.or_(*[getattr(f.c, n) == SocialFunction.POOR.value for n in SOCIAL_FUNCTION_FIELDS])
    return sa.case(
        (
            sa.or_(
                f.c.risk_level >= RiskLevel.PUBLIC_PROPERTY.value,
                f.c.insight == Insight.ABSENT.value,
                _true(f.c.symptoms_obvious),
                _true(f.c.adverse_reaction_serious),
                _true(f.c.physical_illness_serious),
            ),
            Classification.UNSTABLE.value,
        ),
        (
            sa.or_(
                f.c.risk_level.between(RiskLevel.VERBAL.value, RiskLevel.HOME_PROPERTY.value),
                f.c.insight == Insight.PARTIAL.value,
                sf_poor,
                sa.and_(f.c.symptoms.is_not(None), f.c.symptoms != ""),
            ),
            Classification.FAIRLY_STABLE.value,
        ),
        (f.c.risk_level == RiskLevel.NONE.value, Classification.STABLE.value),
        else_=sa.null(),
    )


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


def classification_sql(f) -> sa.ColumnElement:
    """随访分类 SQL twin of ``classification_of``: the recorded classification, else computed (rules.md §4)."""
    return sa.func.coalesce(f.c.classification, computed_classification_sql(f))


def is_stable(fu: FollowUpLike) -> bool:
    """稳定 The follow-up is classified 稳定, recorded or computed (rules.md §4; indicators.md stable_rate)."""
    return classification_of(fu) == Classification.STABLE


def stable_sql(f) -> sa.ColumnElement[bool]:
    """稳定 SQL twin of ``is_stable`` (NULL when there is no classification: false in WHERE / CASE)."""
    return classification_sql(f) == Classification.STABLE.value


def classification_conflict(classification: int | None, risk_level: int | None) -> str | None:
    """分类与危险性矛盾 Why a recorded classification contradicts the risk level (rules.md §4).

    稳定 with risk ≥ 1, or anything but 不稳定 with risk ≥ 3, is rejected; the message names
    both values. Returns None when consistent.
    """
    if classification is None or risk_level is None:
        return None
    if classification == Classification.STABLE and risk_level >= 1:
        label = Classification(classification).label  # (the label only for a message: once per imported row)
        return f"随访分类为“{label}”({classification})，但危险性评估为{risk_level}级：稳定要求危险性为0级"
    if classification != Classification.UNSTABLE and risk_level >= 3:
        label = Classification(classification).label
        return f"随访分类为“{label}”({classification})，但危险性评估为{risk_level}级：危险性3级及以上只能为不稳定"
    return None
