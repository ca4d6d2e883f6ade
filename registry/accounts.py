"""账号 Web accounts, roles bound to a region, and login sessions (issue 4, rules.md §8).

Passwords are stored as argon2id hashes only. A login creates a :class:`WebSession`
row; the browser holds a random token in an HttpOnly cookie and the table stores
only its SHA-256, so a leaked database cannot be replayed. Each session carries its
own CSRF token (checked on every form POST and on cookie-authenticated API writes).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Field, Session, SQLModel, select

from registry import clock
from registry.codes import CodedStr
from registry.errors import Conflict, InvalidInput, NotAuthenticated
from registry.models import Region, UTCDateTime, in_check, utcnow

SESSION_HOURS = 12
_hasher = PasswordHasher()


class UserRole(CodedStr):
    """用户角色 Web user roles; each is bound to one region and sees what lies below it."""

    COUNTY_ADMIN = "county_admin", "县级管理员"
    TOWNSHIP_DOCTOR = "township_doctor", "乡镇精防医生"
    POLICE = "police", "民警"
    CIVIL_AFFAIRS = "civil_affairs", "民政专干"


class User(SQLModel, table=True):
    """用户 A person who logs in to the web application."""

    __tablename__ = "app_user"
    __table_args__ = (in_check("role", UserRole),)

    username: str = Field(primary_key=True, max_length=64)
    password_hash: str = Field(max_length=255)
    role: str = Field(max_length=20)
    region_code: str = Field(foreign_key="region.code", max_length=32)
    display_name: str = Field(max_length=100)
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class WebSession(SQLModel, table=True):
    """登录会话 One login: the hash of the cookie token, its CSRF token and expiry."""

    __tablename__ = "web_session"
    __table_args__ = (sa.Index("ix_web_session_username", "username"),)

    token_hash: str = Field(primary_key=True, max_length=64)
    username: str = Field(foreign_key="app_user.username", max_length=64)
    csrf_token: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    source: str | None = Field(default=None, max_length=100)


def hash_token(token: str) -> str:
    """令牌摘要 SHA-256 of a session token (only the digest is stored)."""
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    """密码哈希 argon2id hash of a password."""
    return _hasher.hash(password)


def _check_new_user(username: str, password: str, role: str) -> UserRole:
    if not username or len(username) > 64 or not all(c.isalnum() or c in "._-" for c in username):
        raise InvalidInput.single("USERNAME_INVALID", "用户名应为1–64位字母、数字或 . _ -", column="username", value=username)
    if len(password) < 8:
        raise InvalidInput.single("PASSWORD_TOO_SHORT", "密码至少8位", column="password")
    try:
        return UserRole.parse(role)
    except ValueError:
        raise InvalidInput.single("ROLE_INVALID", f"角色无效：{role}（可选 {'、'.join(m.label for m in UserRole)}）", column="role", value=role) from None


def add_user(engine, *, username: str, password: str, role: str, region_code: str, display_name: str | None = None) -> User:
    """新建账号 Create an account (one transaction); the region must exist."""
    parsed = _check_new_user(username, password, role)
    with Session(engine, expire_on_commit=False) as session:
        region = session.get(Region, region_code)
        if region is None:
            raise InvalidInput.single("REGION_NOT_FOUND", f"地区编码“{region_code}”不存在", column="region_code", value=region_code)
        if session.get(User, username) is not None:
            raise Conflict(f"用户名已存在：{username}", code="USERNAME_TAKEN")
        user = User(username=username, password_hash=hash_password(password), role=parsed.value,
                    region_code=region_code, display_name=display_name or username)
        session.add(user)
        session.commit()
        return user


def authenticate(session: Session, username: str, password: str) -> User:
    """核对密码 The active user with this password, or NotAuthenticated (same message either way)."""
    user = session.get(User, username) if username else None
    bad = NotAuthenticated("用户名或密码错误", code="LOGIN_FAILED")
    if user is None or not user.active:
        _hasher.hash("timing-equaliser")  # keep the answer time similar for unknown users
        raise bad
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        raise bad from None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
        session.add(user)
    return user


def start_session(session: Session, user: User, *, source: str | None = None) -> tuple[str, WebSession]:
    """开始会话 A new random token (returned once, for the cookie) and its stored row."""
    token = secrets.token_urlsafe(32)
    now = clock.now_utc()
    row = WebSession(token_hash=hash_token(token), username=user.username, csrf_token=secrets.token_urlsafe(24),
                     created_at=now, expires_at=now + timedelta(hours=SESSION_HOURS), source=source)
    session.add(row)
    return token, row


def end_session(session: Session, token: str) -> None:
    """结束会话 Delete the session row of a token."""
    row = session.get(WebSession, hash_token(token))
    if row is not None:
        session.delete(row)


def resolve_session(session: Session, token: str) -> tuple[User, WebSession]:
    """当前用户 The user and session for a cookie/bearer token, or NotAuthenticated."""
    if not token or len(token) > 200:
        raise NotAuthenticated("请先登录", code="NOT_AUTHENTICATED")
    row = session.exec(
        select(User, WebSession).join(WebSession, WebSession.username == User.username)
        .where(WebSession.token_hash == hash_token(token))
    ).first()
    if row is None:
        raise NotAuthenticated("请先登录", code="NOT_AUTHENTICATED")
    user, web_session = row
    if web_session.expires_at <= clock.now_utc() or not user.active:
        raise NotAuthenticated("登录已过期，请重新登录", code="SESSION_EXPIRED")
    return user, web_session
