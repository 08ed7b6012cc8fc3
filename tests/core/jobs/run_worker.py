"""Run in separate processes by the run-claim race test: run one job, print how it went."""

import sys
import time
from datetime import datetime

from core.config import load_config
from core.jobs.runs import run_job
from core.rules import ProgrammeRules
from core.store import Store
from tests.core.jobs.conftest import make_runner


def main(url: str, job: str, run_key: str, now: str, start_at: float) -> None:
    config = load_config(environ={})
    rules = ProgrammeRules(config.programme, config.tiers)
    store = Store(url)
    instant = datetime.fromisoformat(now)
    store.ping()  # connect before the start line, so the processes really race
    time.sleep(max(0.0, start_at - time.time()))
    result = run_job(make_runner(store, rules), job, config.jobs, lambda: instant,
                     run_key=run_key, batch=7)
    print(result.state, result.counts.get("sms_30d", 0))
    store.dispose()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]))
