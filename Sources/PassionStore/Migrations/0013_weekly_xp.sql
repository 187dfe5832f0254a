-- 0013_weekly_xp: leaderboards whose cost does not grow with the number of users.
--
-- - user_xp_weeks keeps each user's XP per UTC week (starting Monday 00:00 UTC), written by the
--   ledger's insert trigger in the award's own transaction: the weekly board no longer sums the
--   week's ledger, and past weeks stay queryable. Backfilled here from the whole ledger.
-- - Every insert into points_ledger, whoever writes it, and every deletion (or restore) of an
--   account NOTIFYs passion_scores with the user ids (comma-separated, at most 200 per
--   notification). Each server instance keeps its ranks in memory (LeaderboardCache) and re-reads
--   the totals of the users named; the notification carries no totals, so a late or repeated one
--   cannot make a rank wrong.
-- - passion_integrity_check also compares user_xp_weeks with the ledger (weekly_xp_mismatch).

CREATE FUNCTION passion_week_start(p_at timestamptz) RETURNS date
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN date_trunc('week', p_at AT TIME ZONE 'UTC')::date;

CREATE TABLE user_xp_weeks (
    week_start date NOT NULL,
    user_id uuid NOT NULL,
    xp bigint NOT NULL,
    PRIMARY KEY (week_start, user_id),
    CONSTRAINT user_xp_weeks_monday CHECK (extract(isodow FROM week_start) = 1)
);

INSERT INTO user_xp_weeks (week_start, user_id, xp)
SELECT passion_week_start(created_at), user_id, sum(points) FROM points_ledger GROUP BY 1, 2;

CREATE FUNCTION passion_notify_scores(p_users uuid[]) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_from integer := 1;
BEGIN
    -- 200 ids of 36 characters stay below NOTIFY's 8000-byte payload limit.
    WHILE v_from <= coalesce(array_length(p_users, 1), 0) LOOP
        PERFORM pg_notify('passion_scores', array_to_string(p_users[v_from:v_from + 199], ','));
        v_from := v_from + 200;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION passion_points_ledger_apply() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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
    -- In key order, so two batches over the same users cannot deadlock.
    INSERT INTO user_xp_weeks AS w (week_start, user_id, xp)
    SELECT passion_week_start(created_at), user_id, sum(points) FROM inserted GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (week_start, user_id) DO UPDATE SET xp = w.xp + EXCLUDED.xp;
    PERFORM passion_notify_scores(ARRAY(SELECT DISTINCT user_id FROM inserted ORDER BY 1));
    RETURN NULL;
END
$$;

CREATE FUNCTION passion_users_scores_changed() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM passion_notify_scores(ARRAY[coalesce(NEW.id, OLD.id)]);
    RETURN NULL;
END
$$;

CREATE TRIGGER users_scores_changed
    AFTER UPDATE OF deleted_at OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION passion_users_scores_changed();

ALTER FUNCTION passion_integrity_check() RENAME TO passion_integrity_check_totals;

CREATE FUNCTION passion_integrity_check() RETURNS TABLE(check_name text, detail text)
    LANGUAGE sql STABLE
    AS $$
    SELECT * FROM passion_integrity_check_totals()
    UNION ALL
    SELECT 'weekly_xp_mismatch',
           format('user %s, week of %s: user_xp_weeks.xp = %s, sum(points_ledger.points) = %s',
                  coalesce(w.user_id, x.user_id), coalesce(w.week_start, x.week_start),
                  coalesce(w.xp::text, 'no row'), coalesce(x.total, 0))
    FROM (SELECT passion_week_start(created_at) AS week_start, user_id, sum(points)::bigint AS total
          FROM points_ledger GROUP BY 1, 2) x
    FULL JOIN user_xp_weeks w ON w.week_start = x.week_start AND w.user_id = x.user_id
    WHERE coalesce(w.xp, 0) <> coalesce(x.total, 0);
$$;

-- Board loads leave deleted users out; there are few of them.
CREATE INDEX users_deleted ON users (id) WHERE deleted_at IS NOT NULL;
