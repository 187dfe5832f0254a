import Foundation
import PassionJSON

/// A `goals` row with its count of active habits.
public struct GoalRecord: FieldsDecodable, Equatable {
    public var id: UUID
    public var title: String
    public var description: String?
    public var category: String?
    public var status: String
    public var priority: Int32?
    public var targetDate: LocalDate?
    public var metadata: JSONB
    public var archived: Bool
    public var isActive: Bool
    public var habitCount: Int32
    public var createdAt: Date
    public var updatedAt: Date
    public var completedAt: Date?

    /// Selects a `GoalRecord` from goals `g`.
    public static let columns = """
        g.*, (SELECT count(*) FROM habits h WHERE h.goal_id = g.id AND h.user_id = g.user_id AND h.is_active AND NOT h.archived)::integer
             AS habit_count
        """

    public init(fields: RecordSource) throws {
        id = try fields.require("id")
        title = try fields.require("title")
        description = try fields.optional("description")
        category = try fields.optional("category")
        status = try fields.require("status")
        priority = try fields.optional("priority")
        targetDate = try fields.optional("target_date")
        metadata = try fields.require("metadata")
        archived = try fields.require("archived")
        isActive = try fields.require("is_active")
        habitCount = try fields.require("habit_count")
        createdAt = try fields.require("created_at")
        updatedAt = try fields.require("updated_at")
        completedAt = try fields.optional("completed_at")
    }
}

/// A `habits` row with the streak a reader sees and whether its current period is done.
public struct HabitRecord: FieldsDecodable, Equatable {
    public var id: UUID
    public var goalID: UUID?
    public var title: String
    public var description: String?
    public var category: String?
    public var frequency: String
    public var streak: Int32
    public var totalCompletions: Int32
    public var isActive: Bool
    public var archived: Bool
    public var doneThisPeriod: Bool
    public var createdAt: Date
    public var updatedAt: Date

    /// Reads a habit as a reader sees it (`streak`, `done_this_period`).
    public init(fields: RecordSource) throws {
        try self.init(fields: fields, justCompleted: false)
    }

    /// `justCompleted`: a habit row as `passion_habit_complete` returns it, without the
    /// reader's columns: just completed, its stored streak is current and its period done.
    public init(fields: RecordSource, justCompleted: Bool) throws {
        id = try fields.require("id")
        goalID = try fields.optional("goal_id")
        title = try fields.require("title")
        description = try fields.optional("description")
        category = try fields.optional("category")
        frequency = try fields.require("frequency")
        streak = try fields.require(justCompleted ? "streak_days" : "streak")
        totalCompletions = try fields.require("total_completions")
        isActive = try fields.require("is_active")
        archived = try fields.require("archived")
        doneThisPeriod = justCompleted ? true : try fields.require("done_this_period")
        createdAt = try fields.require("created_at")
        updatedAt = try fields.require("updated_at")
    }
}

/// A `habit_completions` row.
public struct HabitCompletionRecord: FieldsDecodable, Equatable {
    public var id: UUID
    public var habitID: UUID
    public var completionDate: LocalDate
    public var completedAt: Date

    public static let columns = "c.id, c.habit_id, c.completion_date, c.completed_at"

    public init(fields: RecordSource) throws {
        id = try fields.require("id")
        habitID = try fields.require("habit_id")
        completionDate = try fields.require("completion_date")
        completedAt = try fields.require("completed_at")
    }
}

/// A `quests` row; `status` as a reader sees it (an active quest past its end has failed).
public struct QuestRecord: FieldsDecodable, Equatable {
    public var id: UUID
    public var title: String
    public var description: String?
    public var questType: String?
    public var status: String
    public var startDate: LocalDate
    public var endDate: LocalDate
    public var xpReward: Int32
    public var criteria: Criteria
    public var target: Int32
    public var progress: Int32
    public var createdBy: String?
    public var createdAt: Date
    public var completedAt: Date?

    /// What a quest counts: at most one of these is set, by quest type.
    public struct Criteria: FieldsDecodable, Equatable {
        public var habitID: UUID?
        public var goalID: UUID?
        public var metric: String?

        public init(habitID: UUID? = nil, goalID: UUID? = nil, metric: String? = nil) {
            self.habitID = habitID
            self.goalID = goalID
            self.metric = metric
        }

        public init(fields: RecordSource) throws {
            habitID = try fields.optional("habit_id")
            goalID = try fields.optional("goal_id")
            metric = try fields.optional("metric")
        }

        /// As the `criteria` column stores it (keys in order, absent ones left out).
        public var json: JSONB {
            var members: [String: StrictJSON] = [:]
            if let goalID { members["goal_id"] = .string(goalID.postgresText) }
            if let habitID { members["habit_id"] = .string(habitID.postgresText) }
            if let metric { members["metric"] = .string(metric) }
            return JSONB(json: StrictJSON.object(members).text)
        }
    }

    /// Selects a `QuestRecord` from quests `q`, with the status a reader sees; needs the user's
    /// local day as `t`.
    public static let columns = """
        q.id, q.title, q.description, q.quest_type, q.start_date, q.end_date, q.xp_reward, q.criteria, q.target, q.progress,
        q.created_by, q.created_at, q.completed_at,
        CASE WHEN q.status = 'active' AND q.end_date < t.today THEN 'failed' ELSE q.status END AS status
        """

    public init(fields: RecordSource) throws {
        id = try fields.require("id")
        title = try fields.require("title")
        description = try fields.optional("description")
        questType = try fields.optional("quest_type")
        status = try fields.require("status")
        startDate = try fields.require("start_date")
        endDate = try fields.require("end_date")
        xpReward = try fields.require("xp_reward")
        criteria = try fields.record("criteria") ?? Criteria()
        target = try fields.require("target")
        progress = try fields.require("progress")
        createdBy = try fields.optional("created_by")
        createdAt = try fields.require("created_at")
        completedAt = try fields.optional("completed_at")
    }
}

/// A quest's progress after a content call advanced it.
public struct QuestProgressRecord: FieldsDecodable, Equatable {
    public var questID: UUID
    public var progress: Int32
    public var target: Int32

    public init(fields: RecordSource) throws {
        questID = try fields.require("quest_id")
        progress = try fields.require("progress")
        target = try fields.require("target")
    }
}

/// A `focus_sessions` row with its focused seconds up to the read's instant.
public struct FocusSessionRecord: FieldsDecodable, Equatable {
    public var id: UUID
    public var goalID: UUID?
    public var sessionType: String?
    public var durationMinutes: Int32
    public var actualDurationMinutes: Int32?
    public var status: String
    public var notes: String?
    public var focusedSeconds: Int64
    public var startedAt: Date
    public var pausedAt: Date?
    public var completedAt: Date?

    /// Selects a `FocusSessionRecord` from focus_sessions `f`, a running session's focused
    /// seconds counted up to `now`.
    public static func columns(now: Date) -> SQL {
        """
        f.id, f.goal_id, f.session_type, f.duration_minutes, f.actual_duration_minutes, f.status, f.notes, f.started_at,
        f.paused_at, f.completed_at,
        f.focused_seconds + CASE WHEN f.status = 'active'
            THEN greatest(extract(epoch FROM \(now)::timestamptz - coalesce(f.running_since, f.started_at)), 0)::bigint ELSE 0 END
            AS focused_seconds
        """
    }

    public init(fields: RecordSource) throws {
        id = try fields.require("id")
        goalID = try fields.optional("goal_id")
        sessionType = try fields.optional("session_type")
        durationMinutes = try fields.require("duration_minutes")
        actualDurationMinutes = try fields.optional("actual_duration_minutes")
        status = try fields.require("status")
        notes = try fields.optional("notes")
        focusedSeconds = try fields.require("focused_seconds")
        startedAt = try fields.require("started_at")
        pausedAt = try fields.optional("paused_at")
        completedAt = try fields.optional("completed_at")
    }
}

/// One day's or week's completed focus.
public struct FocusBucketRecord: FieldsDecodable, Equatable {
    public var date: LocalDate
    public var minutes: Int64
    public var sessions: Int32

    public init(fields: RecordSource) throws {
        date = try fields.require("date")
        minutes = try fields.require("minutes")
        sessions = try fields.require("sessions")
    }
}

/// The home screen's counts for one user.
public struct DashboardRecord: FieldsDecodable, Equatable {
    public var userID: UUID
    public var displayName: String?
    public var today: LocalDate
    public var totalXP: Int64
    public var totalCoins: Int64
    public var level: Int32
    public var nextLevelXP: Int64
    public var achievementsUnlocked: Int32
    public var activeGoals: Int32
    public var activeHabits: Int32
    public var habitsDue: Int32

    public init(fields: RecordSource) throws {
        userID = try fields.require("user_id")
        displayName = try fields.optional("display_name")
        today = try fields.require("today")
        totalXP = try fields.require("total_xp")
        totalCoins = try fields.require("total_coins")
        level = try fields.require("level")
        nextLevelXP = try fields.require("next_level_xp")
        achievementsUnlocked = try fields.require("achievements_unlocked")
        activeGoals = try fields.require("active_goals")
        activeHabits = try fields.require("active_habits")
        habitsDue = try fields.require("habits_due")
    }
}

/// What `passion_goal_complete` returns (and answers a repeat with).
public struct GoalCompletionRecord: FieldsDecodable, Equatable {
    public var goal: GoalRecord
    /// Nil when the completion paid nothing (past the daily cap).
    public var reward: RewardRecord?
    public var quests: [QuestProgressRecord]

    public init(fields: RecordSource) throws {
        goal = try fields.requireRecord("goal")
        reward = try fields.record("reward")
        quests = try fields.records("quests")
    }
}

/// What `passion_habit_complete` returns: the completion, the habit just completed (its stored
/// streak current, its period done), the reward and the quests it moved.
public struct HabitCompletionResultRecord: FieldsDecodable, Equatable {
    public var completion: HabitCompletionRecord
    public var habit: HabitRecord
    public var reward: RewardRecord?
    public var quests: [QuestProgressRecord]

    public init(fields: RecordSource) throws {
        completion = try fields.requireRecord("completion")
        guard let habit = try fields.json("habit") else { throw RecordDecodingError(field: "habit", problem: "is NULL or missing") }
        self.habit = try HabitRecord(fields: .document(DocumentFields(habit, field: "habit")), justCompleted: true)
        reward = try fields.record("reward")
        quests = try fields.records("quests")
    }
}

/// What `passion_habit_uncomplete` returns: the completion taken back, its habit's id, and the
/// reward reversed.
public struct HabitUncompletionRecord: FieldsDecodable, Equatable {
    public var completion: HabitCompletionRecord
    public var habitID: UUID
    public var reward: RewardRecord?

    /// The habit's other columns are read again as a reader sees them, so only its id is kept.
    private struct HabitID: FieldsDecodable {
        var id: UUID
        init(fields: RecordSource) throws { id = try fields.require("id") }
    }

    public init(fields: RecordSource) throws {
        completion = try fields.requireRecord("completion")
        habitID = try fields.requireRecord("habit", as: HabitID.self).id
        reward = try fields.record("reward")
    }
}

/// What `passion_quest_complete` returns.
public struct QuestCompletionRecord: FieldsDecodable, Equatable {
    public var quest: QuestRecord
    public var reward: RewardRecord?

    public init(fields: RecordSource) throws {
        quest = try fields.requireRecord("quest")
        reward = try fields.record("reward")
    }
}

/// What `passion_focus_complete` returns.
public struct FocusCompletionRecord: FieldsDecodable, Equatable {
    public var session: FocusSessionRecord
    public var reward: RewardRecord?
    public var quests: [QuestProgressRecord]

    public init(fields: RecordSource) throws {
        session = try fields.requireRecord("session")
        reward = try fields.record("reward")
        quests = try fields.records("quests")
    }
}

/// Completed focus per local day and per week of a window.
public struct FocusStatsRecord: Equatable, Sendable {
    public var days: [FocusBucketRecord]
    public var weeks: [FocusBucketRecord]

    public init(days: [FocusBucketRecord], weeks: [FocusBucketRecord]) {
        self.days = days
        self.weeks = weeks
    }

    /// The window's minutes: its days' together.
    public var totalMinutes: Int64 { days.reduce(0) { $0 + $1.minutes } }
}
