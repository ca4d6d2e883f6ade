"""居民身份证号码 Resident identity numbers: GB 11643-1999 check digit and masking (rules.md §8)."""

from __future__ import annotations

from datetime import date

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


def check_digit(first17: str) -> str:
    """校验码 The 18th character for the first 17 digits (ISO 7064 MOD 11-2)."""
    if len(first17) != 17 or not first17.isdigit():
        raise ValueError("需要17位数字")
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS))
    return _CHECK[total % 11]


def check_digit_sql(first17: str) -> str:
    """校验码（SQL） The same check digit as ``check_digit`` as a SQL text expression over ``first17``,
    a SQL expression of 17 digits (set-based synthetic data: benchmarks/population.py)."""
    terms = " + ".join(f"substr({first17}, {k + 1}, 1)::int * {w}" for k, w in enumerate(_WEIGHTS))
    return f"substr('{_CHECK}', ({terms}) % 11 + 1, 1)"


def id_problem(number: str, birth_date: date | None = None) -> tuple[str, str] | None:
    """Why an 18-character ID number is invalid, as (code, Chinese reason), or None when valid.

    Checks length and characters, the embedded birth date (a real date, equal to the
    patient's birth date when given) and the check digit.
    """
    text = number.strip().upper()
    if len(text) != 18 or not text[:17].isdigit() or not (text[17].isdigit() or text[17] == "X"):
        return "ID_FORMAT", "身份证号应为18位：前17位数字，末位为数字或X"
    try:
        embedded = date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError:
        return "ID_BIRTH_DATE", f"身份证号中的出生日期 {text[6:14]} 不是有效日期"
    if birth_date is not None and embedded != birth_date:
        return "ID_BIRTH_MISMATCH", f"身份证号中的出生日期 {embedded.isoformat()} 与出生日期 {birth_date.isoformat()} 不一致"
    expected = check_digit(text[:17])
    if text[17] != expected:
        return "ID_CHECK_DIGIT", f"身份证号校验位错误：应为 {expected}，实为 {text[17]}"
    return None


def mask(number: str | None) -> str:
    """脱敏 Show the first 6 and last 4 characters only: 440781********123X."""
    if not number:
        return ""
    text = number.strip()
    if len(text) <= 10:
        return "*" * len(text)
    return text[:6] + "*" * (len(text) - 10) + text[-4:]


def make(region6: str, birth: date, sequence: int) -> str:
    """A synthetic, check-digit-valid number (for generated test data only)."""
    first17 = f"{region6[:6]:0<6}{birth:%Y%m%d}{sequence % 1000:03d}"
    return first17 + check_digit(first17)
