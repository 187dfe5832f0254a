-- achievements_unlock_condition_valid let a condition without "type" (or with "type": null)
-- through: `NULL IN (...)` is NULL, and a CHECK accepts NULL. Require a string type.
ALTER TABLE achievements DROP CONSTRAINT achievements_unlock_condition_valid;
ALTER TABLE achievements ADD CONSTRAINT achievements_unlock_condition_valid CHECK (CASE
    WHEN jsonb_typeof(unlock_condition) = 'object'
         AND jsonb_typeof(unlock_condition -> 'type') = 'string'
         AND jsonb_typeof(unlock_condition -> 'value') = 'number'
    THEN (unlock_condition ->> 'type') IN (
             'habit_streak', 'total_xp', 'goals_completed', 'level', 'completions',
             'focus_minutes', 'quests_completed', 'coins_earned')
         AND (unlock_condition ->> 'value')::numeric >= 1
         AND (unlock_condition ->> 'value')::numeric = trunc((unlock_condition ->> 'value')::numeric)
    ELSE false END);
