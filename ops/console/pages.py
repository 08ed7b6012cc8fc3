"""The console's pages and actions: prompts, members, tickets, queues, charts.

Each is ``async def page(console, ask) -> Reply``. Reads run as core use cases with
``write=False``; each action is one use case (the same one the ``loyalty`` command runs), then
a redirect back with what happened, logged with who did it.
"""

from __future__ import annotations

from typing import Any

from core.accounts import unlock_pin
from core.catalogue_names import spoken_codes
from core.cli_errors import explain
from core.console_views import fulfilment_backlog, order_fulfilment
from core.domain import DomainError, TicketKind, mask_msisdn
from core.jobs.runs import job_runs
from core.queues import discard_item, list_set_aside, outbox_backlog, parse_item, retry_item
from core.tickets import list_tickets, resolve_ticket, show_ticket
from ops.console import prompt_audio
from ops.console.app import Ask, Console, Reply
from ops.console.charts import svg_chart

_WAV = b"audio/wav"


def _refusal(exc: Exception) -> str:
    failure = explain(exc)
    return failure.message if failure is not None else f"error: {exc}"


# --- prompts ---------------------------------------------------------------------------------

async def prompts_page(console: Console, ask: Ask) -> Reply:
    codes = await console.read(spoken_codes, ask.now)  # the active rewards, the couriers
    found = await console.blocking(prompt_audio.coverage, console.prompts_setting,
                                   console.tier_ids, codes.reward_codes, codes.courier_codes)
    return console.page(ask, "prompts.html.j2", coverage=found, chosen_id=ask.arg("id"),
                        chosen_lang=ask.arg("lang"))


async def prompt_audio_file(console: Console, ask: Ask) -> Reply:
    try:
        body = await console.blocking(prompt_audio.prompt_wav, console.prompts_setting,
                                      ask.arg("lang"), ask.arg("id"))
    except KeyError:
        body = None
    if body is None:
        return Reply(404, b"text/plain", b"no such prompt audio\n")
    return Reply(200, _WAV, body)


async def prompt_upload(console: Console, ask: Ask) -> Reply:
    upload = ask.form.files.get("file")
    prompt_id, lang = ask.form.get("prompt_id").strip(), ask.form.get("lang").strip()
    back = f"/console/prompts?id={prompt_id}&lang={lang}"
    if upload is None or not upload.filename:
        return console.redirect(ask, back, "error", "choose a recording to upload")
    result = await console.blocking(prompt_audio.upload_prompt, console.prompts_setting, lang,
                                    prompt_id, upload.filename, upload.data)
    console.action(ask, "uploaded {lang}/{prompt} from {file} ({size} bytes): {outcome}",
                   lang=lang, prompt=prompt_id, file=upload.filename, size=len(upload.data),
                   outcome="loaded" if result.ok else "refused: " + "; ".join(result.lines))
    return console.redirect(ask, back, "ok" if result.ok else "error",
                            ("Loaded: " if result.ok else "Refused: ") + " ".join(result.lines))


# --- members ---------------------------------------------------------------------------------

async def member_page(console: Console, ask: Ask) -> Reply:
    from core.cli import member_summary  # the same summary as `loyalty member show`

    number = ask.arg("msisdn")
    summary: dict[str, Any] | None = None
    error = ""
    if not number and ask.arg("ticket"):
        # Lists link members by ticket, so no page but the member's own holds the number.
        try:
            number = (await console.read(show_ticket, ask.arg("ticket"))).msisdn
        except DomainError as exc:
            error = _refusal(exc)
    if number:
        try:
            summary = await console.read(member_summary, number, ask.now)
        except DomainError as exc:
            error = _refusal(exc)
    locked = bool(summary and summary.get("pin_locked_until")
                  and summary["pin_locked_until"] > ask.now)
    fulfilment = {}
    if summary and summary.get("orders"):
        fulfilment = await console.read(order_fulfilment,
                                        [o["order_no"] for o in summary["orders"]])
    return console.page(ask, "member.html.j2", number=number, summary=summary, error=error,
                        locked=locked, fulfilment=fulfilment)


async def member_unlock(console: Console, ask: Ask) -> Reply:
    number = ask.form.get("msisdn")
    try:
        was_locked = await console.write(unlock_pin, number, ask.now)
    except DomainError as exc:
        return console.redirect(ask, "/console/members", "error", _refusal(exc))
    console.action(ask, "unlocked the PIN of {member} (was locked: {was})",
                   member=mask_msisdn(number), was=was_locked)
    text = "PIN unlocked" if was_locked else "the PIN was not locked; wrong tries reset"
    return console.redirect(ask, f"/console/members?msisdn={number}", "ok", text)


# --- tickets ---------------------------------------------------------------------------------

async def tickets_page(console: Console, ask: Ask) -> Reply:
    everything = ask.arg("all") == "1"
    found = await console.read(list_tickets, open_only=not everything)
    return console.page(ask, "tickets.html.j2", tickets=found, everything=everything,
                        makeup=TicketKind.MAKEUP)


async def ticket_voice(console: Console, ask: Ask) -> Reply:
    try:
        ticket = await console.read(show_ticket, ask.arg("ref"))
    except DomainError:
        return Reply(404, b"text/plain", b"no such ticket\n")
    if not ticket.recording_path:
        return Reply(404, b"text/plain", b"this ticket has no voice note\n")
    try:
        body = await console.blocking(prompt_audio.playable_wav, ticket.recording_path)
    except (OSError, ValueError) as exc:
        return Reply(404, b"text/plain; charset=utf-8",
                     f"the voice note cannot be read here: {exc}\n".encode())
    return Reply(200, _WAV, body)


async def ticket_resolve(console: Console, ask: Ask) -> Reply:
    ref, outcome = ask.form.get("ref"), ask.form.get("outcome")
    raw_credit = ask.form.get("credit").strip()
    if raw_credit and not raw_credit.isdigit():
        return console.redirect(ask, "/console/tickets", "error",
                                f"credit must be a whole number of points, not {raw_credit!r}")
    credit = int(raw_credit) if raw_credit and int(raw_credit) else None
    try:
        ticket = await console.write(resolve_ticket, ref, outcome, ask.now, credit=credit)
    except DomainError as exc:
        return console.redirect(ask, "/console/tickets", "error", _refusal(exc))
    console.action(ask, "resolved ticket {ref} of {member}, credit {credit}",
                   ref=ticket.ref, member=mask_msisdn(ticket.msisdn),
                   credit=ticket.credit_points or 0)
    credited = f", {ticket.credit_points} points credited" if ticket.credit_points else ""
    return console.redirect(ask, "/console/tickets", "ok",
                            f"ticket {ticket.ref} resolved{credited}; the member is told by SMS")


# --- queues ----------------------------------------------------------------------------------

async def queues_page(console: Console, ask: Ask) -> Reply:
    backlog = await console.read(outbox_backlog, ask.now)
    items = await console.read(list_set_aside)
    runs = await console.read(job_runs, limit=20)
    fulfilment = await console.read(fulfilment_backlog, ask.now)
    return console.page(ask, "queues.html.j2", backlog=backlog, items=items, runs=runs,
                        fulfilment=fulfilment)


async def _queue_action(console: Console, ask: Ask, verb: str) -> Reply:
    item = ask.form.get("item")
    try:
        parse_item(item)
    except ValueError as exc:
        return console.redirect(ask, "/console/queues", "error", str(exc))
    if verb == "retry":
        said = await console.write(retry_item, item, ask.now)
    else:
        said = f"{item}: discarded" if await console.write(discard_item, item, ask.now) else None
    if said is None:
        return console.redirect(ask, "/console/queues", "error",
                                f"{item}: nothing set aside under that name")
    console.action(ask, "{verb} {item}", verb="retried" if verb == "retry" else "discarded",
                   item=item)
    return console.redirect(ask, "/console/queues", "ok", said)


async def queue_retry(console: Console, ask: Ask) -> Reply:
    return await _queue_action(console, ask, "retry")


async def queue_discard(console: Console, ask: Ask) -> Reply:
    return await _queue_action(console, ask, "discard")


# --- charts, index, logout -------------------------------------------------------------------

CHARTS = (("mo", "SMS received (MO) per minute", ""), ("mt", "SMS sent (MT) per minute", ""),
          ("calls_active", "Active calls", ""), ("think_p99_ms", "AGI think time p99", " ms"),
          ("outbox_depth", "Outbox depth", ""), ("throttled", "SMSC throttles per minute", ""))


async def charts_page(console: Console, ask: Ask) -> Reply:
    series = console.ring.series()
    charts = [(title, svg_chart(series[key], unit=unit)) for key, title, unit in CHARTS]
    return console.page(ask, "charts.html.j2", charts=charts)


async def index(console: Console, ask: Ask) -> Reply:
    return Reply(303, b"text/plain", b"see other\n", {b"location": b"/console/tickets"})


async def logout(console: Console, ask: Ask) -> Reply:
    console.sessions.drop(ask.session)
    console.action(ask, "logged out")
    return Reply(303, b"text/plain", b"see other\n", {b"location": b"/console/"})


GET_ROUTES = {
    b"/console/": index,
    b"/console/prompts": prompts_page,
    b"/console/prompts/audio": prompt_audio_file,
    b"/console/members": member_page,
    b"/console/tickets": tickets_page,
    b"/console/tickets/voice": ticket_voice,
    b"/console/queues": queues_page,
    b"/console/charts": charts_page,
}
POST_ROUTES = {
    b"/console/prompts/upload": prompt_upload,
    b"/console/members/unlock": member_unlock,
    b"/console/tickets/resolve": ticket_resolve,
    b"/console/queues/retry": queue_retry,
    b"/console/queues/discard": queue_discard,
    b"/console/logout": logout,
}
