-- 0015_timezone_names: the users' time zone check without reading the zone database per row.
--
-- pg_timezone_names enumerates every file of the system's zone database on each call: about
-- 5 ms of CPU (found by perf during tools/bench-scale's bulk load), paid by every sign-up and
-- every time zone change. The names are copied here once; a name found in the copy is valid at
-- once, and only a name not found (a typo, or a zone the system's tzdata gained since) pays for
-- pg_timezone_names, which stays the authority for accepting it.

CREATE TABLE passion_timezone_names (
    name text PRIMARY KEY
);

INSERT INTO passion_timezone_names (name)
SELECT name FROM pg_timezone_names WHERE name NOT IN ('localtime', 'posixrules', 'Factory');

CREATE OR REPLACE FUNCTION passion_users_timezone_valid() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NEW.timezone IS NULL
       OR (TG_OP = 'UPDATE' AND NEW.timezone IS NOT DISTINCT FROM OLD.timezone)
       OR EXISTS (SELECT 1 FROM passion_timezone_names WHERE name = NEW.timezone) THEN
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
