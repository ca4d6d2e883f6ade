"""错误 The one exception hierarchy of Jingfang.

Every error carries a stable ``code`` for programs and a Chinese ``message`` for people.
It is mapped once to each surface: HTTP status + JSON body (web), an HTML error or form
message (pages), stderr + exit status (CLI). Programs match on ``code``, never on text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_IDENTIFIER = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")


@dataclass(frozen=True)
class Issue:
    """问题 One problem with one value: where it is and why it is wrong."""

    code: str
    message: str
    file: str | None = None
    line: int | None = None
    column: str | None = None
    value: str | None = None

    def where(self) -> str:
        """File, line and column for a person: a column named by its English identifier is left out,
        because the message names the field by its Chinese label (issue 16); JSON keeps ``column``."""
        parts = []
        if self.file:
            parts.append(self.file)
        if self.line is not None:
            parts.append(f"第{self.line}行")
        if self.column and not _IDENTIFIER.match(self.column):
            parts.append(f"列 {self.column}")  # a header as the file wrote it, or an option (--month)
        return " ".join(parts)

    def render(self) -> str:
        where = self.where()
        return f"{where}: {self.message} [{self.code}]" if where else f"{self.message} [{self.code}]"

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class JingfangError(Exception):
    """精防错误 Base class: a stable code, a Chinese message, and the issues behind it."""

    message: str
    code: str = "ERROR"
    issues: list[Issue] = field(default_factory=list)
    http_status = 400
    exit_status = 1

    def __post_init__(self) -> None:
        Exception.__init__(self, self.message)

    def __str__(self) -> str:
        return self.message

    def as_dict(self) -> dict:
        body: dict = {"error": self.code, "message": self.message}
        if self.issues:
            body["issues"] = [i.as_dict() for i in self.issues]
        return body


@dataclass
class InvalidInput(JingfangError):
    """输入无效 Bad data from a person or a file; nothing was written."""

    code: str = "INVALID_INPUT"
    http_status = 422

    @classmethod
    def single(cls, code: str, message: str, column: str | None = None, value=None) -> "InvalidInput":
        issue = Issue(code=code, message=message, column=column, value=None if value is None else str(value))
        return cls(message=message, code=code, issues=[issue])


@dataclass
class ImportRejected(InvalidInput):
    """导入被拒绝 An import with bad rows: every bad row is listed, nothing was written."""

    code: str = "IMPORT_REJECTED"


@dataclass
class NotFound(JingfangError):
    """未找到 The thing asked for does not exist (or is outside the caller's scope)."""

    code: str = "NOT_FOUND"
    http_status = 404


@dataclass
class PermissionDenied(JingfangError):
    """无权访问 The caller's role or region does not allow this."""

    code: str = "FORBIDDEN"
    http_status = 403


@dataclass
class NotAuthenticated(JingfangError):
    """未登录 No valid session."""

    code: str = "NOT_AUTHENTICATED"
    http_status = 401


@dataclass
class TooManyRequests(JingfangError):
    """请求过多 Too many attempts (login backoff, issue 18); try again after ``retry_after`` seconds."""

    code: str = "TOO_MANY_REQUESTS"
    retry_after: int = 60
    http_status = 429


@dataclass
class Conflict(JingfangError):
    """冲突 The write conflicts with what is stored."""

    code: str = "CONFLICT"
    http_status = 409


@dataclass
class UsageError(JingfangError):
    """用法错误 A command was called with wrong arguments."""

    code: str = "USAGE"
    exit_status = 2
