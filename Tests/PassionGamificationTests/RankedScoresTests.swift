import Foundation
import Testing

@testable import PassionServices

@Suite("RankedScores: the in-memory order-statistic index")
struct RankedScoresTests {
    /// A deterministic generator, so a failure names a reproducible case.
    struct SplitMix {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
    }

    /// What the index must agree with: a sorted array, rebuilt from a dictionary each time.
    struct Model {
        var scores: [RankedScores.UserKey: Int64] = [:]
        var sorted: [RankedScores.Entry] {
            scores.filter { $0.value > 0 }.map { RankedScores.Entry(score: $0.value, user: $0.key) }.sorted()
        }
    }

    static func check(_ board: RankedScores, against model: Model, users: [RankedScores.UserKey], probes: [Int64]) {
        let sorted = model.sorted
        #expect(board.count == sorted.count)
        #expect(board.entries(0..<sorted.count) == sorted)
        for user in users {
            #expect(board.position(of: user) == sorted.firstIndex { $0.user == user })
        }
        for score in probes {
            #expect(board.rank(ofScore: score) == (score > 0 ? sorted.filter { $0.score > score }.count + 1 : sorted.count + 1))
        }
    }

    @Test("random sets, raises, lowers and removals agree with a sorted array at every step, across block splits and emptied blocks")
    func randomAgainstModel() {
        var random = SplitMix(state: 42)
        let users = (0..<3_000).map { _ in RankedScores.UserKey(high: random.next(), low: random.next()) }
        var model = Model()
        var board = RankedScores()
        for round in 0..<12_000 {
            let user = users[random.below(users.count)]
            // Few distinct scores, so ties are common; a fifth of the sets remove.
            let score = random.below(5) == 0 ? Int64(-random.below(3)) : Int64(random.below(400))
            board.set(user, score: score)
            model.scores[user] = score
            if round % 3_000 == 2_999 {
                Self.check(board, against: model, users: Array(users.prefix(200)), probes: [-1, 0, 1, 50, 199, 200, 399, 400, 1_000])
            }
        }
        // Empty every block again, then refill.
        for user in users {
            board.set(user, score: 0)
            model.scores[user] = 0
        }
        Self.check(board, against: model, users: Array(users.prefix(10)), probes: [0, 1])
        #expect(board.count == 0 && board.entries(0..<10).isEmpty)
        board.set(users[0], score: 7)
        model.scores[users[0]] = 7
        Self.check(board, against: model, users: [users[0], users[1]], probes: [6, 7, 8])
    }

    @Test("a bulk build equals the same entries set one by one; a duplicate user keeps its last score")
    func bulkBuild() {
        var random = SplitMix(state: 7)
        let entries = (0..<5_000).map { _ in
            RankedScores.Entry(score: Int64(random.below(1_000)), user: RankedScores.UserKey(high: random.next(), low: 0))
        }
        var oneByOne = RankedScores()
        for entry in entries { oneByOne.set(entry.user, score: entry.score) }
        let duplicate = RankedScores.Entry(score: 5, user: entries[0].user)
        oneByOne.set(duplicate.user, score: duplicate.score)
        let built = RankedScores(entries + [duplicate])
        #expect(built.count == oneByOne.count)
        #expect(built.entries(0..<built.count) == oneByOne.entries(0..<oneByOne.count))
        #expect(built.score(of: duplicate.user) == 5)
        #expect(built.entries(built.count - 3..<built.count + 5).count == 3)
        #expect(built.entries(-5..<2).count == 2)
    }

    @Test("a board added page by page equals it set one by one: pages of any size, a user repeated in a later page keeps the later score, a later 0 takes them off")
    func builtFromPages() {
        var random = SplitMix(state: 11)
        let users = (0..<4_000).map { _ in RankedScores.UserKey(high: random.next() % 64, low: random.next()) }
        let entries = users.map { RankedScores.Entry(score: Int64(random.below(300)), user: $0) }
        let repeats = (0..<50).map { _ in RankedScores.Entry(score: Int64(random.below(300)) - 60, user: users[random.below(users.count)]) }
        for pageSize in [1, 7, 1_000, 10_000] {
            var oneByOne = RankedScores()
            var builder = RankedScores.Builder(expectedCount: pageSize)
            for start in stride(from: 0, to: entries.count, by: pageSize) {
                let page = Array(entries[start..<min(start + pageSize, entries.count)])
                builder.add(page)
                for entry in page { oneByOne.set(entry.user, score: entry.score) }
            }
            let withoutRepeats = builder
            #expect(withoutRepeats.build().entries(0..<entries.count) == oneByOne.entries(0..<oneByOne.count), "pages of \(pageSize)")
            builder.add(repeats)
            for entry in repeats { oneByOne.set(entry.user, score: entry.score) }
            let built = builder.build()
            #expect(built.count == oneByOne.count, "pages of \(pageSize)")
            #expect(built.entries(0..<built.count) == oneByOne.entries(0..<oneByOne.count), "pages of \(pageSize)")
            for entry in repeats { #expect(built.score(of: entry.user) == oneByOne.score(of: entry.user)) }
        }
    }

    @Test("ties: equal scores share a rank (1, 2, 2, 4) and order by user id as PostgreSQL orders uuids")
    func ties() throws {
        let ids = try ["ffffffff-0000-0000-0000-000000000000", "00000000-0000-0000-0000-000000000002", "80000000-0000-0000-0000-000000000001",
                       "00000000-0000-0000-0000-000000000001"].map { try #require(UUID(uuidString: $0)) }
        let board = RankedScores(zip(ids, [600, 500, 500, 300] as [Int64]).map { RankedScores.Entry(score: $1, user: RankedScores.UserKey($0)) })
        let order = board.entries(0..<4)
        #expect(order.map(\.user.uuid) == [ids[0], ids[1], ids[2], ids[3]])
        #expect(order.map { board.rank(ofScore: $0.score) } == [1, 2, 2, 4])
        #expect(board.rank(ofScore: 0) == 5 && board.rank(ofScore: 700) == 1)
        #expect(RankedScores.UserKey(ids[2]).uuid == ids[2])
    }
}
