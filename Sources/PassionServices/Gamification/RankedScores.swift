import Foundation

/// Users ordered by score, highest first and equal scores by user id (PostgreSQL's uuid order),
/// with a user's position, a score's rank and the entries at any positions in O(log n): the
/// in-memory order-statistic index one leaderboard period is served from.
///
/// Entries live in sorted blocks of at most `blockCapacity`, found by binary search over each
/// block's last entry; a Fenwick tree over block sizes turns a block index into a position and
/// back. A change moves at most one block's worth of entries, and a split or an emptied block
/// rebuilds the tree (once per ~`blockCapacity / 2` changes to one block). Only positive scores
/// are ranked, as the SQL did: setting a score of 0 or less removes the user.
struct RankedScores: Sendable {
    /// A user id as two big-endian halves, so that comparing them is PostgreSQL's uuid order.
    struct UserKey: Hashable, Comparable, Sendable {
        var high: UInt64
        var low: UInt64

        init(high: UInt64, low: UInt64) {
            self.high = high
            self.low = low
        }

        init(_ id: UUID) {
            (high, low) = withUnsafeBytes(of: id.uuid) { raw in
                (UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                 UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
            }
        }

        var uuid: UUID {
            var bytes: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
            withUnsafeMutableBytes(of: &bytes) { raw in
                raw.storeBytes(of: high.bigEndian, toByteOffset: 0, as: UInt64.self)
                raw.storeBytes(of: low.bigEndian, toByteOffset: 8, as: UInt64.self)
            }
            return UUID(uuid: bytes)
        }

        static func < (lhs: UserKey, rhs: UserKey) -> Bool { (lhs.high, lhs.low) < (rhs.high, rhs.low) }
    }

    /// One ranked user.
    struct Entry: Comparable, Sendable {
        var score: Int64
        var user: UserKey

        /// Leaderboard order: higher scores first, then lower user ids.
        static func < (lhs: Entry, rhs: Entry) -> Bool {
            lhs.score != rhs.score ? lhs.score > rhs.score : lhs.user < rhs.user
        }
    }

    static let blockCapacity = 512

    private var blocks: [[Entry]] = []
    /// The last entry of each block, for the binary search.
    private var lasts: [Entry] = []
    /// Fenwick tree over block sizes (1-based).
    private var tree: [Int] = [0]
    private var scores: [UserKey: Int64] = [:]

    init() {}

    /// Builds from entries in any order: a user's later entry wins, as with `set`.
    init(_ unsorted: [Entry]) {
        var builder = Builder()
        builder.add(unsorted)
        self = builder.build()
    }

    /// Builds from entries already in board order, each user once, with their scores by user.
    init(sorted: [Entry], scores: [UserKey: Int64]) {
        self.scores = scores
        // Three-quarters full: room to grow before the first splits.
        let fill = Self.blockCapacity * 3 / 4
        blocks.reserveCapacity(sorted.count / fill + 1)
        var start = 0
        while start < sorted.count {
            let end = min(start + fill, sorted.count)
            blocks.append(Array(sorted[start..<end]))
            start = end
        }
        rebuildIndex()
    }

    /// Ranked users.
    var count: Int { scores.count }

    func score(of user: UserKey) -> Int64? { scores[user] }

    /// Sets `user`'s score; 0 or less takes them off the board.
    mutating func set(_ user: UserKey, score: Int64) {
        let old = scores[user]
        if old == score || (old == nil && score <= 0) { return }
        if let old { remove(Entry(score: old, user: user)) }
        if score > 0 {
            scores[user] = score
            insert(Entry(score: score, user: user))
        } else {
            scores[user] = nil
        }
    }

    /// 0-based position of `user` in board order, nil when unranked.
    func position(of user: UserKey) -> Int? {
        guard let score = scores[user] else { return nil }
        return lowerBound(Entry(score: score, user: user))
    }

    /// Standard competition rank of a score (equal scores share it: 1, 2, 2, 4): one more than
    /// the number of users with a higher score. A score of 0 or less ranks after every user.
    func rank(ofScore score: Int64) -> Int {
        guard score > 0 else { return count + 1 }
        return lowerBound(Entry(score: score, user: UserKey(high: 0, low: 0))) + 1
    }

    /// The entries at positions `range` (clamped to the board), in board order.
    func entries(_ range: Range<Int>) -> [Entry] {
        let lower = max(0, range.lowerBound)
        let upper = min(count, range.upperBound)
        guard lower < upper else { return [] }
        var (block, offset) = locate(position: lower)
        var result: [Entry] = []
        result.reserveCapacity(upper - lower)
        while result.count < upper - lower {
            let available = blocks[block].count - offset
            let take = min(available, upper - lower - result.count)
            result.append(contentsOf: blocks[block][offset..<offset + take])
            block += 1
            offset = 0
        }
        return result
    }

    // MARK: - Blocks

    /// Number of entries ordered before `entry`.
    private func lowerBound(_ entry: Entry) -> Int {
        let block = blockIndex(for: entry)
        guard block < blocks.count else { return count }
        return prefix(block) + Self.lowerBound(entry, in: blocks[block])
    }

    /// The first block whose last entry is not below `entry` (blocks.count when none).
    private func blockIndex(for entry: Entry) -> Int { Self.lowerBound(entry, in: lasts) }

    /// The index of the first element of `sorted` not below `entry`.
    private static func lowerBound(_ entry: Entry, in sorted: [Entry]) -> Int {
        var low = 0
        var high = sorted.count
        while low < high {
            let middle = (low + high) / 2
            if sorted[middle] < entry { low = middle + 1 } else { high = middle }
        }
        return low
    }

    private mutating func insert(_ entry: Entry) {
        if blocks.isEmpty {
            blocks = [[entry]]
            rebuildIndex()
            return
        }
        // Past every last entry: append to the final block.
        let block = min(blockIndex(for: entry), blocks.count - 1)
        let offset = Self.lowerBound(entry, in: blocks[block])
        blocks[block].insert(entry, at: offset)
        if blocks[block].count > Self.blockCapacity {
            let half = blocks[block].count / 2
            let upper = Array(blocks[block][half...])
            blocks[block].removeSubrange(half...)
            blocks.insert(upper, at: block + 1)
            rebuildIndex()
        } else {
            lasts[block] = blocks[block][blocks[block].count - 1]
            add(1, at: block)
        }
    }

    private mutating func remove(_ entry: Entry) {
        let block = blockIndex(for: entry)
        guard block < blocks.count else { return }
        let offset = Self.lowerBound(entry, in: blocks[block])
        guard offset < blocks[block].count, blocks[block][offset] == entry else { return }
        blocks[block].remove(at: offset)
        if blocks[block].isEmpty {
            blocks.remove(at: block)
            rebuildIndex()
        } else {
            lasts[block] = blocks[block][blocks[block].count - 1]
            add(-1, at: block)
        }
    }

    // MARK: - Fenwick tree over block sizes

    private mutating func rebuildIndex() {
        lasts = blocks.map { $0[$0.count - 1] }
        tree = [Int](repeating: 0, count: blocks.count + 1)
        for (index, block) in blocks.enumerated() {
            let node = index + 1
            tree[node] += block.count
            let parent = node + (node & -node)
            if parent < tree.count { tree[parent] += tree[node] }
        }
    }

    private mutating func add(_ delta: Int, at block: Int) {
        var node = block + 1
        while node < tree.count {
            tree[node] += delta
            node += node & -node
        }
    }

    /// Entries in the blocks before `block`.
    private func prefix(_ block: Int) -> Int {
        var sum = 0
        var node = block
        while node > 0 {
            sum += tree[node]
            node -= node & -node
        }
        return sum
    }

    /// The block holding `position` and the offset in it; `position` must be below `count`.
    private func locate(position: Int) -> (block: Int, offset: Int) {
        var node = 0
        var remaining = position
        var step = 1
        while step * 2 < tree.count { step *= 2 }
        while step > 0 {
            let next = node + step
            if next < tree.count, tree[next] <= remaining {
                node = next
                remaining -= tree[next]
            }
            step /= 2
        }
        return (node, remaining)
    }
}
