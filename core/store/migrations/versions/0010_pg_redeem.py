"""PostgreSQL: a redemption in one round trip (``loyalty_redeem``) and a balance index.

``loyalty_redeem`` does the atomic part of a redemption server-side: lock the member, find a
replay, check the per-member limit and the balance, take limited stock, then number the order,
insert it, debit the lots (soonest expiry first, then oldest lot: ``core.rules.plan_spend``),
write the ledger entry and its draws and, for gifts, the pending delivery. Every refusal comes
back as an outcome before anything is written. The order row comes in as JSON, by column name,
so a new ``orders`` column needs no change here. See docs/redemption.md.

``ix_lots_member_live`` holds only lots with points left, with ``remaining`` in the index, so
a balance reads a member's live lots from the index alone.

On SQLite only the index is made (without INCLUDE); redemptions run the Python path.

Revision ID: 0010_pg_redeem
Revises: 0009_line_status
"""
from alembic import op
import sqlalchemy as sa


revision = '0010_pg_redeem'
down_revision = '0009_line_status'
branch_labels = None
depends_on = None

# Outcomes: ok, replay (the member's order for this request exists: r_order_no), unknown_member,
# limit, attention (r_points: the live lots add up beyond p_ceiling), insufficient (r_points:
# the balance), out_of_stock. r_lot_ids / r_takes: the draws, in plan order.
REDEEM = r"""
CREATE OR REPLACE FUNCTION loyalty_redeem(
    p_order jsonb, p_order_prefix text, p_per_member_limit integer, p_limited_stock boolean,
    p_ledger_kind text, p_reason text, p_delivery_status text, p_ceiling bigint)
RETURNS TABLE (r_outcome text, r_order_no text, r_points bigint, r_lot_ids bigint[],
               r_takes integer[])
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    v_msisdn text := p_order->>'msisdn';
    v_channel text := p_order->>'channel';
    v_request text := p_order->>'request_id';
    v_reward text := p_order->>'reward_code';
    v_price integer := (p_order->>'points')::integer;
    v_now timestamp := (p_order->>'created_at')::timestamp;
    v_no text;
    v_total bigint;
    v_ids bigint[];
    v_takes integer[];
    v_seq bigint;
    v_ledger bigint;
    v_moved integer;
BEGIN
    -- The member's row first: one member's redemptions, from any process, run in turn.
    PERFORM 1 FROM members m WHERE m.msisdn = v_msisdn FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown_member', NULL::text, NULL::bigint, NULL::bigint[],
                            NULL::integer[];
        RETURN;
    END IF;
    SELECT o.order_no INTO v_no FROM orders o
     WHERE o.msisdn = v_msisdn AND o.channel = v_channel AND o.request_id = v_request;
    IF FOUND THEN
        RETURN QUERY SELECT 'replay', v_no, NULL::bigint, NULL::bigint[], NULL::integer[];
        RETURN;
    END IF;
    IF p_per_member_limit IS NOT NULL AND (
            SELECT count(*) FROM orders o WHERE o.msisdn = v_msisdn
               AND o.reward_code = v_reward
               AND o.status NOT IN ('cancelled', 'failed')) >= p_per_member_limit
    THEN
        RETURN QUERY SELECT 'limit', NULL::text, NULL::bigint, NULL::bigint[], NULL::integer[];
        RETURN;
    END IF;
    -- plan_spend: live lots by (expires_at, id); each lot gives what is still owed after
    -- the lots before it, up to what it holds.
    SELECT coalesce(max(s.total), 0),
           coalesce(array_agg(s.id ORDER BY s.expires_at, s.id)
                    FILTER (WHERE s.before < v_price), '{}'),
           coalesce(array_agg(least(s.remaining, v_price - s.before)::integer
                              ORDER BY s.expires_at, s.id) FILTER (WHERE s.before < v_price),
                    '{}')
      INTO v_total, v_ids, v_takes
      FROM (SELECT l.id, l.expires_at, l.remaining,
                   sum(l.remaining) OVER () AS total,
                   sum(l.remaining) OVER (ORDER BY l.expires_at, l.id) - l.remaining AS before
              FROM points_lots l
             WHERE l.msisdn = v_msisdn AND l.remaining > 0 AND l.expires_at > v_now) s;
    IF abs(v_total) > p_ceiling THEN
        RETURN QUERY SELECT 'attention', NULL::text, v_total, NULL::bigint[], NULL::integer[];
        RETURN;
    END IF;
    IF v_price > v_total THEN
        RETURN QUERY SELECT 'insufficient', NULL::text, v_total, NULL::bigint[],
                            NULL::integer[];
        RETURN;
    END IF;
    -- Limited stock before any write, so every refusal leaves nothing to undo; the reward's
    -- row stays locked only for the rest of this call and the commit.
    IF p_limited_stock THEN
        UPDATE rewards r SET stock = CASE WHEN r.stock IS NULL THEN NULL ELSE r.stock - 1 END
         WHERE r.code = v_reward AND (r.stock IS NULL OR r.stock > 0);
        IF NOT FOUND THEN
            RETURN QUERY SELECT 'out_of_stock', NULL::text, NULL::bigint, NULL::bigint[],
                                NULL::integer[];
            RETURN;
        END IF;
    END IF;
    INSERT INTO order_seq (created_at) VALUES (v_now) RETURNING id INTO v_seq;
    -- As Python's f"{prefix}{n:06d}": at least six digits, never cut.
    v_no := p_order_prefix || CASE WHEN v_seq < 1000000 THEN lpad(v_seq::text, 6, '0')
                                   ELSE v_seq::text END;
    INSERT INTO orders
    SELECT * FROM jsonb_populate_record(NULL::orders,
                                        p_order || jsonb_build_object('order_no', v_no));
    UPDATE points_lots l SET remaining = l.remaining - d.take
      FROM unnest(v_ids, v_takes) AS d(id, take)
     WHERE l.id = d.id AND l.remaining >= d.take;
    GET DIAGNOSTICS v_moved = ROW_COUNT;
    IF v_moved <> cardinality(v_ids) THEN
        RAISE EXCEPTION USING MESSAGE = 'order ' || v_no || ': a lot changed under it';
    END IF;
    INSERT INTO ledger (msisdn, kind, amount, reason, channel, order_no, reference, created_at)
    VALUES (v_msisdn, p_ledger_kind, -v_price, p_reason, v_channel, v_no, NULL, v_now)
    RETURNING id INTO v_ledger;
    INSERT INTO lot_draws (ledger_id, lot_id, amount)
    SELECT v_ledger, d.id, d.take FROM unnest(v_ids, v_takes) WITH ORDINALITY AS d(id, take, n)
     ORDER BY d.n;
    IF p_delivery_status IS NOT NULL THEN
        INSERT INTO deliveries (order_no, status, courier, tracking_no, updated_at)
        VALUES (v_no, p_delivery_status, NULL, NULL, v_now);
        INSERT INTO delivery_events (order_no, status, courier, tracking_no, at)
        VALUES (v_no, p_delivery_status, NULL, NULL, v_now);
    END IF;
    RETURN QUERY SELECT 'ok', v_no, v_total, v_ids, v_takes;
END
$fn$
"""


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    op.create_index('ix_lots_member_live', 'points_lots', ['msisdn', 'expires_at'],
                    postgresql_include=['remaining'],
                    postgresql_where=sa.text('remaining > 0'),
                    sqlite_where=sa.text('remaining > 0'))
    if pg:
        op.execute(REDEEM)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS loyalty_redeem(jsonb, text, integer, boolean, text, "
                   "text, text, bigint)")
    op.drop_index('ix_lots_member_live', table_name='points_lots')
