"""命令行 The ``jingfang`` command (contract.md "Commands").

Exit status: 0 success, 1 invalid input (message on stderr names what and where),
2 usage error. Every command takes ``--db URL`` (or ``JINGFANG_DATABASE_URL``); the shared
options and the error mapping live in ``jingfang.options``. Each capability's commands are in
their own module (``jingfang.commands_*``), registered here.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from jingfang import (cli_zh, commands_export, commands_ledger, commands_rates, commands_registry, commands_reward,
                      commands_schedules, commands_web)

cli_zh.install()  # click's and typer's own words (usage, panels, usage errors) in Chinese

app = typer.Typer(
    name="jingfang",
    help="精防 Jingfang：严重精神障碍患者登记与随访调度。",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for module in (commands_registry, commands_schedules, commands_rates, commands_web):
    module.register(app)
commands_ledger.register(app)  # 易肇事肇祸台账 (issue 15)
commands_reward.register(app)  # 以奖代补发放名单 (issue 14)
commands_export.register(app)  # 导出 (issue 13)


# files the command writes (五单, reports, exports, the SQLite database) are not readable by other users
# of the machine: 0640 for files, 0750 for directories (issue 18); the database file itself is 0600
# (registry.db.private_sqlite_file)
UMASK = 0o027


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

        try:
            number = version("jingfang")
        except PackageNotFoundError:  # pragma: no cover - run from a checkout without installing
            number = "未安装"
        typer.echo(f"jingfang {number}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[bool, typer.Option("--version", help="显示版本号并退出", callback=_version,
                                               is_eager=True)] = False,
) -> None:
    """精防 Jingfang：严重精神障碍患者登记与随访调度。"""


def main() -> None:
    os.umask(os.umask(UMASK) | UMASK)  # never loosen a stricter umask
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
