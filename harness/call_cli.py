"""``loyalty simulate call MSISDN`` / ``loyalty simulate calls N``: simulated calls against a
running FastAGI server (``twistd -ny twistd.tac``), printing what the caller heard with the
prompt texts of ``prompts/manifest.toml``.

    loyalty simulate call 13800138000 --keys "2T"          # balance, then no answer
    loyalty simulate call 13800138000 --keys "411 1234# 1"  # redeem A01 with the PIN
    loyalty simulate call unknown --keys "15800158000# 1234# 2" --language en
    loyalty simulate call 13800138000 --interactive         # type the keys yourself
    loyalty simulate calls 200 --keys "2T3T" --concurrency 50

Keys: ``0-9 * # A-D``, ``T`` (that input times out), ``H`` (hang up there); spaces are ignored.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from typing import Any

from prompts.catalogue_prompts import is_name_prompt_id
from prompts.manifest import Manifest, load_manifest

WITHHELD = ("unknown", "withheld", "anonymous", "-", "")


def register(group: Any) -> None:
    """Add ``call`` and ``calls`` to the ``loyalty simulate`` subcommands."""
    call = group.add_parser(
        "call", help="one simulated call to the FastAGI server, with its transcript",
        description="Call the running FastAGI server as Asterisk would and print what the "
                    "caller heard. Keys: 0-9 * # A-D, T (no input), H (hang up).")
    call.add_argument("msisdn", help="the caller id ('unknown' for a withheld number)")
    call.add_argument("--keys", default="", help="the keys the caller presses, in order")
    call.add_argument("--interactive", action="store_true",
                      help="type the keys at each prompt instead")
    _connection(call)
    call.add_argument("--hangup-at", type=int, default=None, metavar="N",
                      help="hang up right after the reply to the Nth AGI command")
    call.add_argument("--arg", action="append", default=[], help="agi_arg_N (repeatable)")
    call.add_argument("--verbose", action="store_true", help="also show the AGI commands")
    call.set_defaults(func=cmd_call)

    calls = group.add_parser("calls", help="N simulated calls at once (a quick load run)",
                             description="N calls with the same keys; prints outcomes and "
                                         "calls/s. For figures use python -m bench.ivr_bench.")
    calls.add_argument("n", type=int, help="number of calls")
    calls.add_argument("--msisdn", default="13800138000", help="caller id of every call")
    calls.add_argument("--keys", default="2", help="keys of every call")
    calls.add_argument("--concurrency", type=int, default=100, help="calls in flight at once")
    _connection(calls)
    calls.set_defaults(func=cmd_calls)


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="FastAGI host (default: [fastagi] host)")
    parser.add_argument("--port", type=int, default=None,
                        help="FastAGI port (default: [fastagi] port)")
    parser.add_argument("--language", default="zh", help="the channel language (agi_language)")
    parser.add_argument("--script", default="loyalty", help="FastAGI script (default loyalty)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="give up after this many seconds")


def prompt_text(manifest: Manifest, subdir: str):
    """The simulator's ``prompt_text``: manifest words for ``<subdir>/<id>``, the name itself
    for other sounds, ``(recorded name)`` for a reward's or courier's name (``reward_<code>``,
    ``courier_<code>``: the server plays those only when the active set has them), None (a
    missing file) for any other id the manifest does not have."""
    prefix = subdir.strip("/") + "/" if subdir.strip("/") else ""

    def text(name: str, language: str) -> str | None:
        if prefix and not name.startswith(prefix):
            return name
        prompt_id = name[len(prefix):]
        if prompt_id not in manifest and is_name_prompt_id(prompt_id):
            return "(recorded name)"
        lang = language.lower()[:2]
        return manifest.text(prompt_id, lang if lang in manifest.languages else "zh")

    return text


def _address(ctx: Any) -> tuple[str, int, str]:
    """FastAGI host, port and the prompts' sounds subdir: options first, then the config."""
    args = ctx.args
    host, port, subdir = args.host, args.port, "loyalty"
    try:
        config = ctx.config
    except Exception as problem:  # noqa: BLE001 - a simulator can run without a valid config
        if host is None or port is None:
            raise
        print(f"(config not read: {problem})", file=sys.stderr)
    else:
        host = host or config.fastagi.host
        port = port if port is not None else config.fastagi.port
        subdir = config.prompts.sounds_subdir
    return host, port, subdir


def _run(coro_fn: Any) -> Any:
    """Run ``await coro_fn(reactor)`` on the reactor; its result, or its exception raised."""
    from twisted.internet import defer, task

    box: dict[str, Any] = {}

    def main(reactor: Any) -> defer.Deferred[None]:
        d = defer.ensureDeferred(coro_fn(reactor))
        d.addCallbacks(lambda r: box.update(result=r), lambda f: box.update(failure=f))
        return d

    try:
        task.react(main)
    except SystemExit as done:
        if done.code not in (0, None):
            raise
    if "failure" in box:
        box["failure"].raiseException()
    return box.get("result")


def cmd_call(ctx: Any) -> int:
    from harness.simulator import simulate_call
    from harness.simulator_interactive import run_interactive

    args = ctx.args
    host, port, subdir = _address(ctx)
    texts = prompt_text(load_manifest(), subdir)
    callerid = None if args.msisdn.lower() in WITHHELD else args.msisdn

    async def go(reactor: Any):
        if args.interactive:
            return await run_interactive(host, port, callerid=callerid, script=args.script,
                                         language=args.language, prompt_text=texts,
                                         args=args.arg, timeout_s=args.timeout or 3600,
                                         reactor=reactor)
        return await simulate_call(host, port, script=args.script, callerid=callerid,
                                   language=args.language, keys=args.keys, prompt_text=texts,
                                   hangup_at_command=args.hangup_at, args=args.arg,
                                   timeout_s=args.timeout or 60, reactor=reactor)

    try:
        result = _run_or_exit(go)
    except ConnectionError as problem:
        print(f"cannot reach the FastAGI server at {host}:{port}: {problem}", file=sys.stderr)
        return 1
    if not args.interactive:
        print(result.render())
        if args.verbose:
            print("-- AGI commands:")
            for n, command in enumerate(result.commands, start=1):
                print(f"{n:4d}  {command}")
        print(f"-- call over: hung up by {result.hung_up_by}"
              + (", simulator timed out" if result.timed_out else ""))
    if result.variables_set:
        print("-- channel variables: " + ", ".join(f"{k}={v}" for k, v in
                                                  sorted(result.variables_set.items())))
    return 0


def _run_or_exit(go: Any) -> Any:
    from twisted.internet.error import ConnectError

    try:
        return _run(go)
    except ConnectError as problem:
        raise ConnectionError(str(problem)) from None


def cmd_calls(ctx: Any) -> int:
    from harness.simulator import run_many

    args = ctx.args
    host, port, subdir = _address(ctx)
    texts = prompt_text(load_manifest(), subdir)

    def kwargs(i: int) -> dict[str, Any]:
        return dict(script=args.script, callerid=args.msisdn, language=args.language,
                    keys=args.keys, prompt_text=texts, timeout_s=args.timeout or 120,
                    uniqueid=f"sim{os.getpid()}-{int(time.time())}-{i}")

    started = time.perf_counter()

    async def go(reactor: Any):
        return await run_many(host, port, args.n, kwargs, concurrency=args.concurrency)

    try:
        results = _run_or_exit(go)
    except ConnectionError as problem:
        print(f"cannot reach the FastAGI server at {host}:{port}: {problem}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - started
    ends = Counter(r.variables_set.get("LOYALTY_NEXT") or f"hung up by {r.hung_up_by}"
                   for r in results)
    print(f"{len(results)} calls in {elapsed:.2f} s ({len(results) / elapsed:.0f} calls/s), "
          f"{sum(len(r.commands) for r in results)} AGI commands")
    for end, count in ends.most_common():
        print(f"  {count:6d}  {end}")
    return 0
