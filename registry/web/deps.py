"""接口依赖 The JSON API's dependencies as ``Annotated`` aliases: a handler's needs are its signature.

After fastapi/full-stack-fastapi-template ``backend/app/api/deps.py``: a handler that declares
``cur: CurrentUser, engine: EngineDep`` gets the authenticated user (with the CSRF check for
cookie writes) and the engine; FastAPI resolves each dependency once per request, so the
router-level authentication and a handler's ``CurrentUser`` are one lookup.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Request
from sqlmodel import Session

from registry.web.auth import Current, client_ip, current, require_api_csrf
from registry.web.context import WebContext


async def get_ctx(request: Request) -> WebContext:
    """应用上下文 The application's context (engine, region tree, clock, caches)."""
    return request.app.state.ctx


Ctx = Annotated[WebContext, Depends(get_ctx)]


async def get_engine(ctx: Ctx) -> sa.Engine:
    """数据库 The application's engine."""
    return ctx.engine


EngineDep = Annotated[sa.Engine, Depends(get_engine)]


def get_session(engine: EngineDep) -> Iterator[Session]:
    """数据库会话 A session for this request (``expire_on_commit=False``), closed after the handler."""
    with Session(engine, expire_on_commit=False) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


async def get_today(ctx: Ctx) -> date:
    """今天 The application's date (Asia/Shanghai; fixed in tests)."""
    return ctx.today()


Today = Annotated[date, Depends(get_today)]


async def get_client_ip(request: Request) -> str:
    """来源地址 The client's IP address for the audit log."""
    return client_ip(request)


ClientIp = Annotated[str, Depends(get_client_ip)]


def api_user(request: Request) -> Current:
    """接口用户 The current user plus the CSRF check for cookie-authenticated writes."""
    cur = current(request)
    require_api_csrf(request, cur)
    return cur


CurrentUser = Annotated[Current, Depends(api_user)]
