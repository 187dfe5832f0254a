/// Level curve v1, the Swift twin of `passion_level_for_xp` (0003_gamification.sql): reaching
/// level L takes 50·L·(L−1) total XP. Integer math only, so both sides agree on every value.
public enum LevelCurve {
    /// The largest L with 50·L·(L−1) ≤ xp; negative XP counts as 0.
    public static func level(forXP xp: Int64) -> Int {
        let n = max(xp, 0) / 50
        // L(L−1) ≤ n ⇔ (2L−1)² ≤ 4n+1: L = (isqrt(4n+1) + 1) / 2.
        let m = 4 * n + 1
        var root = Int64(Double(m).squareRoot())
        while root * root > m { root -= 1 }
        while (root + 1) * (root + 1) <= m { root += 1 }
        return Int((root + 1) / 2)
    }

    /// Total XP at which `level` starts; levels below 1 are 1.
    public static func xp(forLevel level: Int) -> Int64 {
        let level = Int64(max(level, 1))
        return 50 * level * (level - 1)
    }
}
