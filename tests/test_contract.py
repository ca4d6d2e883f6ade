"""契约 The spec's worked example through the real command line, on both databases (contract.md).

`jingfang import` the four-patient county, `jingfang schedule --as-of 2026-06-10`, then
`jingfang tasks --json` and `jingfang rates --json` must equal the expected JSON files
(tasks: order and the free `rule` text aside).
"""

from __future__ import annotations

import json

import time_machine
from typer.testing import CliRunner

from jingfang.cli import app

TASK_KEYS = ["patient_id", "kind", "due_on", "overdue", "roles", "joint", "rule", "members"]


def run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"{args}: {result.output}{result.exception!r}"
    return result.stdout


@time_machine.travel("2026-06-10 09:00 +0800", tick=False)
def test_worked_example_through_the_cli(database, small_county):
    db = ["--db", database.url]
    run("import", str(small_county), *db)
    run("schedule", "--as-of", "2026-06-10", *db)
    tasks = json.loads(run("tasks", "--as-of", "2026-06-10", "--json", *db))
    assert all(list(t) == TASK_KEYS for t in tasks)
    assert all(t["rule"].startswith("national-2018") for t in tasks)
    expected = json.loads((small_county / "expected-tasks-2026-06-10.json").read_text(encoding="utf-8"))
    strip = lambda items: sorted((json.dumps({k: v for k, v in t.items() if k != "rule"}, sort_keys=True) for t in items))  # noqa: E731
    assert strip(tasks) == strip(expected)
    # sorted by risk desc, days overdue desc, due date (rules.md §5): C1 (risk 3) first
    assert tasks[0]["patient_id"] == "C1" and tasks[0]["kind"] == "locate"

    # indicators.md "Open months" [2026-12]: on 06-10 June is open — asked for, it is counted as of today
    # (月中); the expected June figures are those of the closed month (D = 06-30), from July 1 on
    assert json.loads(run("rates", "--month", "2026-06", "--json", *db))["as_of"] == "2026-06-10"
    with time_machine.travel("2026-07-01 09:00 +0800", tick=False):
        rates = json.loads(run("rates", "--month", "2026-06", "--json", *db))
        assert rates == json.loads((small_county / "expected-rates-2026-06.json").read_text(encoding="utf-8"))
        assert json.loads(run("rates", "--json", *db)) == rates  # the default: the last closed month


@time_machine.travel("2026-06-10 09:00 +0800", tick=False)
def test_schedule_twice_changes_nothing(database, small_county):
    db = ["--db", database.url]
    run("import", str(small_county), *db)
    run("schedule", "--as-of", "2026-06-10", *db)
    first = run("tasks", "--as-of", "2026-06-10", "--json", *db)
    count = database.count("visit_task")
    run("schedule", "--as-of", "2026-06-10", *db)
    assert database.count("visit_task") == count
    assert run("tasks", "--as-of", "2026-06-10", "--json", *db) == first
