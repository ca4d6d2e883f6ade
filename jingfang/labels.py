"""中文标签 What the ``jingfang`` command prints instead of the internal codes (issue 16: Chinese on
every surface a person reads; the codes stay in ``--json``)."""

from __future__ import annotations

from datetime import datetime

from registry.codes import OutboxStatus, TaskKind, TeamRole

# The rule profiles a person may meet by name (a county's own profile is shown by its own name).
PROFILE_TITLES = {"national-2018": "国家规范2018版"}

JOB_LABELS = {"generate": "生成任务", "lists": "一历五单", "reports": "月报", "deliver": "投递通知", "alerts": "实时预警"}
RUN_STATUS_LABELS = {"running": "运行中", "ok": "成功", "error": "失败"}
COUNT_LABELS = {  # the counts a run records, by key
    "created": "新建", "closed": "完成", "cancelled": "取消", "open": "待办", "calendar_estimated": "按估计日历",
    "townships": "乡镇", "files": "文件", "reports": "份月报",
    # the delivery's messages by the status they ended in (the lists' failed townships share the word)
    OutboxStatus.SENT.value: OutboxStatus.SENT.label, OutboxStatus.FAILED.value: OutboxStatus.FAILED.label,
    "retry": "待重试", "queued": "待发通知",
}


def kind_label(kind: str) -> str:
    """任务类型 The Chinese label of a task kind (the code itself when unknown)."""
    try:
        return TaskKind(kind).label
    except ValueError:
        return kind


def role_label(role: str) -> str:
    try:
        return TeamRole(role).label
    except ValueError:
        return role


def kinds_text(by_kind: dict[str, int]) -> str:
    """'首次面访 5，随访 128' from ``{"first_visit": 5, "follow_up": 128}``; 无 when empty."""
    return "，".join(f"{kind_label(k)} {n}" for k, n in by_kind.items()) or "无"


def profile_title(tag: str) -> str:
    """规则配置 'national-2018@1' → '国家规范2018版（第1版）'."""
    name, _, version = str(tag).partition("@")
    title = PROFILE_TITLES.get(name, name)
    return f"{title}（第{version}版）" if version else title


def list_titles() -> dict[str, str]:
    """五单 slug → title (schedules.lists.LISTS)."""
    from schedules.lists import LISTS  # noqa: PLC0415 - start-up time

    titles = {}
    for row in LISTS:
        slug = getattr(row, "slug", None) or row[1]
        titles[slug] = getattr(row, "title", None) or row[2]
    return titles


def list_counts_text(counts: dict[str, int]) -> str:
    """'随访任务单 6，联合入户单 0，……' from the lists' counts by slug."""
    titles = list_titles()
    return "，".join(f"{titles.get(slug, slug)} {n}" for slug, n in counts.items())


def local_time(stamp: str | None) -> str:
    """An ISO timestamp as Beijing time, to the second ('' when none)."""
    if not stamp:
        return ""
    from registry.config import LOCAL_TZ  # noqa: PLC0415

    moment = datetime.fromisoformat(stamp)
    return (moment.astimezone(LOCAL_TZ) if moment.tzinfo else moment).strftime("%Y-%m-%d %H:%M:%S")


def error_text(error: str | None) -> str:
    """A run's stored error as a person reads it: the first line; an interrupted run in Chinese (the
    stored text, English, stays in ``runs --json``)."""
    if not error:
        return ""
    from schedules.jobs import INTERRUPTED  # noqa: PLC0415

    first = error.splitlines()[0]
    if first.startswith(INTERRUPTED):
        return "中断：运行结束前进程已停止" + first[len(INTERRUPTED):].replace("process ", "进程 ").replace(" on ", " @ ").replace(
            " is gone", " 已不存在").replace("; abandoned run", "，运行被放弃")
    return first


def counts_text(counts: dict | None) -> str:
    """A run's counts in Chinese: the known numbers, labelled; nested details left out."""
    if not counts:
        return ""
    parts = []
    if "open_by_kind" in counts:
        parts.append(f"规则 {profile_title(counts.get('profile', ''))}")
    for key, value in counts.items():
        if key in COUNT_LABELS and isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(f"{COUNT_LABELS[key]} {value}")
        elif key == "open_by_kind" and isinstance(value, dict) and parts:
            parts[-1] += f"（{kinds_text(value)}）"
        elif key == "month" and isinstance(value, str):
            parts.append(f"月份 {value}")
    return "，".join(parts)
