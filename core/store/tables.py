"""Table definitions (SQLAlchemy Core). Migrations under ``migrations/`` create these."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import DateTime, TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in, aware UTC datetimes out, stored naive UTC on every backend."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass aware UTC instants")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, str):  # pragma: no cover - SQLite without type detection
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC)


Id = BigInteger().with_variant(Integer, "sqlite")

members = Table(
    "members", metadata,
    Column("msisdn", String(20), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("language", String(5), nullable=False),
    Column("tier_code", String(20), nullable=False),
    Column("tier_valid_until", Date),
    Column("warning_opt_out", Boolean, nullable=False, default=False),
    Column("warning_channel", String(10), nullable=False, default="sms"),
    Column("pin_hash", String(200)),
    Column("pin_failures", Integer, nullable=False, default=0),
    Column("pin_locked_until", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("granted_tier_code", String(20)),
    Column("granted_tier_until", Date),
    # The operator's line (migration 0009): active, suspended, arrears or closed. A closed
    # line is no member on any channel; suspended and arrears lines may ask but not redeem.
    Column("line_status", String(10), nullable=False, server_default="active"),
    Column("subscriber_id", String(40)),  # the operator's id of the subscription on the number
    Column("delivery_address", Text),  # where gifts go
)

# Accounts retired when their number was re-issued to another subscriber: the old member row
# and its children live on under ``archive_key`` (a members row, line closed) for ops.
archived_members = Table(
    "archived_members", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("archive_key", String(20), unique=True),  # "R" + id, set right after the insert
    Column("msisdn", String(20), nullable=False, index=True),
    Column("subscriber_id", String(40)),
    Column("retired_at", UTCDateTime, nullable=False),
)

lots = Table(
    "points_lots", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("msisdn", String(20), ForeignKey("members.msisdn"), nullable=False),
    Column("amount", Integer, nullable=False),
    Column("remaining", Integer, nullable=False),
    Column("source", String(20), nullable=False),
    Column("earned_on", Date, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("reference", String(100), unique=True),
    Column("expired", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime, nullable=False),
)
Index("ix_lots_member_expiry", lots.c.msisdn, lots.c.expires_at)
Index("ix_lots_member_earned", lots.c.msisdn, lots.c.earned_on)
Index("ix_lots_expiry_open", lots.c.expires_at, lots.c.expired)
# A balance reads only live lots: from the index alone on PostgreSQL (remaining included).
Index("ix_lots_member_live", lots.c.msisdn, lots.c.expires_at,
      postgresql_include=["remaining"], postgresql_where=lots.c.remaining > 0,
      sqlite_where=lots.c.remaining > 0)

ledger = Table(
    "ledger", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("msisdn", String(20), ForeignKey("members.msisdn"), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("amount", Integer, nullable=False),
    Column("reason", String(200), nullable=False),
    Column("channel", String(10), nullable=False),
    Column("order_no", String(30)),
    Column("reference", String(100), unique=True),  # an import's row reference: idempotency
    Column("created_at", UTCDateTime, nullable=False),
)
Index("ix_ledger_member", ledger.c.msisdn, ledger.c.id)
Index("ix_ledger_order", ledger.c.order_no)

# Which lots each ledger entry moved: positive draws take points out, negative ones put back.
lot_draws = Table(
    "lot_draws", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("ledger_id", Id, ForeignKey("ledger.id"), nullable=False, index=True),
    Column("lot_id", Id, ForeignKey("points_lots.id"), nullable=False, index=True),
    Column("amount", Integer, nullable=False),
)

rewards = Table(
    "rewards", metadata,
    Column("code", String(20), primary_key=True),
    Column("name_zh", String(100), nullable=False),
    Column("name_en", String(100), nullable=False),
    Column("kind", String(10), nullable=False),
    Column("points", Integer, nullable=False),
    Column("stock", Integer),
    Column("available_from", Date),
    Column("available_until", Date),
    Column("per_member_limit", Integer),
    Column("sort_order", Integer, nullable=False, default=0),
)

reward_prices = Table(
    "reward_prices", metadata,
    Column("reward_code", String(20), ForeignKey("rewards.code"), primary_key=True),
    Column("tier_code", String(20), primary_key=True),
    Column("points", Integer, nullable=False),
)

orders = Table(
    "orders", metadata,
    Column("order_no", String(30), primary_key=True),
    Column("msisdn", String(20), ForeignKey("members.msisdn"), nullable=False),
    Column("reward_code", String(20), ForeignKey("rewards.code"), nullable=False),
    Column("reward_kind", String(10), nullable=False),
    Column("points", Integer, nullable=False),
    Column("status", String(15), nullable=False),
    Column("channel", String(10), nullable=False),
    Column("request_id", String(120), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("cancelled_at", UTCDateTime),
    Column("delivery_address", Text),  # a gift's address as registered at redemption
    # Fulfilment through the provisioning API (service and voucher rewards only; NULL due_at:
    # not in the queue, e.g. gifts and orders placed before fulfilment existed).
    Column("fulfil_due_at", UTCDateTime),  # when the next attempt may start
    Column("fulfil_claimed_until", UTCDateTime),  # the lease of the process POSTing it
    Column("fulfil_attempts", Integer, nullable=False, server_default="0"),
    Column("fulfil_reference", String(100)),  # the API's reference once applied
    Column("fulfil_error", String(200)),  # the last error, or why it failed for good
    Column("fulfilled_at", UTCDateTime),  # fulfilled or failed
    # A request id is the member's own: another member's request can never match it.
    UniqueConstraint("msisdn", "channel", "request_id", name="uq_orders_member_request"),
)
Index("ix_orders_member", orders.c.msisdn, orders.c.created_at)
Index("ix_orders_fulfil", orders.c.status, orders.c.fulfil_due_at)

order_seq = Table(
    "order_seq", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("created_at", UTCDateTime, nullable=False),
)

deliveries = Table(
    "deliveries", metadata,
    Column("order_no", String(30), ForeignKey("orders.order_no"), primary_key=True),
    Column("status", String(15), nullable=False),
    Column("courier", String(50)),
    Column("tracking_no", String(50)),
    Column("updated_at", UTCDateTime, nullable=False),
)

delivery_events = Table(
    "delivery_events", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("order_no", String(30), ForeignKey("orders.order_no"), nullable=False, index=True),
    Column("status", String(15), nullable=False),
    Column("courier", String(50)),
    Column("tracking_no", String(50)),
    Column("at", UTCDateTime, nullable=False),
)

tickets = Table(
    "tickets", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("ref", String(30), unique=True),
    Column("msisdn", String(20), ForeignKey("members.msisdn"), nullable=False),
    Column("kind", String(15), nullable=False),
    Column("text", Text, nullable=False),
    Column("channel", String(10), nullable=False),
    Column("status", String(15), nullable=False, default="open"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("recording_path", String(255)),  # the IVR voice note, as the recorder wrote it
    Column("order_no", String(30)),  # the order a complaint is about
    Column("outcome", Text),
    Column("credit_points", Integer),  # granted on a make-up claim (its ledger credit's amount)
    Column("resolved_at", UTCDateTime),
)
Index("ix_tickets_member", tickets.c.msisdn, tickets.c.id)

confirmations = Table(
    "confirmations", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("msisdn", String(20), ForeignKey("members.msisdn"), nullable=False, index=True),
    Column("code_hash", String(64), nullable=False),
    Column("reward_code", String(20), nullable=False),
    Column("price", Integer, nullable=False),
    Column("channel", String(10), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime),
)

# Every MT message, durable until the SMSC accepted it (and its receipt came back).
outbox = Table(
    "outbox", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("msisdn", String(20), nullable=False),
    Column("language", String(5), nullable=False),
    Column("template", String(50)),
    Column("params", Text, nullable=False, default="{}"),
    Column("body", Text),
    Column("kind", String(30), nullable=False),
    Column("dedupe_key", String(150), unique=True),
    # queued, sending, submitted, delivered, failed, set_aside
    Column("state", String(15), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("not_before", UTCDateTime, nullable=False),
    Column("claimed_until", UTCDateTime),
    Column("message_ids", Text),
    Column("error", String(200)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("submitted_at", UTCDateTime),
    Column("final_at", UTCDateTime),
)
Index("ix_outbox_due", outbox.c.state, outbox.c.not_before)

# Every incoming SMS, stored before it is acknowledged to the SMSC.
mo_messages = Table(
    "mo_messages", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("dedupe_key", String(200), unique=True, nullable=False),
    Column("msisdn", String(20), nullable=False),
    Column("text", Text, nullable=False),
    Column("state", String(15), nullable=False),  # received, handled, failed, set_aside
    Column("received_at", UTCDateTime, nullable=False),
    Column("handled_at", UTCDateTime),
    # Handling attempts that failed; the next one not before next_attempt_at (backoff).
    Column("attempts", Integer, nullable=False, default=0, server_default="0"),
    Column("next_attempt_at", UTCDateTime),
    Column("last_error", String(200)),
    Column("repeat_of", Id),  # the message this one repeats inside the redelivery window
)
Index("ix_mo_state", mo_messages.c.state, mo_messages.c.id)

# --- the SMS channel's own tables (migration 0002_sms) ---

# Segments of concatenated MO messages, stored before they are acknowledged; joined into one
# mo_messages row when the set is complete (also after a restart lost the in-memory parts).
mo_parts = Table(
    "mo_parts", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("dedupe_key", String(200), unique=True, nullable=False),
    Column("msisdn", String(20), nullable=False),
    Column("ref", Integer, nullable=False),
    Column("total", Integer, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("mo_id", Id),  # the joined message, once the set was complete
    Column("received_at", UTCDateTime, nullable=False),
)
Index("ix_mo_parts_set", mo_parts.c.msisdn, mo_parts.c.ref, mo_parts.c.total)
Index("ix_mo_parts_received", mo_parts.c.received_at)

# Per-number MO rate window (fixed one-minute windows starting at the first message).
sms_rate = Table(
    "sms_rate", metadata,
    Column("msisdn", String(20), primary_key=True),
    Column("window_start", UTCDateTime, nullable=False),
    Column("count", Integer, nullable=False),
    Column("warned", Boolean, nullable=False),
)

# The SMSC's message id of every accepted MT part, under each normalised key of it.
outbox_ids = Table(
    "outbox_ids", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("outbox_id", Id, ForeignKey("outbox.id"), nullable=False),
    Column("part", Integer, nullable=False),
    Column("message_id", String(80), nullable=False),
    Column("id_key", String(90), nullable=False),
    Column("stat", String(10)),
    Column("created_at", UTCDateTime, nullable=False),
)
Index("ix_outbox_ids_key", outbox_ids.c.id_key)
Index("ix_outbox_ids_outbox", outbox_ids.c.outbox_id, outbox_ids.c.part)

# Receipts whose message id is not (yet) recorded: a receipt may overtake its submit_sm_resp.
sms_receipts = Table(
    "sms_receipts", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("id_key", String(90), nullable=False),
    Column("message_id", String(80), nullable=False),
    Column("stat", String(10)),
    Column("err", String(10)),
    Column("received_at", UTCDateTime, nullable=False),
)
Index("ix_sms_receipts_key", sms_receipts.c.id_key)
Index("ix_sms_receipts_received", sms_receipts.c.received_at)

calls = Table(
    "calls", metadata,
    # Asterisk uniqueids repeat (two boxes without systemname): each call gets its own id.
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("uniqueid", String(64), nullable=False, index=True),
    Column("msisdn_masked", String(20), nullable=False),
    Column("script", String(30), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime),
    Column("menu_path", String(500), nullable=False, default=""),
    Column("outcome", String(30)),
)
Index("ix_calls_started", calls.c.started_at)

# One warning per member, expiring batch and stage, recorded when queued.
expiry_warnings = Table(
    "expiry_warnings", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("msisdn", String(20), nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("stage", String(10), nullable=False),
    Column("points", Integer, nullable=False),
    Column("channel", String(10), nullable=False),
    Column("state", String(15), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("msisdn", "expires_at", "stage", name="uq_expiry_warnings_batch"),
)
Index("ix_expiry_warnings_voice_due", expiry_warnings.c.state, expiry_warnings.c.updated_at,
      postgresql_where=expiry_warnings.c.channel == "voice",
      sqlite_where=expiry_warnings.c.channel == "voice")

auto_redemptions = Table(
    "auto_redemptions", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("msisdn", String(20), ForeignKey("members.msisdn"), nullable=False),
    Column("reward_code", String(20), ForeignKey("rewards.code"), nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("msisdn", "reward_code", name="uq_auto_redemptions_member"),
)

job_runs = Table(
    "job_runs", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("job", String(40), nullable=False),
    Column("run_key", String(40), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("state", String(15), nullable=False),
    Column("summary", Text),
    UniqueConstraint("job", "run_key", name="uq_job_runs_key"),
)

# Members a job run could not process (an unexpected error): counted, set aside, run goes on.
job_set_aside = Table(
    "job_set_aside", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("job", String(40), nullable=False),
    Column("run_key", String(40), nullable=False),
    Column("item", String(60), nullable=False),
    Column("error", String(200)),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("job", "run_key", "item", name="uq_job_set_aside_item"),
)
