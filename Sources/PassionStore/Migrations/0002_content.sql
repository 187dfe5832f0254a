-- 0002_content: goals, habits, habit_completions, quests, focus_sessions.
--
-- Child rows refer to their parent together with user_id (composite foreign keys onto
-- UNIQUE (id, user_id)), so a habit can never hang under another user's goal; the same key
-- shape is what Citus needs to co-locate the tables by user_id.

-- goals ---------------------------------------------------------------------------------------

CREATE TABLE goals (
    id          UUID        NOT NULL DEFAULT gen_random_uuid(),
    user_id     UUID        NOT NULL,
    title       TEXT        NOT NULL,
    description TEXT,
    category    TEXT,
    status      TEXT        NOT NULL DEFAULT 'active',
    priority    INTEGER,
    target_date DATE,
    metadata    JSONB       NOT NULL DEFAULT '{}',
    is_active   BOOLEAN     NOT NULL DEFAULT true,
    archived    BOOLEAN     NOT NULL DEFAULT false,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),

    CONSTRAINT goals_pkey PRIMARY KEY (id),
    CONSTRAINT goals_id_user_id_key UNIQUE (id, user_id),
    CONSTRAINT goals_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT goals_title_not_blank CHECK (title ~ '[^[:space:]]'),
    CONSTRAINT goals_title_length CHECK (char_length(title) <= 255),
    CONSTRAINT goals_category_valid CHECK (category IN ('work', 'health', 'learning', 'personal')),
    CONSTRAINT goals_status_valid CHECK (status IN ('active', 'completed', 'abandoned')),
    CONSTRAINT goals_priority_range CHECK (priority BETWEEN 1 AND 5),
    CONSTRAINT goals_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);

CREATE INDEX idx_goals_user_status ON goals (user_id, status);
CREATE INDEX idx_goals_user_target ON goals (user_id, target_date);
CREATE INDEX idx_goals_user_active ON goals (user_id, is_active);

-- habits --------------------------------------------------------------------------------------

CREATE TABLE habits (
    id                UUID        NOT NULL DEFAULT gen_random_uuid(),
    user_id           UUID        NOT NULL,
    goal_id           UUID,
    title             TEXT        NOT NULL,
    description       TEXT,
    category          TEXT,
    frequency         TEXT        NOT NULL DEFAULT 'daily',
    streak_days       INTEGER     NOT NULL DEFAULT 0,
    total_completions INTEGER     NOT NULL DEFAULT 0,
    is_active         BOOLEAN     NOT NULL DEFAULT true,
    archived          BOOLEAN     NOT NULL DEFAULT false,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),

    CONSTRAINT habits_pkey PRIMARY KEY (id),
    CONSTRAINT habits_id_user_id_key UNIQUE (id, user_id),
    CONSTRAINT habits_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id),
    -- The seed's goal_id REFERENCES goals(id), narrowed to the owner's goals.
    CONSTRAINT habits_goal_id_fkey FOREIGN KEY (goal_id, user_id) REFERENCES goals (id, user_id),
    CONSTRAINT habits_title_not_blank CHECK (title ~ '[^[:space:]]'),
    CONSTRAINT habits_title_length CHECK (char_length(title) <= 255),
    -- The seed lists no values for habits.category; it is the goals' classification.
    CONSTRAINT habits_category_valid CHECK (category IN ('work', 'health', 'learning', 'personal')),
    CONSTRAINT habits_frequency_valid CHECK (frequency IN ('daily', 'weekly', 'monthly')),
    CONSTRAINT habits_streak_days_nonnegative CHECK (streak_days >= 0),
    CONSTRAINT habits_total_completions_nonnegative CHECK (total_completions >= 0)
);

CREATE INDEX idx_habits_user_active ON habits (user_id, is_active);
CREATE INDEX idx_habits_goal_id ON habits (goal_id);
CREATE INDEX idx_habits_user_updated ON habits (user_id, updated_at DESC);

-- The seed: "total_completions always increases (never decreases)".
CREATE FUNCTION passion_habits_total_completions_monotonic() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'habits.total_completions never decreases'
        USING ERRCODE = 'check_violation',
              SCHEMA = TG_TABLE_SCHEMA, TABLE = TG_TABLE_NAME, COLUMN = 'total_completions',
              CONSTRAINT = 'habits_total_completions_monotonic';
END
$$;

CREATE TRIGGER habits_total_completions_monotonic
    BEFORE UPDATE OF total_completions ON habits
    FOR EACH ROW
    WHEN (NEW.total_completions < OLD.total_completions)
    EXECUTE FUNCTION passion_habits_total_completions_monotonic();

-- habit_completions ---------------------------------------------------------------------------

CREATE TABLE habit_completions (
    id              UUID        NOT NULL DEFAULT gen_random_uuid(),
    habit_id        UUID        NOT NULL,
    user_id         UUID        NOT NULL,
    -- The user's local calendar day (in users.timezone) the completion counts for.
    completion_date DATE        NOT NULL,
    completed_at    TIMESTAMPTZ NOT NULL,
    metadata        JSONB       NOT NULL DEFAULT '{}',
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),

    CONSTRAINT habit_completions_pkey PRIMARY KEY (id),
    -- Its index also serves the seed's idx_completions_habit_date (read backwards for DESC).
    CONSTRAINT habit_completions_habit_id_completion_date_key UNIQUE (habit_id, completion_date),
    CONSTRAINT habit_completions_habit_id_fkey FOREIGN KEY (habit_id, user_id) REFERENCES habits (id, user_id),
    CONSTRAINT habit_completions_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id),
    -- A local day is at most one day ahead of the UTC day (UTC+14); later days are the future.
    CONSTRAINT habit_completions_completion_date_not_future
        CHECK (completion_date <= (completed_at AT TIME ZONE 'UTC')::date + 1),
    CONSTRAINT habit_completions_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);

CREATE INDEX idx_completions_user_date ON habit_completions (user_id, completion_date DESC);

-- quests --------------------------------------------------------------------------------------

CREATE TABLE quests (
    id          UUID        NOT NULL DEFAULT gen_random_uuid(),
    user_id     UUID        NOT NULL,
    title       TEXT        NOT NULL,
    description TEXT,
    quest_type  TEXT,
    status      TEXT        NOT NULL DEFAULT 'active',
    start_date  DATE        NOT NULL,
    end_date    DATE        NOT NULL,
    xp_reward   INTEGER     NOT NULL DEFAULT 100,
    metadata    JSONB       NOT NULL DEFAULT '{}',
    is_active   BOOLEAN     NOT NULL DEFAULT true,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),

    CONSTRAINT quests_pkey PRIMARY KEY (id),
    CONSTRAINT quests_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT quests_title_not_blank CHECK (title ~ '[^[:space:]]'),
    CONSTRAINT quests_title_length CHECK (char_length(title) <= 255),
    CONSTRAINT quests_quest_type_valid
        CHECK (quest_type IN ('habit_chain', 'goal_completion', 'daily', 'milestone')),
    CONSTRAINT quests_status_valid CHECK (status IN ('active', 'completed', 'failed')),
    CONSTRAINT quests_dates_order CHECK (end_date >= start_date),
    CONSTRAINT quests_xp_reward_nonnegative CHECK (xp_reward >= 0),
    CONSTRAINT quests_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);

CREATE INDEX idx_quests_user_status ON quests (user_id, status, end_date);

-- focus_sessions ------------------------------------------------------------------------------

CREATE TABLE focus_sessions (
    id                      UUID        NOT NULL DEFAULT gen_random_uuid(),
    user_id                 UUID        NOT NULL,
    goal_id                 UUID,
    session_type            TEXT,
    duration_minutes        INTEGER     NOT NULL,
    actual_duration_minutes INTEGER,
    status                  TEXT        NOT NULL DEFAULT 'active',
    started_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    paused_at               TIMESTAMPTZ,
    completed_at            TIMESTAMPTZ,
    notes                   TEXT,
    is_active               BOOLEAN     NOT NULL DEFAULT true,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now(),

    CONSTRAINT focus_sessions_pkey PRIMARY KEY (id),
    CONSTRAINT focus_sessions_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT focus_sessions_goal_id_fkey FOREIGN KEY (goal_id, user_id) REFERENCES goals (id, user_id),
    CONSTRAINT focus_sessions_session_type_valid CHECK (session_type IN ('pomodoro', 'custom')),
    -- At most a day: XP is paid by the minute.
    CONSTRAINT focus_sessions_duration_minutes_range CHECK (duration_minutes BETWEEN 1 AND 1440),
    CONSTRAINT focus_sessions_actual_duration_minutes_range
        CHECK (actual_duration_minutes BETWEEN 0 AND 1440),
    CONSTRAINT focus_sessions_status_valid
        CHECK (status IN ('active', 'paused', 'completed', 'abandoned')),
    CONSTRAINT focus_sessions_paused_at_order CHECK (paused_at >= started_at),
    CONSTRAINT focus_sessions_completed_at_order CHECK (completed_at >= started_at),
    CONSTRAINT focus_sessions_paused_has_paused_at CHECK (status <> 'paused' OR paused_at IS NOT NULL),
    CONSTRAINT focus_sessions_completed_has_completed_at
        CHECK (status <> 'completed' OR completed_at IS NOT NULL)
);

CREATE INDEX idx_focus_user_date ON focus_sessions (user_id, started_at DESC);
CREATE INDEX idx_focus_user_status ON focus_sessions (user_id, status);
CREATE INDEX idx_focus_goal_id ON focus_sessions (goal_id);
