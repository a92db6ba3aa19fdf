"""What a digest says: failures grouped by error code with examples and what to do, warnings
(objects transferred with a value left out, grouped the same way), and what was resolved, as
plain text, simple HTML and the ``bc.integration.failed`` event data.

Pure functions: items in, texts out. Written for a Moment admin: no stack traces, no event
internals beyond a Moment number, nothing secret (messages are redacted again here).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from worker.errors import info
from worker.events.models import FailureExample, FailureGroup, IntegrationFailedData
from worker.log import redact_text
from worker.notify.store import FAILURE, RESOLVED, WAITING, WARNING, Item, clean_message

MAX_EXAMPLES = 20
MAX_RESOLVED = 20
SETTINGS_PATH = "Setup > Settings > Integrations > Business Central"

OBJECT_NAMES = {
    "invoice": "Invoice",
    "credit_note": "Credit note",
    "customer": "Customer",
    "project": "Project",
    # The pollers report only when they pause an organization's expense or payment import.
    "expense": "Expense import (paused until the integration settings are saved again)",
    "payment": "Payment import (paused until the integration settings are saved again)",
}


def object_label(object_type: str | None, moment_number: str | None) -> str:
    """``Invoice 1864``; ``Invoice`` when the number is unknown."""
    name = OBJECT_NAMES.get(object_type or "", (object_type or "Event").capitalize())
    return f"{name} {moment_number}" if moment_number else name


@dataclass(frozen=True)
class DigestContent:
    org: str
    window_start: datetime
    window_end: datetime
    failures: list[FailureGroup]
    resolved: list[FailureExample]
    failed_total: int  # distinct objects that failed
    resolved_total: int
    subject: str
    summary: str
    warnings: list[FailureGroup] = field(default_factory=list)
    warned_total: int = 0  # distinct (object, code) warned about
    waiting: list[FailureGroup] = field(default_factory=list)
    waiting_total: int = 0  # distinct (object, code) waiting for a person in BC

    def event_data(self, user_id: str) -> IntegrationFailedData:
        return IntegrationFailedData(
            recipient_user_id=user_id,
            window_start=self.window_start,
            window_end=self.window_end,
            failures=self.failures,
            warnings=self.warnings,
            resolved=self.resolved,
            summary=self.summary,
        )


def _object_key(item: Item) -> tuple[str, str]:
    # The same object may be reported more than once in a window (notify-now on each attempt,
    # then the dead letter): count it once per code.
    return (item.object_type or "", item.moment_id or item.event_id or f"#{item.id}")


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def compose(
    org: str,
    items: Sequence[Item],
    window_start: datetime,
    window_end: datetime,
    *,
    secrets: Sequence[str] = (),
) -> DigestContent:
    """Group the items of one digest. ``secrets`` are masked in every message."""

    def safe(message: str | None) -> str:
        text = clean_message(message)
        for secret in secrets:
            if secret:
                text = text.replace(secret, "[REDACTED]")
        return redact_text(text)

    # Per object, the latest failure or resolution decides: failed then resolved inside one
    # window needs nobody (shown as resolved only); resolved then failed again is a failure.
    # Warnings stand apart: an object can be resolved and warned about in the same digest.
    latest: dict[tuple[str, str], Item] = {}
    for item in sorted(items, key=lambda i: i.id):
        if item.kind not in (WARNING, WAITING):
            latest[_object_key(item)] = item
    failed: dict[str, dict[tuple[str, str], Item]] = {}
    warned: dict[str, dict[tuple[str, str], Item]] = {}
    held: dict[str, dict[tuple[str, str], Item]] = {}
    for item in sorted(items, key=lambda i: i.id):
        key = _object_key(item)
        # The latest report of an object wins (its message is the freshest).
        if item.kind == FAILURE and latest[key].kind == FAILURE:
            failed.setdefault(item.code or "INTERNAL-ERROR", {})[key] = item
        elif item.kind == WARNING:
            warned.setdefault(item.code or "BC-VALIDATION", {})[key] = item
        elif item.kind == WAITING:
            held.setdefault(item.code or "BC-VALIDATION", {})[key] = item
    groups = _groups(failed, safe)
    warnings = _groups(warned, safe)
    waiting = _groups(held, safe)
    resolved_items = {key: i for key, i in latest.items() if i.kind == RESOLVED}
    resolved = [
        FailureExample(
            object_type=i.object_type or "event",
            moment_number=i.moment_number,
            message="Transferred to Business Central after all.",
        )
        for i in list(resolved_items.values())[:MAX_RESOLVED]
    ]
    failed_total = sum(g.count for g in groups)
    warned_total = sum(g.count for g in warnings)
    waiting_total = sum(g.count for g in waiting)
    resolved_total = len(resolved_items)
    if failed_total:
        subject = (
            f"Business Central integration: {_plural(failed_total, 'problem')} "
            f"{'needs' if failed_total == 1 else 'need'} your attention"
        )
        if warned_total:
            subject += f", {_plural(warned_total, 'value')} left out"
        if waiting_total:
            subject += f", {waiting_total} waiting in Business Central"
        if resolved_total:
            subject += f", {resolved_total} resolved"
    elif waiting_total:
        subject = (
            f"Business Central integration: {_plural(waiting_total, 'item')} "
            f"{'waits' if waiting_total == 1 else 'wait'} for you in Business Central"
        )
        if warned_total:
            subject += f", {_plural(warned_total, 'value')} left out"
        if resolved_total:
            subject += f", {_plural(resolved_total, 'problem')} resolved"
    elif warned_total:
        subject = (
            f"Business Central integration: {_plural(warned_total, 'value')} left out, "
            "please correct in Moment"
        )
        if resolved_total:
            subject += f", {_plural(resolved_total, 'problem')} resolved"
    else:
        subject = f"Business Central integration: {_plural(resolved_total, 'problem')} resolved"
    parts = []
    if failed_total:
        parts.append(
            f"{_plural(failed_total, 'item')} could not be transferred between Moment and "
            f"Business Central ({', '.join(f'{g.code}: {g.count}' for g in groups)})."
        )
    if warned_total:
        parts.append(
            f"{_plural(warned_total, 'value')} Business Central does not accept "
            f"{'was' if warned_total == 1 else 'were'} left out of transferred items "
            f"({', '.join(f'{g.code}: {g.count}' for g in warnings)})."
        )
    if waiting_total:
        parts.append(
            f"{_plural(waiting_total, 'item')} {'waits' if waiting_total == 1 else 'wait'} for "
            f"a person in Business Central ({', '.join(f'{g.code}: {g.count}' for g in waiting)})."
        )
    if resolved_total:
        parts.append(f"{_plural(resolved_total, 'earlier problem')} resolved.")
    return DigestContent(
        org=org,
        window_start=window_start,
        window_end=window_end,
        failures=groups,
        resolved=resolved,
        failed_total=failed_total,
        resolved_total=resolved_total,
        subject=subject,
        summary=" ".join(parts),
        warnings=warnings,
        warned_total=warned_total,
        waiting=waiting,
        waiting_total=waiting_total,
    )


def _groups(
    by_code: dict[str, dict[tuple[str, str], Item]], safe: Callable[[str | None], str]
) -> list[FailureGroup]:
    """One group per code, most affected first, with up to MAX_EXAMPLES examples in all, taken
    round-robin so every code shows at least one."""
    ordered = sorted(by_code.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    picked: dict[str, list[Item]] = {code: [] for code, _ in ordered}
    queues = {code: list(objs.values()) for code, objs in ordered}
    total = 0
    while total < MAX_EXAMPLES and any(queues.values()):
        for code, _ in ordered:
            if queues[code] and total < MAX_EXAMPLES:
                picked[code].append(queues[code].pop(0))
                total += 1
    return [
        FailureGroup(
            code=code,
            count=len(objs),
            title=info(code).title,
            fix=info(code).fix,
            examples=[
                FailureExample(
                    object_type=i.object_type or "event",
                    moment_number=i.moment_number,
                    message=safe(i.message),
                )
                for i in picked[code]
            ],
        )
        for code, objs in ordered
    ]


def _when(start: datetime, end: datetime) -> str:
    fmt = "%Y-%m-%d %H:%M"
    if start.strftime(fmt) == end.strftime(fmt):
        return f"At {start.strftime(fmt)} UTC"
    until = end.strftime("%H:%M" if start.date() == end.date() else fmt)
    return f"Between {start.strftime(fmt)} and {until} UTC"


def _example_line(example: FailureExample) -> str:
    label = object_label(example.object_type, example.moment_number)
    return f"{label}: {example.message}" if example.message else label


def _warned_intro(content: DigestContent) -> str:
    n = content.warned_total
    lead = "Also" if content.failed_total else _when(content.window_start, content.window_end)
    return (
        f"{lead}, {_plural(n, 'value')} that Business Central does not accept "
        f"{'was' if n == 1 else 'were'} left out; the {'item was' if n == 1 else 'items were'} "
        "transferred without it. Correct it in Moment: the next change of the item sends it "
        "again."
    )


def _waiting_intro(content: DigestContent) -> str:
    n = content.waiting_total
    lead = (
        "Also"
        if content.failed_total or content.warned_total
        else _when(content.window_start, content.window_end)
    )
    return (
        f"{lead}, {_plural(n, 'item')} {'is' if n == 1 else 'are'} waiting for someone to act "
        "in Business Central; nothing is wrong with the data or the settings."
    )


def _text_groups(groups: Sequence[FailureGroup]) -> list[str]:
    lines: list[str] = []
    for n, group in enumerate(groups, start=1):
        lines += [
            f"{n}. {group.title}",
            f"   Affected: {group.count} (error code {group.code})",
            f"   What to do: {group.fix}",
        ]
        if group.examples:
            shown = len(group.examples)
            more = group.count - shown
            lines.append("   For example:" if shown < group.count else "   Affected items:")
            lines += [f"   - {_example_line(e)}" for e in group.examples]
            if more > 0:
                lines.append(f"   {_more(more)}")
        lines.append("")
    return lines


RESOLVED_TITLE = "Resolved since the last message"


def _more(more: int) -> str:
    """The line after a list cut short."""
    return f"… and {more} more."


def _resolved(content: DigestContent) -> list[str]:
    """One sentence per resolved object shown (both bodies say the same)."""
    return [
        f"{object_label(x.object_type, x.moment_number)} was transferred to Business Central "
        "after all."
        for x in content.resolved
    ]


def render_text(content: DigestContent) -> str:
    """The plain-text body."""
    lines = [
        "Hello,",
        "",
        f"This is the Business Central integration of your Moment organization ({content.org}).",
    ]
    if content.failed_total:
        lines += [
            f"{_when(content.window_start, content.window_end)}, "
            f"{_plural(content.failed_total, 'item')} could not be transferred and "
            f"{'needs' if content.failed_total == 1 else 'need'} your attention. Problems that "
            "go away when the integration retries by itself are not listed.",
            "",
        ]
        lines += _text_groups(content.failures)
    if content.warned_total:
        lines += [_warned_intro(content), ""]
        lines += _text_groups(content.warnings)
    if content.waiting_total:
        lines += [_waiting_intro(content), ""]
        lines += _text_groups(content.waiting)
    if not content.failed_total and not content.warned_total and not content.waiting_total:
        lines.append("")
    if content.resolved:
        lines.append(f"{RESOLVED_TITLE}:")
        lines += [f"- {sentence}" for sentence in _resolved(content)]
        if (more := content.resolved_total - len(content.resolved)) > 0:
            lines.append(_more(more))
        lines.append("")
    lines.append(f"The integration settings are in Moment under {SETTINGS_PATH}.")
    if content.failed_total or not (content.warned_total or content.waiting_total):
        lines.append(
            "Failed items are kept: after fixing the cause in Business Central or in the "
            "settings, ask support to replay them."
        )
    lines += [
        "",
        "You receive this message because you are a notification recipient of this integration.",
    ]
    return "\n".join(lines) + "\n"


def _html_groups(groups: Sequence[FailureGroup]) -> list[str]:
    e = html.escape
    out = ["<ol>"]
    for group in groups:
        out.append(
            f"<li><p><strong>{e(group.title)}</strong><br>"
            f"Affected: {group.count} (error code <code>{e(group.code)}</code>)<br>"
            f"What to do: {e(group.fix)}</p>"
        )
        if group.examples:
            out.append("<ul>")
            out += [f"<li>{e(_example_line(x))}</li>" for x in group.examples]
            more = group.count - len(group.examples)
            if more > 0:
                out.append(f"<li>{_more(more)}</li>")
            out.append("</ul>")
        out.append("</li>")
    out.append("</ol>")
    return out


def render_html(content: DigestContent) -> str:
    """A simple HTML body with the same content as the text."""
    e = html.escape
    out = [
        '<!DOCTYPE html><html><body style="font-family: sans-serif">',
        "<p>Hello,</p>",
        f"<p>This is the Business Central integration of your Moment organization "
        f"({e(content.org)}).",
    ]
    if content.failed_total:
        out.append(
            f" {e(_when(content.window_start, content.window_end))}, "
            f"{e(_plural(content.failed_total, 'item'))} could not be transferred and "
            f"{'needs' if content.failed_total == 1 else 'need'} your attention. Problems that "
            "go away when the integration retries by itself are not listed.</p>"
        )
        out += _html_groups(content.failures)
    else:
        out.append("</p>")
    if content.warned_total:
        out.append(f"<p>{e(_warned_intro(content))}</p>")
        out += _html_groups(content.warnings)
    if content.waiting_total:
        out.append(f"<p>{e(_waiting_intro(content))}</p>")
        out += _html_groups(content.waiting)
    if content.resolved:
        out.append(f"<p><strong>{RESOLVED_TITLE}:</strong></p><ul>")
        out += [f"<li>{e(sentence)}</li>" for sentence in _resolved(content)]
        if (more := content.resolved_total - len(content.resolved)) > 0:
            out.append(f"<li>{_more(more)}</li>")
        out.append("</ul>")
    settings = f"<p>The integration settings are in Moment under {e(SETTINGS_PATH)}."
    if content.failed_total or not (content.warned_total or content.waiting_total):
        settings += (
            " Failed items are kept: after fixing the cause in Business Central or in the "
            "settings, ask support to replay them."
        )
    out += [
        settings + "</p>",
        '<p style="color: #666">You receive this message because you are a notification '
        "recipient of this integration.</p>",
        "</body></html>",
    ]
    return "\n".join(out) + "\n"
