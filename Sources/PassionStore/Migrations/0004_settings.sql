-- 0004_settings: user_settings, and passion_integrity_check().

-- user_settings -------------------------------------------------------------------------------

CREATE TABLE user_settings (
    id                     UUID        NOT NULL DEFAULT gen_random_uuid(),
    user_id                UUID        NOT NULL,
    theme                  TEXT        NOT NULL DEFAULT 'light',
    notifications_enabled  BOOLEAN     NOT NULL DEFAULT true,
    email_digest_enabled   BOOLEAN     NOT NULL DEFAULT true,
    email_digest_frequency TEXT        NOT NULL DEFAULT 'weekly',
    onboarding_completed   BOOLEAN     NOT NULL DEFAULT false,
    language               TEXT        NOT NULL DEFAULT 'en',
    metadata               JSONB       NOT NULL DEFAULT '{}',
    updated_at             TIMESTAMPTZ NOT NULL DEFAULT now(),

    CONSTRAINT user_settings_pkey PRIMARY KEY (id),
    -- Its index also serves the seed's idx_settings_user.
    CONSTRAINT user_settings_user_id_key UNIQUE (user_id),
    CONSTRAINT user_settings_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT user_settings_theme_valid CHECK (theme IN ('light', 'dark', 'system')),
    CONSTRAINT user_settings_email_digest_frequency_valid
        CHECK (email_digest_frequency IN ('daily', 'weekly', 'monthly')),
    CONSTRAINT user_settings_language_length CHECK (char_length(language) <= 10),
    -- A BCP 47 shape: "en", "pt-BR", "zh-Hant".
    CONSTRAINT user_settings_language_format CHECK (language ~ '^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$'),
    CONSTRAINT user_settings_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);

-- passion_integrity_check ---------------------------------------------------------------------
-- The seed's Testing Queries plus ledger-versus-progress reconciliation. One row per problem;
-- no rows means healthy. Check names:
--   orphan_user_ref          a row whose user_id has no users row (the seed's "goals without
--                            users", generalised to every table that has a user_id)
--   orphan_parent_ref        a habit/focus session whose (goal_id, user_id) is not a goal of that
--                            user, a completion whose (habit_id, user_id) is not a habit of that
--                            user, a user_achievement whose achievement is missing
--   session_of_deleted_user  a session whose user is missing or soft-deleted (the seed:
--                            "should be deleted")
--   progress_xp_mismatch     user_progress.total_xp <> sum(points_ledger.points)
--   progress_coins_mismatch  user_progress.total_coins <> sum(coins_ledger.coins)
--   progress_coins_earned_mismatch  coins_earned <> sum of 'earned' coins
--   progress_level_mismatch  current_level <> passion_level_for_xp(total_xp)
--   progress_achievements_mismatch  achievements_unlocked <> count(user_achievements)
-- A missing user_progress row counts as all zeros. The seed's "habits without goals" is
-- allowed and not reported. Reads every table: a maintenance call, not a request path.

CREATE FUNCTION passion_integrity_check()
RETURNS TABLE (check_name text, detail text)
LANGUAGE sql STABLE AS $$
WITH owned (tbl, row_id, user_id) AS (
    SELECT 'goals', id::text, user_id FROM goals
    UNION ALL SELECT 'habits', id::text, user_id FROM habits
    UNION ALL SELECT 'habit_completions', id::text, user_id FROM habit_completions
    UNION ALL SELECT 'quests', id::text, user_id FROM quests
    UNION ALL SELECT 'focus_sessions', id::text, user_id FROM focus_sessions
    UNION ALL SELECT 'user_progress', id::text, user_id FROM user_progress
    UNION ALL SELECT 'points_ledger', id::text, user_id FROM points_ledger
    UNION ALL SELECT 'coins_ledger', id::text, user_id FROM coins_ledger
    UNION ALL SELECT 'user_achievements', id::text, user_id FROM user_achievements
    UNION ALL SELECT 'user_settings', id::text, user_id FROM user_settings
    UNION ALL SELECT 'idempotency_keys', key, user_id FROM idempotency_keys
    UNION ALL SELECT 'audit_logs', id::text, user_id FROM audit_logs WHERE user_id IS NOT NULL
),
xp AS (
    SELECT user_id, sum(points)::bigint AS total FROM points_ledger GROUP BY user_id
),
coins AS (
    SELECT user_id,
           sum(coins)::bigint AS balance,
           coalesce(sum(coins) FILTER (WHERE transaction_type = 'earned'), 0)::bigint AS earned
    FROM coins_ledger GROUP BY user_id
),
unlocked AS (
    SELECT user_id, count(*)::bigint AS total FROM user_achievements GROUP BY user_id
),
problems (check_name, detail) AS (
    SELECT 'orphan_user_ref', format('%s %s: user %s does not exist', o.tbl, o.row_id, o.user_id)
    FROM owned o
    WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = o.user_id)

    UNION ALL
    SELECT 'orphan_parent_ref', format('habits %s: goal %s is not a goal of user %s', h.id, h.goal_id, h.user_id)
    FROM habits h
    WHERE h.goal_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM goals g WHERE g.id = h.goal_id AND g.user_id = h.user_id)
    UNION ALL
    SELECT 'orphan_parent_ref', format('focus_sessions %s: goal %s is not a goal of user %s', f.id, f.goal_id, f.user_id)
    FROM focus_sessions f
    WHERE f.goal_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM goals g WHERE g.id = f.goal_id AND g.user_id = f.user_id)
    UNION ALL
    SELECT 'orphan_parent_ref', format('habit_completions %s: habit %s is not a habit of user %s', c.id, c.habit_id, c.user_id)
    FROM habit_completions c
    WHERE NOT EXISTS (SELECT 1 FROM habits h WHERE h.id = c.habit_id AND h.user_id = c.user_id)
    UNION ALL
    SELECT 'orphan_parent_ref', format('user_achievements %s: achievement %s does not exist', ua.id, ua.achievement_id)
    FROM user_achievements ua
    WHERE NOT EXISTS (SELECT 1 FROM achievements a WHERE a.id = ua.achievement_id)

    UNION ALL
    SELECT 'session_of_deleted_user',
           format('session %s: user %s %s', encode(s.id, 'hex'), s.user_id,
                  CASE WHEN u.id IS NULL THEN 'does not exist' ELSE 'is deleted' END)
    FROM sessions s
    LEFT JOIN users u ON u.id = s.user_id
    WHERE u.id IS NULL OR u.deleted_at IS NOT NULL OR NOT u.is_active

    UNION ALL
    SELECT 'progress_xp_mismatch',
           format('user %s: user_progress.total_xp = %s, sum(points_ledger.points) = %s',
                  coalesce(p.user_id, x.user_id), coalesce(p.total_xp::text, 'no row'), coalesce(x.total, 0))
    FROM user_progress p
    FULL JOIN xp x ON x.user_id = p.user_id
    WHERE coalesce(p.total_xp, 0) <> coalesce(x.total, 0)

    UNION ALL
    SELECT 'progress_coins_mismatch',
           format('user %s: user_progress.total_coins = %s, sum(coins_ledger.coins) = %s',
                  coalesce(p.user_id, c.user_id), coalesce(p.total_coins::text, 'no row'), coalesce(c.balance, 0))
    FROM user_progress p
    FULL JOIN coins c ON c.user_id = p.user_id
    WHERE coalesce(p.total_coins, 0) <> coalesce(c.balance, 0)

    UNION ALL
    SELECT 'progress_coins_earned_mismatch',
           format('user %s: user_progress.coins_earned = %s, earned coins in coins_ledger = %s',
                  coalesce(p.user_id, c.user_id), coalesce(p.coins_earned::text, 'no row'), coalesce(c.earned, 0))
    FROM user_progress p
    FULL JOIN coins c ON c.user_id = p.user_id
    WHERE coalesce(p.coins_earned, 0) <> coalesce(c.earned, 0)

    UNION ALL
    SELECT 'progress_level_mismatch',
           format('user %s: current_level = %s, passion_level_for_xp(%s) = %s',
                  p.user_id, p.current_level, p.total_xp, passion_level_for_xp(p.total_xp))
    FROM user_progress p
    WHERE p.current_level <> passion_level_for_xp(p.total_xp)

    UNION ALL
    SELECT 'progress_achievements_mismatch',
           format('user %s: user_progress.achievements_unlocked = %s, count(user_achievements) = %s',
                  coalesce(p.user_id, n.user_id), coalesce(p.achievements_unlocked::text, 'no row'), coalesce(n.total, 0))
    FROM user_progress p
    FULL JOIN unlocked n ON n.user_id = p.user_id
    WHERE coalesce(p.achievements_unlocked, 0) <> coalesce(n.total, 0)
)
SELECT check_name, detail FROM problems ORDER BY check_name, detail;
$$;

COMMENT ON FUNCTION passion_integrity_check() IS
    'The seed''s Testing Queries plus ledger-versus-progress reconciliation; zero rows = healthy.';
