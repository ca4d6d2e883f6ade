"""快速读取 The two hot reads on PostgreSQL: the patient page (一历) and the work list (issue 4 benchmark).

Each is one SQL statement on the raw psycopg connection (server-side prepared after a few
executions, autocommit: the statement is its own transaction):

* **patient page** — looks up the session (user, role, region, expiry), checks that the patient
  lies in the user's region (county → township → village cascade), inserts the read's audit
  row with a data-modifying CTE (rules.md §8: in the read's own transaction, and only when the
  read is allowed), and returns the session, the patient, follow-ups, participants, health
  checks, team rows and open tasks as JSON. The record is then shaped by the same code as the
  generic path (``queries.shape_record``), so both give identical output (tested). For the
  township doctor's page it also returns the doctor's panels (团队指派, 联合入户预约: ``PANELS``,
  the generic path's selects, shaped by its view functions).
* **work list** — the session and the scheduler's version (for the per-worker cache) in one
  statement; when this user's cached page is still current, the audit row is inserted by the
  same statement (``detail`` = the cached page's total); otherwise a second statement inserts
  it after the page is (re)computed. The notices area (``notices.notices_select``) is a column
  of the same statement once the session's user is known (``_Notices``), else a statement of its own.

Only full-record roles (doctor, county admin) take these paths; police and civil affairs
(list membership in SQL, rules.md §6–§8), SQLite, odd tokens or patient numbers go through the
generic ORM path (``queries.patient_record``, ``auth.current``), which raises the same errors.
Each function returns ``None`` when the request must take the generic path instead.
"""

from __future__ import annotations

import re
import time
from collections import namedtuple
from datetime import date, datetime, timedelta
from types import SimpleNamespace

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from psycopg_pool import AsyncConnectionPool

from registry import appointments, clock
from registry.codes import TaskStatus
from registry.accounts import TOUCH_SECONDS, User, UserRole, WebSession, hash_token, idle_timeout
from registry.attempts import latest_first_sql
from registry.audit import audit_row
from registry.care_team import TASK_ROLES, care_team_select, responsible_member_sql, role_required_sql
from registry.regions import region_cascade_text
from registry.errors import NotAuthenticated, PermissionDenied
from registry.models import FollowUp, Patient
from registry.storable_text import bad_text
from registry.web import notices, queries, writes
from registry.web.auth import Current, token_from
from registry.web.scopes import FULL_RECORD_ROLES, scope_for

Participant = namedtuple("Participant", "follow_up_id role attended member_id member_name")  # one per person
Member = namedtuple("Member", "member_id name phone")

_SESSION_CTE = """
s AS (
  SELECT u.username, u.password_hash, u.role, u.region_code, u.display_name, u.active, u.created_at,
         ws.token_hash, ws.csrf_token, ws.created_at AS session_created_at, ws.expires_at, ws.source,
         coalesce(ws.last_seen_at, ws.created_at) AS last_seen_at
  FROM web_session ws JOIN app_user u ON u.username = ws.username
  WHERE ws.token_hash = %(token_hash)s
),
ok AS (
  SELECT username, role, region_code FROM s
  WHERE s.expires_at > %(now)s AND s.active AND s.last_seen_at > %(idle_before)s
    AND s.role IN (FULL_RECORD_ROLES_SQL)
),
touch AS (
  UPDATE web_session SET last_seen_at = %(now)s
  WHERE token_hash = %(token_hash)s AND EXISTS (SELECT 1 FROM ok)
    AND coalesce(last_seen_at, created_at) <= %(touch_before)s
  RETURNING 1
)"""
# the fast path serves the full-record roles only (registry.web.scopes), the codes in the text
_SESSION_CTE = _SESSION_CTE.replace("FULL_RECORD_ROLES_SQL", ", ".join(f"'{role}'" for role in FULL_RECORD_ROLES))

_AUDIT_COLUMNS = "at, actor, action, object_type, object_id, region_code, detail, source"

# rules.md §6 care team of the page's patient (CTE ``p``): registry.care_team's SQL, compiled once
# on the page's date (the query's ``as_of`` parameter)
_CARE_TEAM_SQL = str(care_team_select(sa.table("p", sa.column("patient_id"), sa.column("village_code")),
                                      sa.literal_column("care_team_as_of"))
                     .compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
assert "%" not in _CARE_TEAM_SQL  # psycopg placeholders only
_CARE_TEAM_SQL = _CARE_TEAM_SQL.replace("care_team_as_of", "%(as_of)s")

# the follow-ups latest first (rules.md §5 order), compiled from its home ``registry.attempts``
_FOLLOW_UPS_LATEST_FIRST = ", ".join(
    str(term.compile(dialect=postgresql.dialect()))
    for term in latest_first_sql(sa.table("follow_up", sa.column("visit_on"), sa.column("id")).alias("f"))
)

PATIENT_SQL = f"""
WITH {_SESSION_CTE},
p AS (
  SELECT pt.* FROM patient pt
  JOIN region v ON v.code = pt.village_code
  LEFT JOIN region t ON t.code = v.parent_code
  CROSS JOIN ok
  WHERE pt.patient_id = %(patient_id)s
    AND {region_cascade_text("v", "t", "ok.region_code")}
),
audit AS (
  INSERT INTO audit_log ({_AUDIT_COLUMNS})
  SELECT %(at)s, ok.username, 'read', 'patient', p.patient_id, p.village_code, NULL, %(source)s FROM p CROSS JOIN ok
  RETURNING id
)
SELECT
  (SELECT row_to_json(s) FROM s) AS s,
  (SELECT row_to_json(p) FROM p) AS p,
  (SELECT count(*) FROM audit) AS audited,
  (SELECT json_agg(row_to_json(f) ORDER BY {_FOLLOW_UPS_LATEST_FIRST}) FROM follow_up f
    WHERE f.patient_id = (SELECT patient_id FROM p)) AS follow_ups,
  (SELECT json_agg(json_build_array(fp.follow_up_id, fp.role, fp.attended, fp.member_id, tm.name)
                   ORDER BY fp.follow_up_id, fp.role, coalesce(fp.member_id, ''))
    FROM follow_up_participant fp JOIN follow_up f ON f.id = fp.follow_up_id
    LEFT JOIN team_member tm ON tm.member_id = fp.member_id
    WHERE f.patient_id = (SELECT patient_id FROM p)) AS participants,
  (SELECT json_agg(hc.checked_on ORDER BY hc.checked_on DESC) FROM health_check hc
    WHERE hc.patient_id = (SELECT patient_id FROM p)) AS checks,
  (SELECT json_agg(json_build_array(ct.member_id, ct.name, ct.role, ct.phone, ct.region_code) ORDER BY ct.member_id)
    FROM ({_CARE_TEAM_SQL}) ct) AS team,
  (SELECT json_agg(json_build_array(i.given_on, i.drug, i.dose) ORDER BY i.given_on DESC) FROM injection i
    WHERE i.patient_id = (SELECT patient_id FROM p)) AS injections
  {{tasks}}{{panels}}
"""

def _responsible_json() -> str:
    """rules.md §6.1: ``{role: [member_id, name, phone] | null}`` of task ``k`` for the roles the task
    requires (the others absent: the page does not show them), or null when it requires none, from
    registry.care_team's SQL.

    One copy of the rule with the role as a column (``r.role``, over ``TASK_ROLES``), not one per
    role: every sub-select of the statement is initialised on every execution, whether it runs or
    not, and four copies were a fifth of the patient page's time in PostgreSQL."""
    role = sa.literal_column("r.role")
    required = role_required_sql(sa.literal_column("k.roles"), role)
    expr = responsible_member_sql(role, patient_id=sa.literal_column("k.patient_id"),
                                  village_code=sa.literal_column("(SELECT village_code FROM p)"),
                                  on=sa.literal_column("k.due_on"))
    required_sql, sql = (str(e.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
                         for e in (required, expr))
    assert "%(" not in required_sql + sql  # pyformat text: only the %% of LIKE patterns
    roles = ", ".join(f"'{r}'" for r in TASK_ROLES)
    return (f"(SELECT json_object_agg(r.role, (SELECT json_build_array(rm.member_id, rm.name, rm.phone) "
            f"FROM team_member rm WHERE rm.member_id = {sql})) "
            f"FROM unnest(ARRAY[{roles}]::text[]) AS r(role) WHERE {required_sql})")


TASKS_SQL = """,
  (SELECT json_agg(json_build_array(k.kind, k.due_on, k.roles, k.joint, k.rule, k.risk_level, RESPONSIBLE)
                   ORDER BY k.due_on, k.kind)
    FROM visit_task k
    WHERE k.patient_id = (SELECT patient_id FROM p) AND k.status = 'OPEN_STATUS' AND k.basis_on <= %(as_of)s) AS tasks"""
TASKS_SQL = TASKS_SQL.replace("RESPONSIBLE", _responsible_json()).replace("OPEN_STATUS", TaskStatus.OPEN.value)


_PSYCOPG = postgresql.psycopg.dialect()
_PARAMETER = re.compile(r"(?<!%)%\((\w+)\)s")  # a pyformat parameter (not an escaped %)


class Statement:
    """预转换语句 A statement's pyformat text (``%(name)s``, ``%%``) turned once into PostgreSQL's own
    form (``$1``…, ``%``), run on a psycopg raw cursor with its parameters in that order.

    psycopg parses a pyformat statement on every execution when it is longer than its cache's limit
    (4 KB; the patient page's statement is 10 KB): a tenth of a millisecond per page. The text sent,
    and so the server-side prepared statement, is the one psycopg's own conversion gives."""

    __slots__ = ("text", "names")

    def __init__(self, sql: str):
        order: dict[str, int] = {}

        def number(m: re.Match) -> str:
            return f"${order.setdefault(m.group(1), len(order) + 1)}"

        self.text = _PARAMETER.sub(number, sql).replace("%%", "%").encode()
        self.names = tuple(order)

    def args(self, params: dict) -> list:
        return [params[name] for name in self.names]

    def run(self, conn, params: dict):
        """Execute on a psycopg (sync) connection; the cursor."""
        return psycopg.RawCursor(conn).execute(self.text, self.args(params))

    async def run_async(self, conn, params: dict):
        """Execute on a psycopg asyncio connection; the cursor."""
        return await psycopg.AsyncRawCursor(conn).execute(self.text, self.args(params))


class _JsonSelect:
    """A select from its home module (ORDER BY included) as SQL returning its rows as a JSON array of
    objects (``sql``; its values in the text, or as parameters ``params`` renamed with a prefix), and
    those objects back as rows with the select's column names and Python date and datetime values
    (``dicts``, ``rows``: mappings, attributes), for the view functions the generic path uses.

    The rows are aggregated from the sorted subquery, the only thing at its query level: PostgreSQL
    aggregates them in the subquery's order (the manual, "Aggregate Expressions")."""

    def __init__(self, stmt: sa.Select, params_prefix: str | None = None):
        if params_prefix is None:  # constants only: the values in the text
            compiled = str(stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
            self.params = {}
        else:  # the values as psycopg parameters, renamed ``<prefix><name>`` (apart from the enclosing statement's)
            c = stmt.compile(dialect=_PSYCOPG, compile_kwargs={"render_postcompile": True})
            compiled = _PARAMETER.sub(lambda m: f"%({params_prefix}{m.group(1)})s", c.string)
            self.params = {f"{params_prefix}{k}": v for k, v in c.params.items()}
        self.sql = f"coalesce((SELECT json_agg(row_to_json(x)) FROM ({compiled}) x), '[]'::json)"
        self.parsers = {}
        for c in stmt.selected_columns:
            kind = c.type.impl_instance if isinstance(c.type, sa.types.TypeDecorator) else c.type
            if isinstance(kind, sa.DateTime):
                self.parsers[c.key] = datetime.fromisoformat
            elif isinstance(kind, sa.Date):
                self.parsers[c.key] = date.fromisoformat

    def dicts(self, json_rows) -> list[dict]:
        out = []
        for row in json_rows or ():
            for name, parse in self.parsers.items():
                if row[name] is not None:
                    row[name] = parse(row[name])
            out.append(row)
        return out

    def rows(self, json_rows) -> list[SimpleNamespace]:
        return [SimpleNamespace(**row) for row in self.dicts(json_rows)]


# the doctor's panels of the patient page (团队指派, 联合入户预约): the selects of the generic path
# (registry.web.writes.assignments_of, registry.appointments.joint_tasks_of_patient) on the page's patient
_P_ID, _P_VILLAGE = sa.literal_column("(SELECT patient_id FROM p)"), sa.literal_column("(SELECT village_code FROM p)")
_APPOINTMENTS = appointments.patient_appointments_select(_P_ID)
PANELS = {
    "assignment_rows": _JsonSelect(writes.assignment_rows_select(_P_ID)),
    "members": _JsonSelect(writes.assignable_members_select(_P_VILLAGE)),
    "joint_tasks": _JsonSelect(appointments.joint_tasks_select(_P_ID)),
    "appointments": _JsonSelect(_APPOINTMENTS),
    # the ids of those appointments, unsorted (an IN list; a sort in it was one more node per execution)
    "replies": _JsonSelect(appointments.replies_select(
        _APPOINTMENTS.with_only_columns(_APPOINTMENTS.selected_columns.id).order_by(None))),
}
# filled only for the township doctor (the panels are the doctor's)
PANELS_SQL = "".join(f""",
  CASE WHEN (SELECT role FROM ok) = %(panels_role)s THEN {part.sql} END AS {name}""" for name, part in PANELS.items())
assert "%(" not in PANELS_SQL.replace("%(panels_role)s", "")


def panels_view(values: tuple) -> dict:
    """The doctor's panels from the statement's ``PANELS`` columns, shaped as the generic path shapes them."""
    parts = {name: PANELS[name].rows(value) for name, value in zip(PANELS, values)}
    booked = appointments.appointments_view(parts["appointments"], appointments.replies_view(parts["replies"]))
    return {"assignments": writes.assignments_view(parts["assignment_rows"], parts["members"]),
            "appointment_tasks": appointments.joint_tasks_view(parts["joint_tasks"], booked)}


def no_panels() -> dict:
    """The panels of every role but the township doctor: none."""
    return {"assignments": None, "appointment_tasks": []}


WORKLIST_SQL = f"""
WITH {_SESSION_CTE},
v AS (SELECT max(id) AS run_id, max(finished_at) AS finished_at FROM schedule_run),
audit AS (
  INSERT INTO audit_log ({_AUDIT_COLUMNS})
  SELECT %(at)s, ok.username, 'read', 'worklist', ok.region_code, ok.region_code, %(detail)s, %(source)s
  FROM ok CROSS JOIN v
  WHERE ok.username = %(expect_user)s AND ok.role = %(expect_role)s AND ok.region_code = %(expect_region)s
    AND v.run_id IS NOT DISTINCT FROM %(expect_run)s AND v.finished_at IS NOT DISTINCT FROM %(expect_finished)s
  RETURNING id
)
SELECT (SELECT row_to_json(s) FROM s) AS s, v.run_id, v.finished_at, (SELECT count(*) FROM audit) AS audited{{notices}} FROM v
"""

AUDIT_SQL = f"INSERT INTO audit_log ({_AUDIT_COLUMNS}) VALUES (%(at)s, %(actor)s, %(action)s, %(object_type)s, " \
            "%(object_id)s, %(region_code)s, %(detail)s, %(source)s)"
_AUDIT = Statement(AUDIT_SQL)


def _date_columns(table) -> tuple[str, ...]:
    return tuple(c.name for c in table.columns if isinstance(c.type, sa.Date) and not isinstance(c.type, sa.DateTime))


PATIENT_DATES = _date_columns(Patient.__table__)
FOLLOW_UP_DATES = _date_columns(FollowUp.__table__)


def _record_object(row: dict, date_columns: tuple[str, ...]) -> SimpleNamespace:
    """A JSON row as an object with the ORM's attribute names and date values."""
    for name in date_columns:
        value = row.get(name)
        if value is not None:
            row[name] = date.fromisoformat(value)
    return SimpleNamespace(**row)


def enabled(ctx) -> bool:
    """快速路径 Whether the fast paths apply: PostgreSQL through psycopg 3 (the only backend with these
    statements), unless switched off (``WebContext.fast_reads``, tests compare both paths)."""
    engine = ctx.engine
    return ctx.fast_reads and engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"


class _Raw:
    """原始连接 A pooled psycopg connection in autocommit mode for one statement (restored on exit)."""

    def __init__(self, engine):
        self.engine = engine

    def __enter__(self):
        self.proxy = self.engine.raw_connection()
        self.conn = self.proxy.driver_connection
        self.conn.autocommit = True
        return self.conn

    def __exit__(self, *exc):
        try:
            if not self.conn.closed:
                self.conn.autocommit = False
        finally:
            self.proxy.close()  # back to the pool


def _current(ctx, session_row: dict | None, via: str, now: datetime):
    """The ``auth.Current`` from the statement's session row, with the generic path's checks and errors."""
    if session_row is None:
        raise NotAuthenticated("请先登录", code="NOT_AUTHENTICATED")
    expires_at = datetime.fromisoformat(session_row["expires_at"])
    last_seen = datetime.fromisoformat(session_row["last_seen_at"])
    if expires_at <= now or not session_row["active"] or last_seen <= now - idle_timeout():
        raise NotAuthenticated("登录已过期，请重新登录", code="SESSION_EXPIRED")
    # the User and WebSession of this exact session row (read-only values; building the two models is
    # a fifth of a cached page's CPU): remembered per worker while the row stays the same
    memo = ctx.__dict__.setdefault("_session_objects", Memo())
    key = tuple(session_row.values())
    objects = memo.get(key)
    if objects is None:
        user = User(username=session_row["username"], password_hash=session_row["password_hash"], role=session_row["role"],
                    region_code=session_row["region_code"], display_name=session_row["display_name"],
                    active=session_row["active"], created_at=datetime.fromisoformat(session_row["created_at"]))
        web_session = WebSession(token_hash=session_row["token_hash"], username=user.username,
                                 csrf_token=session_row["csrf_token"], expires_at=expires_at,
                                 created_at=datetime.fromisoformat(session_row["session_created_at"]),
                                 source=session_row["source"], last_seen_at=last_seen)
        objects = (user, web_session)
        memo.put(key, objects)
    user, web_session = objects
    return Current(user=user, session=web_session, scope=scope_for(user, ctx.tree, ctx.today()), via=via)


def _session_times(now: datetime) -> dict:
    """The idle cut-off and the touch threshold of the session CTEs (the generic path's rules)."""
    return {"idle_before": now - idle_timeout(), "touch_before": now - timedelta(seconds=TOUCH_SECONDS)}


def _token(request):
    token, via = token_from(request)
    if not token or len(token) > 200:
        return None, via
    return hash_token(token), via


_PATIENT_SQL = {panels: PATIENT_SQL.replace("{tasks}", TASKS_SQL).replace("{panels}", PANELS_SQL if panels else "")
                for panels in (False, True)}
_PATIENT = {panels: Statement(sql) for panels, sql in _PATIENT_SQL.items()}


def _patient_statement(request, patient_id: str, source: str, panels: bool = False):
    """(sql, params, via, now) for the patient page (with the doctor's panels when ``panels``), or
    None for the generic path."""
    ctx = request.app.state.ctx
    if not enabled(ctx) or bad_text(patient_id) or len(patient_id) > 64:
        return None
    token_hash, via = _token(request)
    if token_hash is None:
        return None
    now = clock.now_utc()
    params = {"token_hash": token_hash, "now": now, "patient_id": patient_id, "at": now, "source": source,
              "as_of": ctx.today(), **_session_times(now)}
    if panels:
        params["panels_role"] = UserRole.TOWNSHIP_DOCTOR.value
    return _PATIENT[panels], params, via, now


def _patient_result(request, patient_id: str, row, via: str, now: datetime, panels: bool = False):
    """(Current, record) from the statement's row (the generic path's errors), or None for list roles;
    (Current, record, panels) when ``panels``."""
    ctx = request.app.state.ctx
    session_row, patient_row, audited = row[0], row[1], row[2]
    cur = _current(ctx, session_row, via, now)
    if cur.user.role not in FULL_RECORD_ROLES:
        return None  # list roles: membership is the generic path's SQL
    request.state.current = cur
    if patient_row is None:
        raise PermissionDenied(f"无权查看患者 {patient_id[:64]}：不在您的管辖范围或名单内", code="PATIENT_FORBIDDEN")
    if audited != 1:  # cannot happen: the patient row and the audit row come from the same CTEs
        raise RuntimeError("audit row not written")
    as_of = ctx.today()
    p = _record_object(patient_row, PATIENT_DATES)
    follow_ups = [_record_object(f, FOLLOW_UP_DATES) for f in row[3] or ()]
    parts: dict[int, list] = {}
    for fu_id, role, attended, member_id, member_name in row[4] or ():  # queries.participant_order
        parts.setdefault(fu_id, []).append(Participant(fu_id, role, attended, member_id, member_name))
    checks = list(row[5] or ())
    team = queries.team_views([p], {p.patient_id: row[6] or ()})[p.patient_id]
    tasks = [queries.task_view(p.patient_id, kind, date.fromisoformat(due), roles, joint, rule, risk, as_of=as_of,
                               people=_people(roles, chosen))
             for kind, due, roles, joint, rule, risk, chosen in (row[8] or ())]
    injections = [queries.injection_view(date.fromisoformat(on), drug, dose) for on, drug, dose in (row[7] or ())]
    record = queries.shape_record(cur.scope, ctx.tree, p, follow_ups, parts, checks, team, tasks, as_of=as_of,
                                  injections=injections)
    if not panels:
        return cur, record
    doctor = cur.user.role == UserRole.TOWNSHIP_DOCTOR.value
    return cur, record, (panels_view(tuple(row[9:9 + len(PANELS)])) if doctor else no_panels())


def _people(roles: str, chosen: dict | None) -> list[dict]:
    """The ``person_view`` per required role from the statement's ``{role: [id, name, phone] | null}``."""
    chosen = chosen or {}
    out = []
    for role in roles.split(","):
        m = chosen.get(role)
        out.append(queries.person_view(role, Member(*m) if m else None))
    return out


def patient_page(request, patient_id: str, source: str, panels: bool = False):
    """一历（快速） (Current, record) for a doctor or county admin in one statement, or None for the
    generic path. Raises the generic path's NotAuthenticated / PermissionDenied.

    ``panels``: (Current, record, panels) — the page's panels of the doctor (团队指派, 联合入户预约:
    ``{"assignments", "appointment_tasks"}`` as ``writes.assignments_of`` and
    ``appointments.joint_tasks_of_patient`` give them; ``no_panels()`` for the county admin) from
    the same statement."""
    prepared = _patient_statement(request, patient_id, source, panels)
    if prepared is None:
        return None
    sql, params, via, now = prepared
    with _Raw(request.app.state.ctx.engine) as conn:
        row = sql.run(conn, params).fetchone()
    return _patient_result(request, patient_id, row, via, now, panels)


async def patient_page_async(request, patient_id: str, source: str, panels: bool = False):
    """一历（快速，异步） As ``patient_page`` on the worker's asyncio connection pool (no thread); in the
    thread pool on the engine's pool when the app runs without its lifespan (tests' TestClient)."""
    from starlette.concurrency import run_in_threadpool  # noqa: PLC0415

    pool = request.app.state.ctx.fast_pool
    if pool is None:
        return await run_in_threadpool(patient_page, request, patient_id, source, panels)
    prepared = _patient_statement(request, patient_id, source, panels)
    if prepared is None:
        return None
    sql, params, via, now = prepared
    async with pool.connection() as conn:
        row = await (await sql.run_async(conn, params)).fetchone()
    return _patient_result(request, patient_id, row, via, now, panels)


class Memo:
    """A small per-worker memory, emptied when full: each session's last work-list page (username, role,
    region, version, value, cached at), each session's notices query, each session row's models."""

    def __init__(self, size: int = 1024):
        self.size = size
        self.items: dict[tuple, tuple] = {}

    def get(self, key):
        return self.items.get(key)

    def put(self, key, value) -> None:
        if len(self.items) >= self.size:
            self.items.clear()
        self.items[key] = value


# 站内通知 The work list's notices area (registry.web.notices.notices_select: the user's newest unread
# alerts) as one more column of the work list's statement, with the query's values as parameters
# ``n_*``: only when this session's user (username, role, region) is known from its previous work
# list, and only filled when the session still is that user; otherwise a statement of its own.
_NOTICES_COLUMN = """,
  CASE WHEN EXISTS (SELECT 1 FROM ok WHERE ok.username = %(n_user)s AND ok.role = %(n_role)s
                    AND ok.region_code = %(n_region)s)
  THEN NOTICES END AS notices"""
_WORKLIST = Statement(WORKLIST_SQL.replace("{notices}", ""))


# the notices' statement is compiled once per region level, the user's values as parameters
_NOTICE_VALUES = {"townships": sa.bindparam("notice_townships", type_=postgresql.ARRAY(sa.String)),
                  "user": sa.bindparam("notice_user", type_=sa.String), "since": sa.bindparam("notice_since", type_=sa.Date),
                  "region": sa.bindparam("notice_region", type_=sa.String)}
_NoticeShape = namedtuple("_NoticeShape", "select sql alone")
_NOTICE_SHAPES: dict[str, _NoticeShape] = {}


def _notice_shape(ctx, cur) -> _NoticeShape:
    """The notices query of ``cur``'s region level: the ``_JsonSelect``, the work-list statement that
    carries it, and the notices as a statement of their own."""
    hit = _NOTICE_SHAPES.get(cur.scope.region_level)
    if hit is None:
        select = _JsonSelect(notices.notices_select(cur, ctx.tree, **_NOTICE_VALUES), params_prefix="n_")
        hit = _NoticeShape(select, Statement(WORKLIST_SQL.replace("{notices}", _NOTICES_COLUMN.replace("NOTICES", select.sql))),
                           Statement(f"SELECT {select.sql}"))
        _NOTICE_SHAPES[cur.scope.region_level] = hit
    return hit


class _Notices(namedtuple("_Notices", "username role region today made shape values")):
    """A session's notices query: its user, the date, when it was made (``time.monotonic()``), its region
    level's ``_NoticeShape`` and the user's values of it."""

    @classmethod
    def of(cls, ctx, cur) -> _Notices:
        values = {"n_notice_townships": notices.townships_of(cur, ctx.tree), "n_notice_user": cur.user.username,
                  "n_notice_since": notices.shown_since(cur.scope.today), "n_notice_region": cur.user.region_code}
        return cls(cur.user.username, cur.user.role, cur.user.region_code, cur.scope.today, time.monotonic(),
                   _notice_shape(ctx, cur), values)

    @property
    def sql(self) -> Statement:
        return self.shape.sql

    @property
    def alone(self) -> Statement:
        return self.shape.alone

    def select_params(self) -> dict:
        return {**self.shape.select.params, **self.values}

    def params(self) -> dict:
        return {**self.select_params(), "n_user": self.username, "n_role": self.role, "n_region": self.region}

    def shaped(self, ctx, json_rows) -> dict:
        """The notices area, shaped as ``notices.notices`` shapes it."""
        return notices.notices_of([notices.alert_view(x, ctx.tree) for x in self.shape.select.dicts(json_rows)])


def _notices_memo(ctx) -> Memo:
    return ctx.__dict__.setdefault("_notices_memo", Memo())


def _worklist_statement(request, source: str, *, limit: int, offset: int, horizon_days: int | None, filters: tuple = ()):
    """(sql, params, via, now, peek key, expected page, token hash, the notices query in the statement or
    None) for the work list, or None for the generic path."""
    ctx = request.app.state.ctx
    if not enabled(ctx):
        return None
    token_hash, via = _token(request)
    if token_hash is None:
        return None
    peeks = ctx.__dict__.setdefault("_worklist_peek", Memo())
    peek_key = (token_hash, ctx.today(), limit, offset, horizon_days, filters)
    now = clock.now_utc()
    expect = peeks.get(peek_key)
    if expect is not None and time.monotonic() - expect[5] >= ctx.worklists.ttl:
        expect = None  # the cached page is too old: the generic cache will recompute it
    # the peek: (username, role, region, version, page, cached at) of this session's last page
    params = {"token_hash": token_hash, "now": now, "at": now, "source": source, **_session_times(now),
              "expect_user": expect[0] if expect else None, "expect_role": expect[1] if expect else None,
              "expect_region": expect[2] if expect else None,
              "expect_run": expect[3][0] if expect else None, "expect_finished": expect[3][1] if expect else None,
              "detail": f"{expect[4]['total']} 项" if expect else None}
    known = _notices_memo(ctx).get(token_hash)
    if known is not None and known.today == ctx.today() and time.monotonic() - known.made < ctx.worklists.ttl:
        return known.sql, {**params, **known.params()}, via, now, peek_key, expect, token_hash, known
    return _WORKLIST, params, via, now, peek_key, expect, token_hash, None


def _notices_alone(ctx, cur, token_hash) -> tuple[_Notices, Statement, dict]:
    """The session's notices query for ``cur`` (remembered for its next work list) as a statement of its own."""
    known = _Notices.of(ctx, cur)
    _notices_memo(ctx).put(token_hash, known)
    return known, known.alone, known.select_params()


def _worklist_audit(cur, data: dict, source: str) -> dict:
    return audit_row(actor=cur.user.username, action="read", object_type="worklist", object_id=cur.user.region_code,
                     region_code=cur.user.region_code, detail=f"{data['total']} 项", source=source)


def _remember(ctx, cur, kwargs: dict, peek_key, version, data) -> None:
    cached_at = ctx.worklists.cached_at(ctx.worklist_key(cur.scope, **kwargs), data)
    if cached_at is not None:
        ctx._worklist_peek.put(peek_key, (cur.user.username, cur.user.role, cur.user.region_code, version, data, cached_at))


def worklist_page(request, source: str, *, limit: int, offset: int, horizon_days: int | None, filters: tuple = ()):
    """今日工作清单（快速） (Current, data, notices) in one statement when this session's cached page is
    current (two otherwise, three on a session's first page), or None for the generic path.
    ``notices`` is the notices area (``notices.notices``)."""
    ctx = request.app.state.ctx
    prepared = _worklist_statement(request, source, limit=limit, offset=offset, horizon_days=horizon_days, filters=filters)
    if prepared is None:
        return None
    sql, params, via, now, peek_key, expect, token_hash, known = prepared
    with _Raw(ctx.engine) as conn:
        row = sql.run(conn, params).fetchone()
        session_row, run_id, finished_at, audited = row[:4]
        cur = _current(ctx, session_row, via, now)
        if cur.user.role not in FULL_RECORD_ROLES:
            return None
        request.state.current = cur
        alerts = row[4] if known is not None else None
        if alerts is None:  # not in the statement, or the session's user is not the one it was made for
            known, alone, alone_params = _notices_alone(ctx, cur, token_hash)
            alerts = alone.run(conn, alone_params).fetchone()[0]
        notice = known.shaped(ctx, alerts)
        if audited:  # this session's cached page is current, and its audit row is written
            return cur, expect[4], notice
        version = (run_id, finished_at)
        kwargs = {"as_of": cur.scope.today, "horizon_days": horizon_days, "limit": limit, "offset": offset, **dict(filters)}
        data = ctx.worklist(cur.scope, version=(version,), **kwargs)
        _AUDIT.run(conn, _worklist_audit(cur, data, source))
    _remember(ctx, cur, kwargs, peek_key, version, data)
    return cur, data, notice


async def worklist_page_async(request, source: str, *, limit: int, offset: int, horizon_days: int | None,
                              filters: tuple = ()):
    """今日工作清单（快速，异步） As ``worklist_page`` on the worker's asyncio connection pool; a page not
    in the cache is computed in the thread pool."""
    from starlette.concurrency import run_in_threadpool  # noqa: PLC0415

    ctx = request.app.state.ctx
    pool = ctx.fast_pool
    if pool is None:
        return await run_in_threadpool(worklist_page, request, source, limit=limit, offset=offset, horizon_days=horizon_days,
                                       filters=filters)
    prepared = _worklist_statement(request, source, limit=limit, offset=offset, horizon_days=horizon_days, filters=filters)
    if prepared is None:
        return None
    sql, params, via, now, peek_key, expect, token_hash, known = prepared
    async with pool.connection() as conn:
        row = await (await sql.run_async(conn, params)).fetchone()
        session_row, run_id, finished_at, audited = row[:4]
        cur = _current(ctx, session_row, via, now)
        if cur.user.role not in FULL_RECORD_ROLES:
            return None
        request.state.current = cur
        alerts = row[4] if known is not None else None
        if alerts is None:
            known, alone, alone_params = _notices_alone(ctx, cur, token_hash)
            alerts = (await (await alone.run_async(conn, alone_params)).fetchone())[0]
        notice = known.shaped(ctx, alerts)
        if audited:
            return cur, expect[4], notice
        version = (run_id, finished_at)
        kwargs = {"as_of": cur.scope.today, "horizon_days": horizon_days, "limit": limit, "offset": offset, **dict(filters)}
        key = ctx.worklist_key(cur.scope, **kwargs)
        data = ctx.worklists.peek(key, version)
        if data is None:
            data = await run_in_threadpool(lambda: ctx.worklist(cur.scope, version=(version,), **kwargs))
        await _AUDIT.run_async(conn, _worklist_audit(cur, data, source))
    _remember(ctx, cur, kwargs, peek_key, version, data)
    return cur, data, notice


async def open_pool(engine, size: int = 8):
    """异步连接池 Open a ``psycopg_pool.AsyncConnectionPool`` of at most ``size`` autocommit connections
    for one worker's event loop (the app's lifespan opens it, and closes it at shutdown).

    Connections are opened on demand (``min_size=0``) and reused without a ping (``check=None``: a
    pre-ping was a round trip per request). A connection whose server went away is found broken when
    it is returned and replaced in the background, so a restart of PostgreSQL costs one failed (500)
    request per pooled connection; while the server is down a request waits up to ``timeout`` for a
    connection.
    """
    pool = AsyncConnectionPool(conninfo_of(engine), kwargs={"autocommit": True},
                               min_size=0, max_size=size, open=False, name="jingfang-web")
    await pool.open()
    return pool


def conninfo_of(engine) -> str:
    """连接串 The libpq connection string of a SQLAlchemy PostgreSQL engine."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
