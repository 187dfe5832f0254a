-- 0008_content_engine: goals, habits and streaks, quests and focus sessions as single-round-trip
-- functions that feed passion_reward (0007), plus the maintenance jobs.
--
-- Time: every function takes the instant it runs for (p_now) instead of reading now(), so the
-- day arithmetic of any time zone, DST change or leap day can be tested at a chosen instant. A
-- user's "today" is the local date of p_now in users.timezone (UTC when unset).
--
-- Errors for callers, as in 0007 (MESSAGE safe to show, HINT the reason, DETAIL JSON):
--   P0A16 -> ALREADY_EXISTS       HABIT_ALREADY_COMPLETED, GOAL_ALREADY_COMPLETED,
--                                 QUEST_ALREADY_COMPLETED, FOCUS_SESSION_ALREADY_COMPLETED
--   P0A17 -> FAILED_PRECONDITION  HABIT_PAUSED, HABIT_ARCHIVED, HABIT_NOT_STARTED,
--                                 GRACE_WINDOW_CLOSED, GOAL_NOT_ACTIVE, QUEST_NOT_DONE,
--                                 QUEST_CLOSED, FOCUS_SESSION_ENDED
--   P0A18 -> NOT_FOUND            HABIT_NOT_FOUND, GOAL_NOT_FOUND, QUEST_NOT_FOUND,
--                                 FOCUS_SESSION_NOT_FOUND

-- Columns ---------------------------------------------------------------------------------------

-- When a goal was completed: the archive job counts from it (goals completed before 0008 have
-- none; their updated_at stands in).
ALTER TABLE goals ADD COLUMN completed_at TIMESTAMPTZ;

-- The period (passion_period) a habit's streak reaches up to: its latest completion, or later
-- when a resume carried the streak over a pause. A read shows the streak only while the period
-- before the current one is at most this one.
ALTER TABLE habits ADD COLUMN streak_period INTEGER;

-- Pauses freeze streaks: periods from the pause up to (not including) the resume neither count
-- nor break. Dates are the user's local dates when it happened.
CREATE TABLE habit_pauses (
    id         BIGINT GENERATED ALWAYS AS IDENTITY,
    habit_id   UUID NOT NULL,
    user_id    UUID NOT NULL,
    paused_on  DATE NOT NULL,
    resumed_on DATE,

    CONSTRAINT habit_pauses_pkey PRIMARY KEY (id),
    CONSTRAINT habit_pauses_habit_id_fkey FOREIGN KEY (habit_id, user_id) REFERENCES habits (id, user_id),
    CONSTRAINT habit_pauses_order CHECK (resumed_on >= paused_on)
);
CREATE INDEX idx_habit_pauses_habit ON habit_pauses (habit_id, paused_on);
-- At most one open pause per habit.
CREATE UNIQUE INDEX habit_pauses_one_open ON habit_pauses (habit_id) WHERE resumed_on IS NULL;

-- Quests: what they watch (criteria), how far they are, and when they were claimed. A user may
-- abandon a quest: a fourth status.
ALTER TABLE quests ADD COLUMN criteria JSONB NOT NULL DEFAULT '{}';
ALTER TABLE quests ADD COLUMN target INTEGER NOT NULL DEFAULT 1;
ALTER TABLE quests ADD COLUMN progress INTEGER NOT NULL DEFAULT 0;
ALTER TABLE quests ADD COLUMN completed_at TIMESTAMPTZ;
ALTER TABLE quests ADD COLUMN created_by TEXT;
ALTER TABLE quests ADD CONSTRAINT quests_criteria_object CHECK (jsonb_typeof(criteria) = 'object');
ALTER TABLE quests ADD CONSTRAINT quests_target_range CHECK (target BETWEEN 1 AND 1000000);
ALTER TABLE quests ADD CONSTRAINT quests_progress_nonnegative CHECK (progress >= 0);
ALTER TABLE quests DROP CONSTRAINT quests_status_valid;
ALTER TABLE quests ADD CONSTRAINT quests_status_valid CHECK (status IN ('active', 'completed', 'failed', 'abandoned'));
CREATE INDEX idx_quests_user_created ON quests (user_id, created_at DESC);

-- Focus sessions: seconds focused in finished intervals, and since when the current one runs
-- (an active session without it, never paused, runs since started_at).
ALTER TABLE focus_sessions ADD COLUMN focused_seconds INTEGER NOT NULL DEFAULT 0;
ALTER TABLE focus_sessions ADD COLUMN running_since TIMESTAMPTZ;
ALTER TABLE focus_sessions ADD CONSTRAINT focus_sessions_focused_seconds_nonnegative CHECK (focused_seconds >= 0);
-- One running or paused session per user (Start's rule, also under concurrent starts).
CREATE UNIQUE INDEX focus_sessions_one_open ON focus_sessions (user_id) WHERE status IN ('active', 'paused');

-- The pomodoro length Start uses.
ALTER TABLE user_settings ADD COLUMN pomodoro_minutes INTEGER NOT NULL DEFAULT 25;
ALTER TABLE user_settings ADD CONSTRAINT user_settings_pomodoro_minutes_range CHECK (pomodoro_minutes BETWEEN 1 AND 480);

-- Periods ---------------------------------------------------------------------------------------
-- A habit's periods numbered consecutively: days, ISO weeks (Monday to Sunday; 1900-01-01 was a
-- Monday) or calendar months. Consecutive numbers are consecutive periods across week-53 years,
-- month ends and leap days.

CREATE FUNCTION passion_period(p_frequency text, p_day date) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN CASE p_frequency
    WHEN 'daily' THEN p_day - date '1900-01-01'
    WHEN 'weekly' THEN (p_day - date '1900-01-01') / 7
    ELSE (extract(year FROM p_day)::integer * 12 + extract(month FROM p_day)::integer - 1)
END;

-- The first day of the period holding p_day.
CREATE FUNCTION passion_period_start(p_frequency text, p_day date) RETURNS date
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN CASE p_frequency
    WHEN 'daily' THEN p_day
    WHEN 'weekly' THEN p_day - ((p_day - date '1900-01-01') % 7)
    ELSE date_trunc('month', p_day)::date
END;

CREATE FUNCTION passion_period_end(p_frequency text, p_day date) RETURNS date
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN CASE p_frequency
    WHEN 'daily' THEN p_day
    WHEN 'weekly' THEN passion_period_start('weekly', p_day) + 6
    ELSE (date_trunc('month', p_day) + interval '1 month - 1 day')::date
END;

-- The user's local date at p_now.
CREATE FUNCTION passion_local_date(p_zone text, p_now timestamptz) RETURNS date
LANGUAGE sql STABLE PARALLEL SAFE
RETURN (p_now AT TIME ZONE coalesce(p_zone, 'UTC'))::date;

-- Streaks ---------------------------------------------------------------------------------------
-- The streak of a habit as of period p_current: consecutive periods with a completion, counted
-- back from the newest. The current period may still be completed, so leaving it open breaks
-- nothing; a period inside a pause is skipped; any other period without a completion ends the
-- streak. Completions after p_current (a user who moved west) count from where they are.

CREATE FUNCTION passion_habit_streak(p_habit uuid, p_frequency text, p_current integer) RETURNS integer
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_period integer;
    v_expect integer;
    v_skip integer;
    v_streak integer := 0;
BEGIN
    FOR v_period IN
        SELECT DISTINCT passion_period(p_frequency, completion_date) FROM habit_completions
        WHERE habit_id = p_habit ORDER BY 1 DESC
    LOOP
        IF v_expect IS NULL THEN
            v_expect := CASE WHEN v_period >= p_current THEN v_period ELSE p_current - 1 END;
        END IF;
        -- Every period between the expected one and this completion must be paused.
        WHILE v_expect > v_period LOOP
            SELECT min(passion_period(p_frequency, paused_on)) INTO v_skip FROM habit_pauses
            WHERE habit_id = p_habit AND passion_period(p_frequency, paused_on) <= v_expect
              AND (resumed_on IS NULL OR passion_period(p_frequency, resumed_on) > v_expect);
            IF v_skip IS NULL THEN
                RETURN v_streak;
            END IF;
            v_expect := v_skip - 1;
        END LOOP;
        v_streak := v_streak + 1;
        v_expect := least(v_expect, v_period - 1);
    END LOOP;
    RETURN v_streak;
END
$$;

-- What a read shows at local time p_local: a paused habit keeps its frozen streak; otherwise the
-- streak counts while no period before the current one was missed. Until noon, yesterday can
-- still be completed (Habits.Complete's grace window), so it is not missed yet: the day that
-- decides is the local date 12 hours ago.
CREATE FUNCTION passion_streak_shown(
    p_streak integer, p_streak_period integer, p_is_active boolean, p_frequency text, p_local timestamp
) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN NOT p_is_active THEN p_streak
    WHEN p_streak_period >= passion_period(p_frequency, (p_local - interval '12 hours')::date) - 1 THEN p_streak
    ELSE 0
END;

-- XP for a completion: 10 (daily), 25 (weekly) or 50 (monthly), plus 10% of that per streak
-- period beyond the first, capped at +100% (a streak of 11 or more).
CREATE FUNCTION passion_habit_points(p_frequency text, p_streak integer) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN (CASE p_frequency WHEN 'daily' THEN 10 WHEN 'weekly' THEN 25 ELSE 50 END)
       * (10 + least(greatest(p_streak - 1, 0), 10)) / 10;

-- Quests ----------------------------------------------------------------------------------------
-- Moves the user's active quests that watch this event, when its local day is inside their
-- dates. p_event: 'habit' (p_count completions, p_streak the habit's streak now), 'goal',
-- 'focus' (p_count minutes). Returns the quests moved as [{quest_id, progress, target}].
--   habit_chain      the watched habit's (criteria.habit_id, else any habit's) streak
--   daily            habit completions
--   goal_completion  completed goals (criteria.goal_id: only that goal)
--   milestone        criteria.metric: 'completions' (habit completions) or 'focus_minutes'

CREATE FUNCTION passion_quests_advance(
    p_user uuid, p_event text, p_day date, p_habit uuid, p_goal uuid, p_count integer, p_streak integer
) RETURNS jsonb
LANGUAGE sql AS $$
    WITH moved AS (
        UPDATE quests q SET
            progress = least(q.target, CASE WHEN q.quest_type = 'habit_chain' THEN greatest(q.progress, p_streak)
                                            ELSE q.progress + p_count END),
            updated_at = now()
        WHERE q.user_id = p_user AND q.status = 'active' AND q.is_active AND q.progress < q.target
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
        RETURNING q.id, q.progress, q.target
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object('quest_id', id, 'progress', progress, 'target', target) ORDER BY id), '[]')
    FROM moved;
$$;

-- The user's time zone, or USER_NOT_FOUND.
CREATE FUNCTION passion_user_zone(p_user uuid) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_zone text;
BEGIN
    SELECT coalesce(timezone, 'UTC') INTO v_zone FROM users WHERE id = p_user AND deleted_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'user not found' USING ERRCODE = 'P0A11', HINT = 'USER_NOT_FOUND', DETAIL = '{}';
    END IF;
    RETURN v_zone;
END
$$;

-- Habits.Complete ------------------------------------------------------------------------------
-- Completes a habit for the user's today, or for yesterday (p_yesterday) until noon local time.
-- Once per period: a second completion answers HABIT_ALREADY_COMPLETED with the first. Locks the
-- habit, writes the completion, recomputes the streak, advances quests, and awards the XP
-- through passion_reward (keyed by habit and day, so it is paid once), which evaluates
-- achievements. Returns {completion, habit, quests, reward}.

CREATE FUNCTION passion_habit_complete(
    p_user uuid, p_habit uuid, p_yesterday boolean, p_now timestamptz, p_principal text, p_ip inet, p_user_agent text
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_zone text := passion_user_zone(p_user);
    v_local timestamp := p_now AT TIME ZONE v_zone;
    v_today date := v_local::date;
    v_day date := v_today;
    v_habit habits;
    v_existing record;
    v_completion jsonb;
    v_streak integer;
    v_quests jsonb;
    v_reward jsonb;
BEGIN
    SELECT * INTO v_habit FROM habits WHERE id = p_habit AND user_id = p_user FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'habit not found' USING ERRCODE = 'P0A18', HINT = 'HABIT_NOT_FOUND', DETAIL = '{"field": "habit_id"}';
    END IF;
    IF v_habit.archived THEN
        RAISE EXCEPTION 'the habit is archived: unarchive it first' USING ERRCODE = 'P0A17', HINT = 'HABIT_ARCHIVED', DETAIL = '{}';
    END IF;
    IF NOT v_habit.is_active THEN
        RAISE EXCEPTION 'the habit is paused: resume it first' USING ERRCODE = 'P0A17', HINT = 'HABIT_PAUSED', DETAIL = '{}';
    END IF;
    IF p_yesterday THEN
        -- The grace window, as passion_streak_shown counts it.
        IF v_local::time >= time '12:00' THEN
            RAISE EXCEPTION 'yesterday can be completed until 12:00 local time'
                USING ERRCODE = 'P0A17', HINT = 'GRACE_WINDOW_CLOSED', DETAIL = jsonb_build_object('local_time', to_char(v_local, 'HH24:MI'))::text;
        END IF;
        v_day := v_today - 1;
        IF passion_local_date(v_zone, v_habit.created_at) > v_day THEN
            RAISE EXCEPTION 'the habit did not exist yet yesterday' USING ERRCODE = 'P0A17', HINT = 'HABIT_NOT_STARTED', DETAIL = '{}';
        END IF;
    END IF;

    SELECT id, completion_date, completed_at INTO v_existing FROM habit_completions
    WHERE habit_id = p_habit
      AND completion_date BETWEEN passion_period_start(v_habit.frequency, v_day) AND passion_period_end(v_habit.frequency, v_day)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'the habit is already completed for this %', CASE v_habit.frequency WHEN 'daily' THEN 'day'
                                                                        WHEN 'weekly' THEN 'week' ELSE 'month' END
            USING ERRCODE = 'P0A16', HINT = 'HABIT_ALREADY_COMPLETED',
                  DETAIL = jsonb_build_object('completion_id', v_existing.id, 'completion_date', v_existing.completion_date,
                                              'completed_at', v_existing.completed_at)::text;
    END IF;

    INSERT INTO habit_completions (habit_id, user_id, completion_date, completed_at)
    VALUES (p_habit, p_user, v_day, p_now)
    RETURNING jsonb_build_object('id', id, 'habit_id', habit_id, 'completion_date', completion_date, 'completed_at', completed_at)
    INTO v_completion;

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
    v_reward := passion_reward(p_user, 'xp', passion_habit_points(v_habit.frequency, v_streak), 'habit_completed', 'habit', p_habit,
                               'habit:' || p_habit || ':' || v_day, NULL, p_principal, p_ip, p_user_agent);
    RETURN jsonb_build_object('completion', v_completion, 'habit', to_jsonb(v_habit) || jsonb_build_object('today', v_today),
                              'quests', v_quests, 'reward', v_reward);
END
$$;

-- Pause and resume: a pause freezes the streak as it reads now (a streak already broken stays
-- broken) and skips periods from the day that decides it (yesterday until noon, as for reads);
-- a resume carries the streak over the paused periods.
CREATE FUNCTION passion_habit_set_active(p_user uuid, p_habit uuid, p_active boolean, p_now timestamptz) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_local timestamp := p_now AT TIME ZONE passion_user_zone(p_user);
    v_today date := v_local::date;
    v_habit habits;
BEGIN
    SELECT * INTO v_habit FROM habits WHERE id = p_habit AND user_id = p_user FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'habit not found' USING ERRCODE = 'P0A18', HINT = 'HABIT_NOT_FOUND', DETAIL = '{"field": "habit_id"}';
    END IF;
    IF v_habit.is_active = p_active THEN
        RETURN to_jsonb(v_habit) || jsonb_build_object('today', v_today);
    END IF;
    IF NOT p_active THEN
        INSERT INTO habit_pauses (habit_id, user_id, paused_on) VALUES (p_habit, p_user, (v_local - interval '12 hours')::date);
        UPDATE habits SET is_active = false, updated_at = p_now,
               streak_days = passion_streak_shown(streak_days, streak_period, true, frequency, v_local)
        WHERE id = p_habit RETURNING * INTO v_habit;
    ELSE
        UPDATE habit_pauses SET resumed_on = greatest(v_today, paused_on) WHERE habit_id = p_habit AND resumed_on IS NULL;
        UPDATE habits SET is_active = true, updated_at = p_now,
               streak_period = CASE WHEN streak_days > 0 THEN greatest(streak_period, passion_period(frequency, v_today) - 1)
                                    ELSE streak_period END
        WHERE id = p_habit RETURNING * INTO v_habit;
    END IF;
    RETURN to_jsonb(v_habit) || jsonb_build_object('today', v_today);
END
$$;

-- Goals.Complete -------------------------------------------------------------------------------
-- 50 XP × (6 − priority) (priority 1 is the most important; none counts as 3) and a tenth of
-- that in coins, both keyed by the goal so they are paid once. Returns {goal, quests, reward}
-- where reward is the coin reward's result with the events of both.

CREATE FUNCTION passion_goal_complete(
    p_user uuid, p_goal uuid, p_now timestamptz, p_principal text, p_ip inet, p_user_agent text
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_zone text := passion_user_zone(p_user);
    v_goal goals;
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
    v_points := 50 * (6 - coalesce(v_goal.priority, 3));
    v_xp := passion_reward(p_user, 'xp', v_points, 'goal_completed', 'goal', p_goal, 'goal:' || p_goal,
                           NULL, p_principal, p_ip, p_user_agent);
    v_coins := passion_reward(p_user, 'coins', v_points / 10, 'goal_completed', 'goal', p_goal, 'goal:' || p_goal || ':coins',
                              NULL, p_principal, p_ip, p_user_agent);
    RETURN jsonb_build_object('goal', to_jsonb(v_goal) || jsonb_build_object('habit_count',
                                  (SELECT count(*) FROM habits h WHERE h.goal_id = p_goal AND h.user_id = p_user
                                                                   AND h.is_active AND NOT h.archived)),
                              'quests', v_quests,
                              'reward', v_coins || jsonb_build_object('events', (v_xp -> 'events') || (v_coins -> 'events')));
END
$$;

-- FocusSessions.Complete -----------------------------------------------------------------------
-- Actual minutes are the running intervals' seconds (pauses excluded), whole minutes; XP is one
-- per minute up to the planned duration. Returns {session, quests, reward}.

CREATE FUNCTION passion_focus_complete(
    p_user uuid, p_session uuid, p_now timestamptz, p_principal text, p_ip inet, p_user_agent text
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_zone text := passion_user_zone(p_user);
    v_session focus_sessions;
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
        RAISE EXCEPTION 'the focus session is already completed' USING ERRCODE = 'P0A16', HINT = 'FOCUS_SESSION_ALREADY_COMPLETED',
              DETAIL = jsonb_build_object('actual_duration_minutes', v_session.actual_duration_minutes)::text;
    END IF;
    IF v_session.status = 'abandoned' THEN
        RAISE EXCEPTION 'the focus session was abandoned' USING ERRCODE = 'P0A17', HINT = 'FOCUS_SESSION_ENDED', DETAIL = '{}';
    END IF;
    v_seconds := v_session.focused_seconds
        + CASE WHEN v_session.status = 'active' THEN greatest(extract(epoch FROM p_now - coalesce(v_session.running_since, v_session.started_at)), 0)::bigint ELSE 0 END;
    v_minutes := least(v_seconds / 60, 1440);
    UPDATE focus_sessions SET status = 'completed', completed_at = greatest(p_now, started_at), actual_duration_minutes = v_minutes,
           focused_seconds = least(v_seconds, 86400), running_since = NULL, paused_at = NULL, is_active = false, updated_at = p_now
    WHERE id = p_session RETURNING * INTO v_session;
    INSERT INTO audit_logs (user_id, action, resource_type, resource_id, details, ip_address, user_agent, status, principal)
    VALUES (p_user, 'focus_session.completed', 'focus_session', p_session::text, jsonb_build_object('minutes', v_minutes),
            p_ip, p_user_agent, 'success', p_principal);
    v_quests := passion_quests_advance(p_user, 'focus', passion_local_date(v_zone, p_now), NULL, NULL, v_minutes, 0);
    IF least(v_minutes, v_session.duration_minutes) > 0 THEN
        v_reward := passion_reward(p_user, 'xp', least(v_minutes, v_session.duration_minutes), 'focus_session_completed',
                                   'focus_session', p_session, 'focus:' || p_session, NULL, p_principal, p_ip, p_user_agent);
    ELSE
        -- No XP for under a minute; the minutes still count toward achievements.
        v_reward := passion_evaluate(p_user, p_principal, p_ip, p_user_agent);
    END IF;
    RETURN jsonb_build_object('session', to_jsonb(v_session), 'quests', v_quests, 'reward', v_reward);
END
$$;

-- Quests.Complete ------------------------------------------------------------------------------
-- Claims a quest whose progress reached its target, once: its xp_reward goes through the ledger
-- (keyed by the quest) and counts toward quest achievements. A quest past its end date (in the
-- user's time zone) has failed. Returns {quest, reward}.

CREATE FUNCTION passion_quest_complete(
    p_user uuid, p_quest uuid, p_now timestamptz, p_principal text, p_ip inet, p_user_agent text
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_today date := passion_local_date(passion_user_zone(p_user), p_now);
    v_quest quests;
    v_reward jsonb;
BEGIN
    SELECT * INTO v_quest FROM quests WHERE id = p_quest AND user_id = p_user FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'quest not found' USING ERRCODE = 'P0A18', HINT = 'QUEST_NOT_FOUND', DETAIL = '{"field": "quest_id"}';
    END IF;
    IF v_quest.status = 'completed' THEN
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
        v_reward := passion_reward(p_user, 'xp', v_quest.xp_reward, 'quest_completed', 'quest', p_quest, 'quest:' || p_quest,
                                   NULL, p_principal, p_ip, p_user_agent);
    ELSE
        v_reward := passion_evaluate(p_user, p_principal, p_ip, p_user_agent);
    END IF;
    RETURN jsonb_build_object('quest', to_jsonb(v_quest), 'reward', v_reward);
END
$$;

-- Maintenance jobs -----------------------------------------------------------------------------
-- Each returns how many rows it changed; the server runs them under an advisory lock per job.

-- Recomputes every habit's streak from its completions and pauses as of its streak's own last
-- period, so a job never breaks a streak (reads show 0 once a period was missed) and only
-- repairs counts that disagree with the completions. Replaces the seed's query, which counted
-- distinct days in 90 days.
CREATE FUNCTION passion_recalculate_streaks() RETURNS integer
LANGUAGE sql AS $$
    WITH computed AS (
        SELECT h.id,
               passion_habit_streak(h.id, h.frequency, coalesce(h.streak_period, 0)) AS streak,
               (SELECT max(passion_period(h.frequency, c.completion_date)) FROM habit_completions c WHERE c.habit_id = h.id) AS top
        FROM habits h
    ), fixed AS (
        UPDATE habits h SET streak_days = c.streak, streak_period = greatest(h.streak_period, c.top)
        FROM computed c
        WHERE c.id = h.id AND (h.streak_days <> c.streak OR h.streak_period IS DISTINCT FROM greatest(h.streak_period, c.top))
        RETURNING 1
    )
    SELECT count(*)::integer FROM fixed;
$$;

-- Goals completed more than 30 days ago are archived.
CREATE FUNCTION passion_archive_completed_goals(p_now timestamptz) RETURNS integer
LANGUAGE sql AS $$
    WITH archived AS (
        UPDATE goals SET archived = true, updated_at = p_now
        WHERE status = 'completed' AND NOT archived AND coalesce(completed_at, updated_at) < p_now - interval '30 days'
        RETURNING 1
    )
    SELECT count(*)::integer FROM archived;
$$;

-- Active quests whose end date has passed in their user's time zone fail.
CREATE FUNCTION passion_fail_expired_quests(p_now timestamptz) RETURNS integer
LANGUAGE sql AS $$
    WITH failed AS (
        UPDATE quests q SET status = 'failed', updated_at = p_now
        FROM users u
        WHERE u.id = q.user_id AND q.status = 'active' AND q.end_date < passion_local_date(u.timezone, p_now)
        RETURNING 1
    )
    SELECT count(*)::integer FROM failed;
$$;
