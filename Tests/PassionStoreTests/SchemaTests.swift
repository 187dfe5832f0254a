import Foundation
import PassionRPCServer
import PassionStore
import PassionTestSupport
import Testing

/// The schema's rules as docs/schema.md describes them, checked against a real PostgreSQL: every
/// named CHECK and trigger-enforced rule, the append-only ledgers, the derived progress, the
/// partial unique email, idempotency keys, the integrity check and the level curve.
@Suite("Schema")
struct SchemaTests {
    /// A fresh database with the shipped migrations applied. Size 1: every test here uses one
    /// connection at a time, and the parameterized cases run in parallel.
    private func migratedPool() async throws -> PostgresPool {
        try await TestDatabase.migratedPool(size: 1)
    }

    // MARK: - 1. Every named CHECK and trigger-enforced rule

    @Test("a bad row is refused with its SQLSTATE and constraint name, and nothing changes", arguments: Self.checkCases)
    func checkViolation(_ check: CheckCase) async throws {
        let pool = try await migratedPool()
        defer { Task { await pool.shutdown() } }
        let outcome = try await pool.withConnection { connection -> ViolationOutcome in
            if !check.setup.isEmpty { try await connection.execute(check.setup) }
            let countSQL = "SELECT count(*) AS n FROM \(check.table)"
            let countBefore = try await connection.execute(countSQL).first?.require("n", as: Int.self)
            let before = try await Self.fingerprint(connection)
            var failure: StoreError?
            do {
                try await connection.execute(check.statement)
            } catch let error as StoreError {
                failure = error
            }
            let countAfter = try await connection.execute(countSQL).first?.require("n", as: Int.self)
            let after = try await Self.fingerprint(connection)
            let role = try await connection.execute("SELECT current_setting('session_replication_role') AS role").first?.require("role", as: String.self)
            return ViolationOutcome(error: failure, countBefore: countBefore, countAfter: countAfter, before: before, after: after, replicationRole: role)
        }
        let error = try #require(outcome.error, "\(check.name): the statement was accepted")
        #expect(error.sqlState == check.sqlState, "\(check.name): \(error)")
        #expect(error.constraint == check.constraint, "\(check.name): \(error)")
        #expect(error.rpcError.code == check.expectedCode, "\(check.name): \(error.rpcError)")
        if check.sqlState == "23514" {
            #expect(error.rpcError.details?.reason == "CHECK_VIOLATION")
            #expect(error.constraint == check.constraint)
            #expect(error.rpcError.details?.fields["constraint"] == nil && !error.rpcError.message.contains(check.constraint))
        }
        #expect(outcome.countBefore != nil && outcome.countAfter == outcome.countBefore, "\(check.name): row count of \(check.table) changed")
        #expect(outcome.after == outcome.before, "\(check.name): a table changed although the statement failed")
        #expect(outcome.replicationRole == "origin", "\(check.name): the connection was left with triggers disabled")
    }

    /// One rule and a statement that breaks it. `setup` and `statement` are fixed SQL run with
    /// `execute`; a statement with several commands runs as one implicit transaction, so a
    /// `SET LOCAL` in it ends with it.
    struct CheckCase: Sendable, CustomTestStringConvertible {
        let name: String
        let setup: String
        let statement: String
        /// The table whose row count must not change.
        let table: String
        let constraint: String
        let sqlState: String

        init(_ name: String, _ setup: String, _ statement: String, _ table: String, _ constraint: String, sqlState: String = "23514") {
            self.name = name
            self.setup = setup
            self.statement = statement
            self.table = table
            self.constraint = constraint
            self.sqlState = sqlState
        }

        /// The status StoreError maps the SQLSTATE to (docs/schema.md "Errors raised by the schema").
        var expectedCode: StatusCode {
            switch sqlState {
            case "23514": .invalidArgument
            case "23505": .alreadyExists
            default: .internal  // P0A01, P0A02: a server bug
            }
        }

        var testDescription: String { name }
    }

    struct ViolationOutcome: Sendable {
        var error: StoreError?
        var countBefore: Int?
        var countAfter: Int?
        var before: [String]
        var after: [String]
        var replicationRole: String?
    }

    /// Parent rows for the cases; ids are fixed so that the statements can name them.
    private enum Fixture {
        static let user = "INSERT INTO users (id, email, timezone) VALUES ('00000000-0000-0000-0000-0000000000a1', 'ada@example.com', 'Europe/London');"
        static let deletedUser = user + " UPDATE users SET is_active = false, deleted_at = now() WHERE id = '00000000-0000-0000-0000-0000000000a1';"
        static let goal = user + " INSERT INTO goals (id, user_id, title, priority) VALUES ('00000000-0000-0000-0000-0000000000b1', '00000000-0000-0000-0000-0000000000a1', 'Run a marathon', 3);"
        static let habit = goal + " INSERT INTO habits (id, user_id, goal_id, title, streak_days, total_completions) VALUES ('00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-0000000000b1', 'Run 5 km', 2, 5);"
        static let focus = user + " INSERT INTO focus_sessions (id, user_id, session_type, duration_minutes, started_at) VALUES ('00000000-0000-0000-0000-0000000000e1', '00000000-0000-0000-0000-0000000000a1', 'pomodoro', 25, '2025-03-01 09:00:00+00');"
        static let xp = user + " INSERT INTO points_ledger (user_id, points, reason) VALUES ('00000000-0000-0000-0000-0000000000a1', 100, 'grant');"
        static let coins = user + " INSERT INTO coins_ledger (user_id, coins, transaction_type, reason) VALUES ('00000000-0000-0000-0000-0000000000a1', 50, 'earned', 'habit_completed');"
        static let achievement = user + " INSERT INTO achievements (id, title, unlock_condition) VALUES ('00000000-0000-0000-0000-0000000000d1', 'First steps', '{\"type\": \"completions\", \"value\": 1}');"
        static let unlockBehindTriggers = achievement + " INSERT INTO user_progress (user_id) VALUES ('00000000-0000-0000-0000-0000000000a1'); SET session_replication_role = replica; INSERT INTO user_achievements (user_id, achievement_id) VALUES ('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-0000000000d1'); RESET session_replication_role;"
    }

    /// Notes on cases whose expectation is not the obvious one:
    /// - users_timezone_length is shadowed by the BEFORE trigger users_timezone_valid (no IANA name
    ///   is that long), so it is reached only with triggers bypassed.
    /// - user_progress_current_level_min can never be the reported name: a level below 1 never
    ///   equals passion_level_for_xp(...) >= 1, and ..._matches_xp sorts before ..._min.
    /// - user_progress_coins_earned_nonnegative and _achievements_unlocked_nonnegative cannot be
    ///   reached through the triggers alone; they guard against data written with triggers off.
    /// - A direct write of a derived total is refused by the P0A02 trigger before any CHECK.
    static let checkCases: [CheckCase] = [
        // users
        CheckCase("email longer than 255", "",
                  "INSERT INTO users (email) VALUES (repeat('a', 244) || '@example.com')",
                  "users", "users_email_length"),
        CheckCase("email with capitals", "",
                  "INSERT INTO users (email) VALUES ('Ada@example.com')",
                  "users", "users_email_lowercase"),
        CheckCase("email changed to capitals", Fixture.user,
                  "UPDATE users SET email = 'ADA@example.com' WHERE id = '00000000-0000-0000-0000-0000000000a1'",
                  "users", "users_email_lowercase"),
        CheckCase("email without @", "",
                  "INSERT INTO users (email) VALUES ('ada.example.com')",
                  "users", "users_email_format"),
        CheckCase("email with two @", "",
                  "INSERT INTO users (email) VALUES ('ada@home@example.com')",
                  "users", "users_email_format"),
        CheckCase("email with a space", "",
                  "INSERT INTO users (email) VALUES ('ada lovelace@example.com')",
                  "users", "users_email_format"),
        CheckCase("display name blank", "",
                  "INSERT INTO users (email, display_name) VALUES ('b@example.com', '   ')",
                  "users", "users_display_name_not_blank"),
        CheckCase("display name empty", "",
                  "INSERT INTO users (email, display_name) VALUES ('b@example.com', '')",
                  "users", "users_display_name_not_blank"),
        CheckCase("display name longer than 255", "",
                  "INSERT INTO users (email, display_name) VALUES ('b@example.com', repeat('x', 256))",
                  "users", "users_display_name_length"),
        CheckCase("oauth provider not listed", "",
                  "INSERT INTO users (email, oauth_provider, oauth_id) VALUES ('b@example.com', 'github', '42')",
                  "users", "users_oauth_provider_valid"),
        CheckCase("oauth provider in capitals", "",
                  "INSERT INTO users (email, oauth_provider, oauth_id) VALUES ('b@example.com', 'Google', '42')",
                  "users", "users_oauth_provider_valid"),
        CheckCase("oauth id empty", "",
                  "INSERT INTO users (email, oauth_provider, oauth_id) VALUES ('b@example.com', 'google', '')",
                  "users", "users_oauth_id_length"),
        CheckCase("oauth id longer than 255", "",
                  "INSERT INTO users (email, oauth_provider, oauth_id) VALUES ('b@example.com', 'azure', repeat('9', 256))",
                  "users", "users_oauth_id_length"),
        CheckCase("oauth provider without id", "",
                  "INSERT INTO users (email, oauth_provider) VALUES ('b@example.com', 'google')",
                  "users", "users_oauth_pair"),
        CheckCase("oauth id without provider", "",
                  "INSERT INTO users (email, oauth_id) VALUES ('b@example.com', '42')",
                  "users", "users_oauth_pair"),
        CheckCase("picture URL longer than 500", "",
                  "INSERT INTO users (email, profile_picture_url) VALUES ('b@example.com', 'https://' || repeat('a', 493))",
                  "users", "users_profile_picture_url_length"),
        CheckCase("picture URL not http(s)", "",
                  "INSERT INTO users (email, profile_picture_url) VALUES ('b@example.com', 'javascript:alert(1)')",
                  "users", "users_profile_picture_url_scheme"),
        CheckCase("time zone unknown", "",
                  "INSERT INTO users (email, timezone) VALUES ('b@example.com', 'Mars/Olympus_Mons')",
                  "users", "users_timezone_valid"),
        CheckCase("time zone 'localtime'", "",
                  "INSERT INTO users (email, timezone) VALUES ('b@example.com', 'localtime')",
                  "users", "users_timezone_valid"),
        CheckCase("time zone changed to unknown", Fixture.user,
                  "UPDATE users SET timezone = 'Europe/Atlantis' WHERE id = '00000000-0000-0000-0000-0000000000a1'",
                  "users", "users_timezone_valid"),
        CheckCase("time zone longer than 50 (trigger first)", "",
                  "INSERT INTO users (email, timezone) VALUES ('b@example.com', repeat('x', 51))",
                  "users", "users_timezone_valid"),
        CheckCase("time zone longer than 50 (triggers bypassed)", "",
                  "SET LOCAL session_replication_role = replica; INSERT INTO users (email, timezone) VALUES ('b@example.com', repeat('x', 51))",
                  "users", "users_timezone_length"),
        CheckCase("inactive without deleted_at", "",
                  "INSERT INTO users (email, is_active) VALUES ('b@example.com', false)",
                  "users", "users_soft_delete_consistent"),
        CheckCase("deleted_at without is_active = false", Fixture.user,
                  "UPDATE users SET deleted_at = now() WHERE id = '00000000-0000-0000-0000-0000000000a1'",
                  "users", "users_soft_delete_consistent"),
        CheckCase("is_active = false without deleted_at", Fixture.user,
                  "UPDATE users SET is_active = false WHERE id = '00000000-0000-0000-0000-0000000000a1'",
                  "users", "users_soft_delete_consistent"),
        // sessions
        CheckCase("session id not 32 bytes", Fixture.user,
                  "INSERT INTO sessions (id, user_id, expires_at) VALUES (decode(repeat('ab', 16), 'hex'), '00000000-0000-0000-0000-0000000000a1', now() + interval '1 day')",
                  "sessions", "sessions_id_sha256"),
        CheckCase("session expires when created", Fixture.user,
                  "INSERT INTO sessions (id, user_id, created_at, expires_at) VALUES (decode(repeat('ab', 32), 'hex'), '00000000-0000-0000-0000-0000000000a1', '2025-01-01 00:00:00+00', '2025-01-01 00:00:00+00')",
                  "sessions", "sessions_expires_after_created"),
        CheckCase("session expires before created", Fixture.user,
                  "INSERT INTO sessions (id, user_id, created_at, expires_at, last_activity) VALUES (decode(repeat('ab', 32), 'hex'), '00000000-0000-0000-0000-0000000000a1', '2025-01-02 00:00:00+00', '2025-01-01 00:00:00+00', '2025-01-02 00:00:00+00')",
                  "sessions", "sessions_expires_after_created"),
        CheckCase("session active before created", Fixture.user,
                  "INSERT INTO sessions (id, user_id, created_at, expires_at, last_activity) VALUES (decode(repeat('ab', 32), 'hex'), '00000000-0000-0000-0000-0000000000a1', '2025-01-02 00:00:00+00', '2025-02-01 00:00:00+00', '2025-01-01 00:00:00+00')",
                  "sessions", "sessions_last_activity_after_created"),
        CheckCase("session revoked before created", Fixture.user,
                  "INSERT INTO sessions (id, user_id, created_at, expires_at, last_activity, revoked_at) VALUES (decode(repeat('ab', 32), 'hex'), '00000000-0000-0000-0000-0000000000a1', '2025-01-02 00:00:00+00', '2025-02-01 00:00:00+00', '2025-01-02 00:00:00+00', '2025-01-01 00:00:00+00')",
                  "sessions", "sessions_revoked_after_created"),
        CheckCase("session for a soft-deleted user", Fixture.deletedUser,
                  "INSERT INTO sessions (id, user_id, expires_at) VALUES (decode(repeat('ab', 32), 'hex'), '00000000-0000-0000-0000-0000000000a1', now() + interval '1 day')",
                  "sessions", "sessions_user_active"),
        // audit_logs
        CheckCase("audit action longer than 100", "",
                  "INSERT INTO audit_logs (action) VALUES ('user.' || repeat('a', 96))",
                  "audit_logs", "audit_logs_action_length"),
        CheckCase("audit action without a dot", "",
                  "INSERT INTO audit_logs (action) VALUES ('signin')",
                  "audit_logs", "audit_logs_action_format"),
        CheckCase("audit action in capitals", "",
                  "INSERT INTO audit_logs (action) VALUES ('User.SignIn')",
                  "audit_logs", "audit_logs_action_format"),
        CheckCase("audit resource type longer than 50", "",
                  "INSERT INTO audit_logs (action, resource_type) VALUES ('goal.created', repeat('g', 51))",
                  "audit_logs", "audit_logs_resource_type_length"),
        CheckCase("audit resource type format", "",
                  "INSERT INTO audit_logs (action, resource_type) VALUES ('goal.created', 'Goal')",
                  "audit_logs", "audit_logs_resource_type_format"),
        CheckCase("audit resource id longer than 255", "",
                  "INSERT INTO audit_logs (action, resource_id) VALUES ('goal.created', repeat('1', 256))",
                  "audit_logs", "audit_logs_resource_id_length"),
        CheckCase("audit details an array", "",
                  "INSERT INTO audit_logs (action, details) VALUES ('goal.created', '[1, 2]')",
                  "audit_logs", "audit_logs_details_object"),
        CheckCase("audit user agent longer than 500", "",
                  "INSERT INTO audit_logs (action, user_agent) VALUES ('user.signin', repeat('u', 501))",
                  "audit_logs", "audit_logs_user_agent_length"),
        CheckCase("audit status not listed", "",
                  "INSERT INTO audit_logs (action, status) VALUES ('user.signin', 'ok')",
                  "audit_logs", "audit_logs_status_valid"),
        // idempotency_keys
        CheckCase("idempotency key empty", Fixture.user,
                  "INSERT INTO idempotency_keys (user_id, key, request_hash) VALUES ('00000000-0000-0000-0000-0000000000a1', '', decode(repeat('00', 32), 'hex'))",
                  "idempotency_keys", "idempotency_keys_key_format"),
        CheckCase("idempotency key with a space", Fixture.user,
                  "INSERT INTO idempotency_keys (user_id, key, request_hash) VALUES ('00000000-0000-0000-0000-0000000000a1', 'a b', decode(repeat('00', 32), 'hex'))",
                  "idempotency_keys", "idempotency_keys_key_format"),
        CheckCase("idempotency key not ASCII", Fixture.user,
                  "INSERT INTO idempotency_keys (user_id, key, request_hash) VALUES ('00000000-0000-0000-0000-0000000000a1', 'clé', decode(repeat('00', 32), 'hex'))",
                  "idempotency_keys", "idempotency_keys_key_format"),
        CheckCase("idempotency key longer than 255", Fixture.user,
                  "INSERT INTO idempotency_keys (user_id, key, request_hash) VALUES ('00000000-0000-0000-0000-0000000000a1', repeat('k', 256), decode(repeat('00', 32), 'hex'))",
                  "idempotency_keys", "idempotency_keys_key_format"),
        CheckCase("request hash not 32 bytes", Fixture.user,
                  "INSERT INTO idempotency_keys (user_id, key, request_hash) VALUES ('00000000-0000-0000-0000-0000000000a1', 'key-1', decode(repeat('00', 31), 'hex'))",
                  "idempotency_keys", "idempotency_keys_request_hash_sha256"),
        // goals
        CheckCase("goal title blank", Fixture.user,
                  "INSERT INTO goals (user_id, title) VALUES ('00000000-0000-0000-0000-0000000000a1', ' \t ')",
                  "goals", "goals_title_not_blank"),
        CheckCase("goal title empty", Fixture.user,
                  "INSERT INTO goals (user_id, title) VALUES ('00000000-0000-0000-0000-0000000000a1', '')",
                  "goals", "goals_title_not_blank"),
        CheckCase("goal title longer than 255", Fixture.user,
                  "INSERT INTO goals (user_id, title) VALUES ('00000000-0000-0000-0000-0000000000a1', repeat('t', 256))",
                  "goals", "goals_title_length"),
        CheckCase("goal category not listed", Fixture.user,
                  "INSERT INTO goals (user_id, title, category) VALUES ('00000000-0000-0000-0000-0000000000a1', 'Goal', 'fitness')",
                  "goals", "goals_category_valid"),
        CheckCase("goal category in capitals", Fixture.user,
                  "INSERT INTO goals (user_id, title, category) VALUES ('00000000-0000-0000-0000-0000000000a1', 'Goal', 'Work')",
                  "goals", "goals_category_valid"),
        CheckCase("goal status not listed", Fixture.user,
                  "INSERT INTO goals (user_id, title, status) VALUES ('00000000-0000-0000-0000-0000000000a1', 'Goal', 'done')",
                  "goals", "goals_status_valid"),
        CheckCase("goal status changed to failed", Fixture.goal,
                  "UPDATE goals SET status = 'failed' WHERE id = '00000000-0000-0000-0000-0000000000b1'",
                  "goals", "goals_status_valid"),
        CheckCase("goal priority 0", Fixture.user,
                  "INSERT INTO goals (user_id, title, priority) VALUES ('00000000-0000-0000-0000-0000000000a1', 'Goal', 0)",
                  "goals", "goals_priority_range"),
        CheckCase("goal priority 6", Fixture.user,
                  "INSERT INTO goals (user_id, title, priority) VALUES ('00000000-0000-0000-0000-0000000000a1', 'Goal', 6)",
                  "goals", "goals_priority_range"),
        CheckCase("goal priority changed to -1", Fixture.goal,
                  "UPDATE goals SET priority = -1 WHERE id = '00000000-0000-0000-0000-0000000000b1'",
                  "goals", "goals_priority_range"),
        CheckCase("goal metadata JSON null", Fixture.user,
                  "INSERT INTO goals (user_id, title, metadata) VALUES ('00000000-0000-0000-0000-0000000000a1', 'Goal', 'null')",
                  "goals", "goals_metadata_object"),
        // habits
        CheckCase("habit title blank", Fixture.user,
                  "INSERT INTO habits (user_id, title) VALUES ('00000000-0000-0000-0000-0000000000a1', '  ')",
                  "habits", "habits_title_not_blank"),
        CheckCase("habit title longer than 255", Fixture.user,
                  "INSERT INTO habits (user_id, title) VALUES ('00000000-0000-0000-0000-0000000000a1', repeat('h', 256))",
                  "habits", "habits_title_length"),
        CheckCase("habit category not listed", Fixture.user,
                  "INSERT INTO habits (user_id, title, category) VALUES ('00000000-0000-0000-0000-0000000000a1', 'Habit', 'fitness')",
                  "habits", "habits_category_valid"),
        CheckCase("habit frequency not listed", Fixture.user,
                  "INSERT INTO habits (user_id, title, frequency) VALUES ('00000000-0000-0000-0000-0000000000a1', 'Habit', 'hourly')",
                  "habits", "habits_frequency_valid"),
        CheckCase("habit frequency in capitals", Fixture.user,
                  "INSERT INTO habits (user_id, title, frequency) VALUES ('00000000-0000-0000-0000-0000000000a1', 'Habit', 'Daily')",
                  "habits", "habits_frequency_valid"),
        CheckCase("habit streak -1", Fixture.user,
                  "INSERT INTO habits (user_id, title, streak_days) VALUES ('00000000-0000-0000-0000-0000000000a1', 'Habit', -1)",
                  "habits", "habits_streak_days_nonnegative"),
        CheckCase("habit streak changed to -1", Fixture.habit,
                  "UPDATE habits SET streak_days = -1 WHERE id = '00000000-0000-0000-0000-0000000000c1'",
                  "habits", "habits_streak_days_nonnegative"),
        CheckCase("habit completions -1", Fixture.user,
                  "INSERT INTO habits (user_id, title, total_completions) VALUES ('00000000-0000-0000-0000-0000000000a1', 'Habit', -1)",
                  "habits", "habits_total_completions_nonnegative"),
        CheckCase("habit completions decrease", Fixture.habit,
                  "UPDATE habits SET total_completions = 4 WHERE id = '00000000-0000-0000-0000-0000000000c1'",
                  "habits", "habits_total_completions_monotonic"),
        CheckCase("habit completions reset to 0", Fixture.habit,
                  "UPDATE habits SET total_completions = 0, streak_days = 0 WHERE id = '00000000-0000-0000-0000-0000000000c1'",
                  "habits", "habits_total_completions_monotonic"),
        // habit_completions
        CheckCase("completion two days ahead of UTC", Fixture.habit,
                  "INSERT INTO habit_completions (habit_id, user_id, completion_date, completed_at) VALUES ('00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-0000000000a1', '2025-03-03', '2025-03-01 23:00:00+00')",
                  "habit_completions", "habit_completions_completion_date_not_future"),
        CheckCase("completion metadata a string", Fixture.habit,
                  "INSERT INTO habit_completions (habit_id, user_id, completion_date, completed_at, metadata) VALUES ('00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-0000000000a1', '2025-03-01', '2025-03-01 12:00:00+00', '\"done\"')",
                  "habit_completions", "habit_completions_metadata_object"),
        // quests
        CheckCase("quest title blank", Fixture.user,
                  "INSERT INTO quests (user_id, title, start_date, end_date) VALUES ('00000000-0000-0000-0000-0000000000a1', ' ', '2025-03-01', '2025-03-07')",
                  "quests", "quests_title_not_blank"),
        CheckCase("quest title longer than 255", Fixture.user,
                  "INSERT INTO quests (user_id, title, start_date, end_date) VALUES ('00000000-0000-0000-0000-0000000000a1', repeat('q', 256), '2025-03-01', '2025-03-07')",
                  "quests", "quests_title_length"),
        CheckCase("quest type not listed", Fixture.user,
                  "INSERT INTO quests (user_id, title, quest_type, start_date, end_date) VALUES ('00000000-0000-0000-0000-0000000000a1', 'Quest', 'weekly', '2025-03-01', '2025-03-07')",
                  "quests", "quests_quest_type_valid"),
        CheckCase("quest status not listed (paused)", Fixture.user,
                  "INSERT INTO quests (user_id, title, status, start_date, end_date) VALUES ('00000000-0000-0000-0000-0000000000a1', 'Quest', 'paused', '2025-03-01', '2025-03-07')",
                  "quests", "quests_status_valid"),
        CheckCase("quest ends before it starts", Fixture.user,
                  "INSERT INTO quests (user_id, title, start_date, end_date) VALUES ('00000000-0000-0000-0000-0000000000a1', 'Quest', '2025-03-07', '2025-03-06')",
                  "quests", "quests_dates_order"),
        CheckCase("quest reward -1", Fixture.user,
                  "INSERT INTO quests (user_id, title, start_date, end_date, xp_reward) VALUES ('00000000-0000-0000-0000-0000000000a1', 'Quest', '2025-03-01', '2025-03-07', -1)",
                  "quests", "quests_xp_reward_nonnegative"),
        CheckCase("quest metadata an array", Fixture.user,
                  "INSERT INTO quests (user_id, title, start_date, end_date, metadata) VALUES ('00000000-0000-0000-0000-0000000000a1', 'Quest', '2025-03-01', '2025-03-07', '[]')",
                  "quests", "quests_metadata_object"),
        // focus_sessions
        CheckCase("focus session type not listed", Fixture.user,
                  "INSERT INTO focus_sessions (user_id, session_type, duration_minutes) VALUES ('00000000-0000-0000-0000-0000000000a1', 'deep_work', 25)",
                  "focus_sessions", "focus_sessions_session_type_valid"),
        CheckCase("focus duration 0", Fixture.user,
                  "INSERT INTO focus_sessions (user_id, duration_minutes) VALUES ('00000000-0000-0000-0000-0000000000a1', 0)",
                  "focus_sessions", "focus_sessions_duration_minutes_range"),
        CheckCase("focus duration 1441", Fixture.user,
                  "INSERT INTO focus_sessions (user_id, duration_minutes) VALUES ('00000000-0000-0000-0000-0000000000a1', 1441)",
                  "focus_sessions", "focus_sessions_duration_minutes_range"),
        CheckCase("focus actual duration -1", Fixture.user,
                  "INSERT INTO focus_sessions (user_id, duration_minutes, actual_duration_minutes) VALUES ('00000000-0000-0000-0000-0000000000a1', 25, -1)",
                  "focus_sessions", "focus_sessions_actual_duration_minutes_range"),
        CheckCase("focus actual duration 1441", Fixture.user,
                  "INSERT INTO focus_sessions (user_id, duration_minutes, actual_duration_minutes) VALUES ('00000000-0000-0000-0000-0000000000a1', 25, 1441)",
                  "focus_sessions", "focus_sessions_actual_duration_minutes_range"),
        CheckCase("focus status not listed", Fixture.user,
                  "INSERT INTO focus_sessions (user_id, duration_minutes, status) VALUES ('00000000-0000-0000-0000-0000000000a1', 25, 'stopped')",
                  "focus_sessions", "focus_sessions_status_valid"),
        CheckCase("focus paused before it started", Fixture.focus,
                  "UPDATE focus_sessions SET status = 'paused', paused_at = '2025-03-01 08:59:59+00' WHERE id = '00000000-0000-0000-0000-0000000000e1'",
                  "focus_sessions", "focus_sessions_paused_at_order"),
        CheckCase("focus completed before it started", Fixture.focus,
                  "UPDATE focus_sessions SET status = 'completed', completed_at = '2025-03-01 08:00:00+00' WHERE id = '00000000-0000-0000-0000-0000000000e1'",
                  "focus_sessions", "focus_sessions_completed_at_order"),
        CheckCase("focus paused without paused_at", Fixture.focus,
                  "UPDATE focus_sessions SET status = 'paused' WHERE id = '00000000-0000-0000-0000-0000000000e1'",
                  "focus_sessions", "focus_sessions_paused_has_paused_at"),
        CheckCase("focus completed without completed_at", Fixture.user,
                  "INSERT INTO focus_sessions (user_id, duration_minutes, status) VALUES ('00000000-0000-0000-0000-0000000000a1', 25, 'completed')",
                  "focus_sessions", "focus_sessions_completed_has_completed_at"),
        // 0008: the content engine's columns
        CheckCase("focus focused seconds -1", Fixture.user,
                  "INSERT INTO focus_sessions (user_id, duration_minutes, focused_seconds) VALUES ('00000000-0000-0000-0000-0000000000a1', 25, -1)",
                  "focus_sessions", "focus_sessions_focused_seconds_nonnegative"),
        CheckCase("a second open focus session", Fixture.focus,
                  "INSERT INTO focus_sessions (user_id, duration_minutes, status, paused_at) VALUES ('00000000-0000-0000-0000-0000000000a1', 25, 'paused', now())",
                  "focus_sessions", "focus_sessions_one_open", sqlState: "23505"),
        CheckCase("quest target 0", Fixture.user,
                  "INSERT INTO quests (user_id, title, start_date, end_date, target) VALUES ('00000000-0000-0000-0000-0000000000a1', 'Quest', '2025-03-01', '2025-03-07', 0)",
                  "quests", "quests_target_range"),
        CheckCase("quest progress -1", Fixture.user,
                  "INSERT INTO quests (user_id, title, start_date, end_date, progress) VALUES ('00000000-0000-0000-0000-0000000000a1', 'Quest', '2025-03-01', '2025-03-07', -1)",
                  "quests", "quests_progress_nonnegative"),
        CheckCase("quest criteria not an object", Fixture.user,
                  "INSERT INTO quests (user_id, title, start_date, end_date, criteria) VALUES ('00000000-0000-0000-0000-0000000000a1', 'Quest', '2025-03-01', '2025-03-07', '[]')",
                  "quests", "quests_criteria_object"),
        CheckCase("pomodoro of 481 minutes", Fixture.user,
                  "INSERT INTO user_settings (user_id, pomodoro_minutes) VALUES ('00000000-0000-0000-0000-0000000000a1', 481)",
                  "user_settings", "user_settings_pomodoro_minutes_range"),
        CheckCase("habit resumed before it was paused", Fixture.habit,
                  "INSERT INTO habit_pauses (habit_id, user_id, paused_on, resumed_on) VALUES ('00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-0000000000a1', '2025-03-02', '2025-03-01')",
                  "habit_pauses", "habit_pauses_order"),
        // user_progress
        CheckCase("progress streaks -1", Fixture.user,
                  "INSERT INTO user_progress (user_id, streaks_active) VALUES ('00000000-0000-0000-0000-0000000000a1', -1)",
                  "user_progress", "user_progress_streaks_active_nonnegative"),
        CheckCase("progress level 2 at 0 XP", Fixture.user,
                  "INSERT INTO user_progress (user_id, current_level) VALUES ('00000000-0000-0000-0000-0000000000a1', 2)",
                  "user_progress", "user_progress_current_level_matches_xp"),
        CheckCase("progress level 0 (matches_xp sorts before min)", Fixture.user,
                  "INSERT INTO user_progress (user_id, current_level) VALUES ('00000000-0000-0000-0000-0000000000a1', 0)",
                  "user_progress", "user_progress_current_level_matches_xp"),
        CheckCase("progress level changed away from XP", Fixture.xp,
                  "UPDATE user_progress SET current_level = 1 WHERE user_id = '00000000-0000-0000-0000-0000000000a1'",
                  "user_progress", "user_progress_current_level_matches_xp"),
        // points_ledger
        CheckCase("penalty beyond total XP", Fixture.xp,
                  "INSERT INTO points_ledger (user_id, points, reason) VALUES ('00000000-0000-0000-0000-0000000000a1', -101, 'penalty')",
                  "points_ledger", "user_progress_total_xp_nonnegative"),
        CheckCase("first XP row a penalty", Fixture.user,
                  "INSERT INTO points_ledger (user_id, points, reason) VALUES ('00000000-0000-0000-0000-0000000000a1', -1, 'penalty')",
                  "points_ledger", "user_progress_total_xp_nonnegative"),
        // coins_ledger
        CheckCase("coins overspend", Fixture.coins,
                  "INSERT INTO coins_ledger (user_id, coins, transaction_type, reason) VALUES ('00000000-0000-0000-0000-0000000000a1', -51, 'spent', 'shop_purchase')",
                  "coins_ledger", "user_progress_total_coins_nonnegative"),
        CheckCase("coins correction beyond balance", Fixture.coins,
                  "INSERT INTO coins_ledger (user_id, coins, transaction_type, reason) VALUES ('00000000-0000-0000-0000-0000000000a1', -51, 'correction', 'correction')",
                  "coins_ledger", "user_progress_total_coins_nonnegative"),
        CheckCase("first coins row a spend", Fixture.user,
                  "INSERT INTO coins_ledger (user_id, coins, transaction_type, reason) VALUES ('00000000-0000-0000-0000-0000000000a1', -1, 'spent', 'shop_purchase')",
                  "coins_ledger", "user_progress_total_coins_nonnegative"),
        // user_progress
        CheckCase("coins earned -1 (triggers bypassed)", Fixture.user,
                  "SET LOCAL session_replication_role = replica; INSERT INTO user_progress (user_id, coins_earned) VALUES ('00000000-0000-0000-0000-0000000000a1', -1)",
                  "user_progress", "user_progress_coins_earned_nonnegative"),
        // user_achievements
        CheckCase("achievement count below 0", Fixture.unlockBehindTriggers,
                  "DELETE FROM user_achievements WHERE user_id = '00000000-0000-0000-0000-0000000000a1'",
                  "user_achievements", "user_progress_achievements_unlocked_nonnegative"),
        // user_progress
        CheckCase("progress XP written directly", Fixture.xp,
                  "UPDATE user_progress SET total_xp = 1000, current_level = 5 WHERE user_id = '00000000-0000-0000-0000-0000000000a1'",
                  "user_progress", "user_progress_derived_totals", sqlState: "P0A02"),
        CheckCase("progress created with coins", Fixture.user,
                  "INSERT INTO user_progress (user_id, total_coins) VALUES ('00000000-0000-0000-0000-0000000000a1', 10)",
                  "user_progress", "user_progress_derived_totals", sqlState: "P0A02"),
        CheckCase("progress row with totals deleted", Fixture.coins,
                  "DELETE FROM user_progress WHERE user_id = '00000000-0000-0000-0000-0000000000a1'",
                  "user_progress", "user_progress_derived_totals", sqlState: "P0A02"),
        // points_ledger
        CheckCase("XP award of 0", Fixture.user,
                  "INSERT INTO points_ledger (user_id, points, reason) VALUES ('00000000-0000-0000-0000-0000000000a1', 0, 'habit_completed')",
                  "points_ledger", "points_ledger_points_sign"),
        CheckCase("XP award negative", Fixture.xp,
                  "INSERT INTO points_ledger (user_id, points, reason) VALUES ('00000000-0000-0000-0000-0000000000a1', -10, 'grant')",
                  "points_ledger", "points_ledger_points_sign"),
        CheckCase("XP penalty positive", Fixture.user,
                  "INSERT INTO points_ledger (user_id, points, reason) VALUES ('00000000-0000-0000-0000-0000000000a1', 10, 'penalty')",
                  "points_ledger", "points_ledger_points_sign"),
        CheckCase("XP correction of 0", Fixture.user,
                  "INSERT INTO points_ledger (user_id, points, reason) VALUES ('00000000-0000-0000-0000-0000000000a1', 0, 'correction')",
                  "points_ledger", "points_ledger_points_sign"),
        CheckCase("XP reason not listed", Fixture.user,
                  "INSERT INTO points_ledger (user_id, points, reason) VALUES ('00000000-0000-0000-0000-0000000000a1', 10, 'bonus')",
                  "points_ledger", "points_ledger_reason_valid"),
        CheckCase("XP reason of coins (battle_win)", Fixture.user,
                  "INSERT INTO points_ledger (user_id, points, reason) VALUES ('00000000-0000-0000-0000-0000000000a1', 10, 'battle_win')",
                  "points_ledger", "points_ledger_reason_valid"),
        CheckCase("XP resource type not listed", Fixture.user,
                  "INSERT INTO points_ledger (user_id, points, reason, resource_id, resource_type) VALUES ('00000000-0000-0000-0000-0000000000a1', 10, 'grant', '00000000-0000-0000-0000-0000000000b1', 'user')",
                  "points_ledger", "points_ledger_resource_type_valid"),
        CheckCase("XP resource id without type", Fixture.user,
                  "INSERT INTO points_ledger (user_id, points, reason, resource_id) VALUES ('00000000-0000-0000-0000-0000000000a1', 10, 'goal_completed', '00000000-0000-0000-0000-0000000000b1')",
                  "points_ledger", "points_ledger_resource_pair"),
        CheckCase("XP resource type without id", Fixture.user,
                  "INSERT INTO points_ledger (user_id, points, reason, resource_type) VALUES ('00000000-0000-0000-0000-0000000000a1', 10, 'goal_completed', 'goal')",
                  "points_ledger", "points_ledger_resource_pair"),
        CheckCase("XP idempotency key with a space", Fixture.user,
                  "INSERT INTO points_ledger (user_id, points, reason, idempotency_key) VALUES ('00000000-0000-0000-0000-0000000000a1', 10, 'grant', 'key 1')",
                  "points_ledger", "points_ledger_idempotency_key_format"),
        CheckCase("XP idempotency key empty", Fixture.user,
                  "INSERT INTO points_ledger (user_id, points, reason, idempotency_key) VALUES ('00000000-0000-0000-0000-0000000000a1', 10, 'grant', '')",
                  "points_ledger", "points_ledger_idempotency_key_format"),
        // coins_ledger
        CheckCase("coins transaction type not listed", Fixture.user,
                  "INSERT INTO coins_ledger (user_id, coins, transaction_type, reason) VALUES ('00000000-0000-0000-0000-0000000000a1', 5, 'gift', 'grant')",
                  "coins_ledger", "coins_ledger_transaction_type_valid"),
        CheckCase("coins reason not listed (penalty)", Fixture.user,
                  "INSERT INTO coins_ledger (user_id, coins, transaction_type, reason) VALUES ('00000000-0000-0000-0000-0000000000a1', 5, 'earned', 'penalty')",
                  "coins_ledger", "coins_ledger_reason_valid"),
        CheckCase("coins earned 0", Fixture.user,
                  "INSERT INTO coins_ledger (user_id, coins, transaction_type, reason) VALUES ('00000000-0000-0000-0000-0000000000a1', 0, 'earned', 'grant')",
                  "coins_ledger", "coins_ledger_coins_sign"),
        CheckCase("coins earned negative", Fixture.coins,
                  "INSERT INTO coins_ledger (user_id, coins, transaction_type, reason) VALUES ('00000000-0000-0000-0000-0000000000a1', -5, 'earned', 'grant')",
                  "coins_ledger", "coins_ledger_coins_sign"),
        CheckCase("coins refund negative", Fixture.coins,
                  "INSERT INTO coins_ledger (user_id, coins, transaction_type, reason) VALUES ('00000000-0000-0000-0000-0000000000a1', -5, 'refund', 'shop_purchase')",
                  "coins_ledger", "coins_ledger_coins_sign"),
        CheckCase("coins spent positive", Fixture.user,
                  "INSERT INTO coins_ledger (user_id, coins, transaction_type, reason) VALUES ('00000000-0000-0000-0000-0000000000a1', 5, 'spent', 'shop_purchase')",
                  "coins_ledger", "coins_ledger_coins_sign"),
        CheckCase("coins correction of 0", Fixture.user,
                  "INSERT INTO coins_ledger (user_id, coins, transaction_type, reason) VALUES ('00000000-0000-0000-0000-0000000000a1', 0, 'correction', 'correction')",
                  "coins_ledger", "coins_ledger_coins_sign"),
        CheckCase("coins idempotency key longer than 255", Fixture.user,
                  "INSERT INTO coins_ledger (user_id, coins, transaction_type, reason, idempotency_key) VALUES ('00000000-0000-0000-0000-0000000000a1', 5, 'earned', 'grant', repeat('k', 256))",
                  "coins_ledger", "coins_ledger_idempotency_key_format"),
        // achievements
        CheckCase("achievement title blank", "",
                  "INSERT INTO achievements (title, unlock_condition) VALUES ('  ', '{\"type\": \"total_xp\", \"value\": 100}')",
                  "achievements", "achievements_title_not_blank"),
        CheckCase("achievement title longer than 255", "",
                  "INSERT INTO achievements (title, unlock_condition) VALUES (repeat('a', 256), '{\"type\": \"total_xp\", \"value\": 100}')",
                  "achievements", "achievements_title_length"),
        CheckCase("achievement icon URL longer than 500", "",
                  "INSERT INTO achievements (title, icon_url, unlock_condition) VALUES ('A', 'https://' || repeat('i', 493), '{\"type\": \"total_xp\", \"value\": 100}')",
                  "achievements", "achievements_icon_url_length"),
        CheckCase("achievement icon URL not http(s)", "",
                  "INSERT INTO achievements (title, icon_url, unlock_condition) VALUES ('A', 'data:image/png;base64,AAAA', '{\"type\": \"total_xp\", \"value\": 100}')",
                  "achievements", "achievements_icon_url_scheme"),
        CheckCase("achievement category not listed", "",
                  "INSERT INTO achievements (title, category, unlock_condition) VALUES ('A', 'work', '{\"type\": \"total_xp\", \"value\": 100}')",
                  "achievements", "achievements_category_valid"),
        CheckCase("achievement rarity not listed", "",
                  "INSERT INTO achievements (title, rarity, unlock_condition) VALUES ('A', 'mythic', '{\"type\": \"total_xp\", \"value\": 100}')",
                  "achievements", "achievements_rarity_valid"),
        CheckCase("achievement XP reward -1", "",
                  "INSERT INTO achievements (title, xp_reward, unlock_condition) VALUES ('A', -1, '{\"type\": \"total_xp\", \"value\": 100}')",
                  "achievements", "achievements_xp_reward_nonnegative"),
        CheckCase("achievement coins reward -1", "",
                  "INSERT INTO achievements (title, coins_reward, unlock_condition) VALUES ('A', -1, '{\"type\": \"total_xp\", \"value\": 100}')",
                  "achievements", "achievements_coins_reward_nonnegative"),
        CheckCase("unlock condition: an array", "",
                  "INSERT INTO achievements (title, unlock_condition) VALUES ('A', '[{\"type\": \"total_xp\", \"value\": 100}]')",
                  "achievements", "achievements_unlock_condition_valid"),
        CheckCase("unlock condition: unknown type", "",
                  "INSERT INTO achievements (title, unlock_condition) VALUES ('A', '{\"type\": \"login_count\", \"value\": 3}')",
                  "achievements", "achievements_unlock_condition_valid"),
        CheckCase("unlock condition: type in capitals", "",
                  "INSERT INTO achievements (title, unlock_condition) VALUES ('A', '{\"type\": \"Total_XP\", \"value\": 100}')",
                  "achievements", "achievements_unlock_condition_valid"),
        // Migration 0005 closed this: a condition without "type" used to pass, as `NULL IN (...)` is NULL.
        CheckCase("unlock condition: no type", "",
                  "INSERT INTO achievements (title, unlock_condition) VALUES ('A', '{\"value\": 100}')",
                  "achievements", "achievements_unlock_condition_valid"),
        CheckCase("unlock condition: no value", "",
                  "INSERT INTO achievements (title, unlock_condition) VALUES ('A', '{\"type\": \"level\"}')",
                  "achievements", "achievements_unlock_condition_valid"),
        CheckCase("unlock condition: value 0", "",
                  "INSERT INTO achievements (title, unlock_condition) VALUES ('A', '{\"type\": \"level\", \"value\": 0}')",
                  "achievements", "achievements_unlock_condition_valid"),
        CheckCase("unlock condition: value negative", "",
                  "INSERT INTO achievements (title, unlock_condition) VALUES ('A', '{\"type\": \"habit_streak\", \"value\": -7}')",
                  "achievements", "achievements_unlock_condition_valid"),
        CheckCase("unlock condition: value fractional", "",
                  "INSERT INTO achievements (title, unlock_condition) VALUES ('A', '{\"type\": \"focus_minutes\", \"value\": 1.5}')",
                  "achievements", "achievements_unlock_condition_valid"),
        CheckCase("unlock condition: value a string", "",
                  "INSERT INTO achievements (title, unlock_condition) VALUES ('A', '{\"type\": \"completions\", \"value\": \"5\"}')",
                  "achievements", "achievements_unlock_condition_valid"),
        CheckCase("unlock condition changed to invalid", Fixture.achievement,
                  "UPDATE achievements SET unlock_condition = unlock_condition - 'value' WHERE id = '00000000-0000-0000-0000-0000000000d1'",
                  "achievements", "achievements_unlock_condition_valid"),
        // user_settings
        CheckCase("settings theme not listed", Fixture.user,
                  "INSERT INTO user_settings (user_id, theme) VALUES ('00000000-0000-0000-0000-0000000000a1', 'blue')",
                  "user_settings", "user_settings_theme_valid"),
        CheckCase("settings digest not listed", Fixture.user,
                  "INSERT INTO user_settings (user_id, email_digest_frequency) VALUES ('00000000-0000-0000-0000-0000000000a1', 'hourly')",
                  "user_settings", "user_settings_email_digest_frequency_valid"),
        CheckCase("settings language longer than 10", Fixture.user,
                  "INSERT INTO user_settings (user_id, language) VALUES ('00000000-0000-0000-0000-0000000000a1', 'en-abcdefgh')",
                  "user_settings", "user_settings_language_length"),
        CheckCase("settings language in capitals", Fixture.user,
                  "INSERT INTO user_settings (user_id, language) VALUES ('00000000-0000-0000-0000-0000000000a1', 'EN')",
                  "user_settings", "user_settings_language_format"),
        CheckCase("settings language with underscore", Fixture.user,
                  "INSERT INTO user_settings (user_id, language) VALUES ('00000000-0000-0000-0000-0000000000a1', 'en_US')",
                  "user_settings", "user_settings_language_format"),
        CheckCase("settings metadata a number", Fixture.user,
                  "INSERT INTO user_settings (user_id, metadata) VALUES ('00000000-0000-0000-0000-0000000000a1', '42')",
                  "user_settings", "user_settings_metadata_object"),
    ]

    // MARK: - The time zone check's copy of the zone names

    @Test("a zone in the copied names is accepted without reading the zone database; one missing from the copy falls back to it")
    func timezoneNamesCopy() async throws {
        let pool = try await migratedPool()
        defer { Task { await pool.shutdown() } }
        let outcome = try await pool.withConnection { connection -> (copied: Int, accepted: Int, refused: StoreError?) in
            let copied = try await connection.execute("SELECT count(*) AS n FROM passion_timezone_names WHERE name IN ('Europe/London', 'UTC', 'Pacific/Kiritimati')")
                .first?.require("n", as: Int.self) ?? 0
            // A zone the system's tzdata gained after the migration copied the names.
            try await connection.execute("DELETE FROM passion_timezone_names WHERE name = 'America/Nuuk'")
            let accepted = try await connection.execute("""
                INSERT INTO users (email, timezone) VALUES ('a@example.com', 'Europe/London'), ('b@example.com', 'America/Nuuk')
                """).affected
            var refused: StoreError?
            do {
                try await connection.execute("INSERT INTO users (email, timezone) VALUES ('c@example.com', 'Mars/Olympus_Mons')")
            } catch let error as StoreError {
                refused = error
            }
            return (copied, accepted, refused)
        }
        #expect(outcome.copied == 3)
        #expect(outcome.accepted == 2)
        #expect(outcome.refused?.sqlState == "23514" && outcome.refused?.constraint == "users_timezone_valid")
    }

    // MARK: - Documented values are accepted

    @Test("every documented enumerated value and every boundary value is accepted")
    func documentedValuesAccepted() async throws {
        let pool = try await migratedPool()
        defer { Task { await pool.shutdown() } }
        let result = try await pool.withConnection { connection -> ([String: Int], Progress?, Progress?, Int) in
            try await connection.execute(Self.acceptedValues)
            var counts: [String: Int] = [:]
            for table in Self.tables {
                counts[table] = try await connection.execute("SELECT count(*) AS n FROM \(table)").first?.require("n", as: Int.self)
            }
            let problems = try await connection.execute("SELECT * FROM passion_integrity_check()").count
            return await (counts, try Self.progress(connection, Self.ada), try Self.progress(connection, Self.idle), problems)
        }
        #expect(result.0 == [
            "users": 3, "sessions": 1, "audit_logs": 3, "idempotency_keys": 2, "goals": 4, "habits": 3,
            "habit_completions": 1, "quests": 4, "focus_sessions": 4, "user_progress": 2, "points_ledger": 9, "habit_pauses": 0,
            // 8 inserted here, 24 from the default catalog of 0007.
            "coins_ledger": 11, "achievements": 8 + 24, "user_achievements": 1, "user_settings": 3,
            // Written by the ledgers' insert triggers: the keyed XP rows, the week's XP.
            "points_ledger_keys": 2, "coins_ledger_keys": 0, "coins_refunds": 0, "user_xp_weeks": 1,
        ])
        // 10 + 100 + 50 + 25 + 100 + 5 - 40 + 1 - 1 XP; coins 1…7 earned (28), -20 + 2 - 3 + 1.
        #expect(result.1 == Progress(totalXP: 250, level: 2, totalCoins: 8, coinsEarned: 28, achievements: 1))
        #expect(result.2 == Progress(totalXP: 0, level: 1, totalCoins: 0, coinsEarned: 0, achievements: 0))
        #expect(result.3 == 0)
    }

    // MARK: - 2. Append-only ledgers

    @Test("UPDATE, DELETE, TRUNCATE on a ledger or its partitions, and INSERT into a partition, are refused with P0A01; ON CONFLICT has no key to use")
    func ledgersAreAppendOnly() async throws {
        let pool = try await migratedPool()
        defer { Task { await pool.shutdown() } }
        try await pool.withConnection { try await $0.execute(Self.ledgerFixture) }
        // The fixture's rows are this month's: its partition holds them.
        let month = try await pool.withConnection { connection in
            try await connection.query("SELECT passion_partition_name('points_ledger', 'month', now()) AS name").first?.require("name", as: String.self)
        }
        let partition = try #require(month)
        let refused: [(statement: String, sqlState: String, constraints: Set<String>)] = [
            ("UPDATE points_ledger SET points = points + 1", "P0A01", ["points_ledger_append_only"]),
            ("UPDATE points_ledger SET points = 1 WHERE false", "P0A01", ["points_ledger_append_only"]),
            ("DELETE FROM points_ledger", "P0A01", ["points_ledger_append_only"]),
            ("DELETE FROM points_ledger WHERE false", "P0A01", ["points_ledger_append_only"]),
            ("TRUNCATE points_ledger", "P0A01", ["points_ledger_append_only"]),
            // A statement naming a partition is refused the same way, under the ledger's name.
            ("UPDATE \(partition) SET points = points + 1", "P0A01", ["points_ledger_append_only"]),
            ("DELETE FROM \(partition)", "P0A01", ["points_ledger_append_only"]),
            ("TRUNCATE \(partition)", "P0A01", ["points_ledger_append_only"]),
            ("DELETE FROM points_ledger_default", "P0A01", ["points_ledger_append_only"]),
            // An insert naming a partition would skip the ledger's insert trigger (keys, totals).
            ("""
             INSERT INTO \(partition) (user_id, points, reason, idempotency_key)
             VALUES ('00000000-0000-0000-0000-0000000000a1', 500, 'grant', 'award-1')
             """, "P0A01", ["points_ledger_append_only"]),
            ("""
             INSERT INTO coins_ledger_default (user_id, coins, transaction_type, reason)
             VALUES ('00000000-0000-0000-0000-0000000000a1', 500, 'earned', 'grant')
             """, "P0A01", ["coins_ledger_append_only"]),
            // refund_of must name a coins_ledger row, as its foreign key required before 0014.
            ("""
             INSERT INTO coins_ledger (user_id, coins, transaction_type, reason, refund_of)
             VALUES ('00000000-0000-0000-0000-0000000000a1', 5, 'refund', 'shop_purchase', 987654321)
             """, "23503", ["coins_refunds_refund_of_fkey"]),
            ("UPDATE coins_ledger SET coins = 1000 WHERE transaction_type = 'spent'", "P0A01", ["coins_ledger_append_only"]),
            ("UPDATE coins_ledger SET coins = 1 WHERE false", "P0A01", ["coins_ledger_append_only"]),
            ("DELETE FROM coins_ledger WHERE transaction_type = 'spent'", "P0A01", ["coins_ledger_append_only"]),
            ("DELETE FROM coins_ledger WHERE false", "P0A01", ["coins_ledger_append_only"]),
            ("TRUNCATE coins_ledger", "P0A01", ["coins_ledger_append_only"]),
            ("TRUNCATE coins_ledger_default", "P0A01", ["coins_ledger_append_only"]),
            // A cascading TRUNCATE reaches the ledgers too.
            ("TRUNCATE users CASCADE", "P0A01", ["points_ledger_append_only", "coins_ledger_append_only"]),
            // The key's uniqueness lives in points_ledger_keys (a partitioned table's unique
            // constraints must include created_at), so no upsert can even be planned.
            ("""
             INSERT INTO points_ledger (user_id, points, reason, idempotency_key)
             VALUES ('00000000-0000-0000-0000-0000000000a1', 500, 'grant', 'award-1')
             ON CONFLICT (user_id, idempotency_key) DO UPDATE SET points = EXCLUDED.points
             """, "42P10", [""]),
            ("""
             INSERT INTO coins_ledger (user_id, coins, transaction_type, reason, idempotency_key)
             VALUES ('00000000-0000-0000-0000-0000000000a1', 500, 'earned', 'grant', 'coins-1')
             ON CONFLICT (user_id, idempotency_key) DO NOTHING
             """, "42P10", [""]),
            // A reused key: the insert trigger's key row refuses the whole statement.
            ("""
             INSERT INTO points_ledger (user_id, points, reason, idempotency_key)
             VALUES ('00000000-0000-0000-0000-0000000000a1', 100, 'grant', 'award-1')
             """, "23505", ["points_ledger_keys_pkey"]),
            ("""
             INSERT INTO coins_ledger (user_id, coins, transaction_type, reason, idempotency_key)
             VALUES ('00000000-0000-0000-0000-0000000000a1', 5, 'earned', 'grant', 'coins-1')
             """, "23505", ["coins_ledger_keys_pkey"]),
        ]
        for (statement, sqlState, constraints) in refused {
            let outcome = try await pool.withConnection { connection -> ViolationOutcome in
                let before = try await Self.fingerprint(connection)
                var failure: StoreError?
                do {
                    try await connection.execute(statement)
                } catch let error as StoreError {
                    failure = error
                }
                return await ViolationOutcome(error: failure, countBefore: nil, countAfter: nil, before: before, after: try Self.fingerprint(connection), replicationRole: nil)
            }
            let error = try #require(outcome.error, "accepted: \(statement)")
            #expect(error.sqlState == sqlState, "\(statement): \(error)")
            #expect(constraints.contains(error.constraint ?? ""), "\(statement): \(error)")
            #expect(outcome.after == outcome.before, "changed by the refused \(statement)")
        }
        // The rows and the totals are still the fixture's.
        let state = try await pool.withConnection { connection in
            await (try Self.count(connection, "points_ledger"), try Self.count(connection, "coins_ledger"), try Self.progress(connection, Self.ada))
        }
        #expect(state.0 == 2)
        #expect(state.1 == 2)
        #expect(state.2 == Progress(totalXP: 150, level: 2, totalCoins: 30, coinsEarned: 40, achievements: 0))

        // A new key appends, and its key row names it.
        let appended = try await pool.withConnection { connection in
            try await connection.execute("""
                INSERT INTO points_ledger (user_id, points, reason, idempotency_key)
                VALUES ('00000000-0000-0000-0000-0000000000a1', 150, 'grant', 'award-3')
                """).affected
        }
        #expect(appended == 1)
        let progress = try await pool.withConnection { try await Self.progress($0, Self.ada) }
        #expect(progress == Progress(totalXP: 300, level: 3, totalCoins: 30, coinsEarned: 40, achievements: 0))
        #expect(try await IntegrityCheck.run(pool) == [])
    }

    // MARK: - 3. Derived progress, in the inserting transaction

    @Test("a points_ledger insert updates user_progress in its transaction; a rollback leaves no trace")
    func pointsMaintainProgress() async throws {
        let pool = try await migratedPool()
        defer { Task { await pool.shutdown() } }
        let user = UUID()
        try await pool.withConnection { try await $0.query("INSERT INTO users (id, email) VALUES (\(user), \("ada@example.com"))") }

        // Seen inside the transaction, gone after ROLLBACK (the progress row created on demand too).
        let inside = try await pool.withConnection { connection -> Progress? in
            try await connection.execute("BEGIN")
            do {
                try await connection.query("INSERT INTO points_ledger (user_id, points, reason) VALUES (\(user), \(150), 'habit_completed')")
                let progress = try await Self.progress(connection, user)
                try await connection.execute("ROLLBACK")
                return progress
            } catch {
                _ = try? await connection.execute("ROLLBACK")
                throw error
            }
        }
        #expect(inside == Progress(totalXP: 150, level: 2, totalCoins: 0, coinsEarned: 0, achievements: 0))
        let afterRollback = try await pool.withConnection { connection in
            await (try Self.count(connection, "points_ledger"), try Self.count(connection, "user_progress"))
        }
        #expect(afterRollback.0 == 0)
        #expect(afterRollback.1 == 0)

        // Committed awards add up; the level follows the curve.
        let committed = try await pool.transaction { connection -> Progress? in
            try await connection.query("INSERT INTO points_ledger (user_id, points, reason) VALUES (\(user), \(100), 'grant')")
            try await connection.query("INSERT INTO points_ledger (user_id, points, reason) VALUES (\(user), \(200), 'quest_completed')")
            return try await Self.progress(connection, user)
        }
        #expect(committed == Progress(totalXP: 300, level: 3, totalCoins: 0, coinsEarned: 0, achievements: 0))
        try await pool.withConnection { try await $0.query("INSERT INTO points_ledger (user_id, points, reason) VALUES (\(user), \(700), 'goal_completed')") }
        let atThousand = try await pool.withConnection { try await Self.progress($0, user) }
        #expect(atThousand == Progress(totalXP: 1_000, level: 5, totalCoins: 0, coinsEarned: 0, achievements: 0))
        // A penalty can lower the level.
        try await pool.withConnection { try await $0.query("INSERT INTO points_ledger (user_id, points, reason) VALUES (\(user), \(-1), 'penalty')") }
        #expect(try await pool.withConnection { try await Self.progress($0, user) } == Progress(totalXP: 999, level: 4, totalCoins: 0, coinsEarned: 0, achievements: 0))

        // A transaction that fails after an award loses the award as well.
        do {
            try await pool.transaction { connection in
                try await connection.query("INSERT INTO points_ledger (user_id, points, reason) VALUES (\(user), \(5000), 'grant')")
                try await connection.query("INSERT INTO points_ledger (user_id, points, reason) VALUES (\(user), \(0), 'grant')")
            }
            Issue.record("a zero award was accepted")
        } catch let error as StoreError {
            #expect(error.constraint == "points_ledger_points_sign")
        }
        // A penalty larger than the total is refused: XP never goes negative.
        let tooLarge = await Self.failure(pool, "INSERT INTO points_ledger (user_id, points, reason) VALUES (\(user), \(-1000), 'penalty')")
        #expect(tooLarge?.sqlState == "23514")
        #expect(tooLarge?.constraint == "user_progress_total_xp_nonnegative")
        let final = try await pool.withConnection { connection in
            await (try Self.progress(connection, user), try Self.count(connection, "points_ledger"), try await connection.execute("SELECT * FROM passion_integrity_check()").count)
        }
        #expect(final.0 == Progress(totalXP: 999, level: 4, totalCoins: 0, coinsEarned: 0, achievements: 0))
        #expect(final.1 == 4)
        #expect(final.2 == 0)
    }

    @Test("a coins overspend is refused and leaves the balance; a correction within the balance works")
    func coinsNeverGoNegative() async throws {
        let pool = try await migratedPool()
        defer { Task { await pool.shutdown() } }
        let user = UUID()
        try await pool.withConnection { connection in
            try await connection.query("INSERT INTO users (id, email) VALUES (\(user), \("ada@example.com"))")
            try await connection.query("INSERT INTO coins_ledger (user_id, coins, transaction_type, reason) VALUES (\(user), \(50), 'earned', 'habit_completed')")
        }
        #expect(try await pool.withConnection { try await Self.progress($0, user) } == Progress(totalXP: 0, level: 1, totalCoins: 50, coinsEarned: 50, achievements: 0))

        let overspend = await Self.failure(pool, "INSERT INTO coins_ledger (user_id, coins, transaction_type, reason) VALUES (\(user), \(-51), 'spent', 'shop_purchase')")
        #expect(overspend?.sqlState == "23514")
        #expect(overspend?.constraint == "user_progress_total_coins_nonnegative")
        #expect(overspend?.rpcError.code == .invalidArgument)
        let afterOverspend = try await pool.withConnection { connection in
            await (try Self.progress(connection, user), try Self.count(connection, "coins_ledger"))
        }
        #expect(afterOverspend.0 == Progress(totalXP: 0, level: 1, totalCoins: 50, coinsEarned: 50, achievements: 0))
        #expect(afterOverspend.1 == 1)

        // A negative correction within the balance is a compensating row: the balance drops,
        // lifetime earnings do not.
        try await pool.withConnection { try await $0.query("INSERT INTO coins_ledger (user_id, coins, transaction_type, reason) VALUES (\(user), \(-20), 'correction', 'correction')") }
        #expect(try await pool.withConnection { try await Self.progress($0, user) } == Progress(totalXP: 0, level: 1, totalCoins: 30, coinsEarned: 50, achievements: 0))
        // Spending exactly the balance is allowed; one more coin is not.
        try await pool.withConnection { try await $0.query("INSERT INTO coins_ledger (user_id, coins, transaction_type, reason) VALUES (\(user), \(-30), 'spent', 'shop_purchase')") }
        let broke = await Self.failure(pool, "INSERT INTO coins_ledger (user_id, coins, transaction_type, reason) VALUES (\(user), \(-1), 'spent', 'shop_purchase')")
        #expect(broke?.constraint == "user_progress_total_coins_nonnegative")
        let final = try await pool.withConnection { connection in
            await (try Self.progress(connection, user), try Self.count(connection, "coins_ledger"), try await connection.execute("SELECT * FROM passion_integrity_check()").count)
        }
        #expect(final.0 == Progress(totalXP: 0, level: 1, totalCoins: 0, coinsEarned: 50, achievements: 0))
        #expect(final.1 == 3)
        #expect(final.2 == 0)
    }

    // MARK: - 4. Email uniqueness among active users

    @Test("a duplicate active email is ALREADY_EXISTS; after a soft delete the address can sign up again")
    func emailUniqueAmongActiveUsers() async throws {
        let pool = try await migratedPool()
        defer { Task { await pool.shutdown() } }
        let email = "ada@example.com"
        let first = UUID()
        try await pool.withConnection { connection in
            try await connection.query("INSERT INTO users (id, email) VALUES (\(first), \(email))")
            try await connection.query("INSERT INTO sessions (id, user_id, expires_at) VALUES (\(Bytes([UInt8](repeating: 7, count: 32))), \(first), now() + interval '1 day')")
        }
        let duplicate = await Self.failure(pool, "INSERT INTO users (email) VALUES (\(email))")
        #expect(duplicate?.sqlState == "23505")
        #expect(duplicate?.constraint == "users_email_key")
        #expect(duplicate?.rpcError.code == .alreadyExists)
        #expect(duplicate?.rpcError.message.contains(email) == false)
        // Another spelling is not a way around it: addresses are stored in lower case.
        let shouted = await Self.failure(pool, "INSERT INTO users (email) VALUES (\("ADA@example.com"))")
        #expect(shouted?.constraint == "users_email_lowercase")
        #expect(try await Self.users(pool, email) == [first: true])

        // Soft delete as the docs describe: is_active = false and deleted_at together. It also
        // deletes the user's sessions.
        try await pool.withConnection { try await $0.query("UPDATE users SET is_active = false, deleted_at = now() WHERE id = \(first)") }
        #expect(try await pool.withConnection { try await $0.query("SELECT count(*) AS n FROM sessions WHERE user_id = \(first)").first?.decode("n", as: Int.self) } == 0)
        let second = UUID()
        try await pool.withConnection { try await $0.query("INSERT INTO users (id, email) VALUES (\(second), \(email))") }
        #expect(try await Self.users(pool, email) == [first: false, second: true])

        // Still one active account per address: a third sign-up, or restoring the old account,
        // is a duplicate.
        let third = await Self.failure(pool, "INSERT INTO users (email) VALUES (\(email))")
        #expect(third?.constraint == "users_email_key")
        let restore = await Self.failure(pool, "UPDATE users SET is_active = true, deleted_at = NULL WHERE id = \(first)")
        #expect(restore?.sqlState == "23505")
        #expect(restore?.constraint == "users_email_key")
        #expect(try await Self.users(pool, email) == [first: false, second: true])
    }

    // MARK: - 5. Idempotency keys on the ledgers

    @Test("the same (user_id, idempotency_key) twice on a ledger is ALREADY_EXISTS and writes one row")
    func ledgerIdempotency() async throws {
        let pool = try await migratedPool()
        defer { Task { await pool.shutdown() } }
        let user = UUID()
        let other = UUID()
        let key = "call-42"
        try await pool.withConnection { connection in
            try await connection.query("INSERT INTO users (id, email) VALUES (\(user), \("ada@example.com")), (\(other), \("grace@example.com"))")
            try await connection.query("INSERT INTO points_ledger (user_id, points, reason, idempotency_key) VALUES (\(user), \(10), 'habit_completed', \(key))")
            try await connection.query("INSERT INTO coins_ledger (user_id, coins, transaction_type, reason, idempotency_key) VALUES (\(user), \(5), 'earned', 'habit_completed', \(key))")
        }
        let points = await Self.failure(pool, "INSERT INTO points_ledger (user_id, points, reason, idempotency_key) VALUES (\(user), \(10), 'habit_completed', \(key))")
        #expect(points?.sqlState == "23505")
        // The key's uniqueness lives beside the partitioned ledger (docs/schema.md 15).
        #expect(points?.constraint == "points_ledger_keys_pkey")
        #expect(points?.rpcError.code == .alreadyExists)
        let coins = await Self.failure(pool, "INSERT INTO coins_ledger (user_id, coins, transaction_type, reason, idempotency_key) VALUES (\(user), \(5), 'earned', 'habit_completed', \(key))")
        #expect(coins?.sqlState == "23505")
        #expect(coins?.constraint == "coins_ledger_keys_pkey")
        #expect(coins?.rpcError.code == .alreadyExists)

        let counts = try await pool.withConnection { connection in
            (try await connection.query("SELECT count(*) AS n FROM points_ledger WHERE user_id = \(user) AND idempotency_key = \(key)").first?.decode("n", as: Int.self),
             try await connection.query("SELECT count(*) AS n FROM coins_ledger WHERE user_id = \(user) AND idempotency_key = \(key)").first?.decode("n", as: Int.self),
             try await Self.progress(connection, user))
        }
        #expect(counts.0 == 1)
        #expect(counts.1 == 1)
        #expect(counts.2 == Progress(totalXP: 10, level: 1, totalCoins: 5, coinsEarned: 5, achievements: 0))

        // The key is per user; rows without a key never collide; a derived per-row key is a key.
        try await pool.withConnection { connection in
            try await connection.query("INSERT INTO points_ledger (user_id, points, reason, idempotency_key) VALUES (\(other), \(10), 'habit_completed', \(key))")
            try await connection.query("INSERT INTO points_ledger (user_id, points, reason) VALUES (\(user), \(1), 'grant'), (\(user), \(1), 'grant')")
            try await connection.query("INSERT INTO points_ledger (user_id, points, reason, idempotency_key) VALUES (\(user), \(50), 'achievement_unlocked', \(key + "/achievement/1"))")
        }
        let totals = try await pool.withConnection { connection in
            await (try Self.progress(connection, user)?.totalXP, try Self.progress(connection, other)?.totalXP)
        }
        #expect(totals.0 == 62)
        #expect(totals.1 == 10)

        // The request table: one stored response per (user, key).
        let hash = Bytes([UInt8](repeating: 1, count: 32))
        try await pool.withConnection { try await $0.query("INSERT INTO idempotency_keys (user_id, key, request_hash) VALUES (\(user), \(key), \(hash))") }
        let stored = await Self.failure(pool, "INSERT INTO idempotency_keys (user_id, key, request_hash) VALUES (\(user), \(key), \(hash))")
        #expect(stored?.sqlState == "23505")
        #expect(stored?.constraint == "idempotency_keys_pkey")
        #expect(try await pool.withConnection { try await Self.count($0, "idempotency_keys") } == 1)
    }

    // MARK: - 6. passion_integrity_check()

    @Test("passion_integrity_check() is empty on consistent data and names each corruption")
    func integrityCheck() async throws {
        let pool = try await migratedPool()
        defer { Task { await pool.shutdown() } }
        let healthy = try await pool.withConnection { connection in
            try await connection.execute(Self.consistentData)
            return await (try Self.problems(connection), try Self.progress(connection, Self.ada), try Self.progress(connection, Self.grace),
                    try Self.count(connection, "sessions"))
        }
        #expect(healthy.0.isEmpty, "\(healthy.0)")
        // The data is not trivially consistent: the triggers did real work.
        #expect(healthy.1 == Progress(totalXP: 350, level: 3, totalCoins: 7, coinsEarned: 30, achievements: 2))
        #expect(healthy.2 == Progress(totalXP: 20, level: 1, totalCoins: 7, coinsEarned: 7, achievements: 0))
        #expect(healthy.3 == 2, "the soft-deleted user's session was not removed")

        for corruption in Self.corruptions {
            let problems = try await pool.withConnection { connection -> [Problem] in
                try await connection.execute("BEGIN")
                do {
                    try await connection.execute("SET session_replication_role = replica")
                    try await connection.execute(corruption.sql)
                    try await connection.execute("RESET session_replication_role")
                    let problems = try await Self.problems(connection)
                    try await connection.execute("ROLLBACK")
                    return problems
                } catch {
                    _ = try? await connection.execute("ROLLBACK")
                    throw error
                }
            }
            #expect(Set(problems.map(\.check)) == corruption.expected, "\(corruption.name): \(problems)")
            #expect(problems.allSatisfy { $0.detail.contains(corruption.detailMentions) }, "\(corruption.name): \(problems)")
        }
        // Every corruption was rolled back, and the connection's triggers are on again.
        let after = try await pool.withConnection { connection in
            await (try Self.problems(connection), try await connection.execute("SELECT current_setting('session_replication_role') AS role").first?.decode("role", as: String.self))
        }
        #expect(after.0.isEmpty, "\(after.0)")
        #expect(after.1 == "origin")
    }

    struct Problem: Sendable, CustomStringConvertible {
        var check: String
        var detail: String
        var description: String { "\(check): \(detail)" }
    }

    struct Corruption: Sendable {
        var name: String
        /// Run with triggers (and so foreign keys) disabled, inside a transaction rolled back after.
        var sql: String
        var expected: Set<String>
        var detailMentions: String
    }

    static let corruptions: [Corruption] = [
        Corruption(name: "XP row written with triggers off",
                   sql: "INSERT INTO points_ledger (user_id, points, reason) VALUES ('00000000-0000-0000-0000-0000000000a2', 500, 'grant')",
                   expected: ["progress_xp_mismatch", "weekly_xp_mismatch"], detailMentions: "00000000-0000-0000-0000-0000000000a2"),
        Corruption(name: "XP row rewritten with triggers off",
                   sql: "UPDATE points_ledger SET points = 1000 WHERE user_id = '00000000-0000-0000-0000-0000000000a2'",
                   expected: ["progress_xp_mismatch", "weekly_xp_mismatch"], detailMentions: "00000000-0000-0000-0000-0000000000a2"),
        Corruption(name: "refund written with triggers off",
                   sql: "INSERT INTO coins_ledger (user_id, coins, transaction_type, reason) VALUES ('00000000-0000-0000-0000-0000000000a2', 5, 'refund', 'shop_purchase')",
                   expected: ["progress_coins_mismatch"], detailMentions: "00000000-0000-0000-0000-0000000000a2"),
        Corruption(name: "lifetime coins changed directly",
                   sql: "UPDATE user_progress SET coins_earned = coins_earned + 1 WHERE user_id = '00000000-0000-0000-0000-0000000000a2'",
                   expected: ["progress_coins_earned_mismatch"], detailMentions: "00000000-0000-0000-0000-0000000000a2"),
        Corruption(name: "progress row deleted",
                   sql: "DELETE FROM user_progress WHERE user_id = '00000000-0000-0000-0000-0000000000a2'",
                   expected: ["progress_xp_mismatch", "progress_coins_mismatch", "progress_coins_earned_mismatch"], detailMentions: "no row"),
        Corruption(name: "unlock written with triggers off",
                   sql: "INSERT INTO user_achievements (user_id, achievement_id) VALUES ('00000000-0000-0000-0000-0000000000a2', '00000000-0000-0000-0000-0000000000d1')",
                   expected: ["progress_achievements_mismatch"], detailMentions: "00000000-0000-0000-0000-0000000000a2"),
        // Levels: the CHECK user_progress_current_level_matches_xp is not a trigger, so this
        // mismatch needs the constraint dropped (transactional DDL, rolled back).
        Corruption(name: "level out of step (CHECK dropped)",
                   sql: "ALTER TABLE user_progress DROP CONSTRAINT user_progress_current_level_matches_xp; UPDATE user_progress SET current_level = 7 WHERE user_id = '00000000-0000-0000-0000-0000000000a1'",
                   expected: ["progress_level_mismatch"], detailMentions: "00000000-0000-0000-0000-0000000000a1"),
        Corruption(name: "goal of a missing user",
                   sql: "INSERT INTO goals (user_id, title) VALUES ('00000000-0000-0000-0000-0000000000ff', 'Orphan')",
                   expected: ["orphan_user_ref"], detailMentions: "00000000-0000-0000-0000-0000000000ff"),
        Corruption(name: "habit under another user's goal",
                   sql: "UPDATE habits SET goal_id = '00000000-0000-0000-0000-0000000000b1' WHERE id = '00000000-0000-0000-0000-0000000000c2'",
                   expected: ["orphan_parent_ref"], detailMentions: "00000000-0000-0000-0000-0000000000c2"),
        Corruption(name: "completion of another user's habit",
                   sql: "INSERT INTO habit_completions (habit_id, user_id, completion_date, completed_at) VALUES ('00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-0000000000a2', '2025-03-05', '2025-03-05 07:00:00+00')",
                   expected: ["orphan_parent_ref"], detailMentions: "00000000-0000-0000-0000-0000000000c1"),
        Corruption(name: "unlocked achievement deleted from the catalog",
                   sql: "DELETE FROM achievements WHERE id = '00000000-0000-0000-0000-0000000000d2'",
                   expected: ["orphan_parent_ref"], detailMentions: "00000000-0000-0000-0000-0000000000d2"),
        Corruption(name: "soft delete with triggers off keeps the session",
                   sql: "UPDATE users SET is_active = false, deleted_at = now() WHERE id = '00000000-0000-0000-0000-0000000000a2'",
                   expected: ["session_of_deleted_user"], detailMentions: "00000000-0000-0000-0000-0000000000a2"),
    ]

    // MARK: - 7. Level curve

    @Test("passion_level_for_xp equals the documented curve: level L needs 50·L·(L−1) XP")
    func levelCurve() async throws {
        let pool = try await migratedPool()
        defer { Task { await pool.shutdown() } }
        // The reference agrees with the table in docs/schema.md.
        let documented: [Int64: Int] = [0: 1, 99: 1, 100: 2, 299: 2, 300: 3, 600: 4, 1_000: 5, 4_500: 10, 495_000: 100, 1_990_000: 200]
        for (xp, level) in documented {
            #expect(Self.referenceLevel(forXP: xp) == level, "reference level for \(xp) XP")
        }

        var samples: Set<Int64> = [0, -1, -50, Int64.min, Int64.max, Int64.max - 1]
        samples.formUnion(documented.keys)
        for level in Int64(1)...200 {
            let threshold = 50 * level * (level - 1)
            samples.formUnion([threshold - 1, threshold, threshold + 1])
        }
        // Far along the curve, where a floating-point square root alone would be off by one.
        let top = Int64(Self.referenceLevel(forXP: .max))
        for level in [1_000, 65_536, 1_000_000, 3_037_000, 100_000_000, top - 1, top] {
            guard let threshold = Self.threshold(level) else { continue }
            samples.formUnion([threshold - 1, threshold])
            if threshold < .max { samples.insert(threshold + 1) }
        }
        let xps = samples.sorted()
        let levels = try await Self.sqlLevels(pool, xps)
        #expect(levels.count == xps.count)
        let mismatches = xps.filter { levels[$0] != Self.referenceLevel(forXP: $0) }
            .map { "\($0) XP: SQL \(levels[$0].map { String($0) } ?? "nil"), reference \(Self.referenceLevel(forXP: $0))" }
        #expect(mismatches.isEmpty, "\(mismatches.prefix(20))")

        // passion_xp_for_level is the inverse; levels below 1 count as 1.
        let levelList = Array(-1...201)
        let inverse = try await pool.withConnection { connection -> [Int: (Int64, Int)] in
            var result: [Int: (Int64, Int)] = [:]
            for row in try await connection.query("SELECT l, passion_xp_for_level(l) AS xp, passion_level_for_xp(passion_xp_for_level(l)) AS back FROM unnest(\(levelList)::int[]) AS l") {
                result[try row.require("l", as: Int.self)] = (try row.require("xp", as: Int64.self), try row.require("back", as: Int.self))
            }
            return result
        }
        #expect(inverse.count == levelList.count)
        for level in levelList {
            let expected = Int64(max(level, 1))
            #expect(inverse[level]?.0 == 50 * expected * (expected - 1), "passion_xp_for_level(\(level))")
            #expect(inverse[level]?.1 == max(level, 1), "level of passion_xp_for_level(\(level))")
        }
    }

    /// passion_level_for_xp for each value, queried in batches with a bigint[] bind.
    static func sqlLevels(_ pool: PostgresPool, _ xps: [Int64]) async throws -> [Int64: Int] {
        try await pool.withConnection { connection in
            var levels: [Int64: Int] = [:]
            for start in stride(from: 0, to: xps.count, by: 250) {
                let batch = Array(xps[start..<min(start + 250, xps.count)])
                for row in try await connection.query("SELECT x, passion_level_for_xp(x) AS level FROM unnest(\(batch)::bigint[]) AS x") {
                    levels[try row.require("x", as: Int64.self)] = try row.require("level", as: Int.self)
                }
            }
            return levels
        }
    }

    /// The documented curve, independently of the SQL's integer square root: the largest L with
    /// 50·L·(L−1) ≤ xp, by binary search over the thresholds. Negative XP counts as 0.
    static func referenceLevel(forXP xp: Int64) -> Int {
        let xp = max(xp, 0)
        var low: Int64 = 1  // 50·1·0 = 0 ≤ xp
        var high: Int64 = 1 << 32  // its threshold overflows Int64, so it is above every xp
        while low < high {
            let mid = low + (high - low + 1) / 2
            if let needed = threshold(mid), needed <= xp {
                low = mid
            } else {
                high = mid - 1
            }
        }
        return Int(low)
    }

    /// 50·L·(L−1), or nil when it does not fit in a bigint.
    static func threshold(_ level: Int64) -> Int64? {
        let (product, overflow) = level.multipliedReportingOverflow(by: level - 1)
        let (needed, overflow2) = product.multipliedReportingOverflow(by: 50)
        return overflow || overflow2 ? nil : needed
    }

    // MARK: - Helpers

    struct Progress: Sendable, Equatable, CustomStringConvertible {
        var totalXP: Int64
        var level: Int
        var totalCoins: Int64
        var coinsEarned: Int64
        var achievements: Int
        var description: String { "xp \(totalXP) level \(level) coins \(totalCoins) earned \(coinsEarned) achievements \(achievements)" }
    }

    static let ada = UUID(uuidString: "00000000-0000-0000-0000-0000000000a1")!
    static let grace = UUID(uuidString: "00000000-0000-0000-0000-0000000000a2")!
    static let idle = UUID(uuidString: "00000000-0000-0000-0000-0000000000a3")!

    static let tables = [
        "users", "sessions", "audit_logs", "idempotency_keys", "goals", "habits", "habit_completions", "quests",
        "focus_sessions", "user_progress", "points_ledger", "coins_ledger", "achievements", "user_achievements", "user_settings",
        "habit_pauses", "points_ledger_keys", "coins_ledger_keys", "coins_refunds", "user_xp_weeks",
    ]

    /// Per table: row count and a digest of every row, so that an UPDATE shows as well as an INSERT.
    static let fingerprintSQL = tables.map {
        "SELECT '\($0)' AS tbl, count(*) AS n, md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) AS digest FROM \($0) t"
    }.joined(separator: " UNION ALL ") + " ORDER BY tbl"

    static func fingerprint(_ connection: PostgresConnection) async throws -> [String] {
        try await connection.execute(fingerprintSQL).map { row in
            let table = try row.require("tbl", as: String.self)
            let count = try row.require("n", as: Int.self)
            let digest = try row.require("digest", as: String.self)
            return "\(table) \(count) \(digest)"
        }
    }

    static func count(_ connection: PostgresConnection, _ table: String) async throws -> Int? {
        try await connection.execute("SELECT count(*) AS n FROM \(table)").first?.decode("n", as: Int.self)
    }

    static func progress(_ connection: PostgresConnection, _ user: UUID) async throws -> Progress? {
        guard let row = try await connection.query("""
            SELECT total_xp, current_level, total_coins, coins_earned, achievements_unlocked
            FROM user_progress WHERE user_id = \(user)
            """).first else { return nil }
        return Progress(
            totalXP: try row.require("total_xp", as: Int64.self), level: try row.require("current_level", as: Int.self),
            totalCoins: try row.require("total_coins", as: Int64.self), coinsEarned: try row.require("coins_earned", as: Int64.self),
            achievements: try row.require("achievements_unlocked", as: Int.self))
    }

    static func problems(_ connection: PostgresConnection) async throws -> [Problem] {
        try await connection.execute("SELECT check_name, detail FROM passion_integrity_check()").map { row in
            Problem(check: try row.require("check_name", as: String.self), detail: try row.require("detail", as: String.self))
        }
    }

    /// Users with this email: id → is_active.
    static func users(_ pool: PostgresPool, _ email: String) async throws -> [UUID: Bool] {
        try await pool.withConnection { connection in
            var users: [UUID: Bool] = [:]
            for row in try await connection.query("SELECT id, is_active FROM users WHERE email = \(email)") {
                users[try row.require("id", as: UUID.self)] = try row.require("is_active", as: Bool.self)
            }
            return users
        }
    }

    /// The StoreError a statement fails with; nil (and an issue) when it succeeds.
    static func failure(_ pool: PostgresPool, _ sql: SQL, sourceLocation: SourceLocation = #_sourceLocation) async -> StoreError? {
        do {
            try await pool.withConnection { try await $0.query(sql) }
            Issue.record("the statement was accepted: \(sql.text)", sourceLocation: sourceLocation)
            return nil
        } catch let error as StoreError {
            return error
        } catch {
            Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
            return nil
        }
    }

    /// Two rows in each ledger for ada: 150 XP (level 2); coins earned 40, spent 10.
    static let ledgerFixture = """
        INSERT INTO users (id, email) VALUES ('00000000-0000-0000-0000-0000000000a1', 'ada@example.com');
        INSERT INTO points_ledger (user_id, points, reason, idempotency_key) VALUES
            ('00000000-0000-0000-0000-0000000000a1', 100, 'habit_completed', 'award-1'),
            ('00000000-0000-0000-0000-0000000000a1', 50, 'grant', 'award-2');
        INSERT INTO coins_ledger (user_id, coins, transaction_type, reason, idempotency_key) VALUES
            ('00000000-0000-0000-0000-0000000000a1', 40, 'earned', 'habit_completed', 'coins-1'),
            ('00000000-0000-0000-0000-0000000000a1', -10, 'spent', 'shop_purchase', 'coins-2');
        """

    /// Every enumerated value the docs list, and each length, range and time-order boundary, on its accepted side.
    static let acceptedValues = """
        INSERT INTO users (id, email, display_name, oauth_provider, oauth_id, profile_picture_url, timezone) VALUES
            ('00000000-0000-0000-0000-0000000000a1', 'ada@example.com', 'Ada', 'google', 'g-1', 'https://example.com/a.png', 'Europe/London'),
            ('00000000-0000-0000-0000-0000000000a2', repeat('b', 243) || '@example.com', repeat('B', 255), 'azure', repeat('9', 255), 'http://' || repeat('p', 493), 'UTC'),
            ('00000000-0000-0000-0000-0000000000a3', 'c@example.com', NULL, NULL, NULL, NULL, 'Pacific/Kiritimati');
        INSERT INTO sessions (id, user_id, created_at, expires_at, last_activity, revoked_at) VALUES
            (decode(repeat('ab', 32), 'hex'), '00000000-0000-0000-0000-0000000000a1', '2025-01-01 00:00:00+00', '2025-01-01 00:00:01+00', '2025-01-01 00:00:00+00', '2025-01-01 00:00:00+00');
        INSERT INTO audit_logs (action, resource_type, resource_id, details, user_agent, status) VALUES
            ('user.signin', 'user', repeat('1', 255), '{}', repeat('u', 500), 'success'),
            ('xp.awarded', 'points_ledger', NULL, '{"points": 10}', NULL, 'failure'),
            ('a.' || repeat('b', 98), NULL, NULL, NULL, NULL, NULL);
        INSERT INTO idempotency_keys (user_id, key, request_hash) VALUES
            ('00000000-0000-0000-0000-0000000000a1', '!', decode(repeat('00', 32), 'hex')),
            ('00000000-0000-0000-0000-0000000000a1', repeat('~', 255), decode(repeat('ff', 32), 'hex'));
        INSERT INTO goals (id, user_id, title, category, status, priority) VALUES
            ('00000000-0000-0000-0000-0000000000b1', '00000000-0000-0000-0000-0000000000a1', repeat('g', 255), 'work', 'active', 1),
            ('00000000-0000-0000-0000-0000000000b2', '00000000-0000-0000-0000-0000000000a1', 'Health', 'health', 'completed', 5),
            ('00000000-0000-0000-0000-0000000000b3', '00000000-0000-0000-0000-0000000000a1', 'Learning', 'learning', 'abandoned', NULL),
            ('00000000-0000-0000-0000-0000000000b4', '00000000-0000-0000-0000-0000000000a1', 'Personal', 'personal', 'active', 3);
        INSERT INTO habits (id, user_id, goal_id, title, category, frequency, streak_days, total_completions) VALUES
            ('00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-0000000000b1', repeat('h', 255), 'work', 'daily', 0, 0),
            ('00000000-0000-0000-0000-0000000000c2', '00000000-0000-0000-0000-0000000000a1', NULL, 'Weekly', 'health', 'weekly', 3, 3),
            ('00000000-0000-0000-0000-0000000000c3', '00000000-0000-0000-0000-0000000000a1', NULL, 'Monthly', NULL, 'monthly', 0, 0);
        UPDATE habits SET total_completions = total_completions + 1 WHERE id = '00000000-0000-0000-0000-0000000000c2';
        UPDATE habits SET total_completions = 4 WHERE id = '00000000-0000-0000-0000-0000000000c2';
        INSERT INTO habit_completions (habit_id, user_id, completion_date, completed_at) VALUES
            ('00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-0000000000a1', '2025-03-02', '2025-03-01 23:00:00+00');
        INSERT INTO quests (user_id, title, quest_type, status, start_date, end_date, xp_reward) VALUES
            ('00000000-0000-0000-0000-0000000000a1', 'Chain', 'habit_chain', 'active', '2025-03-01', '2025-03-01', 0),
            ('00000000-0000-0000-0000-0000000000a1', 'Goal', 'goal_completion', 'completed', '2025-03-01', '2025-03-31', 100),
            ('00000000-0000-0000-0000-0000000000a1', 'Daily', 'daily', 'failed', '2025-03-01', '2025-03-02', 10),
            ('00000000-0000-0000-0000-0000000000a1', 'Milestone', 'milestone', 'active', '2025-03-01', '2025-12-31', 1000);
        INSERT INTO focus_sessions (user_id, goal_id, session_type, duration_minutes, actual_duration_minutes, status, started_at, paused_at, completed_at) VALUES
            ('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-0000000000b1', 'pomodoro', 1, 0, 'active', '2025-03-01 09:00:00+00', NULL, NULL),
            -- Another user: one open (active or paused) session per user.
            ('00000000-0000-0000-0000-0000000000a3', NULL, 'custom', 1440, 1440, 'paused', '2025-03-01 09:00:00+00', '2025-03-01 09:00:00+00', NULL),
            ('00000000-0000-0000-0000-0000000000a1', NULL, NULL, 25, 25, 'completed', '2025-03-01 09:00:00+00', NULL, '2025-03-01 09:25:00+00'),
            ('00000000-0000-0000-0000-0000000000a1', NULL, 'pomodoro', 25, NULL, 'abandoned', '2025-03-01 09:00:00+00', NULL, NULL);
        INSERT INTO user_progress (user_id, streaks_active) VALUES ('00000000-0000-0000-0000-0000000000a3', 2);
        INSERT INTO points_ledger (user_id, points, reason, resource_id, resource_type, idempotency_key) VALUES
            ('00000000-0000-0000-0000-0000000000a1', 10, 'habit_completed', '00000000-0000-0000-0000-0000000000c1', 'habit', 'k1'),
            ('00000000-0000-0000-0000-0000000000a1', 100, 'goal_completed', '00000000-0000-0000-0000-0000000000b2', 'goal', repeat('~', 255)),
            ('00000000-0000-0000-0000-0000000000a1', 50, 'achievement_unlocked', '00000000-0000-0000-0000-0000000000d1', 'achievement', NULL),
            ('00000000-0000-0000-0000-0000000000a1', 25, 'focus_session_completed', '00000000-0000-0000-0000-0000000000e1', 'focus_session', NULL),
            ('00000000-0000-0000-0000-0000000000a1', 100, 'quest_completed', '00000000-0000-0000-0000-0000000000f1', 'quest', NULL),
            ('00000000-0000-0000-0000-0000000000a1', 5, 'grant', NULL, NULL, NULL),
            ('00000000-0000-0000-0000-0000000000a1', -40, 'penalty', NULL, NULL, NULL),
            ('00000000-0000-0000-0000-0000000000a1', 1, 'correction', NULL, NULL, NULL),
            ('00000000-0000-0000-0000-0000000000a1', -1, 'correction', NULL, NULL, NULL);
        INSERT INTO coins_ledger (user_id, coins, transaction_type, reason) VALUES
            ('00000000-0000-0000-0000-0000000000a1', 1, 'earned', 'habit_completed'),
            ('00000000-0000-0000-0000-0000000000a1', 2, 'earned', 'goal_completed'),
            ('00000000-0000-0000-0000-0000000000a1', 3, 'earned', 'focus_session_completed'),
            ('00000000-0000-0000-0000-0000000000a1', 4, 'earned', 'quest_completed'),
            ('00000000-0000-0000-0000-0000000000a1', 5, 'earned', 'achievement_unlocked'),
            ('00000000-0000-0000-0000-0000000000a1', 6, 'earned', 'battle_win'),
            ('00000000-0000-0000-0000-0000000000a1', 7, 'earned', 'grant'),
            ('00000000-0000-0000-0000-0000000000a1', -20, 'spent', 'shop_purchase'),
            ('00000000-0000-0000-0000-0000000000a1', 2, 'refund', 'shop_purchase'),
            ('00000000-0000-0000-0000-0000000000a1', -3, 'correction', 'correction'),
            ('00000000-0000-0000-0000-0000000000a1', 1, 'correction', 'correction');
        INSERT INTO achievements (id, title, icon_url, category, rarity, xp_reward, coins_reward, unlock_condition) VALUES
            ('00000000-0000-0000-0000-0000000000d1', repeat('a', 255), 'https://' || repeat('i', 492), 'progress', 'common', 0, 0, '{"type": "habit_streak", "value": 7, "habit": "any"}'),
            ('00000000-0000-0000-0000-0000000000d2', 'XP', 'http://example.com/i.png', 'social', 'rare', 50, 10, '{"type": "total_xp", "value": 1000}'),
            ('00000000-0000-0000-0000-0000000000d3', 'Goals', NULL, 'challenge', 'epic', 50, 10, '{"type": "goals_completed", "value": 1}'),
            ('00000000-0000-0000-0000-0000000000d4', 'Level', NULL, NULL, 'legendary', 50, 10, '{"type": "level", "value": 10.0}'),
            ('00000000-0000-0000-0000-0000000000d5', 'Completions', NULL, NULL, NULL, 50, 10, '{"type": "completions", "value": 100}'),
            ('00000000-0000-0000-0000-0000000000d6', 'Focus', NULL, NULL, NULL, 50, 10, '{"type": "focus_minutes", "value": 600}'),
            ('00000000-0000-0000-0000-0000000000d7', 'Quests', NULL, NULL, NULL, 50, 10, '{"type": "quests_completed", "value": 5}'),
            ('00000000-0000-0000-0000-0000000000d8', 'Coins', NULL, NULL, NULL, 50, 10, '{"type": "coins_earned", "value": 1e3}');
        INSERT INTO user_achievements (user_id, achievement_id) VALUES
            ('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-0000000000d1');
        INSERT INTO user_settings (user_id, theme, email_digest_frequency, language, metadata) VALUES
            ('00000000-0000-0000-0000-0000000000a1', 'light', 'daily', 'en', '{}'),
            ('00000000-0000-0000-0000-0000000000a2', 'dark', 'weekly', 'zh-Hant', '{"beta": true}'),
            ('00000000-0000-0000-0000-0000000000a3', 'system', 'monthly', 'pt-BR12345', '{}');
        """

    /// Consistent data written through the ordinary paths, triggers on: three active users (one with no activity), one soft-deleted.
    static let consistentData = """
        INSERT INTO users (id, email, display_name, timezone, oauth_provider, oauth_id) VALUES
            ('00000000-0000-0000-0000-0000000000a1', 'ada@example.com', 'Ada', 'Europe/London', 'google', 'g-1'),
            ('00000000-0000-0000-0000-0000000000a2', 'grace@example.com', 'Grace', 'America/New_York', NULL, NULL),
            ('00000000-0000-0000-0000-0000000000a3', 'idle@example.com', NULL, NULL, NULL, NULL);
        INSERT INTO sessions (id, user_id, expires_at) VALUES
            (decode(repeat('a1', 32), 'hex'), '00000000-0000-0000-0000-0000000000a1', now() + interval '30 days'),
            (decode(repeat('a2', 32), 'hex'), '00000000-0000-0000-0000-0000000000a2', now() + interval '30 days');
        INSERT INTO goals (id, user_id, title, category, priority) VALUES
            ('00000000-0000-0000-0000-0000000000b1', '00000000-0000-0000-0000-0000000000a1', 'Run a marathon', 'health', 1),
            ('00000000-0000-0000-0000-0000000000b2', '00000000-0000-0000-0000-0000000000a2', 'Learn Swift', 'learning', 2);
        INSERT INTO habits (id, user_id, goal_id, title, frequency) VALUES
            ('00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-0000000000b1', 'Run 5 km', 'daily'),
            ('00000000-0000-0000-0000-0000000000c2', '00000000-0000-0000-0000-0000000000a2', NULL, 'Read', 'weekly');
        INSERT INTO habit_completions (habit_id, user_id, completion_date, completed_at) VALUES
            ('00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-0000000000a1', '2025-03-01', '2025-03-01 07:00:00+00'),
            ('00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-0000000000a1', '2025-03-02', '2025-03-02 07:00:00+00');
        UPDATE habits SET total_completions = 2, streak_days = 2 WHERE id = '00000000-0000-0000-0000-0000000000c1';
        INSERT INTO quests (user_id, title, quest_type, start_date, end_date) VALUES
            ('00000000-0000-0000-0000-0000000000a1', 'Week of running', 'habit_chain', '2025-03-01', '2025-03-07');
        INSERT INTO focus_sessions (user_id, goal_id, session_type, duration_minutes, actual_duration_minutes, status, started_at, completed_at) VALUES
            ('00000000-0000-0000-0000-0000000000a2', '00000000-0000-0000-0000-0000000000b2', 'pomodoro', 25, 25, 'completed', '2025-03-01 09:00:00+00', '2025-03-01 09:25:00+00');
        INSERT INTO achievements (id, title, category, rarity, xp_reward, coins_reward, unlock_condition) VALUES
            ('00000000-0000-0000-0000-0000000000d1', 'First steps', 'progress', 'common', 50, 10, '{"type": "completions", "value": 1}'),
            ('00000000-0000-0000-0000-0000000000d2', 'Centurion', 'challenge', 'rare', 100, 20, '{"type": "total_xp", "value": 100}');
        INSERT INTO user_achievements (user_id, achievement_id) VALUES
            ('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-0000000000d1'),
            ('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-0000000000d2');
        INSERT INTO points_ledger (user_id, points, reason, resource_id, resource_type, idempotency_key) VALUES
            ('00000000-0000-0000-0000-0000000000a1', 10, 'habit_completed', '00000000-0000-0000-0000-0000000000c1', 'habit', 'call-1'),
            ('00000000-0000-0000-0000-0000000000a1', 10, 'habit_completed', '00000000-0000-0000-0000-0000000000c1', 'habit', 'call-2'),
            ('00000000-0000-0000-0000-0000000000a1', 50, 'achievement_unlocked', '00000000-0000-0000-0000-0000000000d1', 'achievement', 'call-1/achievement/d1'),
            ('00000000-0000-0000-0000-0000000000a1', 100, 'achievement_unlocked', '00000000-0000-0000-0000-0000000000d2', 'achievement', 'call-2/achievement/d2'),
            ('00000000-0000-0000-0000-0000000000a1', 200, 'grant', NULL, NULL, NULL),
            ('00000000-0000-0000-0000-0000000000a1', -20, 'penalty', NULL, NULL, NULL),
            ('00000000-0000-0000-0000-0000000000a2', 25, 'focus_session_completed', NULL, NULL, NULL),
            ('00000000-0000-0000-0000-0000000000a2', -5, 'correction', NULL, NULL, NULL);
        INSERT INTO coins_ledger (user_id, coins, transaction_type, reason, idempotency_key) VALUES
            ('00000000-0000-0000-0000-0000000000a1', 10, 'earned', 'achievement_unlocked', 'call-1/achievement/d1'),
            ('00000000-0000-0000-0000-0000000000a1', 20, 'earned', 'achievement_unlocked', 'call-2/achievement/d2'),
            ('00000000-0000-0000-0000-0000000000a1', -25, 'spent', 'shop_purchase', 'call-3'),
            ('00000000-0000-0000-0000-0000000000a1', 5, 'refund', 'shop_purchase', 'call-4'),
            ('00000000-0000-0000-0000-0000000000a1', -3, 'correction', 'correction', NULL),
            ('00000000-0000-0000-0000-0000000000a2', 7, 'earned', 'battle_win', NULL);
        INSERT INTO user_settings (user_id, theme, email_digest_frequency, language) VALUES
            ('00000000-0000-0000-0000-0000000000a1', 'dark', 'daily', 'pt-BR'),
            ('00000000-0000-0000-0000-0000000000a2', 'system', 'monthly', 'zh-Hant');
        INSERT INTO idempotency_keys (user_id, key, request_hash) VALUES
            ('00000000-0000-0000-0000-0000000000a1', 'call-1', decode(repeat('01', 32), 'hex'));
        INSERT INTO audit_logs (user_id, action, resource_type, resource_id, details, ip_address, status) VALUES
            ('00000000-0000-0000-0000-0000000000a1', 'habit.completed', 'habit', '00000000-0000-0000-0000-0000000000c1', '{"xp": 10}', '192.0.2.1', 'success'),
            (NULL, 'user.signin', NULL, NULL, NULL, NULL, 'failure');
        INSERT INTO users (id, email) VALUES ('00000000-0000-0000-0000-0000000000a4', 'gone@example.com');
        INSERT INTO sessions (id, user_id, expires_at) VALUES (decode(repeat('a4', 32), 'hex'), '00000000-0000-0000-0000-0000000000a4', now() + interval '30 days');
        UPDATE users SET is_active = false, deleted_at = now() WHERE id = '00000000-0000-0000-0000-0000000000a4';
        """
}
