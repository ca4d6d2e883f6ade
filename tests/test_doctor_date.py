"""医生指定日期 The doctor's own date (rules.md §5 [decision, 2026-12]): the Python rule and its SQL twin
(``registry.doctor_date``) agree on random rows on SQLite and PostgreSQL, and generated tasks honour it
on both databases."""

from __future__ import annotations

from datetime import date, timedelta
from html.parser import HTMLParser

import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from registry.doctor_date import doctor_date_applies, doctor_date_applies_sql, doctor_due, doctor_due_sql
from registry.models import FollowUp, VisitTask
from registry.rules import complete_sql, is_complete
from schedules.generation import generate
from schedules.planning import add_interval
from registry.profile import Interval, load_profile
from tests.twins import DAY0, TWIN_SETTINGS, as_bool, scratch, seed, sql_values, truth
from schedules.sqldates import add_period
from tests.test_web_api import auth, web  # noqa: F401  (the web fixture)

rows = st.lists(st.fixed_dictionaries({
    "visit_day": st.integers(0, 60),
    # relative to the visit: before, on, just after, and far after (past any interval below)
    "next_offset": st.one_of(st.none(), st.integers(-5, 100)),
    "lost_reason": st.sampled_from([None, None, 1, 4]),
    "risk_level": st.sampled_from([None, 0, 3]),
    "hospital_status": st.sampled_from([None, 0, 1]),
}), min_size=1, max_size=30)
intervals = st.sampled_from([Interval(0, 14, "x"), Interval(1, 0, "x"), Interval(3, 0, "x"), Interval(0, 30, "x"),
                             Interval(0, 7, "x")])


@TWIN_SETTINGS
@given(data=rows, interval=intervals)
def test_doctor_date_twins_agree(database, data, interval):
    follow_ups = []
    for i, r in enumerate(data):
        visit_on = DAY0 + timedelta(days=r["visit_day"])
        follow_ups.append({"patient_id": "P", "visit_on": visit_on, "seq": i + 1, "lost_reason": r["lost_reason"],
                           "risk_level": r["risk_level"], "hospital_status": r["hospital_status"],
                           "next_visit_on": None if r["next_offset"] is None else visit_on + timedelta(days=r["next_offset"])})
    with scratch(database.engine) as conn:
        seed(conn, [{"patient_id": "P"}], follow_ups)
        f = FollowUp.__table__
        table_due = add_period(f.c.visit_on, interval.months, interval.days)
        complete = truth(complete_sql(f))
        key = f.c.seq
        due_sql = sql_values(conn, key, doctor_due_sql(table_due, f.c.visit_on, f.c.next_visit_on, complete), f)
        applies_sql = as_bool(sql_values(conn, key, truth(doctor_date_applies_sql(table_due, f.c.visit_on,
                                                                                    f.c.next_visit_on, complete)), f))
    for row in follow_ups:
        table = add_interval(row["visit_on"], interval)
        done = is_complete(row["lost_reason"], row["risk_level"], row["hospital_status"])
        expected = doctor_due(table, row["visit_on"], row["next_visit_on"], done)
        got = due_sql[row["seq"]]
        assert (date.fromisoformat(got) if isinstance(got, str) else got) == expected, row
        assert applies_sql[row["seq"]] == doctor_date_applies(table, row["visit_on"], row["next_visit_on"], done), row


def test_generated_tasks_honour_the_doctors_date(database):
    """Both databases: a stable patient whose doctor wants them back in 3 weeks is due then; a later
    date never delays the table's date; an unreached attempt's date is ignored."""
    d = date(2026, 3, 2)  # a Monday
    blank = {"lost_reason": None, "risk_level": None, "hospital_status": None}
    with database.engine.begin() as conn:
        seed(conn, [{"patient_id": p, "registered_on": date(2025, 1, 1)} for p in ("SOON", "LATE", "LOST", "HOSP")], [{**blank, **r} for r in [
            {"patient_id": "SOON", "visit_on": d, "seq": 1, "mode": 2, "risk_level": 0, "hospital_status": 0,
             "next_visit_on": date(2026, 3, 23)},
            {"patient_id": "LATE", "visit_on": d, "seq": 1, "mode": 2, "risk_level": 0, "hospital_status": 0,
             "next_visit_on": date(2026, 8, 1)},
            {"patient_id": "LOST", "visit_on": d, "seq": 1, "mode": 2, "lost_reason": 1,
             "next_visit_on": date(2026, 3, 4)},
            {"patient_id": "HOSP", "visit_on": d, "seq": 1, "mode": 1, "hospital_status": 1,
             "next_visit_on": date(2026, 3, 16)},
        ]])
    profile = load_profile("national-2018")
    generate(database.engine, as_of=d, profile=profile)
    t = VisitTask.__table__
    with database.engine.connect() as conn:
        got = {r.patient_id: (r.kind, r.nominal_due_on, r.due_on, r.rule) for r in conn.execute(
            sa.select(t).where(t.c.kind != "health_check"))}
    doctor = profile.rule(profile.doctor_date_clause)
    assert got == {
        "SOON": ("follow_up", date(2026, 3, 23), date(2026, 3, 23), doctor),
        "LATE": ("follow_up", date(2026, 6, 2), date(2026, 6, 2), profile.rule(profile.visit["stable"].clause)),
        "LOST": ("retry", date(2026, 3, 9), date(2026, 3, 9), profile.rule(profile.visit["retry"].clause)),
        "HOSP": ("discharge_check", date(2026, 3, 16), date(2026, 3, 16), doctor),
    }
    # a correction of the doctor's date moves the open task (the same task, updated in place)
    f = FollowUp.__table__
    with database.engine.begin() as conn:
        conn.execute(sa.update(f).where(f.c.patient_id == "SOON").values(next_visit_on=date(2026, 3, 28)))  # a Saturday
    generate(database.engine, as_of=d, profile=profile)
    with database.engine.connect() as conn:
        row = conn.execute(sa.select(t).where(t.c.patient_id == "SOON", t.c.kind == "follow_up")).one()
    assert (row.nominal_due_on, row.due_on, row.status) == (date(2026, 3, 28), date(2026, 3, 27), "open")


def test_web_api_takes_the_doctors_date_through_the_one_validation_path(web):  # noqa: F811
    """The API (the form posts to the same write) stores 下次随访日期, the patient's task is due then;
    a date not after the visit is refused with a stable code and the Chinese label."""
    client, tokens, _ids, database = web  # today = 2026-06-10
    h = auth(tokens, "doc")
    bad = client.post("/api/patients/P2/follow-ups", headers=h,
                      json={"visit_on": "2026-06-08", "mode": 2, "risk_level": 0, "next_visit_on": "2026-06-08"})
    assert bad.status_code == 422
    [issue] = [i for i in bad.json()["issues"] if i["column"] == "next_visit_on"]
    assert issue["code"] == "NEXT_VISIT_NOT_AFTER_VISIT" and "下次随访日期" in issue["message"]
    ok = client.post("/api/patients/P2/follow-ups", headers=h,
                     json={"visit_on": "2026-06-08", "mode": 2, "risk_level": 0, "next_visit_on": "2026-06-22"})
    assert ok.status_code in (200, 201), ok.text
    t = VisitTask.__table__
    with database.engine.connect() as conn:
        row = conn.execute(sa.select(t).where(t.c.patient_id == "P2", t.c.status == "open",
                                              t.c.kind == "follow_up")).one()
    assert (row.due_on, row.rule.endswith("医生指定")) == (date(2026, 6, 22), True)
    assert client.get("/api/patients/P2", headers=h).json()["follow_ups"][0]["next_visit_on"] == "2026-06-22"


def test_import_reads_the_doctors_date(database, tmp_path):
    """followups.csv: the optional 下次随访日期 column (English or Chinese header), validated."""
    from registry.errors import InvalidInput
    from registry.importing import import_path

    (tmp_path / "regions.csv").write_text("code,name,level,parent_code,population\nC,县,county,,\n"
                                          "T,镇,township,C,\nV,村,village,T,1000\n", encoding="utf-8")
    (tmp_path / "patients.csv").write_text("patient_id,name,sex,birth_date,village_code,diagnosis,registered_on\n"
                                           "A,甲,1,1980-01-01,V,schizophrenia,2025-01-01\n", encoding="utf-8")
    (tmp_path / "followups.csv").write_text("患者编号,随访日期,随访方式,危险性,住院情况,下次随访日期\n"
                                            "A,2026-03-02,2,0,0,2026-03-23\n", encoding="utf-8")
    import_path(database.engine, tmp_path, today=date(2026, 3, 10))
    with database.engine.connect() as conn:
        assert conn.execute(sa.select(FollowUp.__table__.c.next_visit_on)).scalar_one() == date(2026, 3, 23)
    (tmp_path / "followups.csv").write_text("patient_id,visit_on,mode,risk_level,next_visit_on\n"
                                            "A,2026-03-05,2,0,2026-03-01\n", encoding="utf-8")
    try:
        import_path(database.engine, tmp_path, today=date(2026, 3, 10))
        raise AssertionError("a doctor's date before the visit was imported")
    except InvalidInput as err:
        assert [(i.code, i.line, i.column) for i in err.issues] == [("NEXT_VISIT_NOT_AFTER_VISIT", 2, "next_visit_on")]


class _Fields(HTMLParser):
    """The follow-up form's fields: each element's attributes by id, the text of each element with an id,
    and the field block (``f-<name>``) each id sits in."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.attrs: dict[str, dict] = {}
        self.text: dict[str, str] = {}
        self.block: dict[str, str] = {}
        self._open: list[tuple[str, str | None]] = []  # (tag, id)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        blocks = [i for _t, i in self._open if i and i.startswith("f-")]
        for key in ("id", "name"):
            if a.get(key):
                self.attrs.setdefault(f"{key}:{a[key]}", a)
                if blocks:
                    self.block.setdefault(f"{key}:{a[key]}", blocks[-1])
        if tag not in ("input", "br", "img", "meta", "link", "option"):
            self._open.append((tag, a.get("id")))

    def handle_endtag(self, tag):
        while self._open:
            t, _i = self._open.pop()
            if t == tag:
                break

    def handle_data(self, data):
        for _t, i in self._open:
            if i:
                self.text[i] = self.text.get(i, "") + data


def test_the_form_says_a_later_date_never_delays_next_to_the_field(web):  # noqa: F811
    """rules.md §5 [2026-12]: "A later date never delays the table's date, and the form says so next to the
    field": the rendered follow-up form describes 下次随访日期 with the hint (``forms.NEXT_VISIT_HINT``),
    in the field's own block and named by the input's aria-describedby."""
    from registry.web.forms import NEXT_VISIT_HINT

    client, tokens, _ids, _database = web
    client.cookies.set("jf_session", tokens["doc"])
    page = client.get("/patients/P1/follow-ups/new")
    assert page.status_code == 200
    fields = _Fields()
    fields.feed(page.text)
    field = fields.attrs["name:next_visit_on"]
    assert field["type"] == "date" and fields.block["name:next_visit_on"] == "f-next_visit_on"
    assert "下次随访日期" in fields.text["f-next_visit_on"]  # its label
    hint_id = field.get("aria-describedby")
    assert hint_id, "下次随访日期 has no description"
    hint = " ".join(fields.text[hint_id].split())
    assert hint == NEXT_VISIT_HINT and fields.block[f"id:{hint_id}"] == "f-next_visit_on"
    assert "不会推迟" in hint and "按此日期安排" in hint  # the spec's sentence, in Chinese
