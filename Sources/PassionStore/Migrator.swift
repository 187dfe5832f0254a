import PassionTLS
import Foundation

/// One ordered SQL file from `Sources/PassionStore/Migrations`.
public struct Migration: Sendable, Equatable {
    /// File name without `.sql`, for example `0001_core`; the order is the name's order.
    public var name: String
    public var sql: String

    public init(name: String, sql: String) {
        self.name = name
        self.sql = sql
    }

    /// SHA-256 of the SQL text, hex.
    public var checksum: String { Crypto.hex(Crypto.sha256(sql)) }

    /// The migrations shipped with the server, in order.
    public static func bundled() throws -> [Migration] {
        guard let directory = Bundle.module.resourceURL?.appendingPathComponent("Migrations") else {
            throw MigrationError("the migrations bundle is missing")
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".sql") }.sorted()
        return try names.map { file in
            Migration(name: String(file.dropLast(4)), sql: try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8))
        }
    }
}

/// Why migrations could not run; the server stops with this message.
public struct MigrationError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Applies migrations once, in order, each in its own transaction, under an advisory lock so
/// that several servers starting together do not race. Applied files are recorded with their
/// checksums; an applied file that changed stops the server.
public struct Migrator: Sendable {
    /// Key of the session advisory lock held while migrating.
    public static let lockKey: Int64 = 0x7061_7373_696F_6E  // "passion"

    public let migrations: [Migration]

    public init(migrations: [Migration]) {
        self.migrations = migrations.sorted { $0.name < $1.name }
    }

    /// Applies what is missing; returns the names applied now.
    @discardableResult
    public func migrate(_ pool: PostgresPool) async throws -> [String] {
        let migrations = self.migrations
        return try await pool.withConnection { connection in
            try await connection.query("SELECT pg_advisory_lock(\(Self.lockKey))")
            do {
                let applied = try await Self.apply(migrations, connection)
                _ = try? await connection.query("SELECT pg_advisory_unlock(\(Self.lockKey))")
                return applied
            } catch {
                _ = try? await connection.query("SELECT pg_advisory_unlock(\(Self.lockKey))")
                throw error
            }
        }
    }

    /// Applies what is missing, under the caller's lock.
    private static func apply(_ migrations: [Migration], _ connection: PostgresConnection) async throws -> [String] {
        try await connection.execute("""
            CREATE TABLE IF NOT EXISTS schema_migrations (
                name text PRIMARY KEY,
                checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())
            """)
        var applied: [String: String] = [:]
        for row in try await connection.query("SELECT name, checksum FROM schema_migrations") {
            applied[try row.require("name")] = try row.require("checksum")
        }
        let known = Set(migrations.map(\.name))
        if let unknown = applied.keys.sorted().first(where: { !known.contains($0) }) {
            throw MigrationError("the database has migration \(unknown), which this server does not ship (is it older than the database?)")
        }
        var appliedNow: [String] = []
        for migration in migrations {
            let checksum = migration.checksum
            if let recorded = applied[migration.name] {
                guard recorded == checksum else {
                    throw MigrationError(
                        "migration \(migration.name) was changed after it was applied (recorded checksum \(recorded.prefix(12)), file \(checksum.prefix(12))); restore the file and add a new migration instead")
                }
                continue
            }
            try await connection.execute("BEGIN")
            do {
                try await connection.execute(migration.sql)
                try await connection.query("INSERT INTO schema_migrations (name, checksum) VALUES (\(migration.name), \(checksum))")
                try await connection.execute("COMMIT")
            } catch {
                _ = try? await connection.execute("ROLLBACK")
                throw MigrationError("migration \(migration.name) failed: \(error)")
            }
            appliedNow.append(migration.name)
        }
        return appliedNow
    }
}
