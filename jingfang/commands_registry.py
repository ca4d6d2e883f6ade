"""登记命令 Registry commands: ``jingfang import`` and ``jingfang demo``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from jingfang.options import DbOption, engine_for, report_errors


def _progress_bar():
    """A rich progress bar on stderr for large files (only on a terminal)."""
    if not sys.stderr.isatty():
        return None, None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=Console(stderr=True), transient=True)
    tasks: dict[str, int] = {}

    def update(stem: str, done: int, total: int) -> None:
        if total < 5000:
            return
        if stem not in tasks:
            tasks[stem] = bar.add_task(f"写入 {stem}", total=total)
        bar.update(tasks[stem], completed=done)

    return bar, update


def import_command(
    path: Annotated[Path, typer.Argument(help="目录（regions.csv、patients.csv……）或 .xlsx 工作簿")],
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="跳过有错误的行，导入其余的行")] = False,
    db: DbOption = None,
) -> None:
    """导入：地区、团队成员、患者、随访与体检等文件（目录中的 CSV 或一个 .xlsx 工作簿）。"""
    from registry.audit import record_cli
    from registry.clock import local_today
    from registry.importing import import_path

    engine = engine_for(db)
    bar, update = _progress_bar()
    if bar:
        with bar:
            result = import_path(engine, path, today=local_today(), skip_invalid=skip_invalid, progress=update)
    else:
        result = import_path(engine, path, today=local_today(), skip_invalid=skip_invalid)
    record_cli(engine, action="import", object_type="import", object_id=str(path), detail=result.summary())
    for issue in result.issues:
        typer.echo("跳过 " + issue.render(), err=True)
    if result.issues:
        typer.echo(f"已跳过 {len(result.issues)} 个问题所在的行", err=True)
    typer.echo(result.summary())


def demo_command(
    patients: Annotated[int, typer.Option("--patients", help="患者数")] = 3000,
    seed: Annotated[int, typer.Option("--seed", help="随机种子")] = 20261123,
    out: Annotated[Path, typer.Option("--out", help="输出目录")] = Path("out"),
    force: Annotated[bool, typer.Option("--force", help="写入已有地区或账号（但没有患者）的数据库；已有账号不会被更改")] = False,
    db: DbOption = None,
) -> None:
    """演示：生成一个合成县，排出今天的任务，写出五单和月报，并打印指标（不写入已有登记数据的数据库）。"""
    import os

    from jingfang.demo import run_demo
    from registry.clock import local_today

    if patients < 1:
        from registry.errors import InvalidInput

        raise InvalidInput.single("BAD_NUMBER", "--patients 必须为正整数", column="--patients")
    typer.echo(f"精防演示：{patients} 名合成患者，输出到 {out}/", err=True)
    typer.echo("准备数据库……", err=True)
    previous = os.umask(0o027)  # the demo's files: 0640, directories 0750
    try:
        run_demo(engine_for(db), out, patients=patients, seed=seed, today=local_today(), echo=typer.echo,
                 step=lambda text: typer.echo(text, err=True), force=force)
    finally:
        os.umask(previous)


def register(app: typer.Typer) -> None:
    """Add the registry's commands to ``app``."""
    app.command("import")(report_errors(import_command))
    app.command("demo")(report_errors(demo_command))
