"""登录与会话 Login, sessions, CSRF and the current user (issue 4).

Pages use an HttpOnly, SameSite=Lax session cookie (``Secure`` when configured for https)
and a per-session CSRF token in a hidden field of every form. The JSON API accepts either
``Authorization: Bearer <token>`` (from ``POST /api/session``; no CSRF needed, the header is
never sent by a browser on its own) or the same session cookie plus an ``X-CSRF-Token``
header on every write.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from fastapi import Request
from sqlmodel import Session

from registry.accounts import User, WebSession, resolve_session
from registry.errors import NotAuthenticated, PermissionDenied
from registry.web.scopes import Scope, scope_for

SESSION_COOKIE = "jf_session"
LOGIN_CSRF_COOKIE = "jf_login_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


@dataclass
class Current:
    """当前用户 The logged-in user, their session and their scope for this request."""

    user: User
    session: WebSession
    scope: Scope
    via: str  # "cookie" | "bearer"

    @property
    def csrf_token(self) -> str:
        """CSRF 令牌 The session's CSRF token."""
        return self.session.csrf_token


def client_ip(request: Request) -> str:
    """来源地址 The client's IP address for the audit log."""
    return request.client.host if request.client else "unknown"


def token_from(request: Request) -> tuple[str | None, str]:
    """会话令牌 The token from the Authorization header or the cookie."""
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip(), "bearer"
    return request.cookies.get(SESSION_COOKIE), "cookie"


def current(request: Request, session: Session | None = None) -> Current:
    """当前用户 The current user (cached on the request) or NotAuthenticated.

    With ``session`` the lookup runs on the caller's session (hot pages: one connection per request).
    """
    cached = getattr(request.state, "current", None)
    if cached is not None:
        return cached
    ctx = request.app.state.ctx
    token, via = token_from(request)
    if not token:
        raise NotAuthenticated("请先登录", code="NOT_AUTHENTICATED")
    if session is not None:
        user, web_session = resolve_session(session, token)
    else:
        with Session(ctx.engine, expire_on_commit=False) as own:
            user, web_session = resolve_session(own, token)
    cur = Current(user=user, session=web_session, scope=scope_for(user, ctx.tree, ctx.today()), via=via)
    request.state.current = cur
    return cur


def require_api_csrf(request: Request, cur: Current) -> None:
    """CSRF 校验 Cookie-authenticated API writes must echo the session's CSRF token in a header."""
    if request.method in SAFE_METHODS or cur.via == "bearer":
        return
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent or not hmac.compare_digest(sent, cur.csrf_token):
        raise PermissionDenied("缺少或错误的 CSRF 令牌（请求头 X-CSRF-Token）", code="CSRF_FAILED")


def require_form_csrf(cur: Current, form_token: str | None) -> None:
    """CSRF 校验 A posted form must carry the session's CSRF token."""
    if not form_token or not hmac.compare_digest(str(form_token), cur.csrf_token):
        raise PermissionDenied("表单已过期或来源无效，请刷新页面后重试", code="CSRF_FAILED")


def new_login_csrf() -> str:
    """CSRF 令牌 A random token for the login form."""
    return secrets.token_urlsafe(24)


def audit_refused(request: Request, exc: PermissionDenied) -> None:
    """拒绝访问审计 A refused request (403) is audited too (issue 18): who, what path, which code.
    The actor is the logged-in user when known, else the token's absence ("?"). The app's error
    handler calls it for every PermissionDenied; a page that answers a refused form itself (the
    以奖代补 forms re-render their page with the reason) calls it too."""
    from registry import audit

    cur = getattr(request.state, "current", None)
    path = request.url.path[:200]
    audit.record(request.app.state.ctx.engine, actor=cur.user.username if cur else "?", action="refused",
                 object_type="request", object_id=path, region_code=cur.user.region_code if cur else None,
                 detail=f"{request.method} {exc.code}", source=client_ip(request))
