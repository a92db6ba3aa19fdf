"""DateFormula values in the BC user's language (Payment Terms "Due Date Calculation").

BC stores a date formula language-independently and shows it "converted to a valid date
conversion string for the currently selected language" (DateFormula data type, [Docs]
`developer/methods-auto/dateformula/dateformula-data-type.md`); the API page exposes the table
field as it is (`APIV2PaymentTerms.Page.al`, `field(dueDateCalculation; Rec."Due Date
Calculation")`). So a company whose BC user works in French answers `30J` for 30 days and `3T`
for three quarters; in German `30T` is 30 days and `30J` 30 years.

Which language: bc-api §5.6 says `Accept-Language` decides the language of messages, not of
values, and nothing in the AL says otherwise for DateFormula. The emulator takes the stricter
reading: values are formatted in the BC user's language (seeded per company as ``language``)
whatever the request's `Accept-Language`, so a client must not rely on getting English formulas.

The emulator stores formulas in the language-independent form with English letters (`30D`,
`CM+10D`), the form `<…>` in angle brackets always means, and converts at the API boundary.
Day letters: English/Swedish D, German T (Tag), French J (jour). The letters of the other units
are the localized ones (UNCONFIRMED beyond the day letter; no test depends on them except the
French quarter T, trimestre).
"""

from __future__ import annotations

import re

# Unit letters in the order day, week, month, quarter, year, current-period prefix.
_ENGLISH = ("D", "W", "M", "Q", "Y", "C")
_UNITS: dict[str, tuple[str, str, str, str, str, str]] = {
    "en": _ENGLISH,
    "sv": ("D", "V", "M", "K", "Å", "L"),
    "de": ("T", "W", "M", "Q", "J", "L"),
    "fr": ("J", "S", "M", "T", "A", "C"),
}


def _units(language: str) -> tuple[str, ...]:
    """The unit letters of a language tag (``fr-FR`` → French); unknown languages → English."""
    return _UNITS.get(language.split("-", 1)[0].lower(), _ENGLISH)


def _translate(text: str, source: tuple[str, ...], target: tuple[str, ...]) -> str | None:
    """Map unit letters one to one; None when a letter is not a unit of ``source``."""
    table = dict(zip(source, target, strict=True))
    out: list[str] = []
    for ch in text:
        if ch.isalpha():
            mapped = table.get(ch.upper())
            if mapped is None:
                return None
            out.append(mapped)
        else:
            out.append(ch)
    return "".join(out)


def format_formula(stored: str, language: str) -> str:
    """A stored (English-letter) formula as BC shows it to a user of ``language``."""
    return _translate(stored, _ENGLISH, _units(language)) or stored


_BRACKETED = re.compile(r"^<(.*)>$")


def parse_formula(text: str, language: str) -> str | None:
    """What BC's ``Evaluate`` stores for ``text`` typed by a user of ``language``: the
    English-letter form, or None when it is not a formula in that language. ``<…>`` is the
    language-independent notation (English letters) in every language."""
    text = text.strip()
    bracketed = _BRACKETED.match(text)
    if bracketed:
        return _translate(bracketed.group(1), _ENGLISH, _ENGLISH)
    return _translate(text, _units(language), _ENGLISH)
