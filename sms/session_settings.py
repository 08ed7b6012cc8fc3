"""The ESME session's settings: ``[smpp]`` plus the session's own tuning."""

from __future__ import annotations

from dataclasses import dataclass, fields

from core.config import SMPPConfig, SMPPLinkConfig


@dataclass(frozen=True)
class SessionSettings(SMPPLinkConfig):
    """What the ESME session, its protocol and its submit pump read: the ``[smpp]`` link keys
    (:class:`SMPPLinkConfig`) plus the session's own tuning.

    ``submit_burst``: the token bucket's depth in submits (pacing without a timer per
    submit). ``trace``: log a debug line per MO, receipt and submit_sm (building a log event
    costs about as much as decoding the PDU, so it is skipped unless the level is debug).
    ``max_timeouts``: response timeouts in a row that mean the link is dead."""

    submit_burst: float = 1.0
    throttle_pause_s: float = 1.0
    unbind_timeout_s: float = 2.0
    max_timeouts: int = 3
    mo_reassembly_timeout_s: float = 300.0
    trace: bool = False

    @classmethod
    def from_config(cls, smpp: SMPPConfig, *, trace: bool = False) -> SessionSettings:
        """``[smpp]``'s session settings; the bucket holds 50 ms worth of submits."""
        link = {f.name: getattr(smpp, f.name) for f in fields(SMPPLinkConfig)}
        return cls(**link, submit_burst=max(1.0, float(smpp.max_submit_rate) / 20), trace=trace)
