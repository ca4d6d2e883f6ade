"""身份证号 GB 11643 check digit and masking."""

from datetime import date

import pytest

from registry import ids


@pytest.mark.parametrize(
    "number, problem",
    [
        ("11010519491231002X", None),  # the standard's published specimen
        ("11010519491231002x", None),  # lower-case x accepted
        ("440524188001010014", None),
        ("110105194912310021", "ID_CHECK_DIGIT"),
        ("440524188001010015", "ID_CHECK_DIGIT"),
        ("11010519491231002", "ID_FORMAT"),  # 17 characters
        ("1101051949123100200", "ID_FORMAT"),  # 19 characters
        ("11010519491231A02X", "ID_FORMAT"),
        ("110105194913310027", "ID_BIRTH_DATE"),  # month 13
        ("110105202302300021", "ID_BIRTH_DATE"),  # 30 February
    ],
)
def test_id_problem(number, problem):
    result = ids.id_problem(number)
    assert (result[0] if result else None) == problem


def test_check_digit_message_names_the_expected_digit():
    code, message = ids.id_problem("110105194912310021")
    assert code == "ID_CHECK_DIGIT"
    assert "应为 X" in message and "实为 1" in message


def test_birth_date_must_match_the_patient():
    code, message = ids.id_problem("11010519491231002X", date(1949, 12, 30))
    assert code == "ID_BIRTH_MISMATCH"
    assert "1949-12-31" in message and "1949-12-30" in message


@pytest.mark.parametrize("weights_index", range(17))
def test_check_digit_catches_every_single_digit_change(weights_index):
    good = "11010519491231002X"
    digit = good[weights_index]
    changed = good[:weights_index] + str((int(digit) + 1) % 10) + good[weights_index + 1 :]
    assert ids.id_problem(changed) is not None


def test_make_produces_valid_numbers():
    for seq in range(0, 1000, 37):
        number = ids.make("449901", date(1980, 2, 29), seq)
        assert ids.id_problem(number, date(1980, 2, 29)) is None


@pytest.mark.parametrize(
    "number, masked",
    [("11010519491231002X", "110105********002X"), ("", ""), (None, ""), ("123456", "******")],
)
def test_mask_keeps_first_six_and_last_four(number, masked):
    assert ids.mask(number) == masked
