-- 0007_gamification_engine: rewards as single-round-trip functions, achievement evaluation in
-- the rewarding transaction, a resumable event log, and the default achievement catalog.
--
-- Every award, spend and refund is one call of passion_reward(...): it records the idempotency
-- key first (a retry, even after a crash between commit and reply, gets the stored result),
-- locks the user's progress row (the one lock every reward of a user takes, so rewards of one
-- user serialise and never deadlock), writes the ledger row (the triggers of 0003 move the
-- totals), evaluates achievements (whose rewards can unlock more, up to 5 rounds), writes the
-- audit rows and the events, and NOTIFYs, all in the caller's single statement.
--
-- Errors for callers are raised with SQLSTATE P0A1x; MESSAGE is safe to show, HINT is the
-- reason a client switches on, DETAIL a JSON object of detail fields:
--   P0A10 INSUFFICIENT_FUNDS      {"balance": n, "price": n}          -> FAILED_PRECONDITION
--   P0A11 USER_NOT_FOUND          {}                                  -> NOT_FOUND
--   P0A12 IDEMPOTENCY_KEY_REUSED  {"field": "idempotency_key"}        -> INVALID_ARGUMENT
--   P0A13 SPEND_NOT_FOUND         {"field": "refund_of"}              -> NOT_FOUND
--   P0A14 REFUND_EXCEEDS_SPEND    {"spent": n, "refund": n}           -> FAILED_PRECONDITION
--   P0A15 ALREADY_REFUNDED        {"refund_of": n}                    -> ALREADY_EXISTS

-- The level curve without numeric arithmetic: float8's square root of m (< 2^60) is within 0.1
-- of the true root, and the bigint correction steps of 0003 make it exact. Same results for
-- every bigint (the Swift twin and a test check the thresholds); user_progress' CHECK and
-- trigger call it on every award, where numeric sqrt was a measurable share of the cost.
CREATE OR REPLACE FUNCTION passion_level_for_xp(xp bigint) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN (
    SELECT ((s.r + 1) / 2)::integer
    FROM (SELECT CASE WHEN e.r0 * e.r0 > e.m THEN e.r0 - 1
                      WHEN (e.r0 + 1) * (e.r0 + 1) <= e.m THEN e.r0 + 1
                      ELSE e.r0
                 END AS r
          FROM (SELECT v.m, floor(sqrt(v.m::float8))::bigint AS r0
                FROM (SELECT 4 * (greatest(xp, 0) / 50) + 1 AS m) AS v) AS e) AS s
);

-- Retired achievements stay in the catalog (users keep them) but no longer unlock; slugs give
-- clients and the default catalog stable names.
ALTER TABLE achievements ADD COLUMN slug TEXT;
ALTER TABLE achievements ADD COLUMN retired_at TIMESTAMPTZ;
ALTER TABLE achievements ADD CONSTRAINT achievements_slug_format CHECK (slug ~ '^[a-z][a-z0-9_]{0,62}$');
CREATE UNIQUE INDEX achievements_slug_key ON achievements (slug);

-- A refund names the spend it refunds (passion_reward always sets it; rows from before 0007 have
-- none); only refunds name one, and one refund per spend.
ALTER TABLE coins_ledger ADD COLUMN refund_of BIGINT;
ALTER TABLE coins_ledger ADD CONSTRAINT coins_ledger_refund_of_fkey FOREIGN KEY (refund_of) REFERENCES coins_ledger (id);
ALTER TABLE coins_ledger ADD CONSTRAINT coins_ledger_refund_of_only_refunds
    CHECK (refund_of IS NULL OR transaction_type = 'refund');
CREATE UNIQUE INDEX coins_ledger_refund_of_key ON coins_ledger (refund_of);

-- The result of the first call with a key, returned to every retry.
ALTER TABLE idempotency_keys ADD COLUMN result JSONB;

-- progress_events ------------------------------------------------------------------------------
-- What Subscribe streams: every reward and what it caused, in commit order per user. Kept for
-- the resume window (a maintenance job trims old rows); NOTIFY carries the row itself.

CREATE TABLE progress_events (
    id         BIGINT      GENERATED ALWAYS AS IDENTITY,
    user_id    UUID        NOT NULL,
    type       TEXT        NOT NULL,
    payload    JSONB       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),

    CONSTRAINT progress_events_pkey PRIMARY KEY (id),
    CONSTRAINT progress_events_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT progress_events_type_valid CHECK (type IN (
        'xp_awarded', 'coins_awarded', 'coins_spent', 'coins_refunded', 'level_up', 'achievement_unlocked')),
    CONSTRAINT progress_events_payload_object CHECK (jsonb_typeof(payload) = 'object')
);

CREATE INDEX idx_progress_events_user ON progress_events (user_id, id);
CREATE INDEX idx_progress_events_created ON progress_events (created_at);

-- Appends an event and announces it on channel passion_progress; returns it as JSON.
CREATE FUNCTION passion_emit_event(p_user uuid, p_type text, p_payload jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_event jsonb;
BEGIN
    INSERT INTO progress_events (user_id, type, payload) VALUES (p_user, p_type, p_payload)
    RETURNING jsonb_build_object('id', id, 'user_id', user_id, 'type', type, 'payload', payload,
                                 'created_at', created_at)
    INTO v_event;
    -- Delivered at commit, in commit order; payloads stay far below NOTIFY's 8000 bytes.
    PERFORM pg_notify('passion_progress', v_event::text);
    RETURN v_event;
END
$$;

-- Rule values ----------------------------------------------------------------------------------
-- The closed rule set of achievements_unlock_condition_valid, measured for one user.

CREATE FUNCTION passion_rule_values(p_user uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'total_xp', coalesce(p.total_xp, 0),
        'level', coalesce(p.current_level, 1),
        'coins_earned', coalesce(p.coins_earned, 0),
        'habit_streak', (SELECT coalesce(max(streak_days), 0) FROM habits WHERE user_id = p_user),
        'completions', (SELECT count(*) FROM habit_completions WHERE user_id = p_user),
        'goals_completed', (SELECT count(*) FROM goals WHERE user_id = p_user AND status = 'completed'),
        'focus_minutes', (SELECT coalesce(sum(actual_duration_minutes), 0) FROM focus_sessions
                          WHERE user_id = p_user AND status = 'completed'),
        'quests_completed', (SELECT count(*) FROM quests WHERE user_id = p_user AND status = 'completed'))
    FROM (SELECT 1) AS one LEFT JOIN user_progress p ON p.user_id = p_user;
$$;

-- A level_up event when the user's level is now above p_from (one event for a multi-level
-- jump, naming both ends); sets p_from to the current level.
CREATE FUNCTION passion_level_up(p_user uuid, INOUT p_from integer, INOUT p_events jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_level integer;
BEGIN
    SELECT current_level INTO v_level FROM user_progress WHERE user_id = p_user;
    IF v_level > p_from THEN
        p_events := p_events || passion_emit_event(p_user, 'level_up', jsonb_build_object('from_level', p_from, 'to_level', v_level));
        p_from := v_level;
    END IF;
END
$$;

-- Unlocks every achievement whose rule the user now meets (only the XP, level and coin rules
-- unless p_all_rules), pays its rewards through the ledgers and repeats while rewards unlock
-- more (at most 5 rounds). Achievements are taken in
-- id order. The caller holds the user's progress row lock. Appends the events (unlocks and the
-- level-ups their rewards cause, in the order they happened) to p_events.
CREATE FUNCTION passion_evaluate_achievements(
    p_user uuid, p_key text, p_principal text, p_ip inet, p_user_agent text, p_all_rules boolean,
    INOUT p_level integer, INOUT p_events jsonb
)
LANGUAGE plpgsql AS $$
DECLARE
    v_values jsonb;
    v_achievement record;
    v_unlocked integer;
    v_round integer := 0;
BEGIN
    LOOP
        v_round := v_round + 1;
        EXIT WHEN v_round > 5;
        -- A reward moves only XP, level and coins: content measures cannot have changed, so
        -- only Evaluate (after content changes) pays for computing them.
        IF p_all_rules THEN
            v_values := passion_rule_values(p_user);
        ELSE
            SELECT jsonb_build_object('total_xp', total_xp, 'level', current_level, 'coins_earned', coins_earned)
            INTO v_values FROM user_progress WHERE user_id = p_user;
        END IF;
        v_unlocked := 0;
        FOR v_achievement IN
            SELECT a.* FROM achievements a
            WHERE a.retired_at IS NULL
              AND (v_values ->> (a.unlock_condition ->> 'type'))::bigint >= (a.unlock_condition ->> 'value')::bigint
              AND NOT EXISTS (SELECT 1 FROM user_achievements u WHERE u.user_id = p_user AND u.achievement_id = a.id)
            ORDER BY a.id
        LOOP
            INSERT INTO user_achievements (user_id, achievement_id) VALUES (p_user, v_achievement.id)
            ON CONFLICT (user_id, achievement_id) DO NOTHING;
            CONTINUE WHEN NOT FOUND;
            v_unlocked := v_unlocked + 1;
            IF v_achievement.xp_reward > 0 THEN
                INSERT INTO points_ledger (user_id, points, reason, resource_id, resource_type, idempotency_key)
                VALUES (p_user, v_achievement.xp_reward, 'achievement_unlocked', v_achievement.id, 'achievement',
                        CASE WHEN p_key IS NULL THEN NULL ELSE left(p_key, 200) || '/achievement/' || v_achievement.id END);
            END IF;
            IF v_achievement.coins_reward > 0 THEN
                INSERT INTO coins_ledger (user_id, coins, transaction_type, reason, resource_id, idempotency_key)
                VALUES (p_user, v_achievement.coins_reward, 'earned', 'achievement_unlocked', v_achievement.id,
                        CASE WHEN p_key IS NULL THEN NULL ELSE left(p_key, 200) || '/achievement/' || v_achievement.id END);
            END IF;
            INSERT INTO audit_logs (user_id, action, resource_type, resource_id, details, ip_address, user_agent, status, principal)
            VALUES (p_user, 'achievement.unlocked', 'achievement', v_achievement.id::text,
                    jsonb_build_object('slug', v_achievement.slug, 'xp_reward', v_achievement.xp_reward,
                                       'coins_reward', v_achievement.coins_reward),
                    p_ip, p_user_agent, 'success', p_principal);
            p_events := p_events || passion_emit_event(p_user, 'achievement_unlocked', jsonb_build_object(
                'achievement_id', v_achievement.id, 'slug', v_achievement.slug, 'title', v_achievement.title,
                'rarity', v_achievement.rarity, 'xp_reward', v_achievement.xp_reward,
                'coins_reward', v_achievement.coins_reward));
            -- The reward may raise the level: said before whatever that unlocks next.
            SELECT * INTO p_level, p_events FROM passion_level_up(p_user, p_level, p_events);
        END LOOP;
        EXIT WHEN v_unlocked = 0;
    END LOOP;
END
$$;

-- The progress summary every reward returns.
CREATE FUNCTION passion_progress_json(p_user uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'user_id', p_user,
        'total_xp', coalesce(p.total_xp, 0),
        'level', coalesce(p.current_level, 1),
        'level_floor_xp', passion_xp_for_level(coalesce(p.current_level, 1)),
        'next_level_xp', passion_xp_for_level(coalesce(p.current_level, 1) + 1),
        'total_coins', coalesce(p.total_coins, 0),
        'coins_earned', coalesce(p.coins_earned, 0),
        'achievements_unlocked', coalesce(p.achievements_unlocked, 0))
    FROM (SELECT 1) AS one LEFT JOIN user_progress p ON p.user_id = p_user;
$$;

-- passion_reward -------------------------------------------------------------------------------
-- p_kind: 'xp' (points_ledger), 'coins' (earned), 'spend' (shop purchase), 'refund' (of
-- p_refund_of, a spend of this user). p_amount > 0, except xp and coins where a negative amount
-- is a compensating row (reason penalty or correction), and refund where 0 means all of it. Returns the progress summary plus
-- "ledger_id", "events" and "replayed" (true for a retry answered from the key).

CREATE FUNCTION passion_reward(
    p_user uuid, p_kind text, p_amount integer, p_reason text, p_resource_type text, p_resource_id uuid,
    p_key text, p_refund_of bigint, p_principal text, p_ip inet, p_user_agent text
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_hash bytea;
    v_stored record;
    v_before record;
    v_ledger_id bigint;
    v_spent record;
    v_events jsonb := '[]';
    v_level integer;
    v_result jsonb;
    v_action text;
    v_event_type text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM users WHERE id = p_user AND deleted_at IS NULL) THEN
        RAISE EXCEPTION 'user not found' USING ERRCODE = 'P0A11', HINT = 'USER_NOT_FOUND', DETAIL = '{}';
    END IF;

    -- The key first: a concurrent retry waits here for the first call's commit, then replays.
    v_hash := sha256(convert_to(concat_ws('|', p_kind, p_amount, p_reason, p_resource_type, p_resource_id, p_refund_of), 'UTF8'));
    INSERT INTO idempotency_keys (user_id, key, request_hash) VALUES (p_user, p_key, v_hash)
    ON CONFLICT (user_id, key) DO NOTHING;
    IF NOT FOUND THEN
        SELECT request_hash, result INTO v_stored FROM idempotency_keys WHERE user_id = p_user AND key = p_key;
        IF v_stored.request_hash <> v_hash OR v_stored.result IS NULL THEN
            RAISE EXCEPTION 'this idempotency key was used for a different request'
                USING ERRCODE = 'P0A12', HINT = 'IDEMPOTENCY_KEY_REUSED', DETAIL = '{"field": "idempotency_key"}';
        END IF;
        RETURN v_stored.result || jsonb_build_object('replayed', true);
    END IF;

    PERFORM passion_user_progress_ensure(p_user);
    SELECT total_xp, total_coins, current_level INTO v_before FROM user_progress WHERE user_id = p_user FOR UPDATE;

    CASE p_kind
    WHEN 'xp' THEN
        INSERT INTO points_ledger (user_id, points, reason, resource_id, resource_type, idempotency_key)
        VALUES (p_user, p_amount, p_reason, p_resource_id, p_resource_type, p_key)
        RETURNING id INTO v_ledger_id;
        v_action := 'xp.awarded';
        v_event_type := 'xp_awarded';
    WHEN 'coins' THEN
        INSERT INTO coins_ledger (user_id, coins, transaction_type, reason, resource_id, idempotency_key)
        VALUES (p_user, p_amount, CASE WHEN p_amount > 0 AND p_reason <> 'correction' THEN 'earned' ELSE 'correction' END,
                p_reason, p_resource_id, p_key)
        RETURNING id INTO v_ledger_id;
        v_action := 'coins.awarded';
        v_event_type := 'coins_awarded';
    WHEN 'spend' THEN
        IF v_before.total_coins < p_amount THEN
            RAISE EXCEPTION 'the balance does not cover the price'
                USING ERRCODE = 'P0A10', HINT = 'INSUFFICIENT_FUNDS',
                      DETAIL = jsonb_build_object('balance', v_before.total_coins, 'price', p_amount)::text;
        END IF;
        INSERT INTO coins_ledger (user_id, coins, transaction_type, reason, resource_id, idempotency_key)
        VALUES (p_user, -p_amount, 'spent', p_reason, p_resource_id, p_key)
        RETURNING id INTO v_ledger_id;
        v_action := 'coins.spent';
        v_event_type := 'coins_spent';
    WHEN 'refund' THEN
        SELECT id, coins INTO v_spent FROM coins_ledger
        WHERE id = p_refund_of AND user_id = p_user AND transaction_type = 'spent';
        IF NOT FOUND THEN
            RAISE EXCEPTION 'no such spend of this user'
                USING ERRCODE = 'P0A13', HINT = 'SPEND_NOT_FOUND', DETAIL = '{"field": "refund_of"}';
        END IF;
        IF EXISTS (SELECT 1 FROM coins_ledger WHERE refund_of = p_refund_of) THEN
            RAISE EXCEPTION 'this spend was already refunded'
                USING ERRCODE = 'P0A15', HINT = 'ALREADY_REFUNDED',
                      DETAIL = jsonb_build_object('refund_of', p_refund_of)::text;
        END IF;
        IF p_amount = 0 THEN
            p_amount := -v_spent.coins;
        END IF;
        IF p_amount > -v_spent.coins THEN
            RAISE EXCEPTION 'a refund cannot exceed the spend'
                USING ERRCODE = 'P0A14', HINT = 'REFUND_EXCEEDS_SPEND',
                      DETAIL = jsonb_build_object('spent', -v_spent.coins, 'refund', p_amount)::text;
        END IF;
        INSERT INTO coins_ledger (user_id, coins, transaction_type, reason, resource_id, idempotency_key, refund_of)
        VALUES (p_user, p_amount, 'refund', p_reason, p_resource_id, p_key, p_refund_of)
        RETURNING id INTO v_ledger_id;
        v_action := 'coins.refunded';
        v_event_type := 'coins_refunded';
    ELSE
        RAISE EXCEPTION 'unknown reward kind %', p_kind USING ERRCODE = 'P0A19';
    END CASE;

    INSERT INTO audit_logs (user_id, action, resource_type, resource_id, details, ip_address, user_agent, status, principal)
    VALUES (p_user, v_action, CASE WHEN p_kind = 'xp' THEN 'points_ledger' ELSE 'coins_ledger' END, v_ledger_id::text,
            jsonb_build_object('amount', p_amount, 'reason', p_reason, 'idempotency_key', p_key),
            p_ip, p_user_agent, 'success', p_principal);
    v_events := v_events || passion_emit_event(p_user, v_event_type, jsonb_build_object(
        'ledger_id', v_ledger_id, 'amount', p_amount, 'reason', p_reason));
    v_level := v_before.current_level;
    SELECT * INTO v_level, v_events FROM passion_level_up(p_user, v_level, v_events);
    SELECT * INTO v_level, v_events
    FROM passion_evaluate_achievements(
        p_user, p_key, p_principal, p_ip, p_user_agent,
        -- Content rewards come right after the content changed: every rule is measured then.
        p_reason IN ('habit_completed', 'goal_completed', 'focus_session_completed', 'quest_completed'),
        v_level, v_events);

    v_result := passion_progress_json(p_user) || jsonb_build_object('ledger_id', v_ledger_id, 'events', v_events);
    UPDATE idempotency_keys SET result = v_result WHERE user_id = p_user AND key = p_key;
    RETURN v_result || jsonb_build_object('replayed', false);
END
$$;

-- Default catalog ------------------------------------------------------------------------------
-- 24 achievements over the closed rule set, three categories and four rarities. Slugs are
-- stable; admins may add, change or retire achievements later.

INSERT INTO achievements (slug, title, description, category, rarity, xp_reward, coins_reward, unlock_condition) VALUES
    ('first_steps',       'First Steps',        'Earn your first 10 XP.',                       'progress',  'common',     10,   5, '{"type": "total_xp", "value": 10}'),
    ('xp_500',            'Getting Warm',       'Earn 500 XP.',                                 'progress',  'common',     25,  10, '{"type": "total_xp", "value": 500}'),
    ('xp_5000',           'Seasoned',           'Earn 5,000 XP.',                               'progress',  'rare',      100,  50, '{"type": "total_xp", "value": 5000}'),
    ('xp_50000',          'Unstoppable',        'Earn 50,000 XP.',                              'progress',  'legendary', 500, 250, '{"type": "total_xp", "value": 50000}'),
    ('level_5',           'Level 5',            'Reach level 5.',                               'progress',  'common',     50,  20, '{"type": "level", "value": 5}'),
    ('level_10',          'Level 10',           'Reach level 10.',                              'progress',  'rare',      100,  50, '{"type": "level", "value": 10}'),
    ('level_25',          'Level 25',           'Reach level 25.',                              'progress',  'epic',      250, 100, '{"type": "level", "value": 25}'),
    ('level_50',          'Level 50',           'Reach level 50.',                              'progress',  'legendary', 500, 250, '{"type": "level", "value": 50}'),
    ('streak_3',          'On a Roll',          'Keep a habit for 3 periods in a row.',         'challenge', 'common',     20,  10, '{"type": "habit_streak", "value": 3}'),
    ('streak_7',          'Week Warrior',       'Keep a habit for 7 periods in a row.',         'challenge', 'rare',       50,  25, '{"type": "habit_streak", "value": 7}'),
    ('streak_30',         'Habit Formed',       'Keep a habit for 30 periods in a row.',        'challenge', 'epic',      200, 100, '{"type": "habit_streak", "value": 30}'),
    ('streak_100',        'Centurion',          'Keep a habit for 100 periods in a row.',       'challenge', 'legendary', 500, 250, '{"type": "habit_streak", "value": 100}'),
    ('completions_1',     'Checked In',         'Complete a habit once.',                       'progress',  'common',     10,   5, '{"type": "completions", "value": 1}'),
    ('completions_50',    'Regular',            'Complete habits 50 times.',                    'progress',  'rare',       75,  30, '{"type": "completions", "value": 50}'),
    ('completions_500',   'Devoted',            'Complete habits 500 times.',                   'progress',  'epic',      250, 100, '{"type": "completions", "value": 500}'),
    ('goal_1',            'Goal Getter',        'Complete a goal.',                             'progress',  'common',     50,  20, '{"type": "goals_completed", "value": 1}'),
    ('goal_10',           'Achiever',           'Complete 10 goals.',                           'progress',  'epic',      200, 100, '{"type": "goals_completed", "value": 10}'),
    ('focus_60',          'Deep Work',          'Focus for 60 minutes in total.',               'challenge', 'common',     25,  10, '{"type": "focus_minutes", "value": 60}'),
    ('focus_1000',        'Flow State',         'Focus for 1,000 minutes in total.',            'challenge', 'rare',      100,  50, '{"type": "focus_minutes", "value": 1000}'),
    ('focus_10000',       'Monk Mode',          'Focus for 10,000 minutes in total.',           'challenge', 'legendary', 500, 250, '{"type": "focus_minutes", "value": 10000}'),
    ('quest_1',           'Adventurer',         'Complete a quest.',                            'challenge', 'common',     30,  15, '{"type": "quests_completed", "value": 1}'),
    ('quest_25',          'Quest Master',       'Complete 25 quests.',                          'challenge', 'epic',      250, 100, '{"type": "quests_completed", "value": 25}'),
    ('coins_100',         'Pocket Money',       'Earn 100 coins.',                              'social',    'common',     20,   0, '{"type": "coins_earned", "value": 100}'),
    ('coins_5000',        'Treasurer',          'Earn 5,000 coins.',                            'social',    'epic',      150,   0, '{"type": "coins_earned", "value": 5000}');

-- passion_reconcile ----------------------------------------------------------------------------
-- For every user with progress or ledger rows: the ledger sums equal the totals, the level
-- matches the curve, the achievement count matches. One row per difference; none means healthy.

CREATE FUNCTION passion_reconcile()
RETURNS TABLE (user_id uuid, check_name text, expected bigint, actual bigint)
LANGUAGE sql STABLE AS $$
    WITH users_seen AS (
        SELECT user_id FROM user_progress
        UNION SELECT user_id FROM points_ledger
        UNION SELECT user_id FROM coins_ledger
        UNION SELECT user_id FROM user_achievements
    ), sums AS (
        SELECT s.user_id,
               (SELECT coalesce(sum(points), 0) FROM points_ledger l WHERE l.user_id = s.user_id) AS xp,
               (SELECT coalesce(sum(coins), 0) FROM coins_ledger l WHERE l.user_id = s.user_id) AS coins,
               (SELECT coalesce(sum(coins), 0) FROM coins_ledger l
                 WHERE l.user_id = s.user_id AND l.transaction_type = 'earned') AS earned,
               (SELECT count(*) FROM user_achievements a WHERE a.user_id = s.user_id) AS achievements,
               p.total_xp, p.total_coins, p.coins_earned, p.current_level, p.achievements_unlocked
        FROM users_seen s LEFT JOIN user_progress p ON p.user_id = s.user_id
    )
    SELECT user_id, 'total_xp', xp, coalesce(total_xp, 0) FROM sums WHERE xp <> coalesce(total_xp, 0)
    UNION ALL
    SELECT user_id, 'total_coins', coins, coalesce(total_coins, 0) FROM sums WHERE coins <> coalesce(total_coins, 0)
    UNION ALL
    SELECT user_id, 'coins_earned', earned, coalesce(coins_earned, 0) FROM sums WHERE earned <> coalesce(coins_earned, 0)
    UNION ALL
    SELECT user_id, 'level', passion_level_for_xp(xp), coalesce(current_level, 1) FROM sums
     WHERE passion_level_for_xp(xp) <> coalesce(current_level, 1)
    UNION ALL
    SELECT user_id, 'achievements_unlocked', achievements, coalesce(achievements_unlocked, 0) FROM sums
     WHERE achievements <> coalesce(achievements_unlocked, 0)
    UNION ALL
    SELECT user_id, 'negative_balance', 0, total_coins FROM sums WHERE total_coins < 0;
$$;

-- passion_evaluate -----------------------------------------------------------------------------
-- Evaluates a user's achievements on demand (after content changes made outside passion_reward):
-- same lock, same rules, same events. Returns the progress summary with "events".

CREATE FUNCTION passion_evaluate(p_user uuid, p_principal text, p_ip inet, p_user_agent text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_level integer;
    v_events jsonb := '[]';
BEGIN
    IF NOT EXISTS (SELECT 1 FROM users WHERE id = p_user AND deleted_at IS NULL) THEN
        RAISE EXCEPTION 'user not found' USING ERRCODE = 'P0A11', HINT = 'USER_NOT_FOUND', DETAIL = '{}';
    END IF;
    PERFORM passion_user_progress_ensure(p_user);
    SELECT current_level INTO v_level FROM user_progress WHERE user_id = p_user FOR UPDATE;
    -- The key of rows an on-demand evaluation writes: unique per user and achievement anyway.
    SELECT * INTO v_level, v_events
    FROM passion_evaluate_achievements(p_user, 'evaluate', p_principal, p_ip, p_user_agent, true, v_level, v_events);
    RETURN passion_progress_json(p_user) || jsonb_build_object('events', v_events);
END
$$;

-- passion_reward_batch -------------------------------------------------------------------------
-- Many rewards in one statement: p_items is a JSON array of {"user_id", "kind", "amount",
-- "reason", "resource_type", "resource_id", "key"}. Items run in (user_id, position) order, so
-- a batch takes user locks in a fixed order; each runs in its own subtransaction, so a failing
-- item (its error as {"error": {"sqlstate", "message", "hint", "detail"}}) leaves the others.
-- Returns the results in the items' order.

CREATE FUNCTION passion_reward_batch(p_items jsonb, p_principal text, p_ip inet, p_user_agent text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_item record;
    v_results jsonb[] := array_fill(NULL::jsonb, ARRAY[jsonb_array_length(p_items)]);
    v_result jsonb;
    v_state text;
    v_message text;
    v_hint text;
    v_detail text;
    v_constraint text;
BEGIN
    FOR v_item IN
        SELECT position, item FROM jsonb_array_elements(p_items) WITH ORDINALITY AS e(item, position)
        ORDER BY (item ->> 'user_id'), position
    LOOP
        BEGIN
            v_result := passion_reward(
                (v_item.item ->> 'user_id')::uuid, v_item.item ->> 'kind', (v_item.item ->> 'amount')::integer,
                v_item.item ->> 'reason', v_item.item ->> 'resource_type', (v_item.item ->> 'resource_id')::uuid,
                v_item.item ->> 'key', NULL, p_principal, p_ip, p_user_agent);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT, v_hint = PG_EXCEPTION_HINT,
                                    v_detail = PG_EXCEPTION_DETAIL, v_constraint = CONSTRAINT_NAME;
            v_result := jsonb_build_object('error', jsonb_build_object(
                'sqlstate', v_state, 'message', v_message, 'hint', nullif(v_hint, ''), 'detail', nullif(v_detail, ''),
                'constraint', nullif(v_constraint, '')));
        END;
        v_results[v_item.position] := v_result;
    END LOOP;
    RETURN to_jsonb(v_results);
END
$$;
