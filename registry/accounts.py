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

from registry import audit, clock
from registry.codes import CodedStr, RegionLevel
from registry.config import get_settings
from registry.errors import Conflict, InvalidInput, NotAuthenticated, NotFound, TooManyRequests
from registry.models import Region, UTCDateTime, in_check, utcnow
from registry.storable_text import bad_text_message

SESSION_HOURS = 12
# a session's last request is remembered at most this often (one write per minute, not per request)
TOUCH_SECONDS = 60
# login backoff (issue 18): this many failures in the window lock the account / the address
LOGIN_FAILURES = 10
LOGIN_WINDOW = timedelta(minutes=15)
PASSWORD_MIN_LENGTH = 10
_hasher = PasswordHasher()


class UserRole(CodedStr):
    """用户角色 Web user roles; each is bound to one region and sees what lies below it."""

    COUNTY_ADMIN = "county_admin", "县级管理员"
    TOWNSHIP_DOCTOR = "township_doctor", "乡镇精防医生"
    POLICE = "police", "民警"
    CIVIL_AFFAIRS = "civil_affairs", "民政专干"
    GOVERNANCE = "governance", "综治干部"  # 综治 (rules.md §7 list 2–3) [2026-12]
    VILLAGE = "village", "村(社区)干部"  # 村(社区)两委/网格员 (rules.md §6, §7 list 2) [2026-12]


# 角色与地区层级 the region levels each role may be bound to (docs/web.md "Accounts and roles"; issue 18:
# a township doctor bound to the county would read every township)
_COUNTY, _TOWNSHIP, _VILLAGE = RegionLevel.COUNTY.value, RegionLevel.TOWNSHIP.value, RegionLevel.VILLAGE.value
ROLE_LEVELS: dict[str, tuple[str, ...]] = {
    UserRole.COUNTY_ADMIN.value: (_COUNTY,),
    UserRole.TOWNSHIP_DOCTOR.value: (_TOWNSHIP,),
    UserRole.POLICE.value: (_TOWNSHIP, _COUNTY),
    UserRole.CIVIL_AFFAIRS.value: (_TOWNSHIP, _COUNTY),
    UserRole.GOVERNANCE.value: (_TOWNSHIP, _COUNTY),
    UserRole.VILLAGE.value: (_VILLAGE, _TOWNSHIP),
}


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
    # 关联团队成员 the team member this account is (rules.md §6.1 [2026-12]); a linked police or
    # civil-affairs account works from its own patients (registry.web.scopes)
    member_id: str | None = Field(default=None, foreign_key="team_member.member_id", max_length=64)
    # 负责人 派出所/民政办/综治 lead: sees its township's lists (rules.md §6.1)
    supervisor: bool = Field(default=False)


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
    # the session's last request (at most TOUCH_SECONDS old); idle longer than the setting: expired
    last_seen_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class LoginFailure(SQLModel, table=True):
    """登录失败记录 One failed login (issue 18 backoff): in the database, so it survives a restart and
    every worker sees it."""

    __tablename__ = "login_failure"
    __table_args__ = (sa.Index("ix_login_failure_username_at", "username", "at"),
                      sa.Index("ix_login_failure_source_at", "source", "at"))

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=UTCDateTime)
    username: str = Field(max_length=64)
    source: str = Field(max_length=100)


def hash_token(token: str) -> str:
    """令牌摘要 SHA-256 of a session token (only the digest is stored)."""
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    """密码哈希 argon2id hash of a password."""
    return _hasher.hash(password)


_COMMON_PASSWORDS: frozenset[str] | None = None


def common_passwords() -> frozenset[str]:
    """常见密码 The small list of common passwords shipped in the package (``registry/common_passwords.txt``)."""
    global _COMMON_PASSWORDS
    if _COMMON_PASSWORDS is None:
        from importlib.resources import files

        text = files("registry").joinpath("common_passwords.txt").read_text(encoding="utf-8")
        _COMMON_PASSWORDS = frozenset(line.strip().lower() for line in text.splitlines()
                                      if line.strip() and not line.startswith("#"))
    return _COMMON_PASSWORDS


def check_password(password: str, username: str) -> None:
    """密码策略 At least 10 characters, not the user name (nor containing it, case-insensitive), not a
    common password (issue 18). Raises InvalidInput with a stable code."""
    if len(password) < PASSWORD_MIN_LENGTH:
        raise InvalidInput.single("PASSWORD_TOO_SHORT", f"密码至少{PASSWORD_MIN_LENGTH}位", column="password")
    if username and username.lower() in password.lower():
        raise InvalidInput.single("PASSWORD_CONTAINS_USERNAME", "密码不能是用户名，也不能包含用户名", column="password")
    if password.lower() in common_passwords():
        raise InvalidInput.single("PASSWORD_TOO_COMMON", "密码过于常见，请换一个不易被猜中的密码", column="password")


DISPLAY_NAME_MAX = 100  # the column's length (User.display_name)


def check_display_name(name: str | None) -> str | None:
    """显示姓名 The account's display name as stored: trimmed, at most ``DISPLAY_NAME_MAX`` characters,
    one line without control or bidirectional characters (``registry.storable_text``, the check of every
    input path). It is signed on forms (随访医生签名, 填表医生): a too long one failed on PostgreSQL with
    a traceback and was stored whole on SQLite (input audit). None or blank: the user name."""
    name = (name or "").strip()
    if not name:
        return None
    if len(name) > DISPLAY_NAME_MAX:
        raise InvalidInput.single("NAME_INVALID", f"显示姓名(--name)长度 {len(name)} 超过上限 {DISPLAY_NAME_MAX} 个字符",
                                  column="display_name")
    bad = bad_text_message(name, multiline=False)
    if bad:
        raise InvalidInput.single("NAME_INVALID", f"显示姓名(--name)：{bad}", column="display_name")
    return name


def _check_new_user(username: str, password: str, role: str) -> UserRole:
    if not username or len(username) > 64 or not all(c.isalnum() or c in "._-" for c in username):
        raise InvalidInput.single("USERNAME_INVALID", "用户名应为1–64位字母、数字或 . _ -", column="username", value=username)
    check_password(password, username)
    return _parse_role(role)


def _parse_role(role: str) -> UserRole:
    try:
        return UserRole.parse(role)
    except ValueError:
        raise InvalidInput.single("ROLE_INVALID", f"角色无效：{role}（可选 {'、'.join(m.label for m in UserRole)}）", column="role", value=role) from None


def _checked_region(session: Session, role: UserRole, region_code: str) -> Region:
    """The region, which must exist and be of a level the role may be bound to (``ROLE_LEVELS``)."""
    region = session.get(Region, region_code)
    if region is None:
        raise InvalidInput.single("REGION_NOT_FOUND", f"地区编码“{region_code}”不存在", column="region_code", value=region_code)
    allowed = ROLE_LEVELS[role.value]
    if region.level not in allowed:
        wanted = "或".join(RegionLevel.label_of(level) for level in allowed)
        raise InvalidInput.single(
            "REGION_LEVEL_MISMATCH",
            f"{role.label}只能绑定到{wanted}，地区 {region_code}（{region.name}）是{RegionLevel.label_of(region.level)}",
            column="region_code", value=region_code)
    return region


def _user(session: Session, username: str) -> User:
    user = session.get(User, username) if username else None
    if user is None:
        raise NotFound(f"账号不存在：{username}", code="USER_UNKNOWN")
    return user


def _audit_account(session: Session, actor: str, source: str | None, user: User, detail: str) -> None:
    audit.record(session.connection(), actor=actor, action="account", object_type="user", object_id=user.username,
                 region_code=user.region_code, detail=detail, source=source)


def add_user(engine, *, username: str, password: str, role: str, region_code: str, display_name: str | None = None,
             actor: str | None = None, source: str | None = None) -> User:
    """新建账号 Create an account (one transaction, audited); the region must exist and suit the role."""
    parsed = _check_new_user(username, password, role)
    display_name = check_display_name(display_name)
    with Session(engine, expire_on_commit=False) as session:
        _checked_region(session, parsed, region_code)
        if session.get(User, username) is not None:
            raise Conflict(f"用户名已存在：{username}", code="USERNAME_TAKEN")
        user = User(username=username, password_hash=hash_password(password), role=parsed.value,
                    region_code=region_code, display_name=display_name or username)
        session.add(user)
        session.flush()
        _audit_account(session, actor or audit.cli_actor(), source or "cli", user,
                       f"新建账号：{parsed.label}，地区 {region_code}")
        session.commit()
        return user


def _revoke(session: Session, username: str) -> int:
    result = session.execute(sa.delete(WebSession).where(WebSession.username == username))
    return result.rowcount or 0


def deactivate_user(engine, username: str, *, actor: str, source: str | None = "cli") -> int:
    """停用账号 Deactivate an account and end its sessions (audited). Returns the sessions ended."""
    with Session(engine, expire_on_commit=False) as session:
        user = _user(session, username)
        user.active = False
        session.add(user)
        ended = _revoke(session, username)
        _audit_account(session, actor, source, user, f"停用账号，结束 {ended} 个会话")
        session.commit()
        return ended


def reset_password(engine, username: str, password: str, *, actor: str, source: str | None = "cli") -> int:
    """重置密码 Set a new password (the policy applies) and end the account's sessions (audited)."""
    check_password(password, username)
    with Session(engine, expire_on_commit=False) as session:
        user = _user(session, username)
        user.password_hash = hash_password(password)
        session.add(user)
        ended = _revoke(session, username)
        _audit_account(session, actor, source, user, f"重置密码，结束 {ended} 个会话")
        session.commit()
        return ended


def set_role(engine, username: str, role: str, region_code: str, *, actor: str, source: str | None = "cli") -> User:
    """更改角色 Bind an account to a role and region (the level must suit the role); its sessions end,
    so the new scope applies at the next login (audited)."""
    parsed = _parse_role(role)
    with Session(engine, expire_on_commit=False) as session:
        user = _user(session, username)
        _checked_region(session, parsed, region_code)
        before = f"{user.role}@{user.region_code}"
        user.role, user.region_code = parsed.value, region_code
        session.add(user)
        ended = _revoke(session, username)
        _audit_account(session, actor, source, user, f"角色 {before} → {parsed.value}@{region_code}，结束 {ended} 个会话")
        session.commit()
        return user


# 账号关联成员 the team role a linked account's member must have (rules.md §6.1); other roles link to none
MEMBER_ROLE_OF_ACCOUNT = {UserRole.POLICE.value: "police", UserRole.CIVIL_AFFAIRS.value: "civil_affairs",
                          UserRole.VILLAGE.value: "village", UserRole.TOWNSHIP_DOCTOR.value: "doctor"}
# 负责人 the accounts that may be flagged supervisor: 派出所、民政办、综治 leads (rules.md §6.1)
SUPERVISOR_ROLES = (UserRole.POLICE.value, UserRole.CIVIL_AFFAIRS.value, UserRole.GOVERNANCE.value)


def link_member(engine, username: str, member_id: str | None, *, actor: str, source: str | None = "cli") -> User:
    """关联团队成员 Link an account to the team member it is (``member_id`` None: unlink), rules.md §6.1.
    The member must exist and have the account's team role (``MEMBER_ROLE_OF_ACCOUNT``); the account's
    sessions end, so its new scope applies at the next login (audited)."""
    from registry.models import TeamMember

    with Session(engine, expire_on_commit=False) as session:
        user = _user(session, username)
        if member_id is not None:
            member = session.get(TeamMember, member_id)
            if member is None:
                raise InvalidInput.single("UNKNOWN_MEMBER", f"团队成员编号 {member_id} 不存在", column="member_id",
                                          value=member_id)
            wanted = MEMBER_ROLE_OF_ACCOUNT.get(user.role)
            if wanted is None or member.role != wanted:
                raise InvalidInput.single(
                    "ROLE_MISMATCH", f"{UserRole(user.role).label}账号不能关联角色为“{member.role}”的团队成员 {member_id}",
                    column="member_id", value=member_id)
        before = user.member_id
        user.member_id = member_id
        session.add(user)
        ended = _revoke(session, username)
        _audit_account(session, actor, source, user, f"关联成员 {before or '无'} → {member_id or '无'}，结束 {ended} 个会话")
        session.commit()
        return user


def set_supervisor(engine, username: str, supervisor: bool, *, actor: str, source: str | None = "cli") -> User:
    """负责人 Flag an account (派出所/民政办/综治 lead) as supervisor: it sees its township's lists
    (rules.md §6.1); its sessions end (audited)."""
    with Session(engine, expire_on_commit=False) as session:
        user = _user(session, username)
        if supervisor and user.role not in SUPERVISOR_ROLES:
            labels = "、".join(UserRole(r).label for r in SUPERVISOR_ROLES)
            raise InvalidInput.single("ROLE_MISMATCH", f"只有{labels}账号可设为负责人，{username} 是{UserRole(user.role).label}",
                                      column="supervisor")
        user.supervisor = supervisor
        session.add(user)
        ended = _revoke(session, username)
        _audit_account(session, actor, source, user, f"负责人：{'是' if supervisor else '否'}，结束 {ended} 个会话")
        session.commit()
        return user


def revoke_sessions(engine, username: str, *, actor: str, source: str | None = "cli") -> int:
    """结束会话 End every session of an account (audited). Returns how many."""
    with Session(engine, expire_on_commit=False) as session:
        user = _user(session, username)
        ended = _revoke(session, username)
        _audit_account(session, actor, source, user, f"结束 {ended} 个会话")
        session.commit()
        return ended


def change_password(session: Session, user: User, current_token_hash: str, old: str, new: str, *,
                    source: str | None) -> int:
    """修改密码 The logged-in user changes their own password: the old one must match, the new one
    follows the policy; every other session of the account ends (audited, in the caller's transaction)."""
    user = _user(session, user.username)
    try:
        _hasher.verify(user.password_hash, old)
    except (VerificationError, InvalidHashError):
        raise InvalidInput.single("PASSWORD_WRONG", "当前密码不正确", column="old_password") from None
    check_password(new, user.username)
    if new == old:
        raise InvalidInput.single("PASSWORD_UNCHANGED", "新密码不能与当前密码相同", column="new_password")
    user.password_hash = hash_password(new)
    session.add(user)
    ended = session.execute(sa.delete(WebSession).where(WebSession.username == user.username,
                                                        WebSession.token_hash != current_token_hash)).rowcount or 0
    _audit_account(session, user.username, source, user, f"修改本人密码，结束其他 {ended} 个会话")
    return ended


# ---------------------------------------------------------------- login backoff (issue 18)

def login_lockout(session: Session, username: str, source: str, now: datetime) -> int | None:
    """登录限制 Seconds until a login for this account or from this address is allowed again, or None.

    Locked when either has ``LOGIN_FAILURES`` failures within ``LOGIN_WINDOW``; the lock lifts when
    enough of them have left the window. Attempts refused by the lock are not counted.
    """
    since = now - LOGIN_WINDOW
    waits = []
    for column, value in ((LoginFailure.username, username), (LoginFailure.source, source)):
        if not value:
            continue
        times = session.execute(sa.select(LoginFailure.at).where(column == value, LoginFailure.at > since)
                                .order_by(LoginFailure.at.desc()).limit(LOGIN_FAILURES)).scalars().all()
        if len(times) >= LOGIN_FAILURES:
            waits.append((times[-1] + LOGIN_WINDOW - now).total_seconds())
    if not waits:
        return None
    return max(1, int(max(waits)) + 1)


def login(session: Session, username: str, password: str, *, source: str) -> User:
    """登录 Throttle, then check the password (issue 18).

    Refused with 429 ``LOGIN_THROTTLED`` (``retry_after`` seconds) while the account or the address is
    locked, whatever the password; a failure is stored in ``login_failure`` and committed by the
    caller; a success clears the account's failures. Old rows (outside the window) are pruned.
    """
    now = clock.now_utc()
    username = username[:64]
    source = (source or "unknown")[:100]
    wait = login_lockout(session, username, source, now)
    if wait is not None:
        raise TooManyRequests(f"登录失败次数过多，请 {max(1, -(-wait // 60))} 分钟后再试", code="LOGIN_THROTTLED",
                              retry_after=wait)
    try:
        user = authenticate(session, username, password)
    except NotAuthenticated:
        session.add(LoginFailure(at=now, username=username, source=source))
        session.execute(sa.delete(LoginFailure).where(LoginFailure.at < now - 2 * LOGIN_WINDOW))
        raise
    session.execute(sa.delete(LoginFailure).where(LoginFailure.username == username))
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
                     created_at=now, expires_at=now + timedelta(hours=SESSION_HOURS), source=source, last_seen_at=now)
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
    now = clock.now_utc()
    last_seen = web_session.last_seen_at or web_session.created_at
    if web_session.expires_at <= now or not user.active or last_seen <= now - idle_timeout():
        raise NotAuthenticated("登录已过期，请重新登录", code="SESSION_EXPIRED")
    if last_seen <= now - timedelta(seconds=TOUCH_SECONDS):
        # its own short transaction: the caller's session may only read
        with session.get_bind().begin() as conn:
            conn.execute(sa.update(WebSession).where(WebSession.token_hash == web_session.token_hash)
                         .values(last_seen_at=now))
    return user, web_session


def idle_timeout() -> timedelta:
    """空闲超时 A session unused this long has ended (``JINGFANG_SESSION_IDLE_MINUTES``, default 30)."""
    return timedelta(minutes=get_settings().session_idle_minutes)
