"""Every SMS text comes from a Jinja2 template per language: sms/templates/<lang>/<name>.j2,
rendered to fit the message's part limit (``render_fitting``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template

from core.messages import current_params
from core.messaging.records import OutboxRow
from sms.encoding import (
    DC_GSM,
    DC_UCS2,
    GSM_PART,
    GSM_SINGLE,
    UCS2_PART,
    UCS2_SINGLE,
    MessageTooLong,
    Part,
    choose_coding,
    encode_gsm,
    split_message,
)

TEMPLATES = Path(__file__).resolve().parent / "templates"
LANGUAGES = ("zh", "en")
LIST_PARAMS = ("entries", "orders", "rewards")


@lru_cache(maxsize=1)
def environment() -> Environment:
    # Templates ship with the code and are rendered on the reactor thread (the outbox sender):
    # no auto_reload, so a render never stats a file; a template change needs a restart.
    return Environment(loader=FileSystemLoader(str(TEMPLATES)), undefined=StrictUndefined,
                       autoescape=False, keep_trailing_newline=False, trim_blocks=True,
                       lstrip_blocks=True, auto_reload=False)


def render(template: str, language: str, params: dict[str, Any] | None = None) -> str:
    """The text of one message, whitespace-trimmed (templates may wrap lines for reading)."""
    lang = language if language in LANGUAGES else LANGUAGES[0]
    text = _render_template(lang, template, params or {})
    return "\n".join(line.strip() for line in text.strip().splitlines() if line.strip())


# (language, template) -> (the loaded template, its globals as one dict). Jinja's
# ``Template.render`` builds the context from the globals' ChainMap on every call (two walks
# of it: half of a short reply's render); these templates never change in a process (no
# auto_reload) and nothing adds globals after start, so the walk is done once here.
_LOADED: dict[tuple[str, str], tuple[Template, dict[str, Any]]] = {}


def _render_template(lang: str, template: str, params: dict[str, Any]) -> str:
    """``environment().get_template(...).render(**params)``, by the same steps (context of
    the globals and the params, the root render function, concat), without the walks."""
    loaded = _LOADED.get((lang, template))
    if loaded is None:
        tmpl = environment().get_template(f"{lang}/{template}.j2")
        loaded = _LOADED[(lang, template)] = (tmpl, dict(tmpl.globals))
    tmpl, globals_ = loaded
    env = tmpl.environment
    ctx = env.context_class(env, {**globals_, **params}, tmpl.name, tmpl.blocks,
                            globals=globals_)
    try:
        return env.concat(tmpl.root_render_func(ctx))  # type: ignore[attr-defined]
    except Exception:
        env.handle_exception()
        raise  # pragma: no cover - handle_exception always raises


def template_names(language: str) -> list[str]:
    return sorted(p.stem for p in (TEMPLATES / language).glob("*.j2"))


def parts_for(text: str, max_parts: int, ref: int) -> list[Part]:
    """``split_message``, with a fast path for the common single-part message."""
    if choose_coding(text) == "gsm":
        data = encode_gsm(text)
        if len(data) <= GSM_SINGLE:
            return [Part(DC_GSM, 0, data, text)]
    else:
        data = text.encode("utf-16-be")
        if len(data) <= 2 * UCS2_SINGLE:
            return [Part(DC_UCS2, 0, data, text)]
    return split_message(text, max_parts, ref=ref)


def fits(text: str, max_parts: int) -> bool:
    # Any character takes at most two units (a surrogate pair, a GSM escape), and a part
    # boundary wastes at most one: short texts need no trial split.
    if 2 * len(text) <= (UCS2_SINGLE if max_parts == 1 else
                         UCS2_PART * max_parts - max_parts):
        return True
    # Longer ones: their exact size in septets or UTF-16 units decides, but near the limit
    # (where the split's waste at part boundaries matters).
    if choose_coding(text) == "gsm":
        units, single, per_part = len(encode_gsm(text)), GSM_SINGLE, GSM_PART
    else:
        units, single, per_part = len(text.encode("utf-16-be")) // 2, UCS2_SINGLE, UCS2_PART
    if units <= single:
        return True
    if max_parts == 1 or units > per_part * max_parts:
        return False
    if units <= per_part * max_parts - max_parts:
        return True
    try:
        parts_for(text, max_parts, 0)
    except MessageTooLong:
        return False
    return True


def truncate(text: str, max_parts: int) -> str:
    """The longest prefix of ``text`` (plus an ellipsis) that fits ``max_parts``."""
    if fits(text, max_parts):
        return text
    ellipsis = "..." if choose_coding(text) == "gsm" else "…"
    low, high = 0, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if fits(text[:mid].rstrip() + ellipsis, max_parts):
            low = mid
        else:
            high = mid - 1
    return text[:low].rstrip() + ellipsis


# Rendered texts by (template, language, max_parts, params frozen). Rendering is a pure
# function of these (the templates read nothing else), and it was a twentieth of the
# database thread's time under SMS load: a catalogue reply is the same for every member of a
# tier and may be rendered several times to fit. Cleared when full; plain dict operations
# are atomic under the GIL, so pool threads may share it.
_FITTED: dict[tuple, str] = {}
_FITTED_MAX = 2048


def _frozen(value: Any) -> Any:
    """A hashable, type-faithful image of JSON-like params (TypeError if it has none).

    Exact container types only (a subclass is rendered, not remembered). Dicts keep their
    order (a template looping over one renders it in that order). A str stands for itself:
    every other image is a tuple starting with a type, so none can equal it."""
    t = type(value)
    if t is str:
        return value
    if t is dict:
        return (dict, *[(k, _frozen(v)) for k, v in value.items()])
    if t is list or t is tuple:
        return (t, *[_frozen(v) for v in value])
    hash(value)
    return (t, value)  # 1, 1.0 and True are equal keys but render differently


# Replies made of one member's own figures (her points, her ledger, her orders) almost never
# repeat: remembering them only cost the key's walk and pushed the catalogue out.
_NOT_REMEMBERED = frozenset({"balance", "history", "delivery"})


def render_fitting(template: str, language: str, params: dict[str, Any],
                   max_parts: int = 3) -> str:
    """Render, dropping trailing list entries (``entries``, ``orders``, ``rewards``; the
    template gets ``more=True``) until the text fits ``max_parts``; cut as a last resort."""
    if template in _NOT_REMEMBERED:
        return _render_fitting(template, language, params, max_parts)
    try:
        key = (template, language, max_parts, _frozen(params))
    except TypeError:
        return _render_fitting(template, language, params, max_parts)
    text = _FITTED.get(key)
    if text is None:
        text = _render_fitting(template, language, params, max_parts)
        if len(_FITTED) >= _FITTED_MAX:
            _FITTED.clear()
        _FITTED[key] = text
    return text


def _render_fitting(template: str, language: str, params: dict[str, Any],
                    max_parts: int) -> str:
    params = dict(params)
    while True:
        text = render(template, language, params)
        if fits(text, max_parts):
            return text
        key = next((k for k in LIST_PARAMS if isinstance(params.get(k), list) and params[k]),
                   None)
        if key is None:
            return truncate(text, max_parts)
        params[key] = params[key][:-1]
        params["more"] = True


def row_text(row: OutboxRow, max_parts: int) -> str:
    if row.body is not None:
        return truncate(row.body, max_parts)
    if not row.template:
        raise ValueError("outbox row has neither body nor template")
    # Rows are rendered when sent: one queued by an older release may use older names.
    params = current_params(row.template, row.language, row.params)
    return render_fitting(row.template, row.language, params, max_parts)
