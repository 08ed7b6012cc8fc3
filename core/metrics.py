"""Prometheus metrics for one server process (a registry per instance, so tests can build
several servers in one interpreter)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        # 1, labelled with ``[process] name``: several processes' series told apart, and
        # joined to the others by ``instance`` (``on(instance) group_left(name)``).
        self.process_info = Gauge("loyalty_process_info", "This server process", ["name"],
                                  registry=r)
        self.calls_active = Gauge("loyalty_calls_active", "Calls in progress", registry=r)
        self.calls = Counter("loyalty_calls", "Finished calls", ["script", "outcome"],
                             registry=r)
        self.fastagi_refused_peers = Counter(
            "loyalty_fastagi_refused_peers", "FastAGI connections refused: peer not in "
            "fastagi.allowed_peers", registry=r)
        self.agi_think = Histogram(
            "loyalty_agi_think_seconds", "Server time between an AGI reply and the next command",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r)
        self.sms_mo = Counter("loyalty_sms_mo", "MO messages received", ["outcome"], registry=r)
        self.sms_mt = Counter("loyalty_sms_mt", "MT messages by outcome", ["outcome"],
                              registry=r)
        self.outbox_depth = Gauge("loyalty_outbox_depth", "MT messages not yet accepted",
                                  registry=r)
        self.smpp_throttled = Counter("loyalty_smpp_throttled",
                                      "Throttling answers from the SMSC", registry=r)
        self.smpp_bound = Gauge("loyalty_smpp_bound", "1 while bound to the SMSC", registry=r)
        self.receipts = Counter("loyalty_sms_receipts", "Delivery receipts by final state",
                                ["state"], registry=r)
        self.redemptions = Counter("loyalty_redemptions", "Redemptions", ["channel"],
                                   registry=r)
        self.fulfilment_attempts = Counter(
            "loyalty_fulfilment_attempts", "POSTs to the provisioning API by outcome "
            "(applied, refused, error)", ["outcome"], registry=r)
        self.fulfilment_queue = Gauge(
            "loyalty_fulfilment_queue", "Service and voucher orders waiting or being applied",
            registry=r)
        self.fulfilment_oldest_age = Gauge(
            "loyalty_fulfilment_oldest_age_seconds", "Age of the oldest order waiting",
            registry=r)
        self.fulfilment_latency = Histogram(
            "loyalty_fulfilment_seconds", "Time of one POST to the provisioning API",
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0), registry=r)
        self.job_runs = Counter("loyalty_job_runs", "Job runs", ["job"], registry=r)
        self.job_failures = Counter("loyalty_job_failures", "Failed job runs", ["job"],
                                    registry=r)
        self.job_set_aside = Counter("loyalty_job_set_aside", "Items a job run set aside",
                                     ["job"], registry=r)
        self.sms_set_aside = Gauge("loyalty_set_aside",
                                   "Messages and job items set aside, waiting for ops",
                                   ["queue"], registry=r)
