-- 0014_partitions: the append-only tables partitioned by time (PostgreSQL declarative
-- partitioning on created_at), so that old rows leave as whole tables instead of DELETEs.
--
-- - points_ledger, coins_ledger and audit_logs by calendar month (UTC), progress_events by day:
--   Subscribe keeps 24 hours of events, so its trim drops yesterday's tables. Each table has a
--   DEFAULT partition that catches a row no dated partition covers (written while none had been
--   created, or a bulk load into the past); a period with rows there stays there, since creating
--   its partition would have to move them first.
-- - Partitions are named <table>_YYYYMM or progress_events_YYYYMMDD and created ahead by
--   passion_maintain_partitions, which every server instance calls at start and hourly; it is
--   idempotent and serialized by an advisory lock, so instances need not coordinate.
-- - A partitioned table's unique constraints must include the partition key. The ledgers'
--   UNIQUE (user_id, idempotency_key), the durable guard against paying a key twice, therefore
--   moves to points_ledger_keys and coins_ledger_keys, and coins_ledger.refund_of's foreign key
--   and uniqueness to coins_refunds; the ledgers' insert triggers fill them in the inserting
--   statement, so a reused key or a second refund of a spend still fails that statement with
--   23505. INSERT ... ON CONFLICT (user_id, idempotency_key) on a ledger is no longer possible
--   (it never was supported: passion_reward checks idempotency_keys first).
-- - Primary keys become (id, created_at); ids still come from one sequence per table, copied
--   here at its position, so ids keep growing across the conversion.
-- - The conversion copies each table into its partitioned successor inside this migration's
--   transaction: no row is lost or changed, but the tables are locked while it runs (about a
--   minute per 10 million ledger rows on the machine docs/scaling.md measured).

-- Ledger rows are never updated or deleted. Dated partitions carry the trigger too, with their
-- parent's name, so a statement naming a partition directly is refused the same way.
CREATE OR REPLACE FUNCTION passion_ledger_append_only() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_ledger text := coalesce(TG_ARGV[0], TG_TABLE_NAME);
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', v_ledger, TG_OP
        USING ERRCODE = 'P0A01',
              DETAIL = 'Ledger rows are never updated or deleted.',
              HINT = 'Correct with a compensating row (reason ''correction'').',
              SCHEMA = TG_TABLE_SCHEMA, TABLE = v_ledger,
              CONSTRAINT = v_ledger || '_append_only';
END
$$;

CREATE TABLE points_ledger_keys (
    user_id uuid NOT NULL,
    idempotency_key text NOT NULL,
    ledger_id bigint NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, idempotency_key)
);

CREATE TABLE coins_ledger_keys (
    user_id uuid NOT NULL,
    idempotency_key text NOT NULL,
    ledger_id bigint NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, idempotency_key)
);

-- One refund per spend at most.
CREATE TABLE coins_refunds (
    refund_of bigint PRIMARY KEY,
    refund_id bigint NOT NULL,
    user_id uuid NOT NULL,
    created_at timestamptz NOT NULL
);

-- A ledger partition refuses what its ledger refuses, and also an INSERT naming it: the
-- ledger's insert trigger (keys, totals, weekly XP, notifications) fires only for statements
-- naming the ledger, which routes each row to its partition.
CREATE FUNCTION passion_ledger_partition_insert() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION 'insert into %, not into its partition %', TG_ARGV[0], TG_TABLE_NAME
        USING ERRCODE = 'P0A01',
              DETAIL = 'The ledger''s insert trigger keeps the keys and the totals; it runs only for inserts into the ledger.',
              SCHEMA = TG_TABLE_SCHEMA, TABLE = TG_ARGV[0],
              CONSTRAINT = TG_ARGV[0] || '_append_only';
END
$$;

CREATE FUNCTION passion_guard_ledger_partition(p_ledger text, p_partition text) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE OR TRUNCATE ON %I '
                   'FOR EACH STATEMENT EXECUTE FUNCTION passion_ledger_append_only(%L)',
                   p_ledger || '_append_only', p_partition, p_ledger);
    EXECUTE format('CREATE TRIGGER %I BEFORE INSERT ON %I FOR EACH STATEMENT EXECUTE FUNCTION passion_ledger_partition_insert(%L)',
                   p_ledger || '_insert_through_ledger', p_partition, p_ledger);
END
$$;

-- The partition of p_table (a month, or a day for p_unit 'day') starting at p_start.
CREATE FUNCTION passion_partition_name(p_table text, p_unit text, p_start timestamptz) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN p_table || '_' || to_char(p_start AT TIME ZONE 'UTC', CASE p_unit WHEN 'day' THEN 'YYYYMMDD' ELSE 'YYYYMM' END);

-- p_table's partitions, oldest first; the DEFAULT partition has no bounds.
CREATE FUNCTION passion_partitions(p_table text)
    RETURNS TABLE(partition_name text, lower_bound timestamptz, upper_bound timestamptz)
    LANGUAGE sql STABLE
    SET TimeZone = 'UTC' SET DateStyle = 'ISO, YMD'
    AS $$
    SELECT c.relname::text,
           substring(pg_get_expr(c.relpartbound, c.oid) FROM 'FROM \(''([^'']+)''\)')::timestamptz,
           substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([^'']+)''\)')::timestamptz
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = p_table::regclass
    ORDER BY 2 NULLS FIRST;
$$;

-- Creates p_table's missing partitions (months, or days for p_unit 'day') from the one holding
-- p_from up to the one holding p_to; answers how many it created.
CREATE FUNCTION passion_create_partitions(p_table text, p_unit text, p_from timestamptz, p_to timestamptz) RETURNS integer
    LANGUAGE plpgsql
    -- Bounds are written as text (%L) and read back by passion_partitions: the same zone and
    -- style both ways, whatever the calling session set.
    SET TimeZone = 'UTC' SET DateStyle = 'ISO, YMD'
    AS $$
DECLARE
    v_step interval := ('1 ' || p_unit)::interval;
    v_start timestamp := date_trunc(p_unit, p_from AT TIME ZONE 'UTC');
    v_lower timestamptz;
    v_upper timestamptz;
    v_name text;
    v_caught boolean;
    v_created integer := 0;
BEGIN
    IF p_unit NOT IN ('day', 'month') THEN
        RAISE EXCEPTION 'partitions are days or months, not %', p_unit USING ERRCODE = '22023';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('passion.partitions'));
    WHILE v_start AT TIME ZONE 'UTC' <= p_to LOOP
        v_lower := v_start AT TIME ZONE 'UTC';
        v_upper := (v_start + v_step) AT TIME ZONE 'UTC';
        v_name := passion_partition_name(p_table, p_unit, v_lower);
        IF to_regclass(v_name) IS NULL THEN
            EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I WHERE created_at >= $1 AND created_at < $2)', p_table || '_default')
            INTO v_caught USING v_lower, v_upper;
            IF NOT v_caught THEN
                EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)', v_name, p_table, v_lower, v_upper);
                IF p_table IN ('points_ledger', 'coins_ledger') THEN
                    PERFORM passion_guard_ledger_partition(p_table, v_name);
                END IF;
                v_created := v_created + 1;
            END IF;
        END IF;
        v_start := v_start + v_step;
    END LOOP;
    RETURN v_created;
END
$$;

-- Drops p_table's dated partitions that end at or before p_before; answers how many and the
-- rows they held (the statistics' estimate: counting would read them all).
CREATE FUNCTION passion_drop_partitions(p_table text, p_before timestamptz, OUT dropped integer, OUT rows_estimate bigint)
    LANGUAGE plpgsql
    SET TimeZone = 'UTC' SET DateStyle = 'ISO, YMD'
    AS $$
DECLARE
    v_partition record;
BEGIN
    dropped := 0;
    rows_estimate := 0;
    PERFORM pg_advisory_xact_lock(hashtext('passion.partitions'));
    FOR v_partition IN SELECT * FROM passion_partitions(p_table) WHERE upper_bound <= p_before LOOP
        rows_estimate := rows_estimate + greatest((SELECT reltuples FROM pg_class WHERE oid = v_partition.partition_name::regclass), 0)::bigint;
        EXECUTE format('DROP TABLE %I', v_partition.partition_name);
        dropped := dropped + 1;
    END LOOP;
END
$$;

-- Which tables are partitioned, by what, and how far behind and ahead of now partitions are
-- made: the one place the migration and the servers' maintenance read it from.
CREATE FUNCTION passion_partition_plan() RETURNS TABLE(table_name text, unit text, behind interval, ahead interval)
    LANGUAGE sql IMMUTABLE
    AS $$
    VALUES ('points_ledger', 'month', interval '0', interval '3 months'),
           ('coins_ledger', 'month', interval '0', interval '3 months'),
           ('audit_logs', 'month', interval '0', interval '3 months'),
           ('progress_events', 'day', interval '1 day', interval '7 days');
$$;

-- Makes p_table's partitions for p_now by the plan. Each server instance calls it at start and
-- hourly, one table per transaction: creating a partition locks its table exclusively, and a
-- transaction holding two tables' locks could deadlock with a call writing both (an audit row,
-- then a ledger row).
CREATE FUNCTION passion_maintain_partitions(p_table text, p_now timestamptz) RETURNS integer
    LANGUAGE sql
    AS $$
    SELECT passion_create_partitions(table_name, unit, p_now - behind, p_now + ahead)
    FROM passion_partition_plan() WHERE table_name = p_table;
$$;

-- The ledgers' insert triggers: the keys and refunds first, so that a reused key fails the
-- statement before any total moves (in key order, so concurrent batches cannot deadlock).
CREATE OR REPLACE FUNCTION passion_points_ledger_apply() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    INSERT INTO points_ledger_keys (user_id, idempotency_key, ledger_id, created_at)
    SELECT user_id, idempotency_key, id, created_at FROM inserted WHERE idempotency_key IS NOT NULL ORDER BY 1, 2;
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

CREATE OR REPLACE FUNCTION passion_coins_ledger_apply() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    INSERT INTO coins_ledger_keys (user_id, idempotency_key, ledger_id, created_at)
    SELECT user_id, idempotency_key, id, created_at FROM inserted WHERE idempotency_key IS NOT NULL ORDER BY 1, 2;
    INSERT INTO coins_refunds (refund_of, refund_id, user_id, created_at)
    SELECT refund_of, id, user_id, created_at FROM inserted WHERE refund_of IS NOT NULL ORDER BY 1;
    -- What the foreign key refund_of → coins_ledger(id) checked before the ledger was partitioned.
    IF FOUND AND EXISTS (SELECT 1 FROM inserted i
                         WHERE i.refund_of IS NOT NULL AND NOT EXISTS (SELECT 1 FROM coins_ledger s WHERE s.id = i.refund_of)) THEN
        RAISE EXCEPTION 'refund_of names no coins_ledger row'
            USING ERRCODE = '23503', SCHEMA = 'public', TABLE = 'coins_refunds', COLUMN = 'refund_of',
                  CONSTRAINT = 'coins_refunds_refund_of_fkey';
    END IF;
    INSERT INTO user_progress (user_id)
    SELECT DISTINCT i.user_id FROM inserted i
    WHERE (SELECT true FROM user_progress p WHERE p.user_id = i.user_id LIMIT 1) IS NULL
    ORDER BY 1
    ON CONFLICT (user_id) DO NOTHING;
    UPDATE user_progress p
       SET total_coins = p.total_coins + d.coins,
           coins_earned = p.coins_earned + d.earned,
           updated_at = now()
      FROM (SELECT user_id, sum(coins) AS coins,
                   coalesce(sum(coins) FILTER (WHERE transaction_type = 'earned'), 0) AS earned
            FROM inserted GROUP BY user_id) d
     WHERE p.user_id = d.user_id;
    RETURN NULL;
END
$$;

-- Renames p_table (and its identity sequence) out of the way and creates its partitioned
-- successor with the same columns, defaults, CHECKs and identity, a DEFAULT partition, and a
-- dated partition per period of passion_partition_plan from the oldest row's (no older than
-- p_oldest) to as far ahead as passion_maintain_partitions goes; copies every row and the sequence's position. Indexes, keys and triggers are the
-- caller's, after the copy (cheaper built once, and no insert trigger fires on the copy).
CREATE FUNCTION pg_temp.passion_partition_table(p_table text, p_oldest timestamptz) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_old text := p_table || '_unpartitioned';
    v_first timestamptz;
BEGIN
    EXECUTE format('ALTER TABLE %I RENAME TO %I', p_table, v_old);
    EXECUTE format('ALTER SEQUENCE %I RENAME TO %I', p_table || '_id_seq', v_old || '_id_seq');
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING IDENTITY) '
                   'PARTITION BY RANGE (created_at)', p_table, v_old);
    EXECUTE format('CREATE TABLE %I PARTITION OF %I DEFAULT', p_table || '_default', p_table);
    EXECUTE format('SELECT min(created_at) FROM %I', v_old) INTO v_first;
    PERFORM passion_create_partitions(p_table, unit, least(greatest(coalesce(v_first, now()), p_oldest), now() - behind), now() + ahead)
    FROM passion_partition_plan() WHERE table_name = p_table;
    EXECUTE format('INSERT INTO %I OVERRIDING SYSTEM VALUE SELECT * FROM %I', p_table, v_old);
    EXECUTE format('SELECT setval(pg_get_serial_sequence(%L, ''id''), last_value, is_called) FROM %I',
                   p_table, v_old || '_id_seq');
END
$$;

-- The ledgers' keys and refunds, from the rows as they are.
INSERT INTO points_ledger_keys (user_id, idempotency_key, ledger_id, created_at)
SELECT user_id, idempotency_key, id, created_at FROM points_ledger WHERE idempotency_key IS NOT NULL;
INSERT INTO coins_ledger_keys (user_id, idempotency_key, ledger_id, created_at)
SELECT user_id, idempotency_key, id, created_at FROM coins_ledger WHERE idempotency_key IS NOT NULL;
INSERT INTO coins_refunds (refund_of, refund_id, user_id, created_at)
SELECT refund_of, id, user_id, created_at FROM coins_ledger WHERE refund_of IS NOT NULL;

SELECT pg_temp.passion_partition_table('points_ledger', '-infinity');
DROP TABLE points_ledger_unpartitioned;
ALTER TABLE points_ledger ADD PRIMARY KEY (id, created_at);
ALTER TABLE points_ledger ADD FOREIGN KEY (user_id) REFERENCES users (id);
CREATE INDEX idx_points_user ON points_ledger (user_id, created_at DESC);
CREATE INDEX idx_points_reason ON points_ledger (reason);
CREATE TRIGGER points_ledger_append_only BEFORE DELETE OR UPDATE OR TRUNCATE ON points_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION passion_ledger_append_only();
SELECT passion_guard_ledger_partition('points_ledger', 'points_ledger_default');
CREATE TRIGGER points_ledger_apply AFTER INSERT ON points_ledger REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION passion_points_ledger_apply();

SELECT pg_temp.passion_partition_table('coins_ledger', '-infinity');
DROP TABLE coins_ledger_unpartitioned;
ALTER TABLE coins_ledger ADD PRIMARY KEY (id, created_at);
ALTER TABLE coins_ledger ADD FOREIGN KEY (user_id) REFERENCES users (id);
CREATE INDEX idx_coins_user ON coins_ledger (user_id, created_at DESC);
CREATE INDEX idx_coins_type ON coins_ledger (transaction_type);
CREATE TRIGGER coins_ledger_append_only BEFORE DELETE OR UPDATE OR TRUNCATE ON coins_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION passion_ledger_append_only();
SELECT passion_guard_ledger_partition('coins_ledger', 'coins_ledger_default');
CREATE TRIGGER coins_ledger_apply AFTER INSERT ON coins_ledger REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION passion_coins_ledger_apply();

SELECT pg_temp.passion_partition_table('audit_logs', '-infinity');
DROP TABLE audit_logs_unpartitioned;
ALTER TABLE audit_logs ADD PRIMARY KEY (id, created_at);
ALTER TABLE audit_logs ADD FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE SET NULL;
CREATE INDEX idx_audit_action ON audit_logs (action);
CREATE INDEX idx_audit_created ON audit_logs (created_at DESC);
CREATE INDEX idx_audit_user ON audit_logs (user_id, created_at DESC);

-- Events older than two days are past any resume window: they go to the DEFAULT partition,
-- where the next trim deletes them, rather than into a day table each.
SELECT pg_temp.passion_partition_table('progress_events', now() - interval '2 days');
DROP TABLE progress_events_unpartitioned;
ALTER TABLE progress_events ADD PRIMARY KEY (id, created_at);
ALTER TABLE progress_events ADD FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE;
CREATE INDEX idx_progress_events_created ON progress_events (created_at);
CREATE INDEX idx_progress_events_user ON progress_events (user_id, id);

DROP FUNCTION pg_temp.passion_partition_table(text, timestamptz);

-- Two functions read what the ledgers no longer index: passion_reward's check for an earlier
-- refund (refund_of) and passion_habit_uncomplete's lookup of the XP a completion paid (by key).
-- Each now reads the side table; only that statement changes, the rest stays as 0012 left it.
CREATE FUNCTION pg_temp.passion_replace_statement(p_function regprocedure, p_old text, p_new text) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_definition text := pg_get_functiondef(p_function);
BEGIN
    IF position(p_old IN v_definition) = 0 THEN
        RAISE EXCEPTION '% does not contain the statement 0014 replaces: %', p_function, p_old;
    END IF;
    EXECUTE replace(v_definition, p_old, p_new);
END
$$;

SELECT pg_temp.passion_replace_statement(
    'passion_reward(uuid, text, integer, text, text, uuid, text, bigint, text, inet, text)',
    'IF EXISTS (SELECT 1 FROM coins_ledger WHERE refund_of = p_refund_of) THEN',
    'IF EXISTS (SELECT 1 FROM coins_refunds WHERE refund_of = p_refund_of) THEN');

SELECT pg_temp.passion_replace_statement(
    'passion_habit_uncomplete(uuid, uuid, integer, timestamptz, text, inet, text)',
    $old$    SELECT points INTO v_paid FROM points_ledger
    WHERE user_id = p_user AND reason = 'habit_completed' AND points > 0
      AND idempotency_key = $old$,
    $new$    SELECT l.points INTO v_paid
    FROM points_ledger_keys k JOIN points_ledger l ON l.id = k.ledger_id AND l.created_at = k.created_at
    WHERE k.user_id = p_user AND l.reason = 'habit_completed' AND l.points > 0
      AND k.idempotency_key = $new$);

DROP FUNCTION pg_temp.passion_replace_statement(regprocedure, text, text);

-- The integrity check also proves the side tables: every keyed ledger row has its key row and
-- no key row lacks its ledger row; every refund names a spend of the same user.
ALTER FUNCTION passion_integrity_check() RENAME TO passion_integrity_check_weekly;

CREATE FUNCTION passion_integrity_check() RETURNS TABLE(check_name text, detail text)
    LANGUAGE sql STABLE
    AS $$
    SELECT * FROM passion_integrity_check_weekly()
    UNION ALL
    SELECT 'ledger_key_mismatch',
           format('%s row %s of user %s, key %s: %s', coalesce(l.ledger, k.ledger), coalesce(l.id, k.ledger_id),
                  coalesce(l.user_id, k.user_id), coalesce(l.idempotency_key, k.idempotency_key),
                  CASE WHEN k.ledger_id IS NULL THEN 'no key row' WHEN l.id IS NULL THEN 'no ledger row' ELSE 'key row names another row' END)
    FROM (SELECT 'points_ledger' AS ledger, id, user_id, idempotency_key, created_at FROM points_ledger WHERE idempotency_key IS NOT NULL
          UNION ALL
          SELECT 'coins_ledger', id, user_id, idempotency_key, created_at FROM coins_ledger WHERE idempotency_key IS NOT NULL) l
         FULL JOIN (SELECT 'points_ledger' AS ledger, user_id, idempotency_key, ledger_id, created_at FROM points_ledger_keys
                    UNION ALL
                    SELECT 'coins_ledger', user_id, idempotency_key, ledger_id, created_at FROM coins_ledger_keys) k
         ON k.ledger = l.ledger AND k.user_id = l.user_id AND k.idempotency_key = l.idempotency_key
    WHERE k.ledger_id IS DISTINCT FROM l.id OR k.created_at IS DISTINCT FROM l.created_at
    UNION ALL
    SELECT 'refund_mismatch',
           format('refund %s of spend %s: %s', coalesce(r.refund_id, l.id), coalesce(r.refund_of, l.refund_of),
                  CASE WHEN l.id IS NULL THEN 'no refund row in coins_ledger'
                       WHEN r.refund_id IS NULL THEN 'not in coins_refunds'
                       WHEN r.refund_id <> l.id THEN 'coins_refunds names another refund'
                       ELSE 'no spend of the same user' END)
    FROM (SELECT id, user_id, refund_of FROM coins_ledger WHERE refund_of IS NOT NULL) l
         FULL JOIN coins_refunds r ON r.refund_of = l.refund_of
    WHERE r.refund_id IS DISTINCT FROM l.id
       OR NOT EXISTS (SELECT 1 FROM coins_ledger s
                      WHERE s.id = coalesce(r.refund_of, l.refund_of) AND s.user_id = coalesce(r.user_id, l.user_id)
                        AND s.transaction_type = 'spent');
$$;
