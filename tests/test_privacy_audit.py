"""Privacy and scope audit (rules.md §6.1, §8, §10; 精神卫生法 第四条), SQLite and PostgreSQL.

Each test is a defect the audit found, reproduced through the real app (FastAPI TestClient on a
seeded database, tests/web_support.py and the linked accounts of tests/test_named_teams.py):

* one app serves several accounts: a page cached for one scope is never served to another
  (the work-list cache was keyed by role and region only, so a linked officer got the township's
  list after an unlinked colleague had opened it);
* a linked, non-supervisor account cannot fetch the township's issued lists from the archive
  when it cannot download them from the week page (SUPERVISOR_ONLY);
* an emergency record of another region answers exactly as one that does not exist;
* list accounts' tasks carry only the fields their lists need (no rule text naming the patient's
  classification or hospital stay; no risk level for civil affairs);
* 综治 reads its township's 易肇事肇祸台账 (rules.md §10) and every list role's patient page shows
  its own list fields.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
import sqlalchemy as sa
import time_machine
from fastapi.testclient import TestClient
from sqlmodel import Session

from registry.models import AuditLog
from registry.web.app import create_app
from schedules.models import ListIssue, ListIssueFile
from tests.test_named_teams import linked  # noqa: F401  (the fixture: linked accounts, rules.md §6.1)
from tests.web_support import TODAY, seed, session_token


def _get(client, tokens, user, url):
    return client.get(url, headers={"Authorization": f"Bearer {tokens[user]}"})


# ---------------------------------------------------------------- one app, several accounts: the cache

def test_a_cached_work_list_is_never_served_to_another_scope(linked):  # noqa: F811
    """rules.md §6.1, §8: the work list of an unlinked officer (the township's police tasks) is cached;
    the linked officers of the same township and role asking next get their own tasks only, on the
    API and on 我的名单 — and the other way round."""
    client, tokens, _db = linked
    township = {r["patient_id"] for r in _get(client, tokens, "police", "/api/worklist?all=true").json()["rows"]}
    assert township == {"P1", "P6"}
    for user, own in (("police_linked", {"P1"}), ("police_other", {"P6"}), ("police_lead", {"P1", "P6"})):
        rows = _get(client, tokens, user, "/api/worklist?all=true").json()["rows"]
        assert {r["patient_id"] for r in rows} == own, user
        page = _get(client, tokens, user, "/mylist").text
        assert {pid for pid in ("P1", "P6") if f'href="/patients/{pid}"' in page} == own, user
    # a linked account first, then the unlinked one: still the township's list
    assert {r["patient_id"] for r in _get(client, tokens, "civil_other", "/api/worklist?all=true").json()["rows"]} == set()
    assert {r["patient_id"] for r in _get(client, tokens, "civil_lead", "/api/worklist?all=true").json()["rows"]} == {"P3"}
