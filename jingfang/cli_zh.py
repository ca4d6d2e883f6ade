"""命令行框架的中文 The words the command-line framework prints itself — the usage line, the panel
titles, the help option, usage errors — in Chinese (issue 16: Chinese on every surface a person reads).

typer (pinned in pyproject.toml) ships its own copy of click with these words as English literals
and its rich help panels as module constants. ``install`` sets the panel constants, gives the usage
line and the help option Chinese words, and translates the usage-error messages by phrase. Tested by
``tests/test_cli_consistency.py::test_the_frameworks_own_words_are_chinese``, so an upgrade of typer
that moves these words fails there, not silently.
"""

from __future__ import annotations

import functools

import typer.rich_utils
from typer._click import core, exceptions, formatting

USAGE = "用法："
HELP_OPTION = "显示本帮助并退出。"
PANELS = {
    "ARGUMENTS_PANEL_TITLE": "参数", "OPTIONS_PANEL_TITLE": "选项", "COMMANDS_PANEL_TITLE": "命令",
    "ERRORS_PANEL_TITLE": "错误", "ABORTED_TEXT": "已中止。", "DEFAULT_STRING": "[默认：{}]",
    "REQUIRED_LONG_STRING": "[必填]", "DEPRECATED_STRING": "（已停用）", "ENVVAR_STRING": "[环境变量：{}]",
    "RICH_HELP": "运行 [blue]'{command_path} {help_option}'[/] 查看帮助。",
}
# usage-error phrases, longest first (an English phrase of the framework → its Chinese words)
PHRASES = (
    ("Missing option", "缺少选项"), ("Missing argument", "缺少参数"), ("Missing parameter", "缺少参数"),
    ("No such option:", "没有这个选项："), ("No such command", "没有这个命令"), ("Possible options:", "可用的选项："),
    ("Did you mean", "您是不是要用"), ("Invalid value for", "值无效："), ("Invalid value:", "值无效："),
    ("Got unexpected extra arguments", "多余的参数"), ("Got unexpected extra argument", "多余的参数"),
    ("requires an argument", "需要一个值"), ("is not a valid", "不是有效的"),
)


def translate(message: str) -> str:
    """The framework's English phrases in ``message`` replaced by Chinese (the rest is ours already)."""
    for english, chinese in PHRASES:
        message = message.replace(english, chinese)
    return message


def _chinese(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        return translate(method(self, *args, **kwargs))
    wrapper.__jingfang_zh__ = True
    return wrapper


def install() -> None:
    """Chinese words for the framework's own text (idempotent)."""
    for name, words in PANELS.items():
        if hasattr(typer.rich_utils, name):
            setattr(typer.rich_utils, name, words)
    writer = formatting.HelpFormatter.write_usage
    if not getattr(writer, "__jingfang_zh__", False):
        @functools.wraps(writer)
        def write_usage(self, prog, args="", prefix=None):
            return writer(self, prog, args, USAGE if prefix is None else prefix)
        write_usage.__jingfang_zh__ = True
        formatting.HelpFormatter.write_usage = write_usage
    get_help = core.Command.get_help_option
    if not getattr(get_help, "__jingfang_zh__", False):
        @functools.wraps(get_help)
        def get_help_option(self, ctx):
            option = get_help(self, ctx)
            if option is not None:
                option.help = HELP_OPTION
            return option
        get_help_option.__jingfang_zh__ = True
        core.Command.get_help_option = get_help_option
    for cls in (exceptions.ClickException, exceptions.UsageError, exceptions.BadParameter, exceptions.MissingParameter,
                exceptions.NoSuchOption, exceptions.BadOptionUsage, exceptions.BadArgumentUsage):
        method = cls.__dict__.get("format_message")
        if method is not None and not getattr(method, "__jingfang_zh__", False):
            cls.format_message = _chinese(method)
