"""Error texts in the request's language (bc-api.md Corrections 10).

BC translates its error messages (AL labels, table and field captions, the platform's own texts)
into the language of the request's ``Accept-Language``; only the error ``code`` and the values
inside a message (codes, numbers, OData field names) stay as they are. The emulator does the
same with one other language, Swedish (the demo company is Swedish):

* ``Accept-Language`` whose preferred language is English (``en``, ``en-US``, ``en-GB``, …) →
  the English texts the rest of the emulator writes;
* anything else, **and no header at all** → Swedish. Without the header real BC answers in the
  user's language (for an app: the language set on its BC user); the stricter reading is taken,
  so a client that relies on English must ask for it.
* ``$batch``: each inner request is answered in *its own* ``Accept-Language``; the outer
  request's header is not inherited. UNCONFIRMED in bc-api.md (§5.5 is silent on headers of
  parts): the stricter reading, so a client must put the header on every part.

The Swedish texts are the emulator's own translations (BC's Swedish language pack is not in
[BCApps]); what matters is that they share no English words with the originals, while keeping
BC's structure (parentheses around a table relation's value, ``Field=Value`` identification
pairs). An English text without a rule below becomes a generic Swedish text, so a client that
matches an untranslated English phrase is caught too. To add a text: a ``(regex, template)`` to
:data:`_RULES`, and any new caption to :data:`CAPTIONS`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .errors import Reply

ENGLISH = "en"
SWEDISH = "sv"

# Table, field and option captions BC would translate (the Swedish ones approximated).
CAPTIONS: dict[str, str] = {
    "Customer": "Kund",
    "Customer Posting Group": "Kundbokföringsmall",
    "Gen. Bus. Posting Group": "Gen. rörelsebokföringsmall",
    "Gen. Business Posting Group": "Gen. rörelsebokföringsmall",
    "VAT Bus. Posting Group": "Momsrörelsebokföringsmall",
    "VAT Prod. Posting Group": "Momsproduktbokföringsmall",
    "VAT Product Posting Group": "Momsproduktbokföringsmall",
    "G/L Account": "Redovisningskonto",
    "Sales Line": "Försäljningsrad",
    "Sales Header": "Försäljningshuvud",
    "Purchase Line": "Inköpsrad",
    "Dimension": "Dimension",
    "Dimension Value": "Dimensionsvärde",
    "Dimension Code": "Dimensionskod",
    "Dimension Set Entry": "Dimensionsuppsättningspost",
    "Payment Terms": "Betalningsvillkor",
    "Currency": "Valuta",
    "Code": "Kod",
    "No.": "Nr",
    "Document Type": "Dokumenttyp",
    "Document No.": "Dokumentnr",
    "Line No.": "Radnr",
    "Invoice": "Faktura",
    "Id": "ID",
}


def _caption(text: str) -> str:
    return CAPTIONS.get(text.strip(), text.strip())


def _keys(text: str) -> str:
    """``Document Type=Invoice, No.='X'`` with the captions (and option values) translated."""

    def pair(match: re.Match[str]) -> str:
        value = match.group("value")
        if not value.startswith("'"):
            value = _caption(value) if value.strip() in CAPTIONS else value
        return f"{match.group('lead')}{_caption(match.group('name'))}={value}"

    return re.sub(r"(?P<lead>\s*)(?P<name>[^=,]+?)=(?P<value>'(?:[^']|'')*'|[^,]*)", pair, text)


Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]


def _rule(pattern: str, template: Callable[[re.Match[str]], str]) -> Rule:
    return re.compile(pattern, re.DOTALL), template


_RULES: list[Rule] = [
    # AL labels of the API pages ([BCApps] APIV2 pages; translations approximated).
    _rule(r"Account does not exist\.$", lambda m: "Kontot finns inte."),
    _rule(r"Item does not exist\.$", lambda m: "Artikeln finns inte."),
    _rule(
        r"The (?P<role>sell-to|bill-to) customer cannot be found\.$",
        lambda m: (
            f"Kunden ({'försäljning till' if m['role'] == 'sell-to' else 'faktura till'})"
            " kunde inte hittas."
        ),
    ),
    _rule(
        r"The (?P<role>sell-to|bill-to) customer values do not match to a specific Customer\.$",
        lambda m: "Värdena för kunden matchar ingen enskild kund.",
    ),
    _rule(
        r"The dimension set line already exists\..*$",
        lambda m: (
            "Dimensionsuppsättningsraden finns redan. Kontrollera befintliga rader och "
            "standardraderna på den överordnade posten."
        ),
    ),
    _rule(
        r"The action can be applied to a draft invoice only\.$",
        lambda m: "Åtgärden kan bara användas på ett fakturautkast.",
    ),
    _rule(r"There is nothing to post\.$", lambda m: "Det finns inget att bokföra."),
    _rule(
        r"The invoice has been posted and can no longer be modified\.$",
        lambda m: "Fakturan har bokförts och kan inte längre ändras.",
    ),
    _rule(
        r"You cannot insert a line because a line already exists\.$",
        lambda m: "Du kan inte infoga en rad eftersom en rad redan finns.",
    ),
    # Field names in quotes are API names: BC's labels say they are not translated.
    _rule(
        r'The "(?P<name>[^"]+)" does not match to an? (?P<what>.+)\.$',
        lambda m: f'Värdet i "{m["name"]}" matchar inte något i {_caption(m["what"])}.',
    ),
    _rule(
        r"Dimension Value (?P<value>.+) is blocked\.$",
        lambda m: f"Dimensionsvärdet {m['value']} är spärrat.",
    ),
    # Platform texts (NavTestFieldException, table relation, record not found, …).
    _rule(
        r"(?P<field>.+?) must have a value in (?P<table>[^:]+): (?P<keys>.*?)\."
        r"(?: It cannot be zero or empty\.)?$",
        lambda m: (
            f"{_caption(m['field'])} måste ha ett värde i {_caption(m['table'])}: "
            f"{_keys(m['keys'])}. Det får inte vara noll eller tomt."
        ),
    ),
    _rule(
        r"The field (?P<field>.+?) of table (?P<table>.+?) contains a value \((?P<value>[^)]*)\) "
        r"that cannot be found in the related table \((?P<related>[^)]*)\)\.$",
        lambda m: (
            f"Fältet {_caption(m['field'])} i tabellen {_caption(m['table'])} innehåller "
            f"ett värde ({m['value']}) som inte finns i den relaterade tabellen "
            f"({_caption(m['related'])})."
        ),
    ),
    _rule(
        r"The (?P<table>.+?) does not exist\. Identification fields and values: (?P<keys>.*)$",
        lambda m: (
            f"{_caption(m['table'])} finns inte. Identifieringsfält och värden: {_keys(m['keys'])}"
        ),
    ),
    _rule(
        r"The (?P<table>.+?) already exists\. Identification fields and values: (?P<keys>.*)$",
        lambda m: (
            f"{_caption(m['table'])} finns redan. Identifieringsfält och värden: {_keys(m['keys'])}"
        ),
    ),
    _rule(
        r"The company '(?P<name>.*)' does not exist\.$",
        lambda m: f"Företaget '{m['name']}' finns inte.",
    ),
    _rule(
        r"Resource not found for the segment '(?P<segment>.*)'\.$",
        lambda m: f"Ingen resurs hittades för segmentet '{m['segment']}'.",
    ),
    _rule(
        r"Control '(?P<control>[^']*)' is read-only$",
        lambda m: f"Kontrollen '{m['control']}' är skrivskyddad",
    ),
    _rule(
        r"The length of the string is (?P<n>\d+), but it must be less than or equal to "
        r"(?P<max>\d+) characters\. Value: (?P<value>.*)$",
        lambda m: (
            f"Strängens längd är {m['n']}, men den får vara högst {m['max']} tecken. "
            f"Värde: {m['value']}"
        ),
    ),
    _rule(
        r"Another user has already changed the record\.$",
        lambda m: "En annan användare har redan ändrat posten.",
    ),
    _rule(
        r"The server has rejected the client credentials\.$",
        lambda m: "Servern har avvisat klientens autentiseringsuppgifter.",
    ),
    _rule(r"Environment does not exist\.$", lambda m: "Miljön finns inte."),
    _rule(
        r"Too many requests\..*$",
        lambda m: "För många begäranden. Minska takten och försök igen senare.",
    ),
    _rule(r"Service Temporarily Unavailable\.$", lambda m: "Tjänsten är tillfälligt otillgänglig."),
    # Corrective documents (CorrectPostedPurchInvoice.Codeunit.al labels).
    _rule(
        r"You cannot cancel this posted purchase invoice because (?P<why>.*)$",
        lambda m: "Du kan inte annullera den här bokförda inköpsfakturan.",
    ),
]
_FALLBACK = "Ett fel inträffade i Business Central (emulatorn har ingen svensk text för felet)."
_CORRELATION_TAIL = re.compile(r"(?P<tail>\s+CorrelationId:\s+\S+)$")


def requested(accept_language: str | None) -> str:
    """The language a request gets its errors in: English when the preferred language range of
    ``Accept-Language`` is English, Swedish otherwise (also without the header)."""
    best: tuple[float, str] | None = None  # the first range with the highest q wins
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip().lower()
        match = re.search(r"q\s*=\s*([0-9.]+)", params)
        try:
            q = float(match.group(1)) if match else 1.0
        except ValueError:
            q = 0.0
        if tag and q > 0 and (best is None or q > best[0]):
            best = (q, tag)
    if best is not None and (best[1] == "en" or best[1].startswith("en-")):
        return ENGLISH
    return SWEDISH


def translate(message: str, language: str) -> str:
    """``message`` (BC's English text, CorrelationId tail included) in ``language``."""
    if language == ENGLISH:
        return message
    tail = _CORRELATION_TAIL.search(message)
    core = message[: tail.start()] if tail else message
    stripped = core.strip()
    for pattern, template in _RULES:
        match = pattern.match(stripped)
        if match:
            text = template(match)
            break
    else:
        text = _FALLBACK
    return text + (tail.group("tail") if tail else "")


def localize(reply: Reply, accept_language: str | None) -> Reply:
    """The reply with its error message in the request's language (other replies unchanged)."""
    body = reply.body
    if body is None:
        return reply
    error = body.get("error")
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return reply
    language = requested(accept_language)
    if language == ENGLISH:
        return reply
    translated = {**error, "message": translate(error["message"], language)}
    return Reply(reply.status, {**body, "error": translated}, dict(reply.headers))
