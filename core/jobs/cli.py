"""``loyalty jobs list`` and ``loyalty jobs run NAME [--dry-run] [--as-of DATE] [--force]``."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime

from core.config import parse_hhmm
from core.jobs.registry import JOBS, get_job
from core.jobs.runs import job_runs, run_job
from core.jobs.schedule import local_instant, run_key
from sms.render import render

# The jobs look years back (tier review) and ahead (lot expiry) of the date they run on.
AS_OF_YEARS = range(1970, 9000)


def as_of_date(text: str) -> date:
    """``--as-of``: a calendar date the jobs can compute with, or argparse's one-line error."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date: give it as YYYY-MM-DD, e.g. 2026-12-01") from None
    if day.year not in AS_OF_YEARS:
        raise argparse.ArgumentTypeError(
            f"{text}: give a date between {AS_OF_YEARS.start} and {AS_OF_YEARS.stop - 1}")
    return day


def register(subparsers) -> None:
    jobs = subparsers.add_parser("jobs", help="scheduled jobs").add_subparsers(
        dest="jobs", required=True)
    jobs.add_parser("list", help="the jobs, their schedule and last runs").set_defaults(
        func=cmd_list)
    run = jobs.add_parser("run", help="run one job once now (claimed like a scheduled run)",
                          formatter_class=argparse.RawDescriptionHelpFormatter,
                          description="Run a job once. Jobs: " + ", ".join(
                              f"{j.name} ({j.title})" for j in JOBS.values()))
    run.add_argument("name", choices=list(JOBS))
    run.add_argument("--dry-run", action="store_true",
                     help="print counts and sample texts; write nothing")
    run.add_argument("--as-of", type=as_of_date, metavar="YYYY-MM-DD",
                     help="what the scheduled run on that date would do (implies --dry-run)")
    run.add_argument("--force", action="store_true",
                     help="run even if this period's run is done (rows already written are "
                          "never written twice)")
    run.add_argument("--samples", type=int, default=3, help="sample texts to show (default 3)")
    run.add_argument("--json", action="store_true", help="machine-readable output")
    run.set_defaults(func=cmd_run)


def cmd_list(ctx) -> int:
    config = ctx.config
    zone = config.programme.zone
    runs = ctx.run(job_runs, limit=200, write=False)
    print(f"jobs {'enabled' if config.jobs.enabled else 'DISABLED'} (times in {zone.key})")
    for job in JOBS.values():
        last = next((r for r in runs if r.job == job.name), None)
        state = "never run" if last is None else (
            f"last {last.run_key} {last.state}"
            + (f" at {last.finished_at.astimezone(zone):%Y-%m-%d %H:%M}" if last.finished_at
               else f" since {last.started_at.astimezone(zone):%Y-%m-%d %H:%M}"))
        print(f"  {job.name:<16} {job.schedule_text(config.jobs):<28} {state}")
        print(f"  {'':<16} {job.title}")
    return 0


def cmd_run(ctx) -> int:
    from core.domain import mask_msisdn

    args = ctx.args
    config = ctx.config
    job = get_job(args.name)
    zone = config.programme.zone
    dry_run = args.dry_run or args.as_of is not None
    if args.as_of is not None:
        as_of = local_instant(args.as_of, parse_hhmm(job.at(config.jobs)), zone)

        def clock() -> datetime:
            return as_of
    else:
        clock = ctx.now
    key = run_key(clock(), zone, job.monthly)

    def run(use_case, *a, **kw):
        return ctx.run(use_case, *a, write=not dry_run, **kw)

    result = run_job(run, job.name, config.jobs, clock, run_key=key, force=args.force,
                     dry_run=dry_run, samples=args.samples)
    texts = [dict(msisdn=mask_msisdn(s.msisdn), language=s.language, template=s.template,
                  text=_render(s)) for s in result.samples]
    if args.json:
        print(json.dumps(dict(job=result.job, run_key=result.run_key, state=result.state,
                              as_of=clock().isoformat(), counts=result.counts,
                              samples=texts, events=result.events, error=result.error),
                         ensure_ascii=False, indent=2))
    else:
        when = f"as of {clock().astimezone(zone):%Y-%m-%d %H:%M %Z}"
        if result.state == "skipped":
            print(f"{job.name} {key}: skipped, this run is done or running elsewhere "
                  "(see `loyalty jobs list`; --force runs it again)")
            return 0
        label = "dry run, nothing written" if dry_run else result.state + (
            " (resumed)" if result.resumed else "")
        print(f"{job.name} {key} {when}: {label}")
        for name, value in sorted(result.counts.items()):
            print(f"  {name:<24} {value:>10}")
        for event in result.events:
            print("  " + " ".join(f"{k}={v}" for k, v in event.items()))
        if texts:
            print("samples:")
            for t in texts:
                print(f"  {t['msisdn']} [{t['language']}] {t['template']}: {t['text']}")
    return 0 if result.state in ("done", "dry-run") else 1


def _render(sample) -> str:
    try:
        return render(sample.template, sample.language, sample.params)
    except Exception as exc:  # noqa: BLE001 - a sample must not stop the report
        print(f"warning: template {sample.template}: {exc}", file=sys.stderr)
        return json.dumps(sample.params, ensure_ascii=False)
