"""网页应用 The FastAPI application: server-rendered Chinese pages and the JSON API under /api/.

``create_app(engine)`` builds everything; errors are mapped ONCE here: JingfangError →
``{"error": code, "message": …}`` with its HTTP status under /api/, an error page (or the
login page for 401) elsewhere; request-validation errors → 422 ``INVALID_REQUEST``.
"""

from __future__ import annotations

import gc
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from registry import clock
from registry.errors import JingfangError, NotAuthenticated
from registry.resources import template_dir
from registry.regions import LiveRegionTree
from registry.web.context import WebContext

STATIC_DIR = Path(__file__).with_name("static")
TEMPLATE_DIRS = [template_dir("web"), Path(__file__).with_name("templates")]

_FIELD_NAMES = {"as_of": "日期(as_of)", "month": "月份(month)", "q": "检索词(q)", "limit": "条数(limit)",
                "follow_up_id": "随访编号", "patient_id": "患者编号", "body": "请求体"}


def _templates() -> Jinja2Templates:
    dirs = [str(d) for d in TEMPLATE_DIRS if d.is_dir()]
    templates = Jinja2Templates(directory=dirs)
    from registry.web.queries import role_label

    templates.env.globals.update(team_role_label=role_label)
    # templates change only with a deployment: no file-modification check on every render
    templates.env.auto_reload = False
    templates.env.filters["pct"] = lambda v: "—" if v is None else f"{v * 100:.1f}%"
    return templates


def create_app(engine, *, today: Callable[[], date] | None = None, secure_cookies: bool | None = None,
               fast_pool_size: int = 8) -> FastAPI:
    """创建应用 Build the web application on ``engine`` (SQLite or PostgreSQL, schema already upgraded).

    On PostgreSQL each worker process also keeps up to ``fast_pool_size`` asyncio connections for
    the patient page and the work list (``registry.web.fast``), opened in the app's lifespan.
    """
    from registry.config import get_settings
    from registry.web import api, pages

    if secure_cookies is None:
        secure_cookies = get_settings().base_url.startswith("https://")
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        """进程生命周期 Each worker opens its asyncio connection pool for the hot reads (PostgreSQL)."""
        from registry.web import fast

        ctx = app.state.ctx
        if fast.enabled(ctx):
            ctx.fast_pool = await fast.open_pool(engine, size=fast_pool_size)
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
        docs_url="/api/docs",
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
    _install_error_handlers(app)

    app.add_middleware(SecurityHeaders)
    return app


_SECURITY_HEADERS = ((b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                     (b"referrer-policy", b"same-origin"))


class SecurityHeaders:
    """安全响应头 nosniff, no framing, same-origin referrer, no caching of pages (static files excepted).

    A plain ASGI middleware (headers added to ``http.response.start``, only when the response did
    not set them itself): Starlette's ``BaseHTTPMiddleware`` costs a task group and a memory
    stream per request.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        no_store = not scope["path"].startswith("/static")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {k.lower() for k, _v in headers}
                extra = [(k, v) for k, v in _SECURITY_HEADERS if k not in present]
                if no_store and b"cache-control" not in present:
                    extra.append((b"cache-control", b"no-store"))
                if extra:
                    message = {**message, "headers": headers + extra}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path == "/api"


def error_page(request: Request, status: int, code: str, message: str, issues=()):
    """错误页 The error template with the status, code and Chinese message."""
    ctx = request.app.state.ctx
    cur = getattr(request.state, "current", None)
    return ctx.templates.TemplateResponse(request, "error.html", {"status": status, "code": code, "message": message,
                                                                 "issues": list(issues), "cur": cur}, status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(JingfangError)
    async def jingfang_error(request: Request, exc: JingfangError):
        """错误映射 JingfangError → JSON (API) or the error page."""
        if _is_api(request):
            headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, NotAuthenticated) else None
            return JSONResponse(exc.as_dict(), status_code=exc.http_status, headers=headers)
        if isinstance(exc, NotAuthenticated):
            return RedirectResponse("/login", status_code=303)
        return error_page(request, exc.http_status, exc.code, exc.message, exc.issues)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        """参数错误 Request validation → 422 INVALID_REQUEST in Chinese."""
        issues = []
        for err in exc.errors():
            loc = [str(x) for x in err.get("loc", ()) if x not in ("query", "path", "body")]
            name = loc[0] if loc else "body"
            issues.append({"code": "INVALID_REQUEST", "column": ".".join(loc) or "body",
                           "message": f"{_FIELD_NAMES.get(name, name)} 的值无效"})
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
