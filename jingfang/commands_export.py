"""导出命令 ``jingfang export DIR [--region CODE] [--xlsx FILE]`` (contract.md "Commands" [2026-12]).

Writes the register in the import format (``registry.exporting``): the CSV files into DIR, or one
workbook with ``--xlsx`` (both when both are given). Audited as the operating-system user.
Registered on the ``jingfang`` app by ``jingfang.cli``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from jingfang.options import DbOption, engine_for, output_file, report_errors


def export_command(
    directory: Annotated[Optional[Path], typer.Argument(help="输出目录（写 regions.csv、patients.csv……）", show_default=False)] = None,
    region: Annotated[Optional[str], typer.Option("--region", help="只导出该地区及其下级（默认全部）")] = None,
    xlsx: Annotated[Optional[Path], typer.Option("--xlsx", help="写一个 .xlsx 工作簿（每个文件一张工作表）")] = None,
    db: DbOption = None,
) -> None:
    """导出：按导入格式写出登记数据（每个文件、每一列），可再导入；或写一个 Excel 工作簿。"""
    from registry.audit import cli_actor
    from registry.errors import InvalidInput, Issue, UsageError
    from registry.exporting import export_register

    if directory is None and xlsx is None:  # contract.md: a command called without its arguments is exit 2
        raise UsageError(message="请指定输出目录 DIR 或 --xlsx 文件", code="OUT_REQUIRED",
                         issues=[Issue("OUT_REQUIRED", "请指定输出目录 DIR 或 --xlsx 文件", column="DIR")])
    if xlsx is not None:
        xlsx = output_file(xlsx, "--xlsx")
        if xlsx.suffix.lower() != ".xlsx":
            raise InvalidInput.single("BAD_XLSX", f"--xlsx 文件名应以 .xlsx 结尾，收到“{xlsx.name[:40]}”", column="--xlsx",
                                      value=xlsx.name[:40])
    if directory is not None and directory.exists() and not directory.is_dir():
        raise InvalidInput.single("NOT_A_DIRECTORY", f"{directory} 不是目录", column="DIR", value=str(directory))
    result = export_register(engine_for(db), directory=directory, xlsx=xlsx, region=region.strip() if region else None,
                             actor=cli_actor(), source="cli")
    typer.echo(result.summary())
    for path in result.paths:
        typer.echo(f"  {path}")


def register(app: typer.Typer) -> None:
    """Add ``export`` to ``app``."""
    app.command("export")(report_errors(export_command))
