-- 0010_habit_last_completion: habits remember their newest completion's date, so reads tell
-- "done this period" from the habit row.
--
-- Today, habit lists and the dashboard asked, for every habit, whether a completion falls in
-- its current period: one index probe per habit, 80 for a user with 80 habits, the bulk of a
-- dashboard's cost. With the newest date at hand the answer is a comparison: before the
-- period starts, not done; inside it, done; after it (completions dated ahead of the user's
-- local day, after a move west) the probe decides, as before.

ALTER TABLE habits ADD COLUMN last_completed_on DATE;

UPDATE habits h SET last_completed_on = c.newest
FROM (SELECT habit_id, max(completion_date) AS newest FROM habit_completions GROUP BY habit_id) c
WHERE c.habit_id = h.id;

-- Kept by the insert itself, whoever writes the completion.
CREATE FUNCTION passion_habit_completions_newest() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE habits SET last_completed_on = NEW.completion_date
    WHERE id = NEW.habit_id AND (last_completed_on IS NULL OR last_completed_on < NEW.completion_date);
    RETURN NULL;
END
$$;

CREATE TRIGGER habit_completions_newest
    AFTER INSERT ON habit_completions
    FOR EACH ROW EXECUTE FUNCTION passion_habit_completions_newest();
