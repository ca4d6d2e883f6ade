"""分类干预 Classification (rules.md §4) and completeness (rules.md §3), table-driven."""

from types import SimpleNamespace

import pytest

from registry.codes import Classification as C
from registry.rules import (
    classification_conflict,
    classification_of,
    compute_classification,
    is_complete,
    is_face_to_face,
)


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        # 1. 不稳定: risk 3–5, insight 3, obvious symptoms, serious adverse reaction, serious illness
        (dict(risk_level=3), C.UNSTABLE),
        (dict(risk_level=4), C.UNSTABLE),
        (dict(risk_level=5), C.UNSTABLE),
        (dict(risk_level=0, insight=3), C.UNSTABLE),
        (dict(risk_level=0, symptoms_obvious=True), C.UNSTABLE),
        (dict(risk_level=0, adverse_reaction_serious=True), C.UNSTABLE),
        (dict(risk_level=0, physical_illness_serious=True), C.UNSTABLE),
        (dict(risk_level=1, insight=3), C.UNSTABLE),  # first match wins
        (dict(risk_level=3, insight=1, social_functions=(3, 3, 3, 3, 3)), C.UNSTABLE),
        # 2. 基本稳定: risk 1–2, insight 2, any social-function item 3, symptoms present
        (dict(risk_level=1), C.FAIRLY_STABLE),
        (dict(risk_level=2), C.FAIRLY_STABLE),
        (dict(risk_level=0, insight=2), C.FAIRLY_STABLE),
        (dict(risk_level=0, social_functions=(1, 1, 3, 1, 1)), C.FAIRLY_STABLE),
        (dict(risk_level=0, social_functions=(1, 1, 9, 1, 3)), C.FAIRLY_STABLE),
        (dict(risk_level=0, symptoms_present=True), C.FAIRLY_STABLE),
        # 3. 稳定: everything else, requires risk 0
        (dict(risk_level=0), C.STABLE),
        (dict(risk_level=0, insight=1, social_functions=(1, 2, 9, 2, 1)), C.STABLE),
        (dict(risk_level=0, symptoms_obvious=False, adverse_reaction_serious=False), C.STABLE),
        # no risk recorded and nothing else: no classification
        (dict(risk_level=None), None),
        (dict(risk_level=None, insight=2), C.FAIRLY_STABLE),
    ],
)
def test_compute_classification(kwargs, expected):
    assert compute_classification(**kwargs) == expected


def _fu(**kw):
    base = dict(mode=2, lost_reason=None, risk_level=0, insight=1, symptoms_obvious=False, symptoms=None,
                sf_self_care=1, sf_housework=1, sf_work=1, sf_study=1, sf_social=1, hospital_status=0,
                adverse_reaction_serious=False, physical_illness_serious=False, classification=None)
    base.update(kw)
    return SimpleNamespace(**base)


def test_recorded_classification_wins_over_computed():
    assert classification_of(_fu(risk_level=1, classification=1)) == C.UNSTABLE
    assert classification_of(_fu(risk_level=1)) == C.FAIRLY_STABLE
    assert classification_of(_fu(sf_study=3)) == C.FAIRLY_STABLE
    assert classification_of(_fu(symptoms="1,10")) == C.FAIRLY_STABLE


@pytest.mark.parametrize(
    "classification, risk, conflict",
    [
        (3, 0, False), (3, 1, True), (3, 2, True), (3, 3, True),
        (2, 0, False), (2, 2, False), (2, 3, True), (2, 5, True),
        (1, 0, False), (1, 5, False), (None, 5, False), (3, None, False),
    ],
)
def test_classification_conflict(classification, risk, conflict):
    message = classification_conflict(classification, risk)
    assert (message is not None) == conflict
    if conflict:
        assert f"{risk}级" in message and C(classification).label in message


@pytest.mark.parametrize(
    "lost_reason, risk, hospital, complete",
    [
        (None, 0, 0, True), (None, 4, None, True), (None, None, 0, False), (1, None, None, False),
        (5, None, 0, False), (None, None, 1, True), (2, None, 1, True),
    ],
)
def test_complete_follow_up(lost_reason, risk, hospital, complete):
    assert is_complete(lost_reason, risk, hospital) is complete


@pytest.mark.parametrize("mode, face", [(1, True), (2, True), (3, False), (None, False)])
def test_face_to_face(mode, face):
    assert is_face_to_face(mode) is face
