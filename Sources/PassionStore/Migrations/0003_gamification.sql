-- 0003_gamification: level curve, user_progress, points_ledger, coins_ledger, achievements,
-- user_achievements.
--
-- The ledgers are the source of truth and append-only (SQLSTATE P0A01 on UPDATE, DELETE,
-- TRUNCATE). user_progress is derived from them by AFTER INSERT triggers in the inserting
-- transaction; writing its totals any other way raises SQLSTATE P0A02. An overspend or an
-- over-large negative correction fails the ledger insert with check_violation (23514) on
-- user_progress_total_coins_nonnegative / user_progress_total_xp_nonnegative.

-- Level curve v1 --------------------------------------------------------------------------
-- Reaching level L takes 50*L*(L-1) total XP: L1 = 0, L2 = 100, L3 = 300, L4 = 600, L5 = 1000.
-- level(xp) = the largest L with 50*L*(L-1) <= xp
--           = (isqrt(4*n + 1) + 1) / 2  with n = xp / 50, integer division throughout.
-- (L*(L-1) <= n  <=>  (2L-1)^2 <= 4n+1.) The square root is estimated with numeric sqrt and
-- corrected by one step either way, so the result is exact for every bigint. Negative XP
-- (never stored) counts as 0. The Swift mirror must use the same integer formula.

CREATE FUNCTION passion_level_for_xp(xp bigint) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN (
    SELECT ((s.r + 1) / 2)::integer
    FROM (SELECT CASE WHEN e.r0 * e.r0 > e.m THEN e.r0 - 1
                      WHEN (e.r0 + 1) * (e.r0 + 1) <= e.m THEN e.r0 + 1
                      ELSE e.r0
                 END AS r
          FROM (SELECT v.m, floor(sqrt(v.m::numeric))::bigint AS r0
                FROM (SELECT 4 * (greatest(xp, 0) / 50) + 1 AS m) AS v) AS e) AS s
);

COMMENT ON FUNCTION passion_level_for_xp(bigint) IS
    'Level curve v1: the largest L with 50*L*(L-1) <= xp; exact integer math.';

-- Total XP at which a level starts (the inverse of passion_level_for_xp); levels below 1 are 1.
CREATE FUNCTION passion_xp_for_level(level integer) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN 50::bigint * greatest(level, 1) * (greatest(level, 1) - 1);

COMMENT ON FUNCTION passion_xp_for_level(integer) IS
    'Level curve v1: total XP needed to reach a level, 50*L*(L-1).';

-- user_progress -------------------------------------------------------------------------------

CREATE TABLE user_progress (
    id                    UUID        NOT NULL DEFAULT gen_random_uuid(),
    user_id               UUID        NOT NULL,
    -- sum(points_ledger.points)
    total_xp              BIGINT      NOT NULL DEFAULT 0,
    -- The coin balance: sum(coins_ledger.coins)
    total_coins           BIGINT      NOT NULL DEFAULT 0,
    -- Lifetime coins earned: sum(coins_ledger.coins) over transaction_type 'earned'
    coins_earned          BIGINT      NOT NULL DEFAULT 0,
    current_level         INTEGER     NOT NULL DEFAULT 1,
    streaks_active        INTEGER     NOT NULL DEFAULT 0,
    -- count(user_achievements)
    achievements_unlocked INTEGER     NOT NULL DEFAULT 0,
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now(),

    CONSTRAINT user_progress_pkey PRIMARY KEY (id),
    CONSTRAINT user_progress_user_id_key UNIQUE (user_id),
    CONSTRAINT user_progress_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT user_progress_total_xp_nonnegative CHECK (total_xp >= 0),
    CONSTRAINT user_progress_total_coins_nonnegative CHECK (total_coins >= 0),
    CONSTRAINT user_progress_coins_earned_nonnegative CHECK (coins_earned >= 0),
    CONSTRAINT user_progress_current_level_min CHECK (current_level >= 1),
    CONSTRAINT user_progress_current_level_matches_xp
        CHECK (current_level = passion_level_for_xp(total_xp)),
    CONSTRAINT user_progress_streaks_active_nonnegative CHECK (streaks_active >= 0),
    CONSTRAINT user_progress_achievements_unlocked_nonnegative CHECK (achievements_unlocked >= 0)
);

CREATE INDEX idx_progress_level ON user_progress (current_level DESC);
CREATE INDEX idx_progress_xp ON user_progress (total_xp DESC);

-- The derived totals change only from the triggers below (trigger depth > 1). A row may be
-- created directly with zero totals (at sign-up, say); any other write of a total raises P0A02.
CREATE FUNCTION passion_user_progress_derived() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF pg_trigger_depth() > 1 THEN
        RETURN COALESCE(NEW, OLD);
    END IF;
    IF (TG_OP = 'INSERT'
            AND (NEW.total_xp <> 0 OR NEW.total_coins <> 0 OR NEW.coins_earned <> 0
                 OR NEW.achievements_unlocked <> 0))
       OR (TG_OP = 'UPDATE'
            AND (NEW.user_id <> OLD.user_id
                 OR NEW.total_xp <> OLD.total_xp OR NEW.total_coins <> OLD.total_coins
                 OR NEW.coins_earned <> OLD.coins_earned
                 OR NEW.achievements_unlocked <> OLD.achievements_unlocked))
       OR (TG_OP = 'DELETE'
            AND (OLD.total_xp <> 0 OR OLD.total_coins <> 0 OR OLD.coins_earned <> 0
                 OR OLD.achievements_unlocked <> 0)) THEN
        RAISE EXCEPTION 'user_progress totals are derived from the ledgers: % refused', TG_OP
            USING ERRCODE = 'P0A02',
                  DETAIL = 'total_xp, total_coins, coins_earned and achievements_unlocked change only through inserts into points_ledger, coins_ledger and user_achievements.',
                  HINT = 'Insert a ledger row instead.',
                  SCHEMA = TG_TABLE_SCHEMA, TABLE = TG_TABLE_NAME,
                  CONSTRAINT = 'user_progress_derived_totals';
    END IF;
    RETURN COALESCE(NEW, OLD);
END
$$;

CREATE TRIGGER user_progress_derived_totals
    BEFORE INSERT OR UPDATE OR DELETE ON user_progress
    FOR EACH ROW EXECUTE FUNCTION passion_user_progress_derived();

-- Ledgers -------------------------------------------------------------------------------------

CREATE TABLE points_ledger (
    id              BIGINT      GENERATED ALWAYS AS IDENTITY,
    user_id         UUID        NOT NULL,
    points          INTEGER     NOT NULL,
    reason          TEXT        NOT NULL,
    resource_id     UUID,
    resource_type   TEXT,
    -- The idempotency key of the call that wrote the row (derived per row when one call
    -- writes several rows, e.g. "<key>/achievement/<id>").
    idempotency_key TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),

    CONSTRAINT points_ledger_pkey PRIMARY KEY (id),
    CONSTRAINT points_ledger_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT points_ledger_user_id_idempotency_key_key UNIQUE (user_id, idempotency_key),
    CONSTRAINT points_ledger_idempotency_key_format CHECK (idempotency_key ~ '^[!-~]{1,255}$'),
    CONSTRAINT points_ledger_reason_valid CHECK (reason IN (
        'habit_completed', 'goal_completed', 'achievement_unlocked',
        'focus_session_completed', 'quest_completed', 'grant', 'penalty', 'correction')),
    -- Awards are positive, penalties negative, corrections (compensating rows) either; never 0.
    CONSTRAINT points_ledger_points_sign CHECK (CASE reason
        WHEN 'penalty' THEN points < 0
        WHEN 'correction' THEN points <> 0
        ELSE points > 0 END),
    CONSTRAINT points_ledger_resource_type_valid
        CHECK (resource_type IN ('habit', 'goal', 'achievement', 'quest', 'focus_session')),
    CONSTRAINT points_ledger_resource_pair CHECK ((resource_id IS NULL) = (resource_type IS NULL))
);

-- The seed's idx_points_user(user_id), extended with created_at for the XP history.
CREATE INDEX idx_points_user ON points_ledger (user_id, created_at DESC);
CREATE INDEX idx_points_reason ON points_ledger (reason);

CREATE TABLE coins_ledger (
    id               BIGINT      GENERATED ALWAYS AS IDENTITY,
    user_id          UUID        NOT NULL,
    coins            INTEGER     NOT NULL,
    transaction_type TEXT        NOT NULL,
    reason           TEXT        NOT NULL,
    resource_id      UUID,
    idempotency_key  TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),

    CONSTRAINT coins_ledger_pkey PRIMARY KEY (id),
    CONSTRAINT coins_ledger_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT coins_ledger_user_id_idempotency_key_key UNIQUE (user_id, idempotency_key),
    CONSTRAINT coins_ledger_idempotency_key_format CHECK (idempotency_key ~ '^[!-~]{1,255}$'),
    CONSTRAINT coins_ledger_transaction_type_valid
        CHECK (transaction_type IN ('earned', 'spent', 'refund', 'correction')),
    CONSTRAINT coins_ledger_reason_valid CHECK (reason IN (
        'habit_completed', 'goal_completed', 'focus_session_completed', 'quest_completed',
        'achievement_unlocked', 'battle_win', 'shop_purchase', 'grant', 'correction')),
    -- earned and refund add, spent takes, a correction (compensating row) either; never 0.
    CONSTRAINT coins_ledger_coins_sign CHECK (CASE transaction_type
        WHEN 'spent' THEN coins < 0
        WHEN 'correction' THEN coins <> 0
        ELSE coins > 0 END)
);

CREATE INDEX idx_coins_user ON coins_ledger (user_id, created_at DESC);
CREATE INDEX idx_coins_type ON coins_ledger (transaction_type);

-- Append-only: any UPDATE, DELETE or TRUNCATE statement on a ledger raises P0A01, even one
-- that would touch no row (and so does INSERT ... ON CONFLICT DO UPDATE; use DO NOTHING).
CREATE FUNCTION passion_ledger_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'P0A01',
              DETAIL = 'Ledger rows are never updated or deleted.',
              HINT = 'Correct with a compensating row (reason ''correction'').',
              SCHEMA = TG_TABLE_SCHEMA, TABLE = TG_TABLE_NAME,
              CONSTRAINT = TG_TABLE_NAME || '_append_only';
END
$$;

CREATE TRIGGER points_ledger_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON points_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION passion_ledger_append_only();

CREATE TRIGGER coins_ledger_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON coins_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION passion_ledger_append_only();

-- Creates the user's progress row if it is missing. Not a single upsert carrying the delta:
-- INSERT ... ON CONFLICT checks CHECK constraints on the proposed row before it detects the
-- conflict, so a negative delta would fail even when the existing total covers it.
CREATE FUNCTION passion_user_progress_ensure(p_user_id uuid) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO user_progress (user_id) VALUES (p_user_id) ON CONFLICT (user_id) DO NOTHING;
$$;

CREATE FUNCTION passion_points_ledger_apply() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE user_progress
       SET total_xp = total_xp + NEW.points,
           current_level = passion_level_for_xp(total_xp + NEW.points),
           updated_at = now()
     WHERE user_id = NEW.user_id;
    IF NOT FOUND THEN
        PERFORM passion_user_progress_ensure(NEW.user_id);
        UPDATE user_progress
           SET total_xp = total_xp + NEW.points,
               current_level = passion_level_for_xp(total_xp + NEW.points),
               updated_at = now()
         WHERE user_id = NEW.user_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER points_ledger_apply
    AFTER INSERT ON points_ledger
    FOR EACH ROW EXECUTE FUNCTION passion_points_ledger_apply();

CREATE FUNCTION passion_coins_ledger_apply() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    earned bigint := CASE WHEN NEW.transaction_type = 'earned' THEN NEW.coins ELSE 0 END;
BEGIN
    UPDATE user_progress
       SET total_coins = total_coins + NEW.coins,
           coins_earned = coins_earned + earned,
           updated_at = now()
     WHERE user_id = NEW.user_id;
    IF NOT FOUND THEN
        PERFORM passion_user_progress_ensure(NEW.user_id);
        UPDATE user_progress
           SET total_coins = total_coins + NEW.coins,
               coins_earned = coins_earned + earned,
               updated_at = now()
         WHERE user_id = NEW.user_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER coins_ledger_apply
    AFTER INSERT ON coins_ledger
    FOR EACH ROW EXECUTE FUNCTION passion_coins_ledger_apply();

-- achievements (the catalog; filled by a later migration or by admins) ----------------------

CREATE TABLE achievements (
    id               UUID        NOT NULL DEFAULT gen_random_uuid(),
    title            TEXT        NOT NULL,
    description      TEXT,
    icon_url         TEXT,
    category         TEXT,
    rarity           TEXT,
    xp_reward        INTEGER     NOT NULL DEFAULT 50,
    coins_reward     INTEGER     NOT NULL DEFAULT 10,
    unlock_condition JSONB       NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),

    CONSTRAINT achievements_pkey PRIMARY KEY (id),
    CONSTRAINT achievements_title_not_blank CHECK (title ~ '[^[:space:]]'),
    CONSTRAINT achievements_title_length CHECK (char_length(title) <= 255),
    CONSTRAINT achievements_icon_url_length CHECK (char_length(icon_url) <= 500),
    CONSTRAINT achievements_icon_url_scheme CHECK (icon_url ~ '^https?://'),
    CONSTRAINT achievements_category_valid CHECK (category IN ('progress', 'social', 'challenge')),
    CONSTRAINT achievements_rarity_valid CHECK (rarity IN ('common', 'rare', 'epic', 'legendary')),
    CONSTRAINT achievements_xp_reward_nonnegative CHECK (xp_reward >= 0),
    CONSTRAINT achievements_coins_reward_nonnegative CHECK (coins_reward >= 0),
    -- A closed rule set: {"type": <one of these>, "value": <integer >= 1>, ...}.
    CONSTRAINT achievements_unlock_condition_valid CHECK (CASE
        WHEN jsonb_typeof(unlock_condition) = 'object'
             AND jsonb_typeof(unlock_condition -> 'value') = 'number'
        THEN (unlock_condition ->> 'type') IN (
                 'habit_streak', 'total_xp', 'goals_completed', 'level', 'completions',
                 'focus_minutes', 'quests_completed', 'coins_earned')
             AND (unlock_condition ->> 'value')::numeric >= 1
             AND (unlock_condition ->> 'value')::numeric = trunc((unlock_condition ->> 'value')::numeric)
        ELSE false END)
);

-- user_achievements ---------------------------------------------------------------------------

CREATE TABLE user_achievements (
    id             UUID        NOT NULL DEFAULT gen_random_uuid(),
    user_id        UUID        NOT NULL,
    achievement_id UUID        NOT NULL,
    unlocked_at    TIMESTAMPTZ NOT NULL DEFAULT now(),

    CONSTRAINT user_achievements_pkey PRIMARY KEY (id),
    -- Its index also serves the seed's idx_user_achievements(user_id).
    CONSTRAINT user_achievements_user_id_achievement_id_key UNIQUE (user_id, achievement_id),
    CONSTRAINT user_achievements_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT user_achievements_achievement_id_fkey
        FOREIGN KEY (achievement_id) REFERENCES achievements (id)
);

CREATE INDEX idx_user_achievements_achievement ON user_achievements (achievement_id);

-- Keeps user_progress.achievements_unlocked = count(user_achievements) for the user.
CREATE FUNCTION passion_user_achievements_count() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE user_progress
           SET achievements_unlocked = achievements_unlocked - 1, updated_at = now()
         WHERE user_id = OLD.user_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM passion_user_progress_ensure(NEW.user_id);
        UPDATE user_progress
           SET achievements_unlocked = achievements_unlocked + 1, updated_at = now()
         WHERE user_id = NEW.user_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER user_achievements_count
    AFTER INSERT OR DELETE OR UPDATE OF user_id ON user_achievements
    FOR EACH ROW EXECUTE FUNCTION passion_user_achievements_count();
