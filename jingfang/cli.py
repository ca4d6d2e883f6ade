"""命令行 The ``jingfang`` command (contract.md "Commands").

Exit status: 0 success, 1 invalid input (message on stderr names what and where),
2 usage error. Every command takes ``--db URL`` (or ``JINGFANG_DATABASE_URL``); the shared
options and the error mapping live in ``jingfang.options``. Each capability's commands are in
their own module (``jingfang.commands_*``), registered here.
"""

from __future__ import annotations

import sys

import typer

from jingfang import commands_rates, commands_registry, commands_schedules, commands_web
from jingfang import commands_ledger

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


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
