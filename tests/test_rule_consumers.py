"""规则使用方 Consumers apply the rule homes: behaviour that follows from using them.

``registry.web.scopes._latest_complete`` takes the latest complete follow-up by the order of
``registry.attempts``, which counts only follow-ups dated on or after registration (rules.md §5):
a follow-up recorded before the patient's registration no longer puts the patient on the police
list (a deliberate correctness fix of issue 12; the scheduler never counted it).
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from registry.models import FollowUp, Patient
from registry.audiences import police_patient_ids
from registry.profile import load_profile
from twins import seed

TODAY = date(2026, 6, 30)


def test_a_follow_up_before_registration_does_not_put_a_patient_on_the_police_list(database):
    risky = {"visit_on": date(2026, 2, 1), "seq": 1, "risk_level": 3, "classification": 1, "mode": 2}
    quiet = {"visit_on": date(2026, 5, 1), "seq": 1, "lost_reason": 1}  # an unreached attempt, later
    with database.engine.begin() as conn:
        seed(conn, [{"patient_id": "LATE", "registered_on": date(2026, 3, 1)},
                    {"patient_id": "EARLY", "registered_on": date(2025, 1, 1)}],
             [{"patient_id": pid, **risky} for pid in ("LATE", "EARLY")])
        among = sa.select(Patient.patient_id)
        listed = {r[0] for r in conn.execute(police_patient_ids(load_profile("national-2018").roles, TODAY, among))}
        assert listed == {"EARLY"}
        conn.execute(sa.insert(FollowUp.__table__), [{"patient_id": "LATE", **quiet}])
        listed = {r[0] for r in conn.execute(police_patient_ids(load_profile("national-2018").roles, TODAY, among))}
        assert listed == {"EARLY", "LATE"}  # the latest attempt unreached: still listed (rules.md §6)
