"""网页应用 The FastAPI application: server-rendered Chinese pages and the JSON API under /api/.

``create_app(engine)`` builds everything; errors are mapped ONCE here: JingfangError →
``{"error": code, "message": …}`` with its HTTP status under /api/, an error page (or the
login page for 401) elsewhere; request-validation errors → 422 ``INVALID_REQUEST``.
"""

from __future__ import annotations

import functools
import gc
import logging
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path
from typing import Callable

import jinja2
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from registry import clock
from registry.errors import JingfangError, NotAuthenticated, PermissionDenied, TooManyRequests
from registry.resources import template_dir
from registry.regions import LiveRegionTree
from registry.web.context import WebContext
from registry.web.auth import audit_refused

STATIC_DIR = Path(__file__).with_name("static")
TEMPLATE_DIRS = [template_dir("web"), Path(__file__).with_name("templates")]

_FIELD_NAMES = {"as_of": "日期", "month": "月份", "q": "检索词", "limit": "条数",
                "follow_up_id": "随访编号", "patient_id": "患者编号", "body": "请求体"}
# 参数错误原因 The reason of a request-shape error in Chinese, by pydantic's error type (prefix), so the
# message names the field and the reason (input audit: it said only "的值无效"); ``{…}`` from the error's ctx.
_REASONS = (
    ("missing", "必须填写"), ("extra_forbidden", "不是可用的字段"), ("bool", "应为 true 或 false"),
    ("int", "应为整数"), ("float", "应为数值"), ("string_too_long", "过长（最多 {max_length} 个字符）"),
    ("string_too_short", "过短（至少 {min_length} 个字符）"), ("string", "应为文本"),
    ("too_long", "条数过多（最多 {max_length} 条）"), ("too_short", "条数过少（至少 {min_length} 条）"),
    ("greater_than_equal", "不能小于 {ge}"), ("greater_than", "应大于 {gt}"), ("less_than_equal", "不能大于 {le}"),
    ("less_than", "应小于 {lt}"), ("date", "应为 YYYY-MM-DD 格式的真实日期"), ("datetime", "应为 YYYY-MM-DD HH:MM 格式的时间"),
    ("list", "应为列表"), ("dict", "应为 JSON 对象"), ("model", "应为 JSON 对象"), ("json_invalid", "不是有效的 JSON"),
    ("literal", "不是可选的值"), ("enum", "不是可选的值"),
)


def request_error_reason(error: dict) -> str:
    """参数错误原因 The Chinese reason of one pydantic/FastAPI request error (``_REASONS``), or 的值无效."""
    kind = str(error.get("type", ""))
    for prefix, reason in _REASONS:
        if kind.startswith(prefix):
            try:
                return reason.format(**(error.get("ctx") or {}))
            except (KeyError, IndexError, ValueError):
                return reason.split("（")[0]
    return "的值无效"


_DICT_ATTRIBUTES = frozenset(dir(dict))


class _PageEnvironment(jinja2.Environment):
    """The pages' Jinja environment: ``x.name`` on a plain dict (most of the pages' values) looks the
    key up first. Jinja's own order, the attribute first, costs a raised AttributeError per lookup,
    a third of a patient page's render; for a plain dict and a name that is not one of dict's own
    attributes that lookup always fails, so the result is the same."""

    def getattr(self, obj, attribute):
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)


def _templates() -> Jinja2Templates:
    dirs = [str(d) for d in TEMPLATE_DIRS if d.is_dir()]
    # Starlette's own environment for ``directory=dirs``, with the dict lookup above
    templates = Jinja2Templates(env=_PageEnvironment(loader=jinja2.FileSystemLoader(dirs),
                                                     autoescape=jinja2.select_autoescape()))
    from registry.web.queries import role_label

    from registry.rates.indicators import VARIANT_NAMES

    templates.env.globals.update(team_role_label=functools.lru_cache(maxsize=64)(role_label), variant_name=lambda v: VARIANT_NAMES.get(v, v))
    # templates change only with a deployment: no file-modification check on every render
    templates.env.auto_reload = False
    templates.env.filters["pct"] = lambda v: "—" if v is None else f"{v * 100:.1f}%"
    from registry.config import LOCAL_TZ

    templates.env.filters["localtime"] = lambda v: "" if v is None else v.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M")
    return templates


def create_app(engine, *, today: Callable[[], date] | None = None, secure_cookies: bool | None = None,
               fast_pool_size: int = 8) -> FastAPI:
    """创建应用 Build the web application on ``engine`` (SQLite or PostgreSQL, schema already upgraded).

    On PostgreSQL each worker process also keeps up to ``fast_pool_size`` asyncio connections for
    the patient page and the work list (``registry.web.fast``), opened in the app's lifespan.
    """
    from registry.config import get_settings
    from registry.web import api, pages

    settings = get_settings()
    https_base = settings.base_url.startswith("https://")
    if secure_cookies is None:
        secure_cookies = https_base
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        """进程生命周期 Each worker opens its asyncio connection pool for the hot reads (PostgreSQL)."""
        from registry.web import fast

        ctx = app.state.ctx
        if fast.enabled(ctx):
            ctx.fast_pool = await fast.open_pool(engine, size=fast_pool_size)
        # the region tree before the first request (off the event loop; its reloads run in the background)
        try:
            await run_in_threadpool(ctx.tree.load)
        except Exception:  # the database may be away at start-up: the first request loads it then
            logging.getLogger(__name__).warning("region tree not loaded at start-up", exc_info=True)
        # everything loaded so far (modules, app, templates) lives as long as the process: keep it out
        # of the cyclic collector, whose full collections otherwise stall the worker ~0.1 s now and then
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            pool, ctx.fast_pool = ctx.fast_pool, None
            if pool is not None:
                await pool.close()

    app = FastAPI(
        lifespan=lifespan,
        title="精防 Jingfang API",
        version="0.1.0",
        description="严重精神障碍患者登记与随访：JSON 接口。认证：POST /api/session 取得令牌，"
        "之后用 Authorization: Bearer <token>；或使用网页会话 Cookie 加 X-CSRF-Token 请求头。",
        openapi_url="/openapi.json",
        # no interactive docs: FastAPI's pages load swagger-ui from a CDN and start it with an inline
        # script (issue 18: no CDN, CSP without 'unsafe-inline'); /openapi.json is the documentation
        docs_url=None,
        redoc_url=None,
    )
    from registry.web.cache import WorklistCache

    app.state.ctx = WebContext(engine=engine, tree=LiveRegionTree(engine), today=today or clock.local_today,
                               secure_cookies=secure_cookies, templates=_templates(), worklists=WorklistCache(engine))
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    # pages first: the hot pages are matched without scanning the API's routes (no path overlaps)
    app.include_router(pages.router)
    app.include_router(api.router)
    app.include_router(__import__("registry.web.ledger", fromlist=["router"]).router)  # 易肇事肇祸台账 (issue 15)
    edit_routes = __import__("registry.web.edit_routes", fromlist=["router"])  # edits, history, moves (issue 13)
    app.include_router(edit_routes.router)
    app.include_router(edit_routes.api_router)
    app.include_router(__import__("registry.web.reward", fromlist=["router"]).router)  # 以奖代补 (issue 14)
    app.include_router(__import__("registry.web.list_archive", fromlist=["router"]).router)  # 五单存档 (issue 15)
    app.include_router(__import__("registry.web.emergencies", fromlist=["router"]).router)  # 应急处置 (issue 15)
    app.include_router(__import__("registry.web.joint_visits", fromlist=["router"]).router)  # 联合未到位 (issue 14)
    app.include_router(__import__("registry.web.landing", fromlist=["router"]).router)  # 通知落地页 (issue 14)
    app.include_router(__import__("registry.web.export", fromlist=["router"]).router)  # 数据导出 (issue 13)
    app.include_router(__import__("registry.web.alerts", fromlist=["router"]).router)  # 实时预警 (issue 15, rules.md §12)
    appointment_routes = __import__("registry.web.appointments", fromlist=["router"])  # 联合入户预约 (issue 14)
    app.include_router(appointment_routes.router)
    app.include_router(appointment_routes.api_router)
    _install_error_handlers(app)

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeaders, https_base=https_base)
    return app


# the templates have no inline script or style (checked by tests/test_web_security.py): a strict policy
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
HSTS = b"max-age=31536000; includeSubDomains"
_SECURITY_HEADERS = ((b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                     (b"referrer-policy", b"same-origin"), (b"content-security-policy", CSP.encode()),
                     (b"cross-origin-opener-policy", b"same-origin"))


class SecurityHeaders:
    """安全响应头 CSP (no inline code, no framing), nosniff, same-origin referrer, no caching of pages
    (static files excepted), and HSTS when the request came over https or the base URL is https.

    A plain ASGI middleware (headers added to ``http.response.start``, only when the response did
    not set them itself): Starlette's ``BaseHTTPMiddleware`` costs a task group and a memory
    stream per request.
    """

    def __init__(self, app, https_base: bool = False):
        self.app = app
        self.https_base = https_base

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        no_store = not scope["path"].startswith("/static")
        hsts = self.https_base or scope.get("scheme") == "https"

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {k.lower() for k, _v in headers}
                extra = [(k, v) for k, v in _SECURITY_HEADERS if k not in present]
                if no_store and b"cache-control" not in present:
                    extra.append((b"cache-control", b"no-store"))
                if hsts and b"strict-transport-security" not in present:
                    extra.append((b"strict-transport-security", HSTS))
                if extra:
                    message = {**message, "headers": headers + extra}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimit:
    """请求体上限 Refuse a request body larger than ``max_bytes`` with 413 ``BODY_TOO_LARGE`` (the JSON
    error shape): at once when Content-Length says so, else as soon as the streamed body passes it."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send) -> None:
        import json

        body = json.dumps({"error": "BODY_TOO_LARGE", "message": f"请求体过大（上限 {self.max_bytes // 1024} KiB）"},
                          ensure_ascii=False).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    too_large = int(value) > self.max_bytes
                except ValueError:
                    too_large = True
                if too_large:
                    await self._refuse(send)
                    return
        received = 0
        started = False

        class _TooLarge(Exception):
            pass

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path == "/api"


def error_page(request: Request, status: int, code: str, message: str, issues=()):
    """错误页 The error template with the status, code and Chinese message, in the page's usual frame
    (the header's role and region, the footer's date: they were blank on a refusal, session 13)."""
    from registry.web.pages import page_context

    ctx = request.app.state.ctx
    context = page_context(request, {"status": status, "code": code, "message": message, "issues": list(issues)})
    return ctx.templates.TemplateResponse(request, "error.html", context, status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(JingfangError)
    async def jingfang_error(request: Request, exc: JingfangError):
        """错误映射 JingfangError → JSON (API) or the error page."""
        if isinstance(exc, PermissionDenied):
            await run_in_threadpool(audit_refused, request, exc)
        headers = None
        if isinstance(exc, NotAuthenticated):
            headers = {"WWW-Authenticate": "Bearer"}
        elif isinstance(exc, TooManyRequests):
            headers = {"Retry-After": str(exc.retry_after)}
        if _is_api(request):
            return JSONResponse(exc.as_dict(), status_code=exc.http_status, headers=headers)
        if isinstance(exc, NotAuthenticated):
            return RedirectResponse("/login", status_code=303)
        response = error_page(request, exc.http_status, exc.code, exc.message, exc.issues)
        response.headers.update(headers or {})
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        """参数错误 Request validation → 422 INVALID_REQUEST in Chinese."""
        issues = []
        for err in exc.errors():
            loc = [str(x) for x in err.get("loc", ()) if x not in ("query", "path", "body")]
            name = loc[0] if loc else "body"
            where = ".".join(loc) or "body"
            shown = _FIELD_NAMES.get(where) or _FIELD_NAMES.get(name) or where
            reason = request_error_reason(err)
            issues.append({"code": "INVALID_REQUEST", "column": where,
                           "message": f"{shown} 的值无效" if reason == "的值无效" else f"{shown}：{reason}"})
        message = issues[0]["message"] if issues else "请求无效"
        body = {"error": "INVALID_REQUEST", "message": message, "issues": issues}
        if _is_api(request):
            return JSONResponse(body, status_code=422)
        return error_page(request, 422, "INVALID_REQUEST", message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        """路由错误 404 / 405 with stable codes."""
        code, message = {404: ("NOT_FOUND", "页面或接口不存在"), 405: ("METHOD_NOT_ALLOWED", "不支持此请求方法")}.get(
            exc.status_code, ("HTTP_ERROR", str(exc.detail)))
        if _is_api(request) or exc.status_code == 405:
            return JSONResponse({"error": code, "message": message}, status_code=exc.status_code, headers=exc.headers)
        return error_page(request, exc.status_code, code, message)


def app_from_env() -> FastAPI:
    """多进程工厂 uvicorn factory for multi-worker serving: the database URL comes from JINGFANG_DATABASE_URL."""
    from registry.db import get_engine

    return create_app(get_engine())
