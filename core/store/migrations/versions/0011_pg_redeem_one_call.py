"""PostgreSQL: a whole redemption in one call of ``loyalty_redeem``: the checks too.

0010's ``loyalty_redeem`` did the atomic part only; the use case first read the member, the
reward with its tier prices and the member's qualifying points (three round trips). Now
``loyalty_redeem`` takes the request (member, reward code, the day and the rules' tiers)
and does what ``core.redemption.redeem`` does, in its order: lock the member (unknown or
closed: ``unknown_member``), refuse a barred line, answer a replay, then the reward's checks
(unknown, a gift without an address, not available today, out of stock, the per-member
limit), the tier in force (``core.accounts.tier_of``: earned by qualifying points, kept
while valid, raised to a grant), its price, and then 0010's atomic part, renamed
``loyalty_redeem_atomic`` and unchanged (``OrdersRepository.redeem_atomically`` still calls
it). Everything runs under the member's row lock. See docs/redemption.md.

Outcomes: ok (r_detail: the order number), replay (r_detail: the member's order for the
request), unknown_member, barred (r_detail: the line status), unknown_reward,
address_needed, unavailable, out_of_stock, limit (the checks, as the use case raises them),
attention (r_points: qualifying points or live lots beyond p_ceiling), insufficient
(r_points: the balance), sold_out and limit_now (the atomic part's own refusals).

Revision ID: 0011_pg_redeem_one_call
Revises: 0010_pg_redeem
"""
from alembic import op


revision = '0011_pg_redeem_one_call'
down_revision = '0010_pg_redeem'
branch_labels = None
depends_on = None

ATOMIC_ARGS = "jsonb, text, integer, boolean, text, text, text, bigint"
ONE_CALL_ARGS = "jsonb, text, date, text, text[], text[], bigint[], date, text[], text[], " \
                "text, text, text, bigint"

REDEEM = r"""
CREATE FUNCTION loyalty_redeem(
    p_order jsonb, p_code text, p_today date, p_order_prefix text, p_barred text[],
    p_tier_codes text[], p_thresholds bigint[], p_window_start date, p_sources text[],
    p_fulfilled_kinds text[], p_ledger_kind text, p_reason_prefix text, p_gift_delivery text,
    p_ceiling bigint)
RETURNS TABLE (r_outcome text, r_detail text, r_points numeric, r_reward_code text,
               r_kind text, r_price integer, r_address text)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    v_msisdn text := p_order->>'msisdn';
    m members%ROWTYPE;
    r rewards%ROWTYPE;
    a record;
    v_no text;
    v_qualifying numeric;
    v_rank integer;
    v_other integer;
    v_price integer;
    v_gift boolean;
BEGIN
    -- The member's row first: one member's redemptions, from any process, run in turn, and
    -- every check below sees what the previous one wrote.
    SELECT * INTO m FROM members mm
     WHERE mm.msisdn = v_msisdn AND mm.line_status <> 'closed' FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown_member', NULL::text, NULL::numeric, NULL::text,
                            NULL::text, NULL::integer, NULL::text;
        RETURN;
    END IF;
    IF m.line_status = ANY(p_barred) THEN
        RETURN QUERY SELECT 'barred', m.line_status::text, NULL::numeric, NULL::text,
                            NULL::text, NULL::integer, NULL::text;
        RETURN;
    END IF;
    -- A request made already gets its order, whatever the checks would say now.
    SELECT o.order_no INTO v_no FROM orders o
     WHERE o.msisdn = v_msisdn AND o.channel = p_order->>'channel'
       AND o.request_id = p_order->>'request_id';
    IF FOUND THEN
        RETURN QUERY SELECT 'replay', v_no, NULL::numeric, NULL::text, NULL::text,
                            NULL::integer, NULL::text;
        RETURN;
    END IF;
    SELECT * INTO r FROM rewards rr WHERE rr.code = p_code;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown_reward', NULL::text, NULL::numeric, NULL::text,
                            NULL::text, NULL::integer, NULL::text;
        RETURN;
    END IF;
    v_gift := r.kind = 'gift';
    IF v_gift AND coalesce(m.delivery_address, '') ~ '^[[:space:]]*$' THEN
        RETURN QUERY SELECT 'address_needed', r.code::text, NULL::numeric, NULL::text,
                            NULL::text, NULL::integer, NULL::text;
        RETURN;
    END IF;
    IF NOT ((r.available_from IS NULL OR r.available_from <= p_today)
            AND (r.available_until IS NULL OR p_today <= r.available_until)) THEN
        RETURN QUERY SELECT 'unavailable', NULL::text, NULL::numeric, NULL::text, NULL::text,
                            NULL::integer, NULL::text;
        RETURN;
    END IF;
    IF r.stock IS NOT NULL AND r.stock <= 0 THEN
        RETURN QUERY SELECT 'out_of_stock', NULL::text, NULL::numeric, NULL::text,
                            NULL::text, NULL::integer, NULL::text;
        RETURN;
    END IF;
    IF r.per_member_limit IS NOT NULL AND (
            SELECT count(*) FROM orders o WHERE o.msisdn = v_msisdn
               AND o.reward_code = r.code
               AND o.status NOT IN ('cancelled', 'failed')) >= r.per_member_limit
    THEN
        RETURN QUERY SELECT 'limit', NULL::text, NULL::numeric, NULL::text, NULL::text,
                            NULL::integer, NULL::text;
        RETURN;
    END IF;
    -- The tier in force (core.accounts.tier_of): the highest tier whose threshold the
    -- qualifying points reach (else the first), the reviewed tier while valid if not lower,
    -- a granted tier while the grant lasts if not lower. An unknown stored code ranks first.
    SELECT sum(l.amount) INTO v_qualifying FROM points_lots l
     WHERE l.msisdn = v_msisdn AND l.earned_on >= p_window_start AND l.source = ANY(p_sources);
    IF abs(coalesce(v_qualifying, 0)) > p_ceiling THEN
        RETURN QUERY SELECT 'attention', NULL::text, v_qualifying, NULL::text, NULL::text,
                            NULL::integer, NULL::text;
        RETURN;
    END IF;
    SELECT coalesce(max(i), 1) INTO v_rank FROM generate_subscripts(p_thresholds, 1) i
     WHERE coalesce(v_qualifying, 0) >= p_thresholds[i];
    IF m.tier_valid_until IS NOT NULL AND m.tier_valid_until >= p_today THEN
        v_other := coalesce(array_position(p_tier_codes, m.tier_code::text), 1);
        IF v_other >= v_rank THEN
            v_rank := v_other;
        END IF;
    END IF;
    IF m.granted_tier_code IS NOT NULL AND m.granted_tier_until IS NOT NULL
            AND m.granted_tier_until >= p_today THEN
        v_other := array_position(p_tier_codes, m.granted_tier_code::text);
        IF v_other IS NOT NULL AND v_other >= v_rank THEN
            v_rank := v_other;
        END IF;
    END IF;
    SELECT p.points INTO v_price FROM reward_prices p
     WHERE p.reward_code = r.code AND p.tier_code = p_tier_codes[v_rank];
    IF NOT FOUND THEN
        v_price := r.points;
    END IF;
    SELECT * INTO a FROM loyalty_redeem_atomic(
        p_order || jsonb_build_object(
            'reward_code', r.code, 'reward_kind', r.kind, 'points', v_price,
            'delivery_address', CASE WHEN v_gift THEN m.delivery_address END,
            -- A service or voucher is queued for the provisioning API as it is stored.
            'fulfil_due_at', CASE WHEN r.kind = ANY(p_fulfilled_kinds)
                                  THEN p_order->'created_at' END),
        p_order_prefix, r.per_member_limit, r.stock IS NOT NULL, p_ledger_kind,
        p_reason_prefix || r.code, CASE WHEN v_gift THEN p_gift_delivery END, p_ceiling);
    RETURN QUERY SELECT CASE a.r_outcome WHEN 'out_of_stock' THEN 'sold_out'
                                         WHEN 'limit' THEN 'limit_now'
                                         ELSE a.r_outcome END,
                        a.r_order_no, a.r_points::numeric, r.code::text, r.kind::text, v_price,
                        CASE WHEN v_gift THEN m.delivery_address END;
END
$fn$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER FUNCTION loyalty_redeem({ATOMIC_ARGS}) RENAME TO "
                   "loyalty_redeem_atomic")
        op.execute(REDEEM)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS loyalty_redeem({ONE_CALL_ARGS})")
        op.execute(f"ALTER FUNCTION loyalty_redeem_atomic({ATOMIC_ARGS}) RENAME TO "
                   "loyalty_redeem")
