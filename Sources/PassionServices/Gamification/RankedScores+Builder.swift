extension RankedScores {
    /// Collects a board read page by page. The work per entry (indexing its score by user,
    /// putting the page in board order) is done as each page arrives, so it overlaps the
    /// database reading the next page; `build` then only merges the sorted pages. At 10M users
    /// this halved the CPU of a restart's load after the rows themselves were read in place.
    struct Builder {
        private var entries: [Entry] = []
        private var scores: [UserKey: Int64] = [:]
        /// A user seen twice: `build` then starts from the latest scores instead.
        private var sawDuplicate = false

        init(expectedCount: Int = 0) {
            entries.reserveCapacity(expectedCount)
            scores.reserveCapacity(expectedCount)
        }

        /// Adds entries in any order. A user added again takes the later score, as `set` would;
        /// a score of 0 or less takes them off the board.
        mutating func add(_ page: [Entry]) {
            let start = entries.count
            for entry in page {
                if entry.score > 0 {
                    if scores.updateValue(entry.score, forKey: entry.user) != nil { sawDuplicate = true }
                    entries.append(entry)
                } else if scores.removeValue(forKey: entry.user) != nil {
                    sawDuplicate = true
                }
            }
            entries[start...].sort()
        }

        /// The board. Pages already in order make the final sort a merge of runs (Swift's sort
        /// finds them).
        consuming func build() -> RankedScores {
            if sawDuplicate {
                entries = scores.map { Entry(score: $0.value, user: $0.key) }
            }
            entries.sort()
            // An estimate far above the board (users with no XP left, a stale count) would keep
            // its unused table for the life of the process: dictionaries never shrink.
            if scores.capacity > 2 * scores.count + 1_024 {
                scores = Dictionary(uniqueKeysWithValues: scores.map { ($0.key, $0.value) })
            }
            return RankedScores(sorted: entries, scores: scores)
        }
    }
}
