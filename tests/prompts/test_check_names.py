"""``loyalty prompts check`` names every active reward and every courier without a recorded
name (``reward_<code>``, ``courier_<code>``), reading the configured database; ``prompts load``
takes such recordings although the manifest does not list them."""

from __future__ import annotations

import argparse
import shutil
import types
from datetime import date, timedelta

from core.catalogue_names import courier_code, spoken_codes
from core.demo import load_demo
from core.domain import Reward
from core.rules import ProgrammeRules
from core.service_desk import update_delivery
from core.store import Store
from prompts import DEFAULT_AUDIO_ROOT
from prompts.catalogue_prompts import catalogue_prompt_ids, courier_prompt_id, reward_prompt_id
from prompts.cli import register
from prompts.manifest import load_manifest
from prompts.store import load

from .helpers import tone, write_wav


def check(config, root, capsys) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="loyalty")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["prompts", "check", "--root", str(root)])
    code = args.func(types.SimpleNamespace(args=args, config=config))
    return code, capsys.readouterr().out


def demo_database(database_url, config, now, *extra_rewards: Reward) -> None:
    store = Store(database_url)
    rules = ProgrammeRules.from_config(config)
    with store.unit_of_work() as uow:
        load_demo(uow, rules, now)
        for reward in extra_rewards:
            uow.orders.upsert_reward(reward)
    store.dispose()


def test_prompt_ids_of_codes():
    assert reward_prompt_id("A01") == "reward_a01"
    assert courier_prompt_id("SF") == "courier_sf"
    assert courier_prompt_id("Best-Express") == "courier_best_express"
    assert courier_prompt_id("顺丰") is None
    assert catalogue_prompt_ids(["G01", "A01", "A01"], ["SF", "顺丰"]) == [
        "courier_sf", "reward_a01", "reward_g01"]


def test_courier_code_follows_the_configured_names(config):
    assert courier_code("SF Express", config.couriers) == "SF"
    assert courier_code(" sf ", config.couriers) == "SF"
    assert courier_code("顺丰速运", config.couriers) == "SF"
    assert courier_code("YTO", config.couriers) == "YTO"
    assert courier_code("", config.couriers) is None


def test_check_is_ok_on_the_demo(database_url, config, now, capsys):
    demo_database(database_url, config, now)
    code, out = check(config.replace("database", url=database_url), DEFAULT_AUDIO_ROOT, capsys)
    assert code == 0, out
    assert "names:      6 active reward(s), 4 courier(s)" in out
    assert "OK: every prompt has audio in every language" in out


def test_check_names_an_active_reward_without_its_recording(database_url, config, now,
                                                            tmp_path, capsys):
    expired = Reward("X09", "旧礼品", "Old gift", "gift", 100, None, None,
                     date(2020, 1, 31), None, 9)
    demo_database(database_url, config, now, expired)
    root = tmp_path / "prompts"
    shutil.copytree(DEFAULT_AUDIO_ROOT, root)
    (root / "zh" / "reward_a01.wav").unlink()
    (root / "en" / "courier_jd.wav").unlink()
    code, out = check(config.replace("database", url=database_url), root, capsys)
    assert code == 1
    assert "  - reward_a01 missing in zh (active reward A01)\n" in out
    assert "  - courier_jd missing in en (courier JD)\n" in out
    assert "reward_a01 missing in en" not in out
    assert "x09" not in out  # not available any more: nobody hears it
    assert "2 problem(s)" in out


def test_check_names_a_courier_seen_only_in_deliveries(database_url, config, now, capsys):
    demo_database(database_url, config, now)
    store = Store(database_url)
    rules = ProgrammeRules.from_config(config)
    with store.unit_of_work() as uow:
        order = uow.orders.member_orders("13800138000", 10, "gift")[0]
        update_delivery(uow, rules, order.order_no, "in_transit", "YTO", "YT1",
                        now + timedelta(hours=1))
    with store.unit_of_work(write=False) as uow:
        codes = spoken_codes(uow, rules, now)
    store.dispose()
    assert codes.courier_codes == ("EMS", "JD", "SF", "YTO", "ZTO")
    code, out = check(config.replace("database", url=database_url), DEFAULT_AUDIO_ROOT, capsys)
    assert code == 1
    assert "  - courier_yto missing in zh (courier YTO)\n" in out
    assert "  - courier_yto missing in en (courier YTO)\n" in out


def test_check_says_in_one_line_when_the_database_cannot_be_read(config, capsys):
    unreachable = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"
    code, out = check(config.replace("database", url=unreachable), DEFAULT_AUDIO_ROOT, capsys)
    assert code == 1
    lines = [line for line in out.splitlines() if line.startswith("  - ")]
    assert len(lines) == 1
    assert lines[0].startswith("  - cannot read the active rewards and couriers: cannot open "
                               "the database")
    assert "Traceback" not in out


def test_load_takes_a_reward_name_not_in_the_manifest(tmp_path):
    src = tmp_path / "rec"
    write_wav(src / "reward_z77.wav", tone(1.0, 16000), 16000)
    root = tmp_path / "var" / "prompts"
    report = load(src, "zh", root, load_manifest())
    assert report.ok, report.errors
    assert report.loaded == ["reward_z77"]
    assert (root / "zh" / "reward_z77.wav").is_file()
    assert (root / "zh" / "reward_a01.wav").is_file()  # the committed names are kept


def test_check_does_not_create_a_missing_sqlite_file(config, tmp_path, capsys):
    path = tmp_path / "none.sqlite3"
    code, out = check(config.replace("database", url=f"sqlite:///{path}"), DEFAULT_AUDIO_ROOT,
                      capsys)
    assert code == 1
    assert f"  - cannot read the active rewards and couriers: no database file {path}" in out
    assert not path.exists()
