"""目标值 Indicator targets as data: (indicator, region or all, year, value) (indicators.md §Targets).

A target set is a JSON file ``{"name", "title", "source", "targets": [...]}``; each target is
``{"indicator": KEY, "region": CODE or "*", "year": YYYY or null, "value": 0.9}``. Bundled sets
live in ``registry/rates/data/targets-<name>.json``: ``default`` (indicators.md's default profile),
``taishan-2019``, ``pilot-2021`` and ``shaoxing-2024``. A county may load its own file by path.

Lookup (project decision, docs/indicators.md): for an indicator, region R and report year Y the
target is the entry for R itself if any, else the one for "*"; among those, the entry with the
latest year ≤ Y, a blank year counting as "every year". So "台山 2019" keeps applying in later
years until a newer year's value is loaded. An indicator meets its target when rate ≥ target.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

from registry.errors import InvalidInput
from registry.rates.indicators import INDICATOR_KEYS

DATA_DIR = Path(__file__).with_name("data")
DEFAULT_SET = "default"
ALL_REGIONS = "*"


@dataclass(frozen=True)
class Target:
    """目标 One target value for an indicator, a region (or all) and a year (or every year)."""

    indicator: str
    region: str
    year: int | None
    value: float


@dataclass(frozen=True)
class TargetSet:
    """目标集 A named, loadable set of targets."""

    name: str
    title: str
    source: str
    targets: tuple[Target, ...]

    def target_for(self, indicator: str, region_code: str, year: int) -> float | None:
        """目标值 The target for one indicator in one region and year, or None."""
        best: tuple[int, int, float] | None = None
        for t in self.targets:
            if t.indicator != indicator or t.region not in (region_code, ALL_REGIONS):
                continue
            if t.year is not None and t.year > year:
                continue
            rank = (1 if t.region == region_code else 0, t.year if t.year is not None else -1)
            if best is None or rank > best[:2]:
                best = (*rank, t.value)
        return None if best is None else best[2]


def bundled_sets() -> list[str]:
    """可选目标集 Names of the bundled target sets."""
    return sorted(p.stem.removeprefix("targets-") for p in DATA_DIR.glob("targets-*.json"))


def _bad(message: str, value=None) -> InvalidInput:
    return InvalidInput.single("BAD_TARGET_SET", message, column="targets", value=value)


def parse_target_set(data: dict, known_indicators: frozenset[str] | None = None) -> TargetSet:
    """Validate a target-set document; every problem is an InvalidInput naming the entry."""
    if not isinstance(data, dict) or not isinstance(data.get("targets"), list):
        raise _bad("目标集应为包含 targets 列表的 JSON 对象")
    targets = []
    for i, raw in enumerate(data["targets"], start=1):
        if not isinstance(raw, dict):
            raise _bad(f"目标集第{i}项不是对象")
        key = raw.get("indicator")
        if not isinstance(key, str) or (known_indicators is not None and key not in known_indicators):
            raise _bad(f"目标集第{i}项的指标“{key}”未定义", key)
        value = raw.get("value")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value <= 1000):
            raise _bad(f"目标集第{i}项（{key}）的目标值“{value}”无效，应为 0–1 之间的比例", value)
        year = raw.get("year")
        if year is not None and (isinstance(year, bool) or not isinstance(year, int) or not 2000 <= year <= 2100):
            raise _bad(f"目标集第{i}项（{key}）的年份“{year}”无效", year)
        region = raw.get("region") or ALL_REGIONS
        if not isinstance(region, str):
            raise _bad(f"目标集第{i}项（{key}）的地区“{region}”无效", region)
        targets.append(Target(key, region, year, float(value)))
    return TargetSet(str(data.get("name") or "custom"), str(data.get("title") or data.get("name") or "自定义目标"),
                     str(data.get("source") or ""), tuple(targets))


@lru_cache(maxsize=32)
def _load(path_text: str, mtime: float) -> TargetSet:
    path = Path(path_text)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise _bad(f"目标集文件 {path.name} 不是有效的 JSON（第{exc.lineno}行）", path.name) from exc
    return parse_target_set(data, frozenset(INDICATOR_KEYS))


def load_target_set(name: str | None = None) -> TargetSet:
    """加载目标集 A bundled set by name (default ``default``) or a JSON file by path."""
    name = name or DEFAULT_SET
    if name.endswith(".json") or "/" in name:
        path = Path(name)
    else:
        path = DATA_DIR / f"targets-{name}.json"
    if not path.is_file():
        raise InvalidInput.single(
            "TARGET_SET_NOT_FOUND",
            f"找不到目标集“{name}”（可选：{'、'.join(bundled_sets())}，或 JSON 文件路径）",
            column="targets", value=name,
        )
    return _load(str(path.resolve()), path.stat().st_mtime)


def meets(numerator: int, denominator: int, target: float | None) -> bool | None:
    """达标 rate ≥ target, compared exactly (not after rounding); None without rate or target."""
    if target is None or not denominator:
        return None
    return Fraction(numerator, denominator) >= Fraction(str(target))
