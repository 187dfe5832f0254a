import Foundation
import Histogram
import NIOPosix
import PassionStore
import Synchronization

/// Benchmarks the pool against pgbench in the same run: a primary-key read and a three-statement
/// write transaction at 1, 8 and 32 concurrent callers, pgbench using as many connections with
/// `-M prepared` and the same SQL, on a private cluster that both share. Pool and pgbench take
/// turns for several rounds and the medians are compared: this machine's neighbours move both
/// by ±20% from minute to minute, which one long run each would read as a difference.
///
/// Usage: passion-store-bench [SECONDS] [CLIENTS,...] [read|write] [ROUNDS]   (default 10 s per
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

        print("workload      clients  pool ops/s   p50 µs   p99 µs   pgbench tps   pool/pgbench   (medians of \(rounds) rounds)")
        for clients in clientCounts {
            for workload in workloads {
                var pools: [Result] = []
                var pgbenches: [Double] = []
                for _ in 0..<rounds {
                    pools.append(try await measurePool(cluster: cluster, clients: clients, workload: workload, seconds: seconds))
                    pgbenches.append(try runPgbench(cluster: cluster, script: scripts[workload] ?? "", clients: clients, seconds: seconds))
                }
                let pool = pools.sorted { $0.rate < $1.rate }[rounds / 2]
                let pgbench = pgbenches.sorted()[rounds / 2]
                print(String(
                    format: "%-13@ %7d %12.0f %8d %8d %13.0f %13.0f%%", workload as NSString, clients, pool.rate,
                    pool.p50, pool.p99, pgbench, pool.rate / pgbench * 100))
            }
        }
    }

    struct Result {
        var rate: Double
        var p50: Int
        var p99: Int
    }

    static func measurePool(cluster: EmbeddedPostgres, clients: Int, workload: String, seconds: Int) async throws -> Result {
        var configuration = PoolConfiguration(conninfo: cluster.conninfo)
        configuration.size = clients
        let pool = PostgresPool(configuration: configuration)
        defer { Task { await pool.shutdown() } }
        let end = ContinuousClock.now + .seconds(1 + seconds)
        let measureFrom = ContinuousClock.now + .seconds(1)
        let histograms = try await withThrowingTaskGroup(of: (Int, Histogram<UInt64>).self) { group in
            for _ in 0..<clients {
                group.addTask {
                    var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
                    var count = 0
                    while ContinuousClock.now < end {
                        let start = ContinuousClock.now
                        let id = Int.random(in: 1...accounts)
                        if workload == "read" {
                            try await pool.withConnection { connection in
                                try await connection.query("SELECT balance FROM bench_accounts WHERE id = \(id)")
                            }
                        } else {
                            let delta = Int.random(in: -5000...5000)
                            try await pool.transaction { connection in
                                try await connection.query("UPDATE bench_accounts SET balance = balance + \(delta) WHERE id = \(id)")
                                try await connection.query("SELECT balance FROM bench_accounts WHERE id = \(id)")
                                try await connection.query("INSERT INTO bench_history (account, delta) VALUES (\(id), \(delta))")
                            }
                        }
                        guard start >= measureFrom else { continue }
                        let elapsed = ContinuousClock.now - start
                        _ = histogram.record(UInt64(max(1, elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000)))
                        count += 1
                    }
                    return (count, histogram)
                }
            }
            var total = 0
            var merged = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
            for try await (count, histogram) in group {
                total += count
                merged.add(histogram)
            }
            return (total, merged)
        }
        return Result(
            rate: Double(histograms.0) / Double(seconds), p50: Int(histograms.1.valueAtPercentile(50)),
            p99: Int(histograms.1.valueAtPercentile(99)))
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

    /// pgbench's tps (without connection time), same SQL, same number of connections.
    static func runPgbench(cluster: EmbeddedPostgres, script: String, clients: Int, seconds: Int) throws -> Double {
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
        return value
    }
}
