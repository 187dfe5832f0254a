-- 0001_core: users, sessions, audit_logs, idempotency_keys.
--
-- The seed schema (seed/schema.md) with the deviations listed in docs/schema.md.
-- Runs inside one transaction opened by the migrator; applied once, recorded by checksum.
-- Never edit this file after it has shipped: add a new migration instead.
--
-- Constraint names follow docs/schema.md ("Constraint naming") so that the Swift layer can
-- map a violation to a field: <table>_pkey, <table>_<column>_fkey, <table>_<columns>_key,
-- <table>_<column>_<rule> for CHECKs and for rules a trigger enforces.
-- The seed's VARCHAR(n) columns are TEXT with a named CHECK on char_length, so an overlong
-- value reports a constraint name (23514) instead of an anonymous 22001.

-- users ---------------------------------------------------------------------------------------

CREATE TABLE users (
    id                  UUID        NOT NULL DEFAULT gen_random_uuid(),
    email               TEXT        NOT NULL,
    display_name        TEXT,
    oauth_provider      TEXT,
    oauth_id            TEXT,
    profile_picture_url TEXT,
    timezone            TEXT,
    is_active           BOOLEAN     NOT NULL DEFAULT true,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at          TIMESTAMPTZ,

    CONSTRAINT users_pkey PRIMARY KEY (id),
    CONSTRAINT users_email_length CHECK (char_length(email) <= 255),
    CONSTRAINT users_email_lowercase CHECK (email = lower(email)),
    CONSTRAINT users_email_format CHECK (email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
    CONSTRAINT users_display_name_length CHECK (char_length(display_name) <= 255),
    CONSTRAINT users_display_name_not_blank CHECK (display_name ~ '[^[:space:]]'),
    CONSTRAINT users_oauth_provider_valid CHECK (oauth_provider IN ('google', 'azure')),
    CONSTRAINT users_oauth_id_length CHECK (char_length(oauth_id) BETWEEN 1 AND 255),
    -- An OAuth identity is a (provider, id) pair: both or neither.
    CONSTRAINT users_oauth_pair CHECK ((oauth_provider IS NULL) = (oauth_id IS NULL)),
    CONSTRAINT users_profile_picture_url_length CHECK (char_length(profile_picture_url) <= 500),
    CONSTRAINT users_profile_picture_url_scheme CHECK (profile_picture_url ~ '^https?://'),
    CONSTRAINT users_timezone_length CHECK (char_length(timezone) <= 50),
    -- is_active and deleted_at are the same fact (the seed: "false = deleted"); keep them in step.
    CONSTRAINT users_soft_delete_consistent CHECK (is_active = (deleted_at IS NULL))
);

-- Email is unique among active users only: a soft-deleted user's address can sign up again.
-- Replaces the seed's UNIQUE(email) and idx_users_email.
CREATE UNIQUE INDEX users_email_key ON users (email) WHERE deleted_at IS NULL;
-- One active account per OAuth identity; replaces the seed's idx_users_oauth (sign-in lookup).
CREATE UNIQUE INDEX users_oauth_provider_oauth_id_key ON users (oauth_provider, oauth_id)
    WHERE deleted_at IS NULL AND oauth_provider IS NOT NULL;
CREATE INDEX idx_users_is_active ON users (is_active);

-- The seed: "Timezone must be valid IANA identifier". A CHECK cannot consult the time zone
-- database, so a trigger does, and reports the violation like a CHECK (23514, named).
CREATE FUNCTION passion_users_timezone_valid() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.timezone IS NULL
       OR (TG_OP = 'UPDATE' AND NEW.timezone IS NOT DISTINCT FROM OLD.timezone) THEN
        RETURN NEW;
    END IF;
    IF NEW.timezone IN ('localtime', 'posixrules', 'Factory')
       OR NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = NEW.timezone) THEN
        RAISE EXCEPTION 'timezone is not an IANA time zone identifier'
            USING ERRCODE = 'check_violation',
                  SCHEMA = TG_TABLE_SCHEMA, TABLE = TG_TABLE_NAME, COLUMN = 'timezone',
                  CONSTRAINT = 'users_timezone_valid';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER users_timezone_valid
    BEFORE INSERT OR UPDATE OF timezone ON users
    FOR EACH ROW EXECUTE FUNCTION passion_users_timezone_valid();

-- sessions ------------------------------------------------------------------------------------

CREATE TABLE sessions (
    -- SHA-256 of the bearer token; the token itself is never stored.
    id            BYTEA       NOT NULL,
    user_id       UUID        NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ NOT NULL,
    last_activity TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at    TIMESTAMPTZ,

    CONSTRAINT sessions_pkey PRIMARY KEY (id),
    CONSTRAINT sessions_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT sessions_id_sha256 CHECK (octet_length(id) = 32),
    CONSTRAINT sessions_expires_after_created CHECK (expires_at > created_at),
    CONSTRAINT sessions_last_activity_after_created CHECK (last_activity >= created_at),
    CONSTRAINT sessions_revoked_after_created CHECK (revoked_at >= created_at)
);

CREATE INDEX idx_sessions_user_id ON sessions (user_id);
CREATE INDEX idx_sessions_expires_at ON sessions (expires_at);

-- No session for a soft-deleted user. FOR SHARE serialises with a concurrent soft delete, whose
-- trigger below then sees (and deletes) this session.
CREATE FUNCTION passion_sessions_user_active() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM users WHERE id = NEW.user_id AND deleted_at IS NULL FOR SHARE;
    IF NOT FOUND AND EXISTS (SELECT 1 FROM users WHERE id = NEW.user_id) THEN
        RAISE EXCEPTION 'cannot open a session for a deleted user'
            USING ERRCODE = 'check_violation',
                  SCHEMA = TG_TABLE_SCHEMA, TABLE = TG_TABLE_NAME, COLUMN = 'user_id',
                  CONSTRAINT = 'sessions_user_active';
    END IF;
    -- A missing user is left to sessions_user_id_fkey.
    RETURN NEW;
END
$$;

CREATE TRIGGER sessions_user_active
    BEFORE INSERT OR UPDATE OF user_id ON sessions
    FOR EACH ROW EXECUTE FUNCTION passion_sessions_user_active();

-- The seed: sessions of deleted users "should be deleted". Soft-deleting a user does it.
CREATE FUNCTION passion_users_soft_delete_sessions() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM sessions WHERE user_id = NEW.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER users_soft_delete_sessions
    AFTER UPDATE OF deleted_at ON users
    FOR EACH ROW
    WHEN (OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL)
    EXECUTE FUNCTION passion_users_soft_delete_sessions();

-- audit_logs ----------------------------------------------------------------------------------

CREATE TABLE audit_logs (
    id            BIGINT      GENERATED ALWAYS AS IDENTITY,
    -- SET NULL: the trail outlives a (rare, administrative) hard delete of its user.
    user_id       UUID,
    action        TEXT        NOT NULL,
    resource_type TEXT,
    resource_id   TEXT,
    details       JSONB,
    ip_address    INET,
    user_agent    TEXT,
    status        TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),

    CONSTRAINT audit_logs_pkey PRIMARY KEY (id),
    CONSTRAINT audit_logs_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE SET NULL,
    CONSTRAINT audit_logs_action_length CHECK (char_length(action) <= 100),
    -- Dotted lower-case names, as the seed's samples: user.signin, goal.created, xp.awarded.
    CONSTRAINT audit_logs_action_format CHECK (action ~ '^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$'),
    CONSTRAINT audit_logs_resource_type_length CHECK (char_length(resource_type) <= 50),
    CONSTRAINT audit_logs_resource_type_format CHECK (resource_type ~ '^[a-z][a-z0-9_]*$'),
    CONSTRAINT audit_logs_resource_id_length CHECK (char_length(resource_id) <= 255),
    CONSTRAINT audit_logs_details_object CHECK (jsonb_typeof(details) = 'object'),
    CONSTRAINT audit_logs_user_agent_length CHECK (char_length(user_agent) <= 500),
    CONSTRAINT audit_logs_status_valid CHECK (status IN ('success', 'failure'))
);

-- The seed's idx_audit_user(user_id), extended with created_at for "recent activity" (Pattern 4).
CREATE INDEX idx_audit_user ON audit_logs (user_id, created_at DESC);
CREATE INDEX idx_audit_action ON audit_logs (action);
CREATE INDEX idx_audit_created ON audit_logs (created_at DESC);

-- idempotency_keys ----------------------------------------------------------------------------
-- A mutating call carries a key, unique per user. The first call stores the hash of its
-- request and its response in the same transaction as its effects; a retry with the same key
-- and the same hash gets the stored response, a different hash is a client error.

CREATE TABLE idempotency_keys (
    user_id      UUID        NOT NULL,
    key          TEXT        NOT NULL,
    -- SHA-256 over the method name and the request bytes.
    request_hash BYTEA       NOT NULL,
    -- The serialized (protobuf) response of the first call; NULL while it has none.
    response     BYTEA,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),

    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (user_id, key),
    CONSTRAINT idempotency_keys_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT idempotency_keys_key_format CHECK (key ~ '^[!-~]{1,255}$'),
    CONSTRAINT idempotency_keys_request_hash_sha256 CHECK (octet_length(request_hash) = 32)
);

-- Expiry sweeps delete by age.
CREATE INDEX idx_idempotency_created ON idempotency_keys (created_at);
