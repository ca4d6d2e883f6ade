"""调度命令 Scheduler commands: schedule, tasks, lists, scheduler, runs, calendar, webhook, notify.

Registered on the ``jingfang`` app by ``jingfang.cli`` (contract.md "Commands").
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated, Optional

import typer

from jingfang.options import DbOption, engine_for, report_errors
from registry.errors import UsageError

AsOf = Annotated[Optional[str], typer.Option("--as-of", help="日期 YYYY-MM-DD（默认今天，北京时间）", show_default=False)]


def parse_day(text: str | None, option: str = "--as-of") -> date:
    from registry.clock import local_today

    if text is None:
        return local_today()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(message=f"{option} 应为日期 YYYY-MM-DD，收到“{text}”", code="DATE_INVALID") from None


FULL_REASONS = {  # why a run asked to be incremental replanned everybody (counts["full_reason"])
    "first_run": "首次生成",
    "profile_changed": "规则配置已变",
    "holiday_package_changed": "节假日数据包已变",
    "earlier_date": "日期早于上次运行",
    "new_year": "进入新的一年",
    "calendar_changed": "节假日表已变",
    "many_changes": "变更患者过多",
}


def schedule_command(
    as_of: AsOf = None,
    full: Annotated[bool, typer.Option("--full", help="全量重算所有患者（默认只重算自上次运行以来有变化的患者）")] = False,
    db: DbOption = None,
) -> None:
    """生成随访任务 Generate every task due by the rules as of DATE (idempotent); prints counts.

    By default only the patients changed since the last run are replanned (docs/scheduler.md,
    "Incremental daily runs"); ``--full`` replans everybody."""
    from schedules.jobs import recorded
    from schedules.generation import generate

    day = parse_day(as_of)
    engine = engine_for(db)
    counts = recorded(engine, "generate", day, "cli", lambda: generate(engine, as_of=day, incremental=not full))
    kinds = "，".join(f"{k} {n}" for k, n in counts["open_by_kind"].items()) or "无"
    typer.echo(
        f"{counts['as_of']} 规则 {counts['profile']}：新建 {counts['created']}，完成 {counts['closed']}，"
        f"取消 {counts['cancelled']}，{'其中重算患者的' if counts.get('mode') == 'incremental' else ''}待办 {counts['open']}（{kinds}）"
        + (f"；增量：重算 {counts['replanned']} 名有变化的患者" if counts.get("mode") == "incremental" else "")
        + (f"；全量（{FULL_REASONS.get(counts['full_reason'], counts['full_reason'])}）" if counts.get("full_reason") else "")
        + ("；输入与上次运行相同，未重新计算" if counts.get("skipped") and counts.get("mode") == "full" else "")
        + (f"；按患者分 {counts['shards']} 片并行计算" if counts.get("shards", 1) > 1 else "")
    )
    if counts["calendar_estimated"]:
        typer.echo(f"其中 {counts['calendar_estimated']} 项到期日按估计日历计算", err=True)
    for w in counts["warnings"]:
        typer.echo(f"警告：{w}", err=True)


def tasks_command(
    as_of: AsOf = None,
    region: Annotated[Optional[str], typer.Option("--region", help="行政区划编码（含下级）")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="输出 JSON（contract.md）")] = False,
    db: DbOption = None,
) -> None:
    """待办任务 Open tasks as of DATE, sorted by risk, days overdue, due date."""
    from schedules.worklist import contract_json, open_tasks

    day = parse_day(as_of)
    tasks = open_tasks(engine_for(db), as_of=day, region_code=region)
    if as_json:
        typer.echo(json.dumps(contract_json(tasks), ensure_ascii=False, indent=1))
        return
    for t in tasks:
        flag = f"逾期{t['days_overdue']}天" if t["overdue"] else ""
        typer.echo(f"{t['patient_id']}\t{t['kind']}\t{t['due_on']}\t{','.join(t['roles'])}\t{flag}")
    typer.echo(f"共 {len(tasks)} 项", err=True)


def lists_command(
    week: Annotated[str, typer.Option("--week", help="该周任一日期 YYYY-MM-DD（按周一起算）")],
    township: Annotated[str, typer.Option("--township", help="乡镇(街道)编码")],
    out: Annotated[Path, typer.Option("--out", help="输出目录")] = Path("out"),
    db: DbOption = None,
) -> None:
    """一历五单 Write the five lists of a township for a week as PDF and XLSX."""
    from schedules.jobs import week_start
    from schedules.lists import write_township_lists

    monday = week_start(parse_day(week, "--week"))
    result = write_township_lists(engine_for(db), township_code=township, week=monday, out_dir=out, actor="cli")
    for path in result["files"]:
        typer.echo(str(path))
    typer.echo("，".join(f"{k} {n}" for k, n in result["counts"].items()), err=True)


def scheduler_command(
    out: Annotated[Path, typer.Option("--out", help="五单输出目录")] = Path("out/lists"),
    db: DbOption = None,
) -> None:
    """调度服务 The long-running scheduler (APScheduler, job store in the project database).

    Daily generation 06:00 and weekly lists Monday 07:00 (Asia/Shanghai); missed runs are
    coalesced and caught up on start; notifications are delivered every minute.
    """
    from schedules.service import run_service

    engine_for(db)  # creates / upgrades the schema first
    run_service(db_url=db, out_dir=str(out))


def runs_command(
    limit: Annotated[int, typer.Option("--limit", help="条数")] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    db: DbOption = None,
) -> None:
    """运行记录 Recent scheduler runs: start, end, counts, error (a killed run: error, interrupted)."""
    from schedules.jobs import reap_abandoned, recent_runs

    engine = engine_for(db)
    reap_abandoned(engine)  # a run whose process was killed shows as an error, not 'running' forever
    runs = recent_runs(engine, limit)
    if as_json:
        typer.echo(json.dumps(runs, ensure_ascii=False, indent=1))
        return
    for r in runs:
        detail = r["error"].splitlines()[0] if r["error"] else json.dumps(r["counts"], ensure_ascii=False)
        typer.echo(f"#{r['id']}\t{r['job']}\t{r['as_of'] or ''}\t{r['started_at']}\t{r['finished_at'] or '…'}\t{r['status']}\t{detail}")


def calendar_command(
    file: Annotated[Path, typer.Argument(help="节假日表 CSV：day(日期), working(上班 1/0), name(名称)")],
    db: DbOption = None,
) -> None:
    """导入节假日表 Load a year's holiday / make-up-workday table and recompute open tasks of those years."""
    from schedules.calendar import load_calendar, read_calendar_file

    result = load_calendar(engine_for(db), read_calendar_file(file))
    typer.echo(f"已导入 {result['days']} 天（{'、'.join(map(str, result['years']))}年），重算 {result['recomputed']} 项任务")


webhook_app = typer.Typer(help="通知地址 Webhooks (generic JSON with HMAC, WeCom, DingTalk).", no_args_is_help=True)


@webhook_app.command("add")
@report_errors
def webhook_add(
    name: Annotated[str, typer.Argument()],
    url: Annotated[str, typer.Argument()],
    fmt: Annotated[str, typer.Option("--format", help="generic | wecom | dingtalk")] = "generic",
    secret: Annotated[Optional[str], typer.Option("--secret", help="HMAC 密钥（generic 必填）或加签密钥（dingtalk）")] = None,
    region: Annotated[Optional[str], typer.Option("--region", help="只通知该地区的五单")] = None,
    db: DbOption = None,
) -> None:
    """Add a webhook, or replace one of that name in place (rotates a leaked key; queued messages follow)."""
    from registry.audit import cli_actor
    from schedules.notify import add_webhook

    verb = add_webhook(engine_for(db), name=name, url=url, fmt=fmt, secret=secret, region_code=region,
                       actor=cli_actor(), source="cli")
    typer.echo(f"已{'替换' if verb == 'replaced' else '保存'}通知地址 {name}")


@webhook_app.command("remove")
@report_errors
def webhook_remove(name: Annotated[str, typer.Argument()], db: DbOption = None) -> None:
    """Remove a webhook: no new messages; its pending ones are cancelled (history kept)."""
    from registry.audit import cli_actor
    from schedules.notify import remove_webhook

    cancelled = remove_webhook(engine_for(db), name, actor=cli_actor(), source="cli")
    typer.echo(f"已删除通知地址 {name}" + (f"，取消待发消息 {cancelled} 条" if cancelled else ""))


@webhook_app.command("disable")
@report_errors
def webhook_disable(name: Annotated[str, typer.Argument()], db: DbOption = None) -> None:
    """Disable a webhook: no new messages; its pending ones are cancelled."""
    from registry.audit import cli_actor
    from schedules.notify import set_webhook_enabled

    cancelled = set_webhook_enabled(engine_for(db), name, False, actor=cli_actor(), source="cli")
    typer.echo(f"已停用通知地址 {name}" + (f"，取消待发消息 {cancelled} 条" if cancelled else ""))


@webhook_app.command("enable")
@report_errors
def webhook_enable(name: Annotated[str, typer.Argument()], db: DbOption = None) -> None:
    """Enable a disabled webhook (it gets new messages again)."""
    from registry.audit import cli_actor
    from schedules.notify import set_webhook_enabled

    set_webhook_enabled(engine_for(db), name, True, actor=cli_actor(), source="cli")
    typer.echo(f"已启用通知地址 {name}")


@webhook_app.command("list")
@report_errors
def webhook_list(db: DbOption = None) -> None:
    """List webhooks (URLs are secrets: only scheme and host are shown)."""
    from schedules.notify import list_webhooks

    for w in list_webhooks(engine_for(db)):
        typer.echo(f"{w['name']}\t{w['format']}\t{w['host']}\t{w['region_code'] or '全部'}\t{'启用' if w['active'] else '停用'}")


def notify_command(db: DbOption = None) -> None:
    """投递通知 Deliver due outbox messages now (the scheduler does this every minute)."""
    from schedules.notify import deliver_due

    counts = deliver_due(engine_for(db))
    typer.echo(f"已发送 {counts['sent']}，失败 {counts['failed']}，待重试 {counts['retry']}")


def register(app: typer.Typer) -> None:
    """Add this capability's commands to ``app``."""
    app.command("schedule")(report_errors(schedule_command))
    app.command("tasks")(report_errors(tasks_command))
    app.command("lists")(report_errors(lists_command))
    app.command("scheduler")(report_errors(scheduler_command))
    app.command("runs")(report_errors(runs_command))
    app.command("calendar")(report_errors(calendar_command))
    app.command("notify")(report_errors(notify_command))
    app.add_typer(webhook_app, name="webhook")
