-- 0006_identity: who acted, in every audit row; job bookkeeping for maintenance run by one
-- instance at a time.

-- The acting principal: "user:<id>", "service:<name>", "service:<name>>user:<id>" (a service
-- acting for a user) or "anonymous". user_id stays the user the action concerned.
ALTER TABLE audit_logs ADD COLUMN principal TEXT;
ALTER TABLE audit_logs ADD CONSTRAINT audit_logs_principal_length CHECK (char_length(principal) <= 300);

-- When each maintenance job last ran to completion. Instances race for a job under an
-- advisory lock; the winner checks this row to run a daily job once a day across all of them.
CREATE TABLE maintenance_runs (
    job         TEXT        NOT NULL,
    last_run_at TIMESTAMPTZ NOT NULL,
    details     JSONB       NOT NULL DEFAULT '{}',

    CONSTRAINT maintenance_runs_pkey PRIMARY KEY (job),
    CONSTRAINT maintenance_runs_job_format CHECK (job ~ '^[a-z][a-z0-9_]{0,62}$'),
    CONSTRAINT maintenance_runs_details_object CHECK (jsonb_typeof(details) = 'object')
);
