"""规则配置 Rule profiles: the scheduling rules of rules.md §5–§6 as versioned data.

A profile is a JSON file (``registry/profiles/<name>.json`` ships ``national-2018``). A county
can ship its own file without code changes: put it in the directory named by
``JINGFANG_PROFILE_DIR`` (searched first) and select it with ``JINGFANG_PROFILE``. Every task
records ``<name>@<version>:<clause>`` in its ``rule`` column.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from registry.config import get_settings
from registry.errors import InvalidInput

PROFILE_DIR = Path(__file__).with_name("profiles")
VISIT_SITUATIONS = (
    "unstable",
    "fairly_stable_new",
    "fairly_stable_continuing",
    "stable",
    "in_hospital",
    "first_visit",
    "retry",
    "incomplete",
    "locate",
)


DOCTOR_DATE_CLAUSE = "§5 医生指定"  # a profile without a ``doctor_date`` key


@dataclass(frozen=True)
class Interval:
    """间隔 A period added to a basis date: months (clamped to month end), then days."""

    months: int
    days: int
    clause: str


@dataclass(frozen=True)
class RoleRules:
    """联合入户角色规则 When police, village and civil affairs join a visit (rules.md §6)."""

    police_min_risk: int
    police_classifications: tuple[int, ...]
    police_incident_lookback_months: int
    police_on_locate: bool
    village_when_police: bool
    village_when_no_guardian: bool
    civil_affairs_when_poor: bool
    civil_affairs_when_no_guardian: bool


@dataclass(frozen=True)
class RewardRules:
    """以奖代补规则 The duties' parameters and the county's amount per year (rules.md §11; profile key
    ``guardian_reward``, optional: a profile without it gets these defaults).

    ``visits_per_quarter``: complete follow-ups each quarter of the enrolled part of the year needs
    (duty 1); ``adherence_codes`` / ``min_adherence_share``: the adherence codes that count and the
    share of the year's complete follow-ups that must record one (duty 4); ``amounts``: the county's
    amount in 元 per year, ``default_amount`` for a year not listed (data, not code)."""

    visits_per_quarter: int = 1
    adherence_codes: tuple[int, ...] = (1, 4)
    min_adherence_share: float = 0.75
    amounts: tuple[tuple[int, int], ...] = ()
    default_amount: int = 1200
    clause: str = "§11 以奖代补"

    def amount_for(self, year: int) -> int:
        """该年度标准 The county's amount per guardian-year in 元 for ``year``."""
        return dict(self.amounts).get(year, self.default_amount)


def parse_reward_rules(data: dict | None) -> RewardRules:
    """The ``guardian_reward`` section (absent: the defaults); InvalidInput naming a bad key."""
    if not data:
        return RewardRules()
    default = RewardRules()
    rules = RewardRules(
        visits_per_quarter=int(data.get("visits_per_quarter", default.visits_per_quarter)),
        adherence_codes=tuple(int(c) for c in data.get("adherence_codes", default.adherence_codes)),
        min_adherence_share=float(data.get("min_adherence_share", default.min_adherence_share)),
        amounts=tuple(sorted((int(y), int(a)) for y, a in dict(data.get("amounts", {})).items())),
        default_amount=int(data.get("default_amount", default.default_amount)),
        clause=str(data.get("clause", default.clause)),
    )
    if rules.visits_per_quarter < 1:
        raise _bad("guardian_reward.visits_per_quarter 必须 ≥ 1", rules.visits_per_quarter)
    if not 0 < rules.min_adherence_share <= 1:
        raise _bad("guardian_reward.min_adherence_share 必须在 0 到 1 之间", rules.min_adherence_share)
    if rules.default_amount <= 0 or any(a <= 0 for _, a in rules.amounts):
        raise _bad("guardian_reward 的金额必须为正", rules.default_amount)
    return rules


@dataclass(frozen=True)
class Profile:
    """规则配置 One loaded rule profile."""

    name: str
    version: int
    visit: dict[str, Interval]
    lost_after_misses: int
    health_check_month: int
    health_check_day: int
    health_check_clause: str
    lai_window_before: int
    lai_window_after: int
    lai_clause: str
    roles: RoleRules
    holiday_policy: str
    doctor_date_clause: str = DOCTOR_DATE_CLAUSE  # rules.md §5 [decision, 2026-12] (registry.doctor_date)
    # rules.md §11 以奖代补 (registry.guardian_reward); not in the repr, which the scheduler hashes to tell
    # whether the profile changed (schedules.generation): the reward's parameters never change a task
    reward: RewardRules = field(default=RewardRules(), repr=False)

    @property
    def tag(self) -> str:
        return f"{self.name}@{self.version}"

    def rule(self, clause: str) -> str:
        """The ``rule`` text of a task: profile, version and clause."""
        return f"{self.tag}:{clause}"


def _bad(message: str, value=None) -> InvalidInput:
    return InvalidInput.single("PROFILE_INVALID", f"规则配置无效：{message}", column="profile", value=value)


def parse_profile(data: dict) -> Profile:
    """Validate a profile document; raise InvalidInput naming the bad key."""
    try:
        visit = {}
        for key in VISIT_SITUATIONS:
            row = data["visit"][key]
            months, days = int(row.get("months", 0)), int(row.get("days", 0))
            if months < 0 or days < 0 or months + days == 0:
                raise _bad(f"visit.{key} 的间隔必须为正", row)
            visit[key] = Interval(months, days, str(row["clause"]))
        hc, lai, roles = data["health_check"], data["lai"], data["roles"]
        policy = data.get("holidays", {}).get("policy", "previous_working_day")
        if policy not in ("previous_working_day", "none"):
            raise _bad("holidays.policy 只能为 previous_working_day 或 none", policy)
        profile = Profile(
            name=str(data["name"]),
            version=int(data["version"]),
            visit=visit,
            lost_after_misses=int(data["lost_after_misses"]),
            health_check_month=int(hc["month"]),
            health_check_day=int(hc["day"]),
            health_check_clause=str(hc["clause"]),
            lai_window_before=int(lai["window_before_days"]),
            lai_window_after=int(lai["window_after_days"]),
            lai_clause=str(lai["clause"]),
            roles=RoleRules(
                police_min_risk=int(roles["police_min_risk"]),
                police_classifications=tuple(int(c) for c in roles["police_classifications"]),
                police_incident_lookback_months=int(roles["police_incident_lookback_months"]),
                police_on_locate=bool(roles["police_on_locate"]),
                village_when_police=bool(roles["village_when_police"]),
                village_when_no_guardian=bool(roles["village_when_no_guardian"]),
                civil_affairs_when_poor=bool(roles["civil_affairs_when_poor"]),
                civil_affairs_when_no_guardian=bool(roles["civil_affairs_when_no_guardian"]),
            ),
            holiday_policy=policy,
            doctor_date_clause=str(data.get("doctor_date", {}).get("clause", DOCTOR_DATE_CLAUSE)),
            reward=parse_reward_rules(data.get("guardian_reward")),
        )
    except InvalidInput:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad(f"缺少或错误的键 {exc}") from exc
    if profile.lost_after_misses < 1:
        raise _bad("lost_after_misses 必须 ≥ 1", profile.lost_after_misses)
    try:
        from datetime import date

        date(2001, profile.health_check_month, profile.health_check_day)
    except ValueError as exc:
        raise _bad("health_check 日期无效") from exc
    return profile


def profile_path(name: str | None = None) -> tuple[str, Path | None]:
    """规则配置文件 The profile's name and file: a path, else ``JINGFANG_PROFILE_DIR``, else the
    bundled profiles; None when no file exists."""
    name = name or get_settings().profile
    candidates = []
    if name.endswith(".json") or os.sep in name:
        candidates.append(Path(name))
    else:
        extra = get_settings().profile_dir
        if extra:
            candidates.append(Path(extra) / f"{name}.json")
        candidates.append(PROFILE_DIR / f"{name}.json")
    return name, next((path for path in candidates if path.is_file()), None)


def profile_document(name: str | None = None) -> dict:
    """The selected profile's raw JSON (other capabilities read their own keys from it); {} if none."""
    _, path = profile_path(name)
    if path is None:
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def load_profile(name: str | None = None) -> Profile:
    """加载规则配置 Load a profile by name (or path); default from settings (``national-2018``)."""
    name, path = profile_path(name)
    if path is None:
        raise InvalidInput.single("PROFILE_NOT_FOUND", f"找不到规则配置“{name}”", column="profile", value=name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise _bad(f"{path.name} 不是有效的 JSON（第{exc.lineno}行）") from exc
    return parse_profile(data)


_CURRENT: dict[tuple, Profile] = {}


def current_profile() -> Profile:
    """当前规则配置 The selected profile (``load_profile()``), re-read when its file changes: the web
    reads it on every scoped request, so an edited or newly selected county profile changes who the
    police may see in the same release as it changes the tasks (rules.md §6, §8)."""
    name, path = profile_path()
    try:
        key = (name, str(path), path.stat().st_mtime_ns if path is not None else None)
    except OSError:
        key = (name, str(path), None)
    hit = _CURRENT.get(key)
    if hit is None:
        hit = load_profile(name)
        _CURRENT.clear()
        _CURRENT[key] = hit
    return hit
