"""The ESME session's settings come from [smpp] as one typed, frozen value."""

import dataclasses

import pytest

from core.config import SMPPConfig
from sms.session_settings import SessionSettings


def test_settings_from_smpp_config_carry_the_session_values():
    smpp = SMPPConfig(system_id="acme", window=7, max_submit_rate=200, enquire_link_s=12,
                      reconnect_max_s=5)
    settings = SessionSettings.from_config(smpp, trace=True)
    assert (settings.system_id, settings.window, settings.enquire_link_s,
            settings.reconnect_max_s, settings.trace) == ("acme", 7, 12, 5, True)
    assert settings.submit_burst == 10  # 50 ms worth of submits at 200/s
    assert SessionSettings.from_config(SMPPConfig(max_submit_rate=5)).submit_burst == 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.window = 8  # type: ignore[misc]
