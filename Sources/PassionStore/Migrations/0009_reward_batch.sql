-- 0009_reward_batch: AwardBatch as set-based SQL, and ledger totals moved once per statement.
--
-- 0007's passion_reward_batch called passion_reward once per item: it saved round trips and
-- commits but none of the per-award work. Here a batch writes each table once for all of its
-- plain awards (XP grants, coin grants and battle wins that no constraint can refuse, for users
-- whose totals reach no achievement they lack): one INSERT of keys with their results, one per
-- ledger (whose triggers now move the totals once per statement), one of audit rows, one of
-- events, with every item's totals and level-ups computed as if the items ran one by one in
-- (user, position) order. Everything else (an unknown user, a key used twice in the batch, a
-- penalty or correction, a content reason) and every item of a user with anything else or with
-- an achievement within reach go through passion_reward one by one, in subtransactions, exactly
-- as before; so does the whole batch when one of its keys exists already (a retried batch,
-- whose items then replay). Both paths give the same results (a test compares them item by
-- item).
--
-- Locks: a batch first locks the progress rows of all its users in user order, then writes
-- keys. A single passion_reward takes its key first, so a batch and another call racing with
-- the very same idempotency key can deadlock; PostgreSQL aborts one of them (40P01) and the
-- server retries it (the batch's transaction, or the single award's statement), where the
-- retry replays the winner's result.

-- The level curve, inlinable ----------------------------------------------------------------------
-- 0007's version is a subquery, so every call ran the SQL-function executor (5 µs); as one
-- expression PostgreSQL inlines it into the caller (0.4 µs), which matters to the CHECK on
-- user_progress and to a batch computing a level per award. The same integer method: n = max(xp,
-- 0) / 50 (written with abs so the body stays strict like the function), m = 4n + 1, r0 the
-- float8 square root of m corrected by one step either way, level = (r + 1) / 2.
CREATE OR REPLACE FUNCTION passion_level_for_xp(xp bigint) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN ((floor(sqrt((4 * ((xp / 50 + abs(xp / 50)) / 2) + 1)::float8))::bigint
         - (floor(sqrt((4 * ((xp / 50 + abs(xp / 50)) / 2) + 1)::float8))::bigint
            * floor(sqrt((4 * ((xp / 50 + abs(xp / 50)) / 2) + 1)::float8))::bigint
            > 4 * ((xp / 50 + abs(xp / 50)) / 2) + 1)::integer
         + ((floor(sqrt((4 * ((xp / 50 + abs(xp / 50)) / 2) + 1)::float8))::bigint + 1)
            * (floor(sqrt((4 * ((xp / 50 + abs(xp / 50)) / 2) + 1)::float8))::bigint + 1)
            <= 4 * ((xp / 50 + abs(xp / 50)) / 2) + 1)::integer
         + 1) / 2)::integer;

-- Key formats without a bounded repetition ---------------------------------------------------------
-- '^[!-~]{1,255}$' makes PostgreSQL's regex engine build a 255-state automaton: 25 µs a check,
-- two or more checks an award. Length and characters checked apart mean the same, at 0.4 µs.
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_key_format,
    ADD CONSTRAINT idempotency_keys_key_format CHECK (octet_length(key) BETWEEN 1 AND 255 AND key ~ '^[!-~]+$');
ALTER TABLE points_ledger DROP CONSTRAINT points_ledger_idempotency_key_format,
    ADD CONSTRAINT points_ledger_idempotency_key_format
        CHECK (octet_length(idempotency_key) BETWEEN 1 AND 255 AND idempotency_key ~ '^[!-~]+$');
ALTER TABLE coins_ledger DROP CONSTRAINT coins_ledger_idempotency_key_format,
    ADD CONSTRAINT coins_ledger_idempotency_key_format
        CHECK (octet_length(idempotency_key) BETWEEN 1 AND 255 AND idempotency_key ~ '^[!-~]+$');

-- The guard on user_progress runs for direct writes only --------------------------------------------
-- 0003's guard lets the ledger triggers (trigger depth > 1 inside it) through; deciding that in
-- the trigger's WHEN saves a PL/pgSQL call per progress row on every award.
DROP TRIGGER user_progress_derived_totals ON user_progress;
CREATE TRIGGER user_progress_derived_totals
    BEFORE INSERT OR UPDATE OR DELETE ON user_progress
    FOR EACH ROW WHEN (pg_trigger_depth() = 0) EXECUTE FUNCTION passion_user_progress_derived();

-- Ledger triggers, per statement --------------------------------------------------------------
-- The same derived totals as 0003's row triggers, from the statement's transition table: a
-- batch of a thousand rows costs one UPDATE of user_progress, not a thousand.

CREATE OR REPLACE FUNCTION passion_points_ledger_apply() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Users without a progress row yet (rows written outside passion_reward).
    INSERT INTO user_progress (user_id)
    SELECT DISTINCT i.user_id FROM inserted i
    WHERE (SELECT true FROM user_progress p WHERE p.user_id = i.user_id LIMIT 1) IS NULL
    ORDER BY 1
    ON CONFLICT (user_id) DO NOTHING;
    UPDATE user_progress p
       SET total_xp = p.total_xp + d.points,
           current_level = passion_level_for_xp(p.total_xp + d.points),
           updated_at = now()
      FROM (SELECT user_id, sum(points) AS points FROM inserted GROUP BY user_id) d
     WHERE p.user_id = d.user_id;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION passion_coins_ledger_apply() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO user_progress (user_id)
    SELECT DISTINCT i.user_id FROM inserted i
    WHERE (SELECT true FROM user_progress p WHERE p.user_id = i.user_id LIMIT 1) IS NULL
    ORDER BY 1
    ON CONFLICT (user_id) DO NOTHING;
    UPDATE user_progress p
       SET total_coins = p.total_coins + d.coins,
           coins_earned = p.coins_earned + d.earned,
           updated_at = now()
      FROM (SELECT user_id, sum(coins) AS coins,
                   coalesce(sum(coins) FILTER (WHERE transaction_type = 'earned'), 0) AS earned
            FROM inserted GROUP BY user_id) d
     WHERE p.user_id = d.user_id;
    RETURN NULL;
END
$$;

DROP TRIGGER points_ledger_apply ON points_ledger;
CREATE TRIGGER points_ledger_apply
    AFTER INSERT ON points_ledger
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION passion_points_ledger_apply();

DROP TRIGGER coins_ledger_apply ON coins_ledger;
CREATE TRIGGER coins_ledger_apply
    AFTER INSERT ON coins_ledger
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION passion_coins_ledger_apply();

-- passion_reward_batch --------------------------------------------------------------------------

-- A user's progress row as the batch found it, locked.
CREATE TYPE passion_batch_progress AS (
    user_id uuid, total_xp bigint, total_coins bigint, coins_earned bigint, achievements integer
);

-- One item of a batch as the function holds it.
CREATE TYPE passion_batch_item AS (
    pos integer, user_id uuid, kind text, amount integer, reason text, resource_type text, resource_id uuid,
    key text, request_hash bytea
);

-- A plain award with the totals after it, as if the batch's items ran one by one.
CREATE TYPE passion_batch_award AS (
    pos integer, user_id uuid, kind text, amount integer, reason text, resource_type text, resource_id uuid,
    key text, total_xp bigint, total_coins bigint, coins_earned bigint, level_before integer, level integer,
    achievements integer, ledger_id bigint
);

-- An event of a plain award, with the id it will have.
CREATE TYPE passion_batch_event AS (id bigint, pos integer, user_id uuid, type text, payload jsonb);

-- Same contract as 0007's: p_items is a JSON array of {"user_id", "kind" ("xp" or "coins"),
-- "amount", "reason", "resource_type", "resource_id", "key"}; the result is a JSON array in the
-- items' order, each element what passion_reward returns for it or {"error": {"sqlstate",
-- "message", "hint", "detail", "constraint"}}.
CREATE OR REPLACE FUNCTION passion_reward_batch(p_items jsonb, p_principal text, p_ip inet, p_user_agent text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_items passion_batch_item[];
    v_users uuid[];
    v_progress passion_batch_progress[];
    v_plain integer[];
    v_awards passion_batch_award[];
    v_events passion_batch_event[];
    v_results jsonb[];
    v_positions integer[];
    v_outcomes jsonb[];
    v_index integer;
    v_keyed bigint;
    v_item record;
    v_result jsonb;
    v_state text;
    v_message text;
    v_hint text;
    v_detail text;
    v_constraint text;
BEGIN
    SELECT array_agg(ROW(e.pos, r.user_id, r.kind, r.amount, r.reason, r.resource_type, r.resource_id, r.key,
                         -- passion_reward's request hash (its refund_of is NULL here, which concat_ws skips).
                         sha256(convert_to(concat_ws('|', r.kind, r.amount, r.reason, r.resource_type, r.resource_id), 'UTF8'))
                     )::passion_batch_item ORDER BY e.pos)
    INTO v_items
    FROM jsonb_array_elements(p_items) WITH ORDINALITY AS e(item, pos),
         jsonb_to_record(e.item) AS r(user_id uuid, kind text, amount integer, reason text, resource_type text,
                                      resource_id uuid, key text);
    IF v_items IS NULL THEN
        RETURN '[]'::jsonb;
    END IF;
    v_results := array_fill(NULL::jsonb, ARRAY[array_length(v_items, 1)]);

    -- Every live user's progress row exists and is locked, in user order.
    SELECT array_agg(DISTINCT i.user_id ORDER BY i.user_id) INTO v_users
    FROM unnest(v_items) i JOIN users u ON u.id = i.user_id AND u.deleted_at IS NULL;
    v_users := coalesce(v_users, '{}');
    INSERT INTO user_progress (user_id)
    SELECT u FROM unnest(v_users) u WHERE (SELECT true FROM user_progress p WHERE p.user_id = u LIMIT 1) IS NULL ORDER BY u
    ON CONFLICT (user_id) DO NOTHING;
    SELECT array_agg(ROW(p.user_id, p.total_xp, p.total_coins, p.coins_earned, p.achievements_unlocked)::passion_batch_progress)
    INTO v_progress
    FROM (SELECT * FROM user_progress WHERE user_id = ANY (v_users) ORDER BY user_id FOR UPDATE) p;

    -- The plain awards: every item of the user is plain, and the user's totals after all of
    -- them reach no achievement the user lacks (amounts are positive, so no total on the way
    -- does either: no unlock can happen in between).
    WITH candidates AS (
        -- Plain means no constraint can refuse it (and a missing field is not plain).
        SELECT i.*,
               coalesce(i.amount > 0
               AND ((i.kind = 'xp' AND i.reason = 'grant'
                     AND (i.resource_id IS NULL) = (i.resource_type IS NULL)
                     AND (i.resource_type IS NULL OR i.resource_type IN ('habit', 'goal', 'quest', 'focus_session')))
                    OR (i.kind = 'coins' AND i.reason IN ('grant', 'battle_win')))
               AND octet_length(i.key) BETWEEN 1 AND 255 AND i.key ~ '^[!-~]+$'
               AND count(*) OVER (PARTITION BY i.user_id, i.key) = 1, false) AS plain
        FROM unnest(v_items) i
        WHERE i.user_id = ANY (v_users)
    ), finals AS (
        SELECT f.*, passion_level_for_xp(f.total_xp) AS level
        FROM (SELECT c.user_id,
                     p.total_xp + coalesce(sum(c.amount) FILTER (WHERE c.kind = 'xp'), 0) AS total_xp,
                     p.coins_earned + coalesce(sum(c.amount) FILTER (WHERE c.kind = 'coins'), 0) AS coins_earned
              FROM candidates c JOIN unnest(v_progress) p ON p.user_id = c.user_id
              GROUP BY c.user_id, p.total_xp, p.coins_earned
              HAVING bool_and(c.plain)) f
    ), rules AS MATERIALIZED (
        -- What a plain award can move: the XP, level and coin rules.
        SELECT a.id, a.unlock_condition ->> 'type' AS type, (a.unlock_condition ->> 'value')::bigint AS value
        FROM achievements a
        WHERE a.retired_at IS NULL AND a.unlock_condition ->> 'type' IN ('total_xp', 'level', 'coins_earned')
    ), unlocked AS (
        SELECT u.user_id, u.achievement_id FROM user_achievements u WHERE u.user_id = ANY (v_users)
    ), within_reach AS (
        SELECT f.user_id
        FROM finals f JOIN rules r
          ON r.value <= CASE r.type WHEN 'total_xp' THEN f.total_xp WHEN 'level' THEN f.level ELSE f.coins_earned END
        LEFT JOIN unlocked u ON u.user_id = f.user_id AND u.achievement_id = r.id
        WHERE u.user_id IS NULL
    ), plain_users AS (
        SELECT f.user_id FROM finals f WHERE f.user_id NOT IN (SELECT user_id FROM within_reach)
    )
    SELECT array_agg(c.pos) INTO v_plain FROM candidates c JOIN plain_users u ON u.user_id = c.user_id WHERE c.plain;
    v_plain := coalesce(v_plain, '{}');

    -- Everything is computed first (ledger and event ids drawn from their sequences), so each
    -- key is written once, with its result. A key that exists already (a retried batch, or a
    -- call racing with the same key) undoes the plain path: its items all go one by one then.
    IF cardinality(v_plain) > 0 THEN
        BEGIN
            -- Totals after each award, from the locked rows.
            SELECT array_agg(ROW(w.pos, w.user_id, w.kind, w.amount, w.reason, w.resource_type, w.resource_id, w.key,
                                 w.total_xp, w.total_coins, w.coins_earned,
                                 passion_level_for_xp(w.total_xp - CASE WHEN w.kind = 'xp' THEN w.amount ELSE 0 END),
                                 passion_level_for_xp(w.total_xp), w.achievements,
                                 CASE w.kind WHEN 'xp' THEN nextval(pg_get_serial_sequence('points_ledger', 'id'))
                                             ELSE nextval(pg_get_serial_sequence('coins_ledger', 'id')) END)::passion_batch_award
                             ORDER BY w.user_id, w.pos)
            INTO v_awards
            FROM (SELECT i.*,
                         p.total_xp + sum(CASE WHEN i.kind = 'xp' THEN i.amount ELSE 0 END) OVER running AS total_xp,
                         p.total_coins + sum(CASE WHEN i.kind = 'coins' THEN i.amount ELSE 0 END) OVER running AS total_coins,
                         p.coins_earned + sum(CASE WHEN i.kind = 'coins' THEN i.amount ELSE 0 END) OVER running AS coins_earned,
                         p.achievements
                  FROM unnest(v_items) i JOIN unnest(v_progress) p ON p.user_id = i.user_id
                  WHERE i.pos = ANY (v_plain)
                  WINDOW running AS (PARTITION BY i.user_id ORDER BY i.pos)
                  ORDER BY i.user_id, i.pos) w;

            -- Events in the order one-by-one calls would emit them: each award, then its level-up.
            -- Ids are drawn in that order (the subqueries' ORDER BY holds: PostgreSQL does not
            -- flatten a subquery that sorts), so Subscribe's resume-by-id sees the same sequence.
            SELECT array_agg(ROW(n.id, n.pos, n.user_id, n.type, n.payload)::passion_batch_event ORDER BY n.id)
            INTO v_events
            FROM (SELECT nextval(pg_get_serial_sequence('progress_events', 'id')) AS id, o.*
                  FROM (SELECT a.pos, a.user_id, 1 AS step, CASE a.kind WHEN 'xp' THEN 'xp_awarded' ELSE 'coins_awarded' END AS type,
                               jsonb_build_object('ledger_id', a.ledger_id, 'amount', a.amount, 'reason', a.reason) AS payload
                        FROM unnest(v_awards) a
                        UNION ALL
                        SELECT a.pos, a.user_id, 2, 'level_up', jsonb_build_object('from_level', a.level_before, 'to_level', a.level)
                        FROM unnest(v_awards) a WHERE a.level > a.level_before
                        ORDER BY user_id, pos, step) o) n;

            -- Each award's result, written with its key and returned.
            WITH events AS (
                SELECT e.pos, jsonb_agg(jsonb_build_object('id', e.id, 'user_id', e.user_id, 'type', e.type, 'payload', e.payload,
                                                           'created_at', now()) ORDER BY e.id) AS events
                FROM unnest(v_events) e GROUP BY e.pos
            ), results AS (
                SELECT a.pos, a.user_id, a.key, jsonb_build_object(
                    'user_id', a.user_id, 'total_xp', a.total_xp, 'level', a.level,
                    'level_floor_xp', passion_xp_for_level(a.level), 'next_level_xp', passion_xp_for_level(a.level + 1),
                    'total_coins', a.total_coins, 'coins_earned', a.coins_earned, 'achievements_unlocked', a.achievements,
                    'ledger_id', a.ledger_id, 'events', e.events) AS result
                FROM unnest(v_awards) a JOIN events e ON e.pos = a.pos
            ), keyed AS (
                INSERT INTO idempotency_keys (user_id, key, request_hash, result)
                SELECT r.user_id, r.key, i.request_hash, r.result
                FROM results r JOIN unnest(v_items) i ON i.pos = r.pos
                ORDER BY r.user_id, r.pos
                ON CONFLICT (user_id, key) DO NOTHING
                RETURNING 1
            )
            SELECT array_agg(pos), array_agg(result), (SELECT count(*) FROM keyed)
            INTO v_positions, v_outcomes, v_keyed
            FROM results;
            IF v_keyed < cardinality(v_plain) THEN
                RAISE EXCEPTION 'an idempotency key of the batch exists' USING ERRCODE = 'P0A1F';
            END IF;

            -- The ledger rows, under the ids drawn above (their triggers move the totals, once
            -- per statement).
            INSERT INTO points_ledger (id, user_id, points, reason, resource_id, resource_type, idempotency_key) OVERRIDING SYSTEM VALUE
            SELECT a.ledger_id, a.user_id, a.amount, a.reason, a.resource_id, a.resource_type, a.key
            FROM unnest(v_awards) a WHERE a.kind = 'xp' ORDER BY a.user_id, a.pos;
            INSERT INTO coins_ledger (id, user_id, coins, transaction_type, reason, resource_id, idempotency_key) OVERRIDING SYSTEM VALUE
            SELECT a.ledger_id, a.user_id, a.amount, 'earned', a.reason, a.resource_id, a.key
            FROM unnest(v_awards) a WHERE a.kind = 'coins' ORDER BY a.user_id, a.pos;

            INSERT INTO audit_logs (user_id, action, resource_type, resource_id, details, ip_address, user_agent, status, principal)
            SELECT a.user_id, CASE a.kind WHEN 'xp' THEN 'xp.awarded' ELSE 'coins.awarded' END,
                   CASE a.kind WHEN 'xp' THEN 'points_ledger' ELSE 'coins_ledger' END, a.ledger_id::text,
                   jsonb_build_object('amount', a.amount, 'reason', a.reason, 'idempotency_key', a.key),
                   p_ip, p_user_agent, 'success', p_principal
            FROM unnest(v_awards) a ORDER BY a.user_id, a.pos;

            INSERT INTO progress_events (id, user_id, type, payload) OVERRIDING SYSTEM VALUE
            SELECT e.id, e.user_id, e.type, e.payload FROM unnest(v_events) e ORDER BY e.id;
            PERFORM pg_notify('passion_progress', s.event::text)
            FROM (SELECT jsonb_build_object('id', e.id, 'user_id', e.user_id, 'type', e.type, 'payload', e.payload,
                                            'created_at', now()) AS event
                  FROM unnest(v_events) e ORDER BY e.id) s;

            FOR v_index IN 1 .. cardinality(v_positions) LOOP
                v_results[v_positions[v_index]] := v_outcomes[v_index] || jsonb_build_object('replayed', false);
            END LOOP;
        EXCEPTION WHEN SQLSTATE 'P0A1F' OR integrity_constraint_violation THEN
            -- Also a refusal the plain criteria should have ruled out: one by one, each item
            -- gets its own error.
            v_plain := '{}';
        END;
    END IF;

    -- Everything else one by one, in (user, position) order, each in its own subtransaction.
    FOR v_item IN SELECT i.* FROM unnest(v_items) i WHERE NOT (i.pos = ANY (v_plain)) ORDER BY i.user_id, i.pos LOOP
        BEGIN
            v_result := passion_reward(
                v_item.user_id, v_item.kind, v_item.amount, v_item.reason, v_item.resource_type, v_item.resource_id,
                v_item.key, NULL, p_principal, p_ip, p_user_agent);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT, v_hint = PG_EXCEPTION_HINT,
                                    v_detail = PG_EXCEPTION_DETAIL, v_constraint = CONSTRAINT_NAME;
            v_result := jsonb_build_object('error', jsonb_build_object(
                'sqlstate', v_state, 'message', v_message, 'hint', nullif(v_hint, ''), 'detail', nullif(v_detail, ''),
                'constraint', nullif(v_constraint, '')));
        END;
        v_results[v_item.pos] := v_result;
    END LOOP;
    RETURN to_jsonb(v_results);
END
$$;
