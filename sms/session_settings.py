"""The ESME session's settings: ``[smpp]`` plus the session's own tuning."""

from __future__ import annotations

from dataclasses import dataclass

from core.config import SMPPConfig


@dataclass(frozen=True)
class SessionSettings:
    """What the ESME session, its protocol and its submit pump read.

    ``submit_burst``: the token bucket's depth in submits (pacing without a timer per
    submit). ``trace``: log a debug line per MO, receipt and submit_sm (building a log event
    costs about as much as decoding the PDU, so it is skipped unless the level is debug).
    ``max_timeouts``: response timeouts in a row that mean the link is dead."""

    system_id: str = "loyalty"
    password: str = "secret"
    system_type: str = ""
    address_range: str = ""
    source_addr: str = "10086"
    source_addr_ton: int = 3
    source_addr_npi: int = 0
    window: int = 10
    max_submit_rate: float = 100
    response_timeout_s: float = 10
    enquire_link_s: float = 30
    dead_link_s: float = 90
    reconnect_min_s: float = 1
    reconnect_max_s: float = 60
    submit_burst: float = 1.0
    throttle_pause_s: float = 1.0
    unbind_timeout_s: float = 2.0
    max_timeouts: int = 3
    mo_reassembly_timeout_s: float = 300.0
    trace: bool = False

    @classmethod
    def from_config(cls, smpp: SMPPConfig, *, trace: bool = False) -> SessionSettings:
        """``[smpp]``'s session settings; the bucket holds 50 ms worth of submits."""
        return cls(
            system_id=smpp.system_id, password=smpp.password, system_type=smpp.system_type,
            address_range=smpp.address_range, source_addr=smpp.source_addr,
            source_addr_ton=smpp.source_addr_ton, source_addr_npi=smpp.source_addr_npi,
            window=smpp.window, max_submit_rate=smpp.max_submit_rate,
            response_timeout_s=smpp.response_timeout_s, enquire_link_s=smpp.enquire_link_s,
            dead_link_s=smpp.dead_link_s, reconnect_min_s=smpp.reconnect_min_s,
            reconnect_max_s=smpp.reconnect_max_s,
            submit_burst=max(1.0, float(smpp.max_submit_rate) / 20), trace=trace)
