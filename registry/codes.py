"""编码值 Coded values of the national forms, each with its Chinese label.

Integer codes are the ones printed on the 2018 随访服务记录表 and the 2018 个人信息补充表
(rules.md §1–§3); string codes are the project's English identifiers (contract.md).
Every enum here has a ``label`` (Chinese) and a ``parse`` that accepts the code, the
Chinese label or (for diagnoses) the ICD-10 prefix.
"""

from __future__ import annotations

from enum import Enum


class _Labelled:
    label: str

    @classmethod
    def parse(cls, raw: str):
        """Accept the code or the Chinese label; raise ValueError otherwise."""
        text = str(raw).strip()
        for member in cls:  # type: ignore[attr-defined]
            if text == str(member.value) or text == member.label:
                return member
        raise ValueError(text)

    @classmethod
    def label_of(cls, value) -> str:
        """The Chinese label of a stored ``value``; the value itself (as text) when it is no member."""
        for member in cls:  # type: ignore[attr-defined]
            if member.value == value:
                return member.label
        return "" if value is None else str(value)

    @classmethod
    def choices(cls) -> str:
        """'1 男 / 2 女' — used in error messages."""
        return " / ".join(f"{m.value} {m.label}" for m in cls)  # type: ignore[attr-defined]


class CodedInt(_Labelled, int, Enum):
    def __new__(cls, value: int, label: str):
        obj = int.__new__(cls, value)
        obj._value_ = value
        obj.label = label
        return obj


class CodedStr(_Labelled, str, Enum):
    def __new__(cls, value: str, label: str):
        obj = str.__new__(cls, value)
        obj._value_ = value
        obj.label = label
        return obj


class RegionLevel(CodedStr):
    """行政区划级别 Region level."""

    COUNTY = "county", "县(市、区)"
    TOWNSHIP = "township", "乡镇(街道)"
    VILLAGE = "village", "村(社区)"


class Sex(CodedInt):
    """性别 Sex."""

    MALE = 1, "男"
    FEMALE = 2, "女"


class Diagnosis(CodedStr):
    """严重精神障碍诊断 The six registered diseases (rules.md §1)."""

    SCHIZOPHRENIA = "schizophrenia", "精神分裂症"
    SCHIZOAFFECTIVE = "schizoaffective", "分裂情感性障碍"
    PARANOID_PSYCHOSIS = "paranoid_psychosis", "偏执性精神病"
    BIPOLAR = "bipolar", "双相(情感)障碍"
    EPILEPSY_PSYCHOSIS = "epilepsy_psychosis", "癫痫所致精神障碍"
    INTELLECTUAL_DISABILITY_PSYCHOSIS = "intellectual_disability_psychosis", "精神发育迟滞伴发精神障碍"

    @property
    def icd10(self) -> str:
        return _ICD10[self]

    @classmethod
    def parse(cls, raw: str) -> "Diagnosis":
        """Code, Chinese name (with or without the parenthesised part) or ICD-10 code (rules.md §1)."""
        text = str(raw).strip()
        for member in cls:
            if text in (member.value, member.label, member.label.replace("(", "").replace(")", "")):
                return member
        if text in _ALIASES:
            return _ALIASES[text]
        code = text.upper().replace(" ", "")
        if code.startswith("F20"):
            return cls.SCHIZOPHRENIA
        if code.startswith("F25"):
            return cls.SCHIZOAFFECTIVE
        if code.startswith("F22"):
            return cls.PARANOID_PSYCHOSIS
        if code.startswith("F31"):
            return cls.BIPOLAR
        if code.startswith("F06") or code.startswith("G40"):
            return cls.EPILEPSY_PSYCHOSIS
        if len(code) >= 3 and code[0] == "F" and code[1:3].isdigit() and 70 <= int(code[1:3]) <= 79:
            return cls.INTELLECTUAL_DISABILITY_PSYCHOSIS
        raise ValueError(text)


_ICD10 = {
    Diagnosis.SCHIZOPHRENIA: "F20",
    Diagnosis.SCHIZOAFFECTIVE: "F25",
    Diagnosis.PARANOID_PSYCHOSIS: "F22",
    Diagnosis.BIPOLAR: "F31",
    Diagnosis.EPILEPSY_PSYCHOSIS: "F06",
    Diagnosis.INTELLECTUAL_DISABILITY_PSYCHOSIS: "F70-F79",
}
_ALIASES = {
    "持久的妄想性障碍": Diagnosis.PARANOID_PSYCHOSIS,
    "偏执性精神病(持久的妄想性障碍)": Diagnosis.PARANOID_PSYCHOSIS,
    "双相障碍": Diagnosis.BIPOLAR,
    "双相情感障碍": Diagnosis.BIPOLAR,
}


class ReportType(CodedInt):
    """报告类型 Report type (rules.md §1)."""

    INCIDENT = 1, "发病报告"
    REGISTRATION = 2, "六类病种登记"


class Consent(CodedInt):
    """知情同意 Consent to community management."""

    REFUSES = 0, "不同意"
    AGREES = 1, "同意"


class PatientStatus(CodedStr):
    """患者状态 Patient status (rules.md §1)."""

    ACTIVE = "active", "在册"
    DEAD = "dead", "死亡"
    MOVED_OUT = "moved_out", "迁出"


class EconomicStatus(CodedInt):
    """经济状况 Economic status."""

    POOR = 1, "贫困"
    NOT_POOR = 2, "非贫困"
    UNKNOWN = 3, "不详"


class FollowUpMode(CodedInt):
    """随访方式 Follow-up mode; 1 and 2 are face-to-face (面访)."""

    CLINIC = 1, "门诊"
    HOME = 2, "家庭访视"
    PHONE = 3, "电话"


class LostReason(CodedInt):
    """失访原因 Why the patient was not reached."""

    MIGRANT_WORK = 1, "外出务工"
    MOVED = 2, "迁居他处"
    MISSING = 3, "走失"
    THREE_MISSES = 4, "连续3次未访到"
    OTHER = 5, "其他"


class RiskLevel(CodedInt):
    """危险性评估 Risk level 0–5 (rules.md §2)."""

    NONE = 0, "0级 无符合以下1–5级中的任何行为"
    VERBAL = 1, "1级 口头威胁，喊叫，但没有打砸行为"
    HOME_PROPERTY = 2, "2级 打砸行为，局限在家里，针对财物，能被劝说制止"
    PUBLIC_PROPERTY = 3, "3级 明显打砸行为，不分场合，针对财物，不能接受劝说而停止"
    PERSISTENT = 4, "4级 持续的打砸行为，不分场合，针对财物或人，不能接受劝说而停止（包括自伤、自杀）"
    WEAPON = 5, "5级 持管制性危险武器的针对人的任何暴力行为，或者纵火、爆炸等行为"

    @classmethod
    def parse(cls, raw: str) -> "RiskLevel":
        text = str(raw).strip().removesuffix("级")
        return cls(int(text)) if text.isdigit() else super().parse(raw)


class Insight(CodedInt):
    """自知力 Insight."""

    FULL = 1, "自知力完全"
    PARTIAL = 2, "自知力不全"
    ABSENT = 3, "自知力缺失"


class Condition(CodedInt):
    """睡眠/饮食情况 Sleep and diet: 良好 / 一般 / 较差."""

    GOOD = 1, "良好"
    FAIR = 2, "一般"
    POOR = 3, "较差"


class SocialFunction(CodedInt):
    """社会功能情况 One social-function item (工作 also allows 9 不适用)."""

    GOOD = 1, "良好"
    FAIR = 2, "一般"
    POOR = 3, "较差"
    NOT_APPLICABLE = 9, "此项不适用"


class HospitalStatus(CodedInt):
    """住院情况 Hospital status."""

    NEVER = 0, "从未住院"
    IN_HOSPITAL = 1, "目前正在住院"
    DISCHARGED = 2, "既往住院，现未住院"


class Adherence(CodedInt):
    """服药依从性 Medication adherence."""

    REGULAR = 1, "按医嘱规律服药"
    INTERMITTENT = 2, "间断服药"
    NONE = 3, "不服药"
    NOT_PRESCRIBED = 4, "医嘱勿需服药"


class AdverseReaction(CodedInt):
    """药物不良反应 Adverse drug reaction."""

    NONE = 1, "无"
    PRESENT = 2, "有"
    NOT_APPLICABLE = 9, "此项不适用"


class TreatmentEffect(CodedInt):
    """治疗效果 Treatment effect."""

    CURED = 1, "痊愈"
    IMPROVED = 2, "好转"
    UNCHANGED = 3, "无变化"
    WORSE = 4, "加重"


class Classification(CodedInt):
    """随访分类 Follow-up classification (分类干预, rules.md §4)."""

    UNSTABLE = 1, "不稳定"
    FAIRLY_STABLE = 2, "基本稳定"
    STABLE = 3, "稳定"


class Symptom(CodedInt):
    """目前症状 Current symptoms as printed on the 2018 form."""

    HALLUCINATION = 1, "幻觉"
    COMMUNICATION_DIFFICULTY = 2, "交流困难"
    SUSPICION = 3, "猜疑"
    MOOD_SWINGS = 4, "喜怒无常"
    BIZARRE_BEHAVIOUR = 5, "行为怪异"
    EXCITED_TALKATIVE = 6, "兴奋话多"
    VIOLENCE = 7, "伤人毁物"
    PESSIMISM = 8, "悲观厌世"
    WANDERING = 9, "无故外走"
    SELF_TALK = 10, "自语自笑"
    WITHDRAWAL = 11, "孤僻懒散"
    OTHER = 12, "其他"


class LockStatus(CodedInt):
    """关锁情况 Lock status."""

    NONE = 1, "无关锁"
    LOCKED = 2, "关锁"
    RELEASED = 3, "关锁已解除"


class HouseholdType(CodedInt):
    """户别 Household registration type (个人信息补充表 2018)."""

    URBAN = 1, "城镇"
    RURAL = 2, "农村"


class Employment(CodedInt):
    """就业情况 Employment (个人信息补充表 2018)."""

    WORKER = 1, "在岗工人"
    MANAGER = 2, "在岗管理者"
    FARMER = 3, "农民"
    UNEMPLOYED = 4, "下岗或无业"
    STUDENT = 5, "在校学生"
    RETIRED = 6, "退休"
    PROFESSIONAL = 7, "专业技术人员"
    OTHER = 8, "其他"
    UNKNOWN = 9, "不详"


class PastLockup(CodedInt):
    """既往关锁情况 Past lock-up (个人信息补充表 2018)."""

    NEVER = 1, "无关锁"
    LOCKED = 2, "关锁"
    RELEASED = 3, "关锁已解除"


class OutpatientTreatment(CodedInt):
    """既往治疗情况(门诊) Past outpatient treatment (个人信息补充表 2018)."""

    UNTREATED = 1, "未治"
    INTERMITTENT = 2, "间断门诊治疗"
    CONTINUOUS = 3, "连续门诊治疗"


class TeamRole(CodedStr):
    """个案管理团队角色 Case-management team role (rules.md §6)."""

    DOCTOR = "doctor", "精防医生"
    POLICE = "police", "民警"
    VILLAGE = "village", "村(社区)两委成员/网格员"
    CIVIL_AFFAIRS = "civil_affairs", "民政专干"
    DISABILITY = "disability", "助残员"
    VOLUNTEER = "volunteer", "志愿者"


class FamilyRole(CodedStr):
    """家属角色 The patient's family on the care team as pages show it (rules.md §6: the team includes 监护人).

    Not a ``TeamRole``: a guardian is not a team member (no ``team_member`` row, not importable)."""

    GUARDIAN = "guardian", "监护人"


# Roles that can be required on a visit task, in the order contract.md prints them.
TASK_ROLE_ORDER = (TeamRole.DOCTOR, TeamRole.POLICE, TeamRole.VILLAGE, TeamRole.CIVIL_AFFAIRS)


def values(enum_cls) -> list:
    """The stored values of an enum, for CHECK constraints."""
    return [m.value for m in enum_cls]


class TaskKind(CodedStr):
    """任务类型 Kind of an open task (contract.md)."""

    FIRST_VISIT = "first_visit", "首次面访"
    FOLLOW_UP = "follow_up", "随访"
    RETRY = "retry", "再次随访"
    LOCATE = "locate", "失访查找"
    DISCHARGE_CHECK = "discharge_check", "出院随访"
    HEALTH_CHECK = "health_check", "健康体检"
    INJECTION = "injection", "长效针剂注射"
    POST_EMERGENCY = "post_emergency", "应急处置后随访"  # rules.md §9 [2026-12]


# Kinds closed by any later follow-up attempt (rules.md §5 Idempotency).
VISIT_KINDS = (
    TaskKind.FIRST_VISIT,
    TaskKind.FOLLOW_UP,
    TaskKind.RETRY,
    TaskKind.LOCATE,
    TaskKind.DISCHARGE_CHECK,
)


class TaskStatus(CodedStr):
    """任务状态 Task status."""

    OPEN = "open", "待办"
    DONE = "done", "已完成"
    CANCELLED = "cancelled", "已取消"


class CloseReason(CodedStr):
    """结束原因 Why a task is no longer open (``visit_task.close_reason``): done by its event, or
    cancelled. The one list of the reasons the scheduler writes (``schedules.generation``,
    ``registry.register.cancel_reason``), each with its Chinese label."""

    FOLLOW_UP = "follow_up", "已随访"  # done: a later follow-up attempt (rules.md §5 Idempotency)
    HOME_VISIT = "home_visit", "已入户面访"  # done: the post-emergency visit (rules.md §9)
    HEALTH_CHECK = "health_check", "已体检"  # done: a health check dated in the task's year
    INJECTION = "injection", "已注射"  # done: a newer long-acting injection
    DEAD = "dead", "死亡"  # cancelled (rules.md §5 last row)
    MOVED_OUT = "moved_out", "迁出"  # cancelled (rules.md §5 last row)
    CONSENT_REFUSED = "consent_refused", "拒绝管理"  # cancelled (rules.md §5 last row; the health check)
    LAI_STOPPED = "lai_stopped", "长效针剂已停用"  # cancelled: the injection plan was stopped
    YEAR_ENDED = "year_ended", "年度已结束"  # cancelled: a past year's health check
    # cancelled: the task's basis no longer belongs to the patient's registration — a transfer in or a
    # re-registration set a later registration date (rules.md §5 "newly registered or transferred in"
    # owes a first visit instead), or the date was corrected (session 13)
    RE_REGISTERED = "re_registered", "重新登记或迁入，原任务作废"


class LedgerReason(CodedStr):
    """入账原因 Why a patient entered the 易肇事肇祸台账 (rules.md §10). Declared in precedence
    order: on one date, the first kind present names the entry (incident wins over risk, §10)."""

    INCIDENT = "incident", "肇事肇祸"
    EMERGENCY = "emergency", "应急处置"
    RISK = "risk", "危险性3级及以上"


class AlertKind(CodedStr):
    """预警类型 What a real-time alert is about (rules.md §12). Emergency kinds are added with the
    emergency record (issue 15): one member here and one source in ``schedules.alerts.SOURCES``."""

    RISK_RISE = "risk_rise", "危险性升至3级及以上"
    INCIDENT = "incident", "新发肇事肇祸"
    LOST = "lost", "失访"
    EMERGENCY_OPENED = "emergency_opened", "应急处置已登记"
    EMERGENCY_OVERDUE = "emergency_overdue", "应急处置超过24小时未完成"


class OutboxStatus(CodedStr):
    """发件状态 Where an outbox message (``schedules.models.OutboxMessage``, issue 5) stands: waiting,
    claimed by a delivery loop, delivered, given up after the last retry, or cancelled with its
    webhook (disabled or removed, issue 18). The stored strings (no CHECK: issue 12 added the enum
    without a migration)."""

    PENDING = "pending", "待发送"
    SENDING = "sending", "发送中"
    SENT = "sent", "已发送"
    FAILED = "failed", "失败"
    CANCELLED = "cancelled", "已取消"


class LedgerExit(CodedStr):
    """出账原因 Why a patient left the 易肇事肇祸台账 (rules.md §10)."""

    STABLE_12_MONTHS = "stable_12_months", "连续12个月稳定"
    DEAD = "dead", "死亡"
    MOVED_OUT = "moved_out", "迁出"


class TransferOutcome(CodedStr):
    """迁移状态 The state of a move between townships (迁出/迁入, rules.md §5 "transferred in")."""

    PENDING = "pending", "待接收"
    ACCEPTED = "accepted", "已接收"
    REFUSED = "refused", "已拒收"


class GuardianYearStatus(CodedStr):
    """以奖代补状态 Where a guardian-year stands (rules.md §11): assessed provisionally during the year,
    finally after it; civil affairs approves or withholds, then records the payment."""

    PROVISIONAL = "provisional", "年内暂评"
    FINAL = "final", "年终评定"
    APPROVED = "approved", "已核准"
    WITHHELD = "withheld", "不予发放"
    PAID = "paid", "已发放"


class RewardDuty(CodedStr):
    """监护职责 The four duties of a 以奖代补 guardian-year (rules.md §11), in the order the rule lists them."""

    QUARTERLY_VISITS = "quarterly_visits", "每季度至少一次完整随访"
    NO_INCIDENT = "no_incident", "无肇事肇祸"
    NO_LOCK_UP = "no_lock_up", "无关锁"
    ADHERENCE = "adherence", "规律服药"


class EmergencySituation(CodedInt):
    """应急处置情形 The situations of an emergency (规范2018, rules.md §9); a record holds one or more."""

    SELF_HARM = 1, "伤害自身行为或危险"
    PUBLIC_SAFETY = 2, "危害公共安全或他人安全的行为或危险"
    RELAPSE = 3, "病情复发、精神状况明显恶化"
    DRUG_REACTION = 4, "与精神疾病药物相关的急性不良反应"


# rules.md §9/§10: an emergency of situation 1 or 2 enters the 易肇事肇祸台账
LEDGER_SITUATIONS = (EmergencySituation.SELF_HARM, EmergencySituation.PUBLIC_SAFETY)


class EmergencyMeasure(CodedStr):
    """处置措施 The measures taken in an emergency (rules.md §9); a record holds one or more."""

    COUNSELLING = "counselling", "心理疏导"
    RESTRAINT = "restraint", "约束"
    MEDICATION = "medication", "药物"
    TO_HOSPITAL = "to_hospital", "送医"
    POLICE_HELP = "police_help", "公安协助"
    OTHER = "other", "其他"


class DiagnosisCertainty(CodedStr):
    """诊断 Whether the emergency's diagnosis is confirmed or suspected (rules.md §9)."""

    CONFIRMED = "confirmed", "确诊"
    SUSPECTED = "suspected", "疑似"


class JointOutcome(CodedStr):
    """联合随访结果 How a follow-up closed a joint visit task (rules.md §6.2) [2026-12]."""

    COMPLETE = "complete", "到位"
    INCOMPLETE = "incomplete", "联合未到位"


class AppointmentAnswer(CodedStr):
    """预约答复 A named member's answer to a joint-visit appointment (rules.md §6.1) [2026-12]:
    confirmed, or declined with a reason."""

    CONFIRMED = "confirmed", "确认参加"
    DECLINED = "declined", "不能参加"


class AttendanceSource(CodedStr):
    """到场登记来源 Who recorded a participant's attendance (rules.md §6.2) [2026-12]: the doctor on
    the follow-up form (and imports), or the attendee from their own account, whose word wins."""

    DOCTOR = "doctor", "医生登记"
    SELF = "self", "本人登记"
