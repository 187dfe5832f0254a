import Foundation
import Histogram
import NIOPosix
import PassionStore
import Synchronization

/// Benchmarks the pool against pgbench in the same run: a primary-key read and a three-statement
/// write transaction at 1, 8 and 32 concurrent callers, pgbench using as many connections with
/// `-M prepared` and the same SQL, on a private cluster that both share. The pool is measured
/// twice per round: with its callers on `PostgresPool.executor` (the pool's own loops) and on
/// Swift's global executor (any other caller; the server's handlers run on NIO event loops,
/// which likewise hop to the pool's loops). Pool and pgbench take turns for
/// several rounds and the medians are compared: this machine's neighbours move both by ±20% from
/// minute to minute, which one long run each would read as a difference. Each side's CPU time
/// per operation (the client process's, every thread) is reported too: it is steadier than
/// throughput, and it is what the pool takes from the database on shared cores.
///
/// Usage: passion-store-bench [SECONDS] [CLIENTS,...] [read|write|both] [ROUNDS]   (default 10 s per
/// measurement, 1,8,32 clients, both workloads, 3 rounds)
@main
struct StoreBench {
    static let accounts = 100_000

    static func main() async throws {
        let arguments = Array(CommandLine.arguments.dropFirst())
        let seconds = arguments.first.flatMap { Int($0) } ?? 10
        let clientCounts = arguments.dropFirst().first.map { $0.split(separator: ",").compactMap { Int($0) } } ?? [1, 8, 32]
        let workloads = arguments.dropFirst(2).first.map { $0 == "both" ? ["read", "write"] : [$0] } ?? ["read", "write"]
        let rounds = arguments.dropFirst(3).first.flatMap { Int($0) } ?? 3
        let directory = "/tmp/passion-store-bench-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cluster = try EmbeddedPostgres(dataDirectory: directory, databaseName: "bench")
        try await NIOThreadPool.singleton.runIfActive { try cluster.start() }
        defer { try? cluster.stop() }
        let setup = PostgresPool(configuration: PoolConfiguration(conninfo: cluster.conninfo))
        try await setup.withConnection { connection in
            try await connection.execute("""
                CREATE TABLE bench_accounts (id int PRIMARY KEY, balance bigint NOT NULL, note text NOT NULL);
                INSERT INTO bench_accounts SELECT g, 0, repeat('x', 60) FROM generate_series(1, \(accounts)) g;
                CREATE TABLE bench_history (id bigint GENERATED ALWAYS AS IDENTITY, account int NOT NULL, delta int NOT NULL,
                                            at timestamptz NOT NULL DEFAULT now());
                """)
            // VACUUM refuses to run inside the implicit transaction of a multi-statement string.
            try await connection.execute("VACUUM ANALYZE bench_accounts")
        }
        await setup.shutdown()
        let scripts = try writeScripts(directory: directory)

        print("""
            callers: "pool loops" run on PostgresPool.executor, "global" on Swift's global executor
            CPU: the client process's, all threads, per operation; medians of \(rounds) rounds
            workload  clients  callers       ops/s   p50 µs   p99 µs   CPU µs   pgbench tps   CPU µs   of pgbench
            """)
        for clients in clientCounts {
            for workload in workloads {
                var onLoops: [Result] = []
                var global: [Result] = []
                var pgbenches: [Result] = []
                for _ in 0..<rounds {
                    onLoops.append(try await measurePool(cluster: cluster, clients: clients, workload: workload, seconds: seconds, onLoops: true))
                    global.append(try await measurePool(cluster: cluster, clients: clients, workload: workload, seconds: seconds, onLoops: false))
                    pgbenches.append(try runPgbench(cluster: cluster, script: scripts[workload] ?? "", clients: clients, seconds: seconds))
                }
                let pgbench = Result.median(pgbenches)
                for (callers, results) in [("pool loops", onLoops), ("global", global)] {
                    let pool = Result.median(results)
                    // Foundation's %@ does not pad on Linux.
                    let label = workload.padding(toLength: 9, withPad: " ", startingAt: 0)
                    let placement = callers.padding(toLength: 11, withPad: " ", startingAt: 0)
                    print(label + String(format: " %8d  ", clients) + placement + String(
                        format: "%10.0f %8d %8d %8.1f %13.0f %8.1f %11.0f%%", pool.rate, pool.p50, pool.p99, pool.cpu,
                        pgbench.rate, pgbench.cpu, pool.rate / pgbench.rate * 100))
                }
            }
        }
    }

    struct Result {
        var rate: Double
        /// The process's CPU time (user and system, every thread) per operation, in µs.
        var cpu: Double
        var p50: Int = 0
        var p99: Int = 0

        /// Each figure's median over rounds (taken separately: the round with the median rate
        /// need not have the median CPU).
        static func median(_ results: [Result]) -> Result {
            func middle<T: Comparable>(_ values: [T]) -> T { values.sorted()[values.count / 2] }
            return Result(
                rate: middle(results.map(\.rate)), cpu: middle(results.map(\.cpu)), p50: middle(results.map(\.p50)),
                p99: middle(results.map(\.p99)))
        }
    }

    static func measurePool(cluster: EmbeddedPostgres, clients: Int, workload: String, seconds: Int, onLoops: Bool) async throws -> Result {
        var configuration = PoolConfiguration(conninfo: cluster.conninfo)
        configuration.size = clients
        let pool = PostgresPool(configuration: configuration)
        defer { Task { await pool.shutdown() } }
        let cpuBefore = cpuSeconds(RUSAGE_SELF)
        let end = ContinuousClock.now + .seconds(1 + seconds)
        let measureFrom = ContinuousClock.now + .seconds(1)
        // Operations measured (after the warm-up second), all operations (for CPU per operation),
        // and the measured ones' latencies.
        let (measured, all, latencies) = try await withThrowingTaskGroup(of: (Int, Int, Histogram<UInt64>).self) { group in
            for _ in 0..<clients {
                group.addTask(executorPreference: onLoops ? PostgresPool.executor : nil) {
                    var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
                    var count = 0
                    var all = 0
                    var random = SplitMix64(seed: UInt64.random(in: 0...UInt64.max))
                    while ContinuousClock.now < end {
                        let start = ContinuousClock.now
                        let id = Int.random(in: 1...accounts, using: &random)
                        if workload == "read" {
                            try await pool.withConnection { connection in
                                try await connection.query("SELECT balance FROM bench_accounts WHERE id = \(id)")
                            }
                        } else {
                            let delta = Int.random(in: -5000...5000, using: &random)
                            try await pool.transaction { connection in
                                try await connection.query("UPDATE bench_accounts SET balance = balance + \(delta) WHERE id = \(id)")
                                try await connection.query("SELECT balance FROM bench_accounts WHERE id = \(id)")
                                try await connection.query("INSERT INTO bench_history (account, delta) VALUES (\(id), \(delta))")
                            }
                        }
                        all += 1
                        guard start >= measureFrom else { continue }
                        let elapsed = ContinuousClock.now - start
                        _ = histogram.record(UInt64(max(1, elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000)))
                        count += 1
                    }
                    return (count, all, histogram)
                }
            }
            var total = 0
            var everything = 0
            var merged = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
            for try await (count, all, histogram) in group {
                total += count
                everything += all
                merged.add(histogram)
            }
            return (total, everything, merged)
        }
        let cpu = cpuSeconds(RUSAGE_SELF) - cpuBefore
        return Result(
            rate: Double(measured) / Double(seconds), cpu: cpu / Double(all) * 1e6,
            p50: Int(latencies.valueAtPercentile(50)), p99: Int(latencies.valueAtPercentile(99)))
    }

    static func writeScripts(directory: String) throws -> [String: String] {
        let read = directory + "/read.sql"
        let write = directory + "/write.sql"
        try """
            \\set id random(1, \(accounts))
            SELECT balance FROM bench_accounts WHERE id = :id;
            """.write(toFile: read, atomically: true, encoding: .utf8)
        try """
            \\set id random(1, \(accounts))
            \\set delta random(-5000, 5000)
            BEGIN;
            UPDATE bench_accounts SET balance = balance + :delta WHERE id = :id;
            SELECT balance FROM bench_accounts WHERE id = :id;
            INSERT INTO bench_history (account, delta) VALUES (:id, :delta);
            END;
            """.write(toFile: write, atomically: true, encoding: .utf8)
        return ["read": read, "write": write]
    }

    /// User and system CPU time of this process (`RUSAGE_SELF`) or of its waited-for children.
    static func cpuSeconds(_ who: __rusage_who) -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(who.rawValue), &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }

    /// pgbench's tps (without connection time) and CPU per transaction, same SQL, same number
    /// of connections.
    static func runPgbench(cluster: EmbeddedPostgres, script: String, clients: Int, seconds: Int) throws -> Result {
        let cpuBefore = cpuSeconds(RUSAGE_CHILDREN)
        let outputPath = URL(fileURLWithPath: script).deletingLastPathComponent().path + "/pgbench.out"
        _ = try Subprocess.run(cluster.binDirectory + "/pgbench", [
            "-h", cluster.socketDirectory, "-p", "5432", "-U", "postgres", "-n", "-M", "prepared", "-c", "\(clients)",
            "-j", "\(min(clients, 2))", "-T", "\(seconds)", "-f", script, cluster.databaseName,
        ], outputPath: outputPath)
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("tps = ") }),
            let value = Double(line.dropFirst(6).split(separator: " ").first ?? "")
        else {
            throw EmbeddedPostgresError("pgbench printed no tps: \(text.suffix(300))")
        }
        let transactions = text.split(separator: "\n").first { $0.hasPrefix("number of transactions actually processed: ") }
            .flatMap { Double($0.split(separator: " ").last ?? "") } ?? value * Double(seconds)
        return Result(rate: value, cpu: (cpuSeconds(RUSAGE_CHILDREN) - cpuBefore) / transactions * 1e6)
    }
}

/// A fast seeded generator, as pgbench has: the system generator makes a getrandom system call
/// per number, two per write transaction, which charged the pool for the benchmark's dice.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
