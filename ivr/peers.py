"""Who may speak FastAGI: whoever reaches the port could claim any caller id (or
``agi_arg_1``) and hear that member's balance and history, so only the addresses in
``fastagi.allowed_peers`` (default: loopback) are served. Any other peer is closed as soon as
its connection is accepted, before a byte is read or a prompt played."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from twisted.internet.interfaces import IAddress
from twisted.logger import Logger

from core.clock import SecondsClock
from core.config import IPNetwork
from core.log_limit import RepeatLimiter
from core.metrics import Metrics

log = Logger()


class PeerGate:
    """``admits(addr)`` for ``FastAGIFactory.buildProtocol``: True for an allowed peer; else
    counts it (``loyalty_fastagi_refused_peers``) and logs it, once a minute per address."""

    def __init__(self, networks: Sequence[IPNetwork], *, clock: SecondsClock,
                 metrics: Metrics | None = None,
                 limiter: RepeatLimiter | None = None) -> None:
        self.networks = tuple(networks)
        self.clock = clock
        self.metrics = metrics
        self.limiter = limiter if limiter is not None else RepeatLimiter()
        self.refused = 0

    def admits(self, addr: IAddress) -> bool:
        host = str(getattr(addr, "host", ""))
        if self._allowed(host):
            return True
        self.refused += 1
        if self.metrics is not None:
            self.metrics.fastagi_refused_peers.inc()
        held_back = self.limiter.allow(host, self.clock.seconds())
        if held_back is not None:
            log.warn("FastAGI connection from {peer} refused: not in fastagi.allowed_peers "
                     "({held_back} more from it since the last line)", peer=host,
                     held_back=held_back)
        return False

    def _allowed(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False  # not an IP peer (a UNIX socket): never ours
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # a dual-stack socket shows IPv4 peers as ::ffff:a.b.c.d
        return any(ip in network for network in self.networks)
