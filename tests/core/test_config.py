"""Configuration: defaults load, overrides apply, mistakes stop the start naming the key."""

import sys

import pytest

from core.config import ConfigError, load_config


def test_default_config_loads_with_the_four_tier_ladder():
    config = load_config(environ={})
    assert [t.code for t in config.tiers] == ["standard", "silver", "gold", "diamond"]
    assert config.database.url.startswith("sqlite:///var/")
    assert (config.fastagi.port, config.smpp.port, config.ops.port) == (4573, 2775, 8080)


def test_environment_overrides_one_key():
    config = load_config(environ={"LOYALTY_SMPP_WINDOW": "25", "LOYALTY_AMI_ENABLED": "true",
                                  "LOYALTY_DATABASE_URL": "postgresql+psycopg://x@y/z"})
    assert config.smpp.window == 25
    assert config.ami.enabled is True
    assert config.database.url == "postgresql+psycopg://x@y/z"


@pytest.mark.parametrize("environ, key", [
    ({"LOYALTY_SMPP_WINDOW": "many"}, "smpp.window"),
    ({"LOYALTY_SMPP_COLOUR": "red"}, "smpp.colour"),
    ({"LOYALTY_NOSUCH_KEY": "1"}, "LOYALTY_NOSUCH_KEY"),
    ({"LOYALTY_PROGRAMME_TIMEZONE": "Mars/Olympus"}, "programme.timezone"),
    ({"LOYALTY_JOBS_QUIET_START": "25:00"}, "jobs.quiet_start"),
    ({"LOYALTY_OPS_PORT": "70000"}, "ops.port"),
    ({"LOYALTY_SMPP_ROUND_WAIT_MS": "-1"}, "smpp.round_wait_ms"),
    ({"LOYALTY_SMPP_ROUND_ITEMS": "0"}, "smpp.round_items"),
])
def test_bad_values_and_unknown_keys_name_the_key(environ, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(environ=environ)


def test_unknown_key_in_the_file_is_rejected(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[fastagi]\nport = 4573\nprot = 1\n[[tiers]]\ncode="a"\nname_zh="a"\n'
                    'name_en="a"\nthreshold=0\n')
    with pytest.raises(ConfigError, match=r"fastagi\.prot: unknown key"):
        load_config(path, environ={})


def test_config_file_from_environment_variable(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[programme]\ntimezone = "UTC"\n[[tiers]]\ncode="only"\nname_zh="唯一"\n'
                    'name_en="Only"\nthreshold=0\n')
    config = load_config(environ={"LOYALTY_CONFIG": str(path)})
    assert config.programme.timezone == "UTC"
    assert [t.code for t in config.tiers] == ["only"]


def test_tier_thresholds_must_increase(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[[tiers]]\ncode="a"\nname_zh="a"\nname_en="a"\nthreshold=0\n'
                    '[[tiers]]\ncode="b"\nname_zh="b"\nname_en="b"\nthreshold=0\n')
    with pytest.raises(ConfigError, match="tiers"):
        load_config(path, environ={})


# -- numbering plan and FastAGI access ----------------------------------------------------------


def test_the_numbering_plan_defaults_to_mainland_china_mobiles():
    config = load_config(environ={})
    assert (config.numbering.country_code, config.numbering.national_pattern) == (
        "86", "1[3-9][0-9]{9}")


@pytest.mark.parametrize("environ, key", [
    ({"LOYALTY_NUMBERING_NATIONAL_PATTERN": "1[3-9"}, "numbering.national_pattern"),
    ({"LOYALTY_NUMBERING_NATIONAL_PATTERN": ""}, "numbering.national_pattern"),
    ({"LOYALTY_NUMBERING_COUNTRY_CODE": "+86"}, "numbering.country_code"),
    ({"LOYALTY_NUMBERING_COUNTRY_CODE": ""}, "numbering.country_code"),
    ({"LOYALTY_FASTAGI_ALLOWED_PEERS": "10.1.2.0/33"}, "fastagi.allowed_peers"),
    ({"LOYALTY_FASTAGI_ALLOWED_PEERS": "127.0.0.1,asterisk.example"}, "fastagi.allowed_peers"),
])
def test_a_bad_numbering_plan_or_peer_list_names_the_key(environ, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(environ=environ)


def test_fastagi_accepts_only_loopback_peers_by_default():
    config = load_config(environ={})
    assert [str(n) for n in config.fastagi.allowed_networks()] == ["127.0.0.0/8", "::1/128"]


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::"])
def test_fastagi_on_a_public_address_needs_explicit_allowed_peers(host):
    with pytest.raises(ConfigError, match=r"fastagi\.allowed_peers: required when fastagi\.host"):
        load_config(environ={"LOYALTY_FASTAGI_HOST": host})
    config = load_config(environ={"LOYALTY_FASTAGI_HOST": host,
                                  "LOYALTY_FASTAGI_ALLOWED_PEERS": "10.1.2.7, 10.1.3.0/24"})
    assert [str(n) for n in config.fastagi.allowed_networks()] == ["10.1.2.7/32", "10.1.3.0/24"]


def test_allowed_peers_from_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[fastagi]\nhost = "0.0.0.0"\nallowed_peers = ["192.0.2.10", "2001:db8::/64"]\n'
                    '[numbering]\ncountry_code = "44"\nnational_pattern = "7[0-9]{9}"\n'
                    '[[tiers]]\ncode="a"\nname_zh="a"\nname_en="a"\nthreshold=0\n')
    config = load_config(path, environ={})
    assert config.fastagi.allowed_peers == ("192.0.2.10", "2001:db8::/64")
    assert config.numbering.country_code == "44"


def test_a_configuration_from_before_dialplan_originate_still_loads():
    # ami.fastagi_url was replaced by ami.context/exten/priority; an operator's existing
    # configuration that still sets it must not stop the server (ignored, warned at start).
    config = load_config(environ={"LOYALTY_AMI_FASTAGI_URL": "agi://127.0.0.1:4573/x"})
    assert config.ami.fastagi_url and config.ami.context == "loyalty-warning"


def test_each_of_several_processes_is_set_by_its_environment():
    """One file for every process; what differs per process comes from its environment."""
    config = load_config(environ={
        "LOYALTY_PROCESS_NAME": "loyalty-2", "LOYALTY_SMPP_SYSTEM_ID": "loyalty2",
        "LOYALTY_FASTAGI_PORT": "4574", "LOYALTY_OPS_PORT": "8081",
        "LOYALTY_FASTAGI_REUSE_PORT": "false"})
    assert config.process.name == "loyalty-2"
    assert (config.smpp.system_id, config.fastagi.port, config.ops.port) == (
        "loyalty2", 4574, 8081)
    assert load_config(environ={}).process.name == ""


def test_a_process_name_that_would_garble_log_lines_is_refused():
    with pytest.raises(ConfigError, match=r"process\.name"):
        load_config(environ={"LOYALTY_PROCESS_NAME": "two words]"})


def test_reuse_port_outside_linux_stops_the_start_with_what_to_do(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(ConfigError, match=r"fastagi\.reuse_port: needs Linux.*own fastagi\.port"):
        load_config(environ={"LOYALTY_FASTAGI_REUSE_PORT": "true"})
    assert load_config(environ={}).fastagi.reuse_port is False


def test_fulfilment_is_configured_from_the_environment_and_the_secret_never_shown():
    config = load_config(environ={
        "LOYALTY_FULFILMENT_URL": "https://prov.example/api/orders",
        "LOYALTY_FULFILMENT_AUTH_HEADER": "Authorization: Bearer abc123",
        "LOYALTY_FULFILMENT_TIMEOUT_S": "5", "LOYALTY_FULFILMENT_MAX_ATTEMPTS": "3",
        "LOYALTY_FULFILMENT_LEASE_S": "20"})
    f = config.fulfilment
    assert (f.url, f.timeout_s, f.max_attempts, f.lease_s) == \
        ("https://prov.example/api/orders", 5, 3, 20)
    assert f.header() == ("Authorization", "Bearer abc123")
    assert load_config(environ={}).fulfilment.url == ""  # no API: the CSV fallback
    with pytest.raises(ConfigError, match=r"fulfilment\.auth_header") as bad:
        load_config(environ={"LOYALTY_FULFILMENT_AUTH_HEADER": "Bearer abc123"})
    assert "abc123" not in str(bad.value)
    with pytest.raises(ConfigError, match=r"fulfilment\.lease_s"):
        load_config(environ={"LOYALTY_FULFILMENT_LEASE_S": "5"})  # not above timeout_s (10)
    with pytest.raises(ConfigError, match=r"fulfilment\.url"):
        load_config(environ={"LOYALTY_FULFILMENT_URL": "prov.example"})
