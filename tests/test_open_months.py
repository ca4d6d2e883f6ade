"""月中 Closed months by default; an open month only on request, cut at today (indicators.md "Open months"
[2026-12]): the period arithmetic, the counts (D = today: a quarter not yet ended is not required), the
``rates``/``report`` command defaults, the API and the dashboard — on both databases."""

from __future__ import annotations

import json
from datetime import date

import time_machine
from typer.testing import CliRunner

from jingfang.cli import app
from registry.periods import Period
from registry.rates.compute import compute_rates
from registry.rates.reporting import build_context, trend_chart
from tests.test_web_api import auth, web  # noqa: F401  (the web fixture)
from tests.twins import seed

D = date.fromisoformat


def test_period_defaults_and_open_months():
    assert Period.last_closed(D("2026-06-10")) == Period(2026, 5)
    assert Period.last_closed(D("2026-01-01")) == Period(2025, 12)
    assert Period.last_closed(D("2026-06-30")) == Period(2026, 5)  # June is open on its last day
    june = Period.requested("2026-06", D("2026-06-10"))
    assert (june.is_open, june.as_of, june.label, june.start) == (True, D("2026-06-10"), "2026-06", D("2026-01-01"))
    assert june.title() == "2026年6月（月中，截至 2026-06-10）"
    assert june.quarters() == [(D("2026-01-01"), D("2026-03-31"))]  # Q2 has not ended by D
    may = Period.requested("2026-05", D("2026-06-10"))
    assert (may.is_open, may.as_of, may.title()) == (False, D("2026-05-31"), "2026年5月")
    assert Period.requested("2026-07", D("2026-06-10")).as_of == D("2026-07-31")  # a future month as it is
    assert june.trailing(2) == [Period(2026, 5), Period(2026, 6)]


def _county(database):
    """One village, two patients: A visited in Q1 only; B registered on June 5 (not 在册 before)."""
    with database.engine.begin() as conn:
        seed(conn, [{"patient_id": "A", "registered_on": D("2025-01-01")},
                    {"patient_id": "B", "registered_on": D("2026-06-20")}],
             [{"patient_id": "A", "visit_on": D("2026-02-10"), "seq": 1, "mode": 2, "risk_level": 0,
               "hospital_status": 0, "adherence": 1}])


def test_an_open_month_counts_as_of_today(database):
    _county(database)
    closed = compute_rates(database.engine, month="2026-06", today=D("2026-07-02"))
    opened = compute_rates(database.engine, month="2026-06", today=D("2026-06-10"))
    assert (closed["as_of"], opened["as_of"]) == ("2026-06-30", "2026-06-10")
    # 在册 at D: B (registered June 20) only in the closed month
    assert closed["indicators"]["registered"]["numerator"] == 2
    assert opened["indicators"]["registered"]["numerator"] == 1
    # Q2 ended by June 30, not by June 10: A is 规范管理 mid-month only
    assert closed["indicators"]["standard_management_rate"]["numerator"] == 0
    assert opened["indicators"]["standard_management_rate"]["numerator"] == 1


def test_the_report_titles_an_open_month_and_draws_its_point_hollow(database):
    _county(database)
    context = build_context(database.engine, month="2026-06", today=D("2026-06-10"))
    assert context.open_month and context.month == "2026年6月（月中，截至 2026-06-10）" and "月中" in context.title
    assert context.as_of == "2026-06-10"
    cells = {c.key: c for c in context.headline}
    # 报告患病率: the numerator printed is the 在册 count, not ×1000 (indicators.md [2026-12])
    assert cells["reported_prevalence"].numerator == cells["registered"].numerator == 1
    closed = build_context(database.engine, month="2026-05", today=D("2026-06-10"))
    assert not closed.open_month and closed.month == "2026年5月" and "月中" not in closed.title
    svg = trend_chart(["2026-05", "2026-06"], {"treatment_rate": [0.5, 0.6]}, {}, hollow_last=True)
    assert svg.count('fill="#fff"') == 1
    assert 'fill="#fff"' not in trend_chart(["2026-05", "2026-06"], {"treatment_rate": [0.5, 0.6]}, {})


@time_machine.travel("2026-06-10 09:00 +0800", tick=False)
def test_rates_command_defaults_to_the_last_closed_month(database):
    _county(database)
    result = CliRunner().invoke(app, ["rates", "--json", "--db", database.url])
    assert result.exit_code == 0, result.output
    assert (json.loads(result.stdout)["month"], json.loads(result.stdout)["as_of"]) == ("2026-05", "2026-05-31")
    # the open month only on request, titled 月中 with today's date
    table = CliRunner().invoke(app, ["rates", "--month", "2026-06", "--db", database.url])
    assert table.exit_code == 0 and "2026-06（月中，截至 2026-06-10" in table.stdout
    plain = CliRunner().invoke(app, ["rates", "--db", database.url])
    assert "2026-05（截至 2026-05-31" in plain.stdout and "月中" not in plain.stdout


def test_api_and_dashboard_default_to_the_last_closed_month(web):  # noqa: F811
    client, tokens, *_ = web  # today = 2026-06-10
    h = auth(tokens, "admin")
    body = client.get("/api/rates", headers=h).json()
    assert (body["month"], body["as_of"]) == ("2026-05", "2026-05-31")
    body = client.get("/api/rates", params={"month": "2026-06"}, headers=h).json()
    assert (body["month"], body["as_of"]) == ("2026-06", "2026-06-10")
    client.cookies.set("jf_session", tokens["admin"])
    page = client.get("/dashboard").text
    assert "2026年5月" in page and "截至 2026-05-31" in page and "月中，截至" not in page
    page = client.get("/dashboard", params={"month": "2026-06"}).text
    assert "2026年6月（月中，截至 2026-06-10）" in page and "仅供参考" in page
