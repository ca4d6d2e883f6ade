"""No dead links (the walk of the front line's day): every link a page shows its reader opens for that
reader — no 403, 404 or 500 behind a link on a phone in a village (rules.md §8: each role sees its
own pages; §12: "the link works for every role the message goes to"). On both databases.

From each account's home page, every same-origin GET link is followed (downloads and logout
excepted; one page per path shape, so 40 patient pages do not each get walked) and must answer 200.
"""

from __future__ import annotations

import re
from html import unescape

import pytest

from tests.test_named_teams import linked  # noqa: F401  (linked accounts, a village and a 综治 account)

ACCOUNTS = ["doc", "admin", "police", "civil", "police_linked", "police_lead", "civil_linked", "civil_lead",
            "governance", "village"]
SKIP = re.compile(r"\.(pdf|xlsx|zip)(\?|$)|/files/|^/logout|^/static/")
HREF = re.compile(r'<a\b[^>]*\bhref="(/[^"#]*)', re.I)


def _shape(path: str) -> str:
    """One page per path shape: /patients/P1 and /patients/P6 are the same page for the walk."""
    path = re.sub(r"/P\d+", "/P#", path)
    return re.sub(r"/\d+(?=/|$|\?)", "/#", path)


def walk(client, token: str, limit: int = 120) -> dict[str, int]:
    """{path: status} of every page reachable from the account's home by its links."""
    headers = {"Authorization": f"Bearer {token}"}
    home = client.get("/", headers=headers, follow_redirects=False).headers["location"]
    seen: dict[str, int] = {}
    shapes: set[str] = set()
    queue = [home]
    while queue and len(seen) < limit:
        path = queue.pop(0)
        if path in seen or _shape(path) in shapes:
            continue
        shapes.add(_shape(path))
        r = client.get(path, headers=headers, follow_redirects=False)
        seen[path] = r.status_code
        if r.status_code in (302, 303) and r.headers["location"].startswith("/"):  # "/" sends each role home
            seen[path] = 200
            queue.append(r.headers["location"])
            continue
        if r.status_code != 200 or "text/html" not in r.headers.get("content-type", ""):
            continue
        for href in HREF.findall(r.text):
            href = unescape(href)
            if not SKIP.search(href) and href not in seen:
                queue.append(href)
    return seen


@pytest.mark.parametrize("user", ACCOUNTS)
def test_every_link_opens_for_the_account_that_sees_it(linked, user):  # noqa: F811
    client, tokens, _db = linked
    if user not in tokens:
        from tests.web_support import session_token

        tokens[user] = session_token(_db.engine, user)
    pages = walk(client, tokens[user])
    assert len(pages) >= 3, pages
    dead = {path: status for path, status in pages.items() if status != 200}
    assert dead == {}, f"{user}: links to pages it cannot open: {dead}"
    # every role's menu leads to its alerts (rules.md §9, §12: an emergency reaches the police at once;
    # the alert links its record): one tap from any page, not only from the notices area
    assert pages.get("/alerts") == 200, f"{user}: no menu link to /alerts"


def test_the_audit_page_names_every_action_and_object_in_chinese():
    """The audit page (county admin) prints a Chinese label for every action and object type the code
    writes (issue 16: no internal code on a page a person reads); the walk found 11 of them in English.
    A grep of the code's audit calls, so a new one without a label fails here."""
    from pathlib import Path

    from registry.web.queries import AUDIT_ACTION_LABELS, AUDIT_OBJECT_LABELS

    root = Path(__file__).resolve().parent.parent
    text = "\n".join(f.read_text(encoding="utf-8") for d in ("registry", "schedules", "jingfang")
                     for f in (root / d).rglob("*.py"))
    actions = set(re.findall(r'\baction="([a-z_]+)"', text))
    objects = set(re.findall(r'\bobject_type="([a-z_]+)"', text))
    assert {"read", "write", "refused", "account"} <= actions and {"patient", "ledger", "appointment"} <= objects
    assert actions - set(AUDIT_ACTION_LABELS) == set()
    assert objects - set(AUDIT_OBJECT_LABELS) == set()
