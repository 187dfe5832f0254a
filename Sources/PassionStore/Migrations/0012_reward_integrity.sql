-- 0012_reward_integrity: rewards a client can trust.
--
-- - Focus sessions credit at most their planned minutes (a 1-minute session left running for a
--   day paid 1,440), and a daily job abandons sessions left open for a day.
-- - Keys the server derives live in a namespace callers cannot write ('$...'; the Swift layer
--   refuses caller keys that begin with '$'): a caller's "K/achievement/<id>" or "goal:<id>"
--   made the award or completion that derived the same key fail.
-- - Content completions store their whole result, so a repeat (a client library's retry after
--   UNAVAILABLE) gets the first call's result marked replayed instead of ALREADY_EXISTS.
-- - Habits: a completion may be dated back a bounded number of days (offline clients), and
--   Uncomplete reverses a completion: its XP by a compensating ledger row (the ledgers stay
--   append-only), the quest progress it made, the streak; once.
-- - A penalty or correction beyond the balance answers INSUFFICIENT_XP / INSUFFICIENT_FUNDS
--   instead of a CHECK violation; a level that falls emits level_down.
-- - Streak figures outside Today (GetProgress, achievement progress) and the all-time rank read
--   the same definitions as Today and the leaderboard.
-- - Content a user makes for themselves pays within bounds: quests a user creates carry no
--   reward and do not count toward quest achievements; the first 3 goals completed in a local
--   day pay, later ones complete without a reward; the first 25 habit completions dated on a
--   local day pay, later ones count for streaks but pay no XP.
--
-- Errors for callers, as in 0007/0008 (MESSAGE safe to show, HINT the reason, DETAIL JSON):
--   P0A10 -> FAILED_PRECONDITION  INSUFFICIENT_XP {"total_xp", "amount"},
--                                 INSUFFICIENT_FUNDS {"balance", "amount"} (corrections)
--   P0A17 -> FAILED_PRECONDITION  COMPLETION_OUTSIDE_WINDOW, COMPLETION_TOO_OLD, QUEST_CLAIMED,
--                                 HABIT_PAUSED (a date inside a pause)
--   P0A18 -> NOT_FOUND            COMPLETION_NOT_FOUND

-- Events ----------------------------------------------------------------------------------------

ALTER TABLE progress_events DROP CONSTRAINT progress_events_type_valid,
    ADD CONSTRAINT progress_events_type_valid CHECK (type IN (
        'xp_awarded', 'coins_awarded', 'coins_spent', 'coins_refunded', 'level_up', 'level_down', 'achievement_unlocked'));

-- A level_up event when the user's level is now above p_from, a level_down event when below
-- (one event for a jump of several levels, naming both ends); sets p_from to the current level.
CREATE OR REPLACE FUNCTION passion_level_up(p_user uuid, INOUT p_from integer, INOUT p_events jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_level integer;
BEGIN
    SELECT current_level INTO v_level FROM user_progress WHERE user_id = p_user;
    IF v_level <> p_from THEN
        p_events := p_events || passion_emit_event(p_user, CASE WHEN v_level > p_from THEN 'level_up' ELSE 'level_down' END,
                                                   jsonb_build_object('from_level', p_from, 'to_level', v_level));
        p_from := v_level;
    END IF;
END
$$;

-- Derived keys ----------------------------------------------------------------------------------

-- The key of the ledger rows an achievement's reward writes: '$ach:<achievement>:<the key of
-- the reward that unlocked it>'.
CREATE FUNCTION passion_achievement_key(p_key text, p_achievement uuid) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN p_key IS NULL THEN NULL ELSE '$ach:' || p_achievement || ':' || left(p_key, 200) END;

CREATE OR REPLACE FUNCTION passion_evaluate_achievements(
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
                        passion_achievement_key(p_key, v_achievement.id));
            END IF;
            IF v_achievement.coins_reward > 0 THEN
                INSERT INTO coins_ledger (user_id, coins, transaction_type, reason, resource_id, idempotency_key)
                VALUES (p_user, v_achievement.coins_reward, 'earned', 'achievement_unlocked', v_achievement.id,
                        passion_achievement_key(p_key, v_achievement.id));
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

CREATE OR REPLACE FUNCTION passion_evaluate(p_user uuid, p_principal text, p_ip inet, p_user_agent text) RETURNS jsonb
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
    SELECT * INTO v_level, v_events
    FROM passion_evaluate_achievements(p_user, '$evaluate', p_principal, p_ip, p_user_agent, true, v_level, v_events);
    RETURN passion_progress_json(p_user) || jsonb_build_object('events', v_events);
END
$$;

-- passion_reward --------------------------------------------------------------------------------
-- As in 0007, and: a negative XP or coin amount that would take the total below zero is
-- refused with the balance (INSUFFICIENT_XP, INSUFFICIENT_FUNDS) before anything is written.

CREATE OR REPLACE FUNCTION passion_reward(
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
        IF v_before.total_xp + p_amount < 0 THEN
            RAISE EXCEPTION 'the user has less XP than the amount taken'
                USING ERRCODE = 'P0A10', HINT = 'INSUFFICIENT_XP',
                      DETAIL = jsonb_build_object('total_xp', v_before.total_xp, 'amount', p_amount)::text;
        END IF;
        INSERT INTO points_ledger (user_id, points, reason, resource_id, resource_type, idempotency_key)
        VALUES (p_user, p_amount, p_reason, p_resource_id, p_resource_type, p_key)
        RETURNING id INTO v_ledger_id;
        v_action := 'xp.awarded';
        v_event_type := 'xp_awarded';
    WHEN 'coins' THEN
        IF v_before.total_coins + p_amount < 0 THEN
            RAISE EXCEPTION 'the balance does not cover the correction'
                USING ERRCODE = 'P0A10', HINT = 'INSUFFICIENT_FUNDS',
                      DETAIL = jsonb_build_object('balance', v_before.total_coins, 'amount', p_amount)::text;
        END IF;
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

-- Rule values: as in 0007, except that quests a user made for themselves (no reward) do not count
-- toward the quest achievements, which would otherwise be a matter of creating quests.
CREATE OR REPLACE FUNCTION passion_rule_values(p_user uuid) RETURNS jsonb
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
        'quests_completed', (SELECT count(*) FROM quests WHERE user_id = p_user AND status = 'completed'
                                                          AND created_by IS DISTINCT FROM 'user'))
    FROM (SELECT 1) AS one LEFT JOIN user_progress p ON p.user_id = p_user;
$$;

-- Anti-farming bounds on what a user's own content pays (docs/rules.md, "Bounds").
CREATE FUNCTION passion_paid_habit_completions_per_day() RETURNS integer LANGUAGE sql IMMUTABLE RETURN 25;
CREATE FUNCTION passion_paid_goals_per_day() RETURNS integer LANGUAGE sql IMMUTABLE RETURN 3;

-- Stored results of content calls ---------------------------------------------------------------

-- Keeps a content call's result under a server key; the next call of the same completion reads
-- it back marked replayed.
CREATE FUNCTION passion_store_result(p_user uuid, p_key text, p_result jsonb) RETURNS jsonb
LANGUAGE sql AS $$
    INSERT INTO idempotency_keys (user_id, key, request_hash, result)
    VALUES (p_user, p_key, sha256(convert_to(p_key, 'UTF8')), p_result)
    ON CONFLICT (user_id, key) DO UPDATE SET result = EXCLUDED.result;
    SELECT p_result;
$$;

-- The stored result of a content call with reward.replayed set, or NULL.
CREATE FUNCTION passion_replayed_result(p_user uuid, p_key text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN result ? 'reward' AND jsonb_typeof(result -> 'reward') = 'object'
                THEN jsonb_set(result, '{reward,replayed}', 'true')
                ELSE result || jsonb_build_object('reward', jsonb_build_object('replayed', true)) END
    FROM idempotency_keys WHERE user_id = p_user AND key = p_key AND result IS NOT NULL;
$$;

-- Quests ----------------------------------------------------------------------------------------
-- As in 0008, and each moved quest says where it was ("from"), so an Uncomplete can take back
-- exactly what a completion gave.

CREATE OR REPLACE FUNCTION passion_quests_advance(
    p_user uuid, p_event text, p_day date, p_habit uuid, p_goal uuid, p_count integer, p_streak integer
) RETURNS jsonb
LANGUAGE sql AS $$
    WITH moved AS (
        UPDATE quests q SET
            progress = least(q.target, CASE WHEN q.quest_type = 'habit_chain' THEN greatest(q.progress, p_streak)
                                            ELSE q.progress + p_count END),
            updated_at = now()
        FROM (SELECT id, progress AS before FROM quests WHERE user_id = p_user AND status = 'active' ORDER BY id FOR UPDATE) o
        WHERE o.id = q.id AND q.user_id = p_user AND q.status = 'active' AND q.is_active AND q.progress < q.target
          AND p_day BETWEEN q.start_date AND q.end_date
          AND CASE q.quest_type
                WHEN 'habit_chain' THEN p_event = 'habit' AND coalesce(q.criteria ->> 'habit_id', p_habit::text) = p_habit::text
                                        AND p_streak > q.progress
                WHEN 'daily' THEN p_event = 'habit'
                WHEN 'goal_completion' THEN p_event = 'goal' AND coalesce(q.criteria ->> 'goal_id', p_goal::text) = p_goal::text
                WHEN 'milestone' THEN (p_event = 'habit' AND q.criteria ->> 'metric' = 'completions')
                                   OR (p_event = 'focus' AND q.criteria ->> 'metric' = 'focus_minutes' AND p_count > 0)
                ELSE false
              END
        RETURNING q.id, o.before, q.progress, q.target
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object('quest_id', id, 'from', before, 'progress', progress, 'target', target)
                              ORDER BY id), '[]')
    FROM moved;
$$;

-- Habits.Complete -------------------------------------------------------------------------------
-- As in 0008, and:
-- - p_date, when given, is the local date the habit was done (an offline client): today or up
--   to p_window days back. p_yesterday keeps its meaning (yesterday, until 12:00 local time).
-- - The reward is keyed by the completion ('$habit-xp:<completion>'), so a completion undone
--   and made again is paid again, once.
-- - The whole result is stored ('$habit:<completion>'): a repeat within the period returns it
--   marked replayed; a period completed before 0012 (no stored result) still answers
--   HABIT_ALREADY_COMPLETED.

DROP FUNCTION passion_habit_complete(uuid, uuid, boolean, timestamptz, text, inet, text);

CREATE FUNCTION passion_habit_complete(
    p_user uuid, p_habit uuid, p_yesterday boolean, p_date date, p_window integer, p_now timestamptz,
    p_principal text, p_ip inet, p_user_agent text
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_zone text := passion_user_zone(p_user);
    v_local timestamp := p_now AT TIME ZONE v_zone;
    v_today date := v_local::date;
    v_day date := v_today;
    v_habit habits;
    v_existing record;
    v_replay jsonb;
    v_completion jsonb;
    v_completion_id uuid;
    v_streak integer;
    v_quests jsonb;
    v_reward jsonb;
BEGIN
    SELECT * INTO v_habit FROM habits WHERE id = p_habit AND user_id = p_user FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'habit not found' USING ERRCODE = 'P0A18', HINT = 'HABIT_NOT_FOUND', DETAIL = '{"field": "habit_id"}';
    END IF;
    IF p_yesterday THEN
        -- The grace window, as passion_streak_shown counts it.
        IF v_local::time >= time '12:00' THEN
            RAISE EXCEPTION 'yesterday can be completed until 12:00 local time'
                USING ERRCODE = 'P0A17', HINT = 'GRACE_WINDOW_CLOSED', DETAIL = jsonb_build_object('local_time', to_char(v_local, 'HH24:MI'))::text;
        END IF;
        v_day := v_today - 1;
    ELSIF p_date IS NOT NULL THEN
        IF p_date > v_today OR p_date < v_today - p_window THEN
            RAISE EXCEPTION 'a completion can be dated from % to % (today in %)', v_today - p_window, v_today, v_zone
                USING ERRCODE = 'P0A17', HINT = 'COMPLETION_OUTSIDE_WINDOW',
                      DETAIL = jsonb_build_object('field', 'local_date', 'earliest', v_today - p_window, 'today', v_today)::text;
        END IF;
        v_day := p_date;
    END IF;

    -- A repeat for the same day answers the first completion's result, before the state checks:
    -- the retried call did succeed. Another day of a period already done is refused.
    SELECT id, completion_date, completed_at INTO v_existing FROM habit_completions
    WHERE habit_id = p_habit
      AND completion_date BETWEEN passion_period_start(v_habit.frequency, v_day) AND passion_period_end(v_habit.frequency, v_day)
    ORDER BY completion_date LIMIT 1;
    IF FOUND THEN
        IF v_existing.completion_date = v_day THEN
            v_replay := passion_replayed_result(p_user, '$habit:' || v_existing.id);
            IF v_replay IS NOT NULL THEN
                RETURN v_replay;
            END IF;
        END IF;
        RAISE EXCEPTION 'the habit is already completed for this %', CASE v_habit.frequency WHEN 'daily' THEN 'day'
                                                                        WHEN 'weekly' THEN 'week' ELSE 'month' END
            USING ERRCODE = 'P0A16', HINT = 'HABIT_ALREADY_COMPLETED',
                  DETAIL = jsonb_build_object('completion_id', v_existing.id, 'completion_date', v_existing.completion_date,
                                              'completed_at', v_existing.completed_at)::text;
    END IF;

    IF v_habit.archived THEN
        RAISE EXCEPTION 'the habit is archived: unarchive it first' USING ERRCODE = 'P0A17', HINT = 'HABIT_ARCHIVED', DETAIL = '{}';
    END IF;
    IF NOT v_habit.is_active THEN
        RAISE EXCEPTION 'the habit is paused: resume it first' USING ERRCODE = 'P0A17', HINT = 'HABIT_PAUSED', DETAIL = '{}';
    END IF;
    IF v_day < v_today AND passion_local_date(v_zone, v_habit.created_at) > v_day THEN
        RAISE EXCEPTION 'the habit did not exist yet on %', v_day USING ERRCODE = 'P0A17', HINT = 'HABIT_NOT_STARTED', DETAIL = '{}';
    END IF;
    -- Paused periods neither count nor break: a date inside a pause cannot be filled in later.
    IF v_day < v_today AND EXISTS (SELECT 1 FROM habit_pauses WHERE habit_id = p_habit AND paused_on <= v_day
                                                              AND (resumed_on IS NULL OR resumed_on > v_day)) THEN
        RAISE EXCEPTION 'the habit was paused on %', v_day USING ERRCODE = 'P0A17', HINT = 'HABIT_PAUSED', DETAIL = '{}';
    END IF;

    INSERT INTO habit_completions (habit_id, user_id, completion_date, completed_at)
    VALUES (p_habit, p_user, v_day, p_now)
    RETURNING id, jsonb_build_object('id', id, 'habit_id', habit_id, 'completion_date', completion_date, 'completed_at', completed_at)
    INTO v_completion_id, v_completion;

    v_streak := passion_habit_streak(p_habit, v_habit.frequency, passion_period(v_habit.frequency, v_today));
    UPDATE habits SET
        streak_days = v_streak,
        streak_period = greatest(streak_period, passion_period(frequency, v_day)),
        total_completions = total_completions + 1,
        updated_at = p_now
    WHERE id = p_habit
    RETURNING * INTO v_habit;

    INSERT INTO audit_logs (user_id, action, resource_type, resource_id, details, ip_address, user_agent, status, principal)
    VALUES (p_user, 'habit.completed', 'habit', p_habit::text,
            jsonb_build_object('completion_date', v_day, 'streak', v_streak), p_ip, p_user_agent, 'success', p_principal);
    v_quests := passion_quests_advance(p_user, 'habit', v_day, p_habit, NULL, 1, v_streak);
    IF (SELECT count(*) FROM habit_completions WHERE user_id = p_user AND completion_date = v_day)
       <= passion_paid_habit_completions_per_day() THEN
        v_reward := passion_reward(p_user, 'xp', passion_habit_points(v_habit.frequency, v_streak), 'habit_completed', 'habit',
                                   p_habit, '$habit-xp:' || v_completion_id, NULL, p_principal, p_ip, p_user_agent);
    ELSE
        -- Past the day's paid completions: it counts (streak, quests, achievements), unpaid.
        v_reward := passion_evaluate(p_user, p_principal, p_ip, p_user_agent);
    END IF;
    RETURN passion_store_result(p_user, '$habit:' || v_completion_id, jsonb_build_object(
        'completion', v_completion, 'habit', to_jsonb(v_habit) || jsonb_build_object('today', v_today),
        'quests', v_quests, 'reward', v_reward));
END
$$;

-- Habits.Uncomplete -----------------------------------------------------------------------------
-- Takes back a completion dated within the last p_window days (a mis-tap): deletes it, recounts
-- the streak, moves back the quests it moved that are still open, and reverses its XP with a
-- compensating 'correction' row keyed by the completion (never twice; at most the XP the user
-- still has). Unlocked achievements stay, and so does habits.total_completions (the seed: it
-- never decreases; it counts completions made). The result is stored: a repeat returns it
-- replayed.
-- Returns {completion, habit, reward}.

CREATE FUNCTION passion_habit_uncomplete(
    p_user uuid, p_completion uuid, p_window integer, p_now timestamptz, p_principal text, p_ip inet, p_user_agent text
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_zone text := passion_user_zone(p_user);
    v_today date := passion_local_date(v_zone, p_now);
    v_replay jsonb;
    v_completion habit_completions;
    v_habit habits;
    v_first jsonb;
    v_paid integer;
    v_quest jsonb;
    v_reward jsonb;
    v_total bigint;
BEGIN
    -- Locked, so a concurrent Uncomplete of the same completion waits here and then replays.
    SELECT * INTO v_completion FROM habit_completions WHERE id = p_completion AND user_id = p_user FOR UPDATE;
    IF NOT FOUND THEN
        v_replay := passion_replayed_result(p_user, '$habit-undo:' || p_completion);
        IF v_replay IS NOT NULL THEN
            RETURN v_replay;
        END IF;
        RAISE EXCEPTION 'completion not found' USING ERRCODE = 'P0A18', HINT = 'COMPLETION_NOT_FOUND',
              DETAIL = '{"field": "completion_id"}';
    END IF;
    SELECT * INTO v_habit FROM habits WHERE id = v_completion.habit_id FOR UPDATE;
    IF v_completion.completion_date < v_today - p_window THEN
        RAISE EXCEPTION 'completions older than % days cannot be undone', p_window USING ERRCODE = 'P0A17',
              HINT = 'COMPLETION_TOO_OLD', DETAIL = jsonb_build_object('earliest', v_today - p_window)::text;
    END IF;

    -- What the completion did, as it stored it (completions before 0012 stored nothing: their
    -- reward is found by its old key, and their quest moves are not known).
    SELECT result INTO v_first FROM idempotency_keys WHERE user_id = p_user AND key = '$habit:' || p_completion;
    -- A quest it helped complete has paid: taking the completion back would leave the claim
    -- standing on nothing (and let the completion feed another quest).
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(coalesce(v_first -> 'quests', '[]')) m
               JOIN quests q ON q.id = (m.value ->> 'quest_id')::uuid AND q.user_id = p_user
               WHERE q.status = 'completed') THEN
        RAISE EXCEPTION 'a quest this completion counted toward has been claimed' USING ERRCODE = 'P0A17',
              HINT = 'QUEST_CLAIMED', DETAIL = '{}';
    END IF;

    DELETE FROM habit_completions WHERE id = p_completion;
    -- The streak is counted again; a streak carried over a pause keeps its carry (Resume set it).
    UPDATE habits h SET
        streak_days = s.streak,
        streak_period = CASE WHEN s.streak > 0 THEN greatest(s.newest, s.carried) ELSE s.newest END,
        last_completed_on = (SELECT max(c.completion_date) FROM habit_completions c WHERE c.habit_id = h.id),
        updated_at = p_now
    FROM (SELECT passion_habit_streak(v_habit.id, v_habit.frequency, passion_period(v_habit.frequency, v_today)) AS streak,
                 (SELECT max(passion_period(v_habit.frequency, c.completion_date)) FROM habit_completions c
                  WHERE c.habit_id = v_habit.id) AS newest,
                 (SELECT max(passion_period(v_habit.frequency, p.resumed_on)) - 1 FROM habit_pauses p
                  WHERE p.habit_id = v_habit.id AND p.resumed_on IS NOT NULL) AS carried) s
    WHERE h.id = v_habit.id
    RETURNING h.* INTO v_habit;

    FOR v_quest IN SELECT * FROM jsonb_array_elements(coalesce(v_first -> 'quests', '[]')) LOOP
        UPDATE quests q SET
            -- A chain's progress is the longest streak reached: what it was before, or the
            -- streak as counted now.
            progress = CASE WHEN q.quest_type = 'habit_chain'
                            THEN greatest((v_quest ->> 'from')::integer, least(q.progress, v_habit.streak_days))
                            ELSE greatest(q.progress - ((v_quest ->> 'progress')::integer - (v_quest ->> 'from')::integer), 0) END,
            updated_at = p_now
        WHERE q.id = (v_quest ->> 'quest_id')::uuid AND q.user_id = p_user AND q.status = 'active' AND v_quest ? 'from';
    END LOOP;
    -- Its XP: the completion's own key; a completion from before 0012 (no stored result) was
    -- paid under the old key of its habit and date.
    SELECT points INTO v_paid FROM points_ledger
    WHERE user_id = p_user AND reason = 'habit_completed' AND points > 0
      AND idempotency_key = CASE WHEN v_first IS NULL THEN 'habit:' || v_habit.id || ':' || v_completion.completion_date
                                 ELSE '$habit-xp:' || p_completion END;
    PERFORM passion_user_progress_ensure(p_user);
    SELECT total_xp INTO v_total FROM user_progress WHERE user_id = p_user FOR UPDATE;
    v_paid := least(coalesce(v_paid, 0), v_total)::integer;
    IF v_paid > 0 THEN
        v_reward := passion_reward(p_user, 'xp', -v_paid, 'correction', 'habit', v_habit.id, '$habit-undo-xp:' || p_completion,
                                   NULL, p_principal, p_ip, p_user_agent);
    ELSE
        v_reward := passion_progress_json(p_user) || jsonb_build_object('events', '[]'::jsonb, 'replayed', false);
    END IF;
    INSERT INTO audit_logs (user_id, action, resource_type, resource_id, details, ip_address, user_agent, status, principal)
    VALUES (p_user, 'habit.uncompleted', 'habit', v_habit.id::text,
            jsonb_build_object('completion_date', v_completion.completion_date, 'xp_reversed', v_paid),
            p_ip, p_user_agent, 'success', p_principal);
    RETURN passion_store_result(p_user, '$habit-undo:' || p_completion, jsonb_build_object(
        'completion', jsonb_build_object('id', v_completion.id, 'habit_id', v_completion.habit_id,
                                         'completion_date', v_completion.completion_date, 'completed_at', v_completion.completed_at),
        'habit', to_jsonb(v_habit) || jsonb_build_object('today', v_today),
        'reward', v_reward));
END
$$;

-- Goals.Complete --------------------------------------------------------------------------------
-- As in 0008, with server keys in their namespace and the result stored for repeats.

CREATE OR REPLACE FUNCTION passion_goal_complete(
    p_user uuid, p_goal uuid, p_now timestamptz, p_principal text, p_ip inet, p_user_agent text
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_zone text := passion_user_zone(p_user);
    v_goal goals;
    v_replay jsonb;
    v_points integer;
    v_quests jsonb;
    v_xp jsonb;
    v_coins jsonb;
BEGIN
    SELECT * INTO v_goal FROM goals WHERE id = p_goal AND user_id = p_user AND is_active FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'goal not found' USING ERRCODE = 'P0A18', HINT = 'GOAL_NOT_FOUND', DETAIL = '{"field": "goal_id"}';
    END IF;
    IF v_goal.status = 'completed' THEN
        v_replay := passion_replayed_result(p_user, '$goal:' || p_goal);
        IF v_replay IS NOT NULL THEN
            RETURN v_replay;
        END IF;
        RAISE EXCEPTION 'the goal is already completed' USING ERRCODE = 'P0A16', HINT = 'GOAL_ALREADY_COMPLETED',
              DETAIL = jsonb_build_object('completed_at', v_goal.completed_at)::text;
    END IF;
    IF v_goal.status <> 'active' OR v_goal.archived THEN
        RAISE EXCEPTION 'only an active, unarchived goal can be completed' USING ERRCODE = 'P0A17', HINT = 'GOAL_NOT_ACTIVE',
              DETAIL = jsonb_build_object('status', v_goal.status, 'archived', v_goal.archived)::text;
    END IF;
    UPDATE goals SET status = 'completed', completed_at = p_now, updated_at = p_now WHERE id = p_goal RETURNING * INTO v_goal;
    INSERT INTO audit_logs (user_id, action, resource_type, resource_id, details, ip_address, user_agent, status, principal)
    VALUES (p_user, 'goal.completed', 'goal', p_goal::text, jsonb_build_object('priority', v_goal.priority),
            p_ip, p_user_agent, 'success', p_principal);
    v_quests := passion_quests_advance(p_user, 'goal', passion_local_date(v_zone, p_now), NULL, p_goal, 1, 0);
    -- Only the day's first goals pay: creating and completing goals is not a way to earn.
    IF (SELECT count(*) FROM goals g WHERE g.user_id = p_user AND g.status = 'completed'
          AND passion_local_date(v_zone, g.completed_at) = passion_local_date(v_zone, p_now)) > passion_paid_goals_per_day() THEN
        v_coins := passion_evaluate(p_user, p_principal, p_ip, p_user_agent);
    ELSE
        v_points := 50 * (6 - coalesce(v_goal.priority, 3));
        v_xp := passion_reward(p_user, 'xp', v_points, 'goal_completed', 'goal', p_goal, '$goal-xp:' || p_goal,
                               NULL, p_principal, p_ip, p_user_agent);
        v_coins := passion_reward(p_user, 'coins', v_points / 10, 'goal_completed', 'goal', p_goal, '$goal-coins:' || p_goal,
                                  NULL, p_principal, p_ip, p_user_agent);
        v_coins := v_coins || jsonb_build_object('events', (v_xp -> 'events') || (v_coins -> 'events'));
    END IF;
    RETURN passion_store_result(p_user, '$goal:' || p_goal, jsonb_build_object(
        'goal', to_jsonb(v_goal) || jsonb_build_object('habit_count',
            (SELECT count(*) FROM habits h WHERE h.goal_id = p_goal AND h.user_id = p_user AND h.is_active AND NOT h.archived)),
        'quests', v_quests,
        'reward', v_coins));
END
$$;

-- FocusSessions.Complete ------------------------------------------------------------------------
-- As in 0008, except that the minutes credited (actual_duration_minutes, the XP, quests and the
-- focus achievements) are at most the planned duration; focused_seconds keeps what was measured.

CREATE OR REPLACE FUNCTION passion_focus_complete(
    p_user uuid, p_session uuid, p_now timestamptz, p_principal text, p_ip inet, p_user_agent text
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_zone text := passion_user_zone(p_user);
    v_session focus_sessions;
    v_replay jsonb;
    v_seconds bigint;
    v_minutes integer;
    v_quests jsonb;
    v_reward jsonb;
BEGIN
    SELECT * INTO v_session FROM focus_sessions WHERE id = p_session AND user_id = p_user FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'focus session not found' USING ERRCODE = 'P0A18', HINT = 'FOCUS_SESSION_NOT_FOUND',
              DETAIL = '{"field": "session_id"}';
    END IF;
    IF v_session.status = 'completed' THEN
        v_replay := passion_replayed_result(p_user, '$focus:' || p_session);
        IF v_replay IS NOT NULL THEN
            RETURN v_replay;
        END IF;
        RAISE EXCEPTION 'the focus session is already completed' USING ERRCODE = 'P0A16', HINT = 'FOCUS_SESSION_ALREADY_COMPLETED',
              DETAIL = jsonb_build_object('actual_duration_minutes', v_session.actual_duration_minutes)::text;
    END IF;
    IF v_session.status = 'abandoned' THEN
        RAISE EXCEPTION 'the focus session was abandoned' USING ERRCODE = 'P0A17', HINT = 'FOCUS_SESSION_ENDED', DETAIL = '{}';
    END IF;
    v_seconds := v_session.focused_seconds
        + CASE WHEN v_session.status = 'active' THEN greatest(extract(epoch FROM p_now - coalesce(v_session.running_since, v_session.started_at)), 0)::bigint ELSE 0 END;
    v_minutes := least(v_seconds / 60, v_session.duration_minutes);
    UPDATE focus_sessions SET status = 'completed', completed_at = greatest(p_now, started_at), actual_duration_minutes = v_minutes,
           focused_seconds = least(v_seconds, 86400), running_since = NULL, paused_at = NULL, is_active = false, updated_at = p_now
    WHERE id = p_session RETURNING * INTO v_session;
    INSERT INTO audit_logs (user_id, action, resource_type, resource_id, details, ip_address, user_agent, status, principal)
    VALUES (p_user, 'focus_session.completed', 'focus_session', p_session::text,
            jsonb_build_object('minutes', v_minutes, 'measured_seconds', v_seconds), p_ip, p_user_agent, 'success', p_principal);
    v_quests := passion_quests_advance(p_user, 'focus', passion_local_date(v_zone, p_now), NULL, NULL, v_minutes, 0);
    IF v_minutes > 0 THEN
        v_reward := passion_reward(p_user, 'xp', v_minutes, 'focus_session_completed', 'focus_session', p_session,
                                   '$focus-xp:' || p_session, NULL, p_principal, p_ip, p_user_agent);
    ELSE
        -- No XP for under a minute.
        v_reward := passion_evaluate(p_user, p_principal, p_ip, p_user_agent);
    END IF;
    RETURN passion_store_result(p_user, '$focus:' || p_session,
                                jsonb_build_object('session', to_jsonb(v_session), 'quests', v_quests, 'reward', v_reward));
END
$$;

-- Sessions started more than a day ago and never ended are abandoned (no session is planned
-- for more than 8 hours); they earn nothing.
CREATE FUNCTION passion_abandon_stale_focus_sessions(p_now timestamptz) RETURNS integer
LANGUAGE sql AS $$
    WITH abandoned AS (
        UPDATE focus_sessions SET status = 'abandoned', paused_at = NULL, running_since = NULL, is_active = false, updated_at = p_now
        WHERE status IN ('active', 'paused') AND started_at < p_now - interval '24 hours'
        RETURNING 1
    )
    SELECT count(*)::integer FROM abandoned;
$$;

-- Quests.Complete -------------------------------------------------------------------------------
-- As in 0008, with server keys in their namespace and the result stored for repeats.

CREATE OR REPLACE FUNCTION passion_quest_complete(
    p_user uuid, p_quest uuid, p_now timestamptz, p_principal text, p_ip inet, p_user_agent text
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_today date := passion_local_date(passion_user_zone(p_user), p_now);
    v_quest quests;
    v_replay jsonb;
    v_reward jsonb;
BEGIN
    SELECT * INTO v_quest FROM quests WHERE id = p_quest AND user_id = p_user FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'quest not found' USING ERRCODE = 'P0A18', HINT = 'QUEST_NOT_FOUND', DETAIL = '{"field": "quest_id"}';
    END IF;
    IF v_quest.status = 'completed' THEN
        v_replay := passion_replayed_result(p_user, '$quest:' || p_quest);
        IF v_replay IS NOT NULL THEN
            RETURN v_replay;
        END IF;
        RAISE EXCEPTION 'the quest is already completed' USING ERRCODE = 'P0A16', HINT = 'QUEST_ALREADY_COMPLETED',
              DETAIL = jsonb_build_object('completed_at', v_quest.completed_at)::text;
    END IF;
    IF v_quest.status <> 'active' OR v_quest.end_date < v_today THEN
        RAISE EXCEPTION 'the quest has ended' USING ERRCODE = 'P0A17', HINT = 'QUEST_CLOSED',
              DETAIL = jsonb_build_object('status', CASE WHEN v_quest.status = 'active' THEN 'failed' ELSE v_quest.status END,
                                          'end_date', v_quest.end_date)::text;
    END IF;
    IF v_quest.progress < v_quest.target THEN
        RAISE EXCEPTION 'the quest is not done yet' USING ERRCODE = 'P0A17', HINT = 'QUEST_NOT_DONE',
              DETAIL = jsonb_build_object('progress', v_quest.progress, 'target', v_quest.target)::text;
    END IF;
    UPDATE quests SET status = 'completed', completed_at = p_now, updated_at = p_now WHERE id = p_quest RETURNING * INTO v_quest;
    INSERT INTO audit_logs (user_id, action, resource_type, resource_id, details, ip_address, user_agent, status, principal)
    VALUES (p_user, 'quest.completed', 'quest', p_quest::text, jsonb_build_object('xp_reward', v_quest.xp_reward),
            p_ip, p_user_agent, 'success', p_principal);
    IF v_quest.xp_reward > 0 THEN
        v_reward := passion_reward(p_user, 'xp', v_quest.xp_reward, 'quest_completed', 'quest', p_quest, '$quest-xp:' || p_quest,
                                   NULL, p_principal, p_ip, p_user_agent);
    ELSE
        v_reward := passion_evaluate(p_user, p_principal, p_ip, p_user_agent);
    END IF;
    RETURN passion_store_result(p_user, '$quest:' || p_quest, jsonb_build_object('quest', to_jsonb(v_quest), 'reward', v_reward));
END
$$;

-- Figures ---------------------------------------------------------------------------------------

-- The user's streaks as every read shows them at p_now in the user's zone (passion_streak_shown,
-- what Today and Habits show): how many active, unarchived habits have one, and the longest
-- among unarchived habits (a paused habit's frozen streak counts).
CREATE FUNCTION passion_user_streaks(p_user uuid, p_now timestamptz, OUT active_streaks integer, OUT longest integer)
LANGUAGE sql STABLE AS $$
    SELECT coalesce(count(*) FILTER (WHERE s.streak > 0 AND s.is_active), 0)::integer, coalesce(max(s.streak), 0)::integer
    FROM (SELECT h.is_active,
                 passion_streak_shown(h.streak_days, h.streak_period, h.is_active, h.frequency,
                                      p_now AT TIME ZONE coalesce(u.timezone, 'UTC')) AS streak
          FROM habits h JOIN users u ON u.id = h.user_id
          WHERE h.user_id = p_user AND NOT h.archived) s;
$$;

-- The all-time rank: 1 + how many active users have more XP. Deleted users count nowhere; users
-- with no XP share the rank after everyone who has some. Leaderboard ranks the same way.
CREATE FUNCTION passion_all_time_rank(p_user uuid) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT 1 + count(*)
    FROM user_progress o JOIN users u ON u.id = o.user_id AND u.deleted_at IS NULL
    WHERE o.total_xp > coalesce((SELECT total_xp FROM user_progress WHERE user_id = p_user), 0);
$$;

-- Deleted users ---------------------------------------------------------------------------------
-- Nothing new is written for a deleted user: the authenticator refuses calls acting for one, and
-- this guard closes the seconds in which another instance still remembers the user as live.
CREATE FUNCTION passion_user_must_be_live() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM users WHERE id = NEW.user_id AND deleted_at IS NULL) THEN
        RAISE EXCEPTION 'user not found' USING ERRCODE = 'P0A11', HINT = 'USER_NOT_FOUND', DETAIL = '{}';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER goals_user_live BEFORE INSERT ON goals FOR EACH ROW EXECUTE FUNCTION passion_user_must_be_live();
CREATE TRIGGER habits_user_live BEFORE INSERT ON habits FOR EACH ROW EXECUTE FUNCTION passion_user_must_be_live();
CREATE TRIGGER habit_completions_user_live BEFORE INSERT ON habit_completions FOR EACH ROW EXECUTE FUNCTION passion_user_must_be_live();
CREATE TRIGGER quests_user_live BEFORE INSERT ON quests FOR EACH ROW EXECUTE FUNCTION passion_user_must_be_live();
CREATE TRIGGER focus_sessions_user_live BEFORE INSERT ON focus_sessions FOR EACH ROW EXECUTE FUNCTION passion_user_must_be_live();
CREATE TRIGGER user_settings_user_live BEFORE INSERT ON user_settings FOR EACH ROW EXECUTE FUNCTION passion_user_must_be_live();
