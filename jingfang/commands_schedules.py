"""调度命令 Scheduler commands: schedule, tasks, lists, scheduler, runs, calendar, webhook, notify.

Registered on the ``jingfang`` app by ``jingfang.cli`` (contract.md "Commands").
"""

from __future__ import annotations

import json
import traceback
from pathlib import Path
from typing import Annotated, Optional

import typer

from jingfang.labels import counts_text, error_text, kind_label, kinds_text, list_counts_text, local_time, profile_title, role_label
from jingfang.options import DbOption, engine_for, parse_day, report_errors

AsOf = Annotated[Optional[str], typer.Option("--as-of", help="日期 YYYY-MM-DD（默认今天，北京时间）", show_default=False)]


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
    """生成随访任务：按规则生成截至该日应有的全部任务（可重复运行），并打印数量；默认只重算自上次运行以来有变化的患者，--full 全量重算。"""
    from schedules.jobs import recorded
    from schedules.generation import generate

    day = parse_day(as_of)
    engine = engine_for(db)
    counts = recorded(engine, "generate", day, "cli", lambda: generate(engine, as_of=day, incremental=not full))
    kinds = kinds_text(counts["open_by_kind"])
    typer.echo(
        f"{counts['as_of']} 规则 {profile_title(counts['profile'])}：新建 {counts['created']}，完成 {counts['closed']}，"
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
    as_json: Annotated[bool, typer.Option("--json", help="输出 JSON（供程序读取）")] = False,
    db: DbOption = None,
) -> None:
    """待办任务：截至该日的未完成任务，按危险性、逾期天数、到期日排序（--json 输出接口格式）。"""
    from schedules.worklist import contract_json, open_tasks

    from registry.audit import record_cli

    day = parse_day(as_of)
    engine = engine_for(db)
    tasks = open_tasks(engine, as_of=day, region_code=region)
    # an export of patient ids and due dates: audited, the actor is the operating-system user (rules.md §8)
    record_cli(engine, action="export", object_type="tasks", object_id=day.isoformat(), region_code=region,
               detail=f"{'JSON' if as_json else '文本'}，{len(tasks)} 项")
    if as_json:
        typer.echo(json.dumps(contract_json(tasks), ensure_ascii=False, indent=1))
        return
    for t in tasks:
        flag = f"逾期{t['days_overdue']}天" if t["overdue"] else ""
        roles = "、".join(role_label(r) for r in t["roles"])
        typer.echo(f"{t['patient_id']}\t{kind_label(t['kind'])}\t{t['due_on']}\t{roles}\t{flag}")
    typer.echo(f"共 {len(tasks)} 项", err=True)


def lists_command(
    week: Annotated[str, typer.Option("--week", help="该周任一日期 YYYY-MM-DD（按周一起算）")],
    township: Annotated[str, typer.Option("--township", help="乡镇(街道)编码")],
    out: Annotated[Path, typer.Option("--out", help="输出目录")] = Path("out"),
    reissue: Annotated[bool, typer.Option("--reissue", help="管理员：按当前数据重新签发已存档的一周（新版本，旧版本保留）")] = False,
    reason: Annotated[Optional[str], typer.Option("--reason", help="重新签发的原因（与 --reissue 一起使用）")] = None,
    db: DbOption = None,
) -> None:
    """一历五单：写出一个乡镇一周的五单（PDF 和 XLSX）；已签发的一周按存档原样写出，不重新计算。"""
    from registry import pdf
    from schedules import list_renderer

    # the render processes first (issue 17): they import WeasyPrint and warm up while this process
    # imports SQLAlchemy and the models, checks the schema and reads the week
    workers = list_renderer.render_workers(5)  # 五单: five documents
    pool = list_renderer.render_pool(workers, preload_here=False) if workers > 1 else None
    try:
        result = _write_lists(week, township, out, reissue, reason, db, pool)
    except BaseException as exc:
        if pool is not None:
            pdf.stop(pool)
            pool = None
            # the failed calls' locals no longer hold the pool: its queues are released (no semaphore
            # left for multiprocessing's resource tracker to warn about) before the error is reported
            traceback.clear_frames(exc.__traceback__)
        raise
    if pool is not None:
        if result["archived"] and result["archived"]["served"]:
            pdf.stop(pool)  # served from the archive: nothing was rendered
        else:
            pdf.close(pool)
    for path in result["files"]:
        typer.echo(str(path))
    typer.echo(list_counts_text(result["counts"]), err=True)
    archived = result.get("archived")
    if archived is None:
        typer.echo("该周尚未开始：本次为预览，未存档。", err=True)
    elif archived["served"]:
        typer.echo(f"该周已于 {local_time(archived['issued_at'].isoformat())} 签发（第 {archived['version']} 版，签发人 "
                   f"{archived['issued_by']}），以上文件按存档原样写出；如需按当前数据重新签发，请用 --reissue。", err=True)
    else:
        typer.echo(f"已签发并存档（第 {archived['version']} 版）。", err=True)


def _write_lists(week: str, township: str, out: Path, reissue: bool, reason: str | None, db: str | None, pool) -> dict:
    from jingfang.options import check_township
    from schedules.archive import monday_of  # not schedules.jobs: the scheduler's imports cost 0.3 s here
    from schedules.lists import write_township_lists

    monday = monday_of(parse_day(week, "--week"))
    from registry.audit import cli_actor

    if reason is not None and not reissue:
        from registry.errors import InvalidInput

        raise InvalidInput.single("REASON_WITHOUT_REISSUE", "--reason 只能与 --reissue 一起使用", column="--reason")
    engine = engine_for(db)
    check_township(engine, township)
    typer.echo(f"正在生成 {township} {monday.isoformat()} 这一周的五单……", err=True)
    return write_township_lists(engine, township_code=township, week=monday, out_dir=out, actor=cli_actor(),
                                reissue=reissue, reason=reason, pool=pool)


def scheduler_command(
    out: Annotated[Path, typer.Option("--out", help="五单输出目录")] = Path("out/lists"),
    db: DbOption = None,
) -> None:
    """调度服务：常驻进程，每天 06:00 生成任务，每周一 07:00 写出五单（北京时间），错过的运行在启动时补上，每分钟投递通知。"""
    from schedules.service import run_service

    engine_for(db)  # creates / upgrades the schema first
    run_service(db_url=db, out_dir=str(out))


def runs_command(
    limit: Annotated[int, typer.Option("--limit", help="条数")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="输出 JSON")] = False,
    db: DbOption = None,
) -> None:
    """运行记录：最近的调度运行（开始、结束、数量、错误；被终止的运行记为失败）。"""
    from schedules.jobs import reap_abandoned, recent_runs

    engine = engine_for(db)
    reap_abandoned(engine)  # a run whose process was killed shows as an error, not 'running' forever
    runs = recent_runs(engine, limit)
    if as_json:
        typer.echo(json.dumps(runs, ensure_ascii=False, indent=1))
        return
    from jingfang.labels import JOB_LABELS, RUN_STATUS_LABELS

    for r in runs:
        detail = error_text(r["error"]) if r["error"] else counts_text(r["counts"])
        typer.echo(f"#{r['id']}\t{JOB_LABELS.get(r['job'], r['job'])}\t{r['as_of'] or ''}\t{local_time(r['started_at'])}\t"
                   f"{local_time(r['finished_at']) or '…'}\t{RUN_STATUS_LABELS.get(r['status'], r['status'])}\t{detail}")
    if not runs:
        typer.echo("尚无运行记录", err=True)


def calendar_command(
    file: Annotated[Path, typer.Argument(help="节假日表 CSV：day(日期), working(上班 1/0), name(名称)")],
    db: DbOption = None,
) -> None:
    """导入节假日表：载入一年的法定节假日与调休上班日，并重算这些年份的未完成任务。"""
    from schedules.calendar import load_calendar, read_calendar_file

    result = load_calendar(engine_for(db), read_calendar_file(file))
    typer.echo(f"已导入 {result['days']} 天（{'、'.join(map(str, result['years']))}年），重算 {result['recomputed']} 项任务")


webhook_app = typer.Typer(help="通知地址：通用 JSON（HMAC 签名）、企业微信、钉钉。", no_args_is_help=True)


@webhook_app.command("add")
@report_errors
def webhook_add(
    name: Annotated[str, typer.Argument(help="名称")],
    url: Annotated[str, typer.Argument(help="地址 URL")],
    fmt: Annotated[str, typer.Option("--format", help="格式：generic 通用 JSON | wecom 企业微信 | dingtalk 钉钉")] = "generic",
    secret: Annotated[Optional[str], typer.Option("--secret", help="HMAC 密钥（通用 JSON 必填）或加签密钥（钉钉）")] = None,
    region: Annotated[Optional[str], typer.Option("--region", help="只通知该地区的五单")] = None,
    db: DbOption = None,
) -> None:
    """新增通知地址，或替换同名地址（可用于更换泄露的密钥；待发消息随之转发）。"""
    from registry.audit import cli_actor
    from schedules.notify import add_webhook

    verb = add_webhook(engine_for(db), name=name, url=url, fmt=fmt, secret=secret, region_code=region,
                       actor=cli_actor(), source="cli")
    typer.echo(f"已{'替换' if verb == 'replaced' else '保存'}通知地址 {name}")


@webhook_app.command("remove")
@report_errors
def webhook_remove(name: Annotated[str, typer.Argument(help="名称")], db: DbOption = None) -> None:
    """删除通知地址：不再产生新消息，待发消息取消（保留历史）。"""
    from registry.audit import cli_actor
    from schedules.notify import remove_webhook

    cancelled = remove_webhook(engine_for(db), name, actor=cli_actor(), source="cli")
    typer.echo(f"已删除通知地址 {name}" + (f"，取消待发消息 {cancelled} 条" if cancelled else ""))


@webhook_app.command("disable")
@report_errors
def webhook_disable(name: Annotated[str, typer.Argument(help="名称")], db: DbOption = None) -> None:
    """停用通知地址：不再产生新消息，待发消息取消。"""
    from registry.audit import cli_actor
    from schedules.notify import set_webhook_enabled

    cancelled = set_webhook_enabled(engine_for(db), name, False, actor=cli_actor(), source="cli")
    typer.echo(f"已停用通知地址 {name}" + (f"，取消待发消息 {cancelled} 条" if cancelled else ""))


@webhook_app.command("enable")
@report_errors
def webhook_enable(name: Annotated[str, typer.Argument(help="名称")], db: DbOption = None) -> None:
    """启用已停用的通知地址（重新接收新消息）。"""
    from registry.audit import cli_actor
    from schedules.notify import set_webhook_enabled

    set_webhook_enabled(engine_for(db), name, True, actor=cli_actor(), source="cli")
    typer.echo(f"已启用通知地址 {name}")


@webhook_app.command("list")
@report_errors
def webhook_list(db: DbOption = None) -> None:
    """列出通知地址（地址含密钥，只显示协议和主机）。"""
    from schedules.notify import FORMAT_LABELS, list_webhooks

    for w in list_webhooks(engine_for(db)):
        typer.echo(f"{w['name']}\t{FORMAT_LABELS.get(w['format'], w['format'])}\t{w['host']}\t{w['region_code'] or '全部'}\t{'启用' if w['active'] else '停用'}")


def notify_command(db: DbOption = None) -> None:
    """投递通知：立即发送到期的待发消息（调度服务每分钟自动投递）。"""
    from jingfang.labels import COUNT_LABELS
    from schedules.notify import FAILED, SENT, deliver_due

    counts = deliver_due(engine_for(db))
    typer.echo("，".join(f"{COUNT_LABELS[k]} {counts[k]}" for k in (SENT, FAILED, "retry")))


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
