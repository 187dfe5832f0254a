import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A private PostgreSQL cluster under the server's data directory: created with `initdb` on
/// first use, started on a Unix socket inside it (no TCP port), stopped with the server.
///
/// `initdb` refuses to run as root, so when the server runs as root the cluster belongs to the
/// `postgres` user and its commands run through `runuser`.
public struct EmbeddedPostgres: Sendable {
    /// `<data-dir>/postgres`.
    public let root: String
    public let binDirectory: String
    public var dataDirectory: String { root + "/data" }
    public var socketDirectory: String { root + "/run" }
    public var logFile: String { root + "/postgres.log" }
    public let databaseName: String
    public let maxConnections: Int

    /// Finds the PostgreSQL server binaries; the error names the package to install.
    /// `maxConnections`: the server's `max_connections` (a test run, with a pool per test in
    /// parallel, needs more than a server does).
    public init(dataDirectory: String, databaseName: String = "passion", maxConnections: Int = 200) throws {
        self.maxConnections = maxConnections
        self.root = URL(fileURLWithPath: dataDirectory).standardizedFileURL.path + "/postgres"
        self.binDirectory = try Self.locateBinaries()
        self.databaseName = databaseName
        // A Unix socket path is limited to 107 bytes.
        guard (socketDirectory + "/.s.PGSQL.5432").utf8.count <= 107 else {
            throw EmbeddedPostgresError("the data directory path is too long for a Unix socket: \(root)")
        }
    }

    /// The conninfo of the cluster's database.
    public var conninfo: String { "host=\(socketDirectory) port=5432 user=postgres dbname=\(databaseName)" }

    /// The newest `<root>/<version>/bin` with initdb (Debian's layout), else a PATH directory.
    static func locateBinaries(
        root: String = "/usr/lib/postgresql", path: String = ProcessInfo.processInfo.environment["PATH"] ?? ""
    ) throws -> String {
        let candidates = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        let versions = candidates.compactMap(Int.init).sorted(by: >)
        for version in versions where FileManager.default.isExecutableFile(atPath: "\(root)/\(version)/bin/initdb") {
            return "\(root)/\(version)/bin"
        }
        for directory in path.split(separator: ":") {
            if FileManager.default.isExecutableFile(atPath: "\(directory)/initdb"),
                FileManager.default.isExecutableFile(atPath: "\(directory)/pg_ctl")
            {
                return String(directory)
            }
        }
        throw EmbeddedPostgresError(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: install the Debian package `postgresql` "
                + "(apt-get install postgresql), or pass --database-url to use an existing server")
    }

    private var runsAsRoot: Bool { getuid() == 0 }

    /// Creates the cluster if needed, starts it unless it already runs, creates the database.
    public func start() throws {
        let files = FileManager.default
        try files.createDirectory(atPath: socketDirectory, withIntermediateDirectories: true)
        if runsAsRoot { try giveToPostgres() }
        if !files.fileExists(atPath: dataDirectory + "/PG_VERSION") {
            try? files.removeItem(atPath: dataDirectory)
            try run("initdb", ["-D", dataDirectory, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"])
        }
        if try run("pg_ctl", ["-D", dataDirectory, "status"], allowFailure: true) != 0 {
            try run("pg_ctl", [
                "-D", dataDirectory, "-l", logFile, "-w", "-t", "60", "start",
                "-o", "-c listen_addresses='' -k \(socketDirectory) -p 5432 -c max_connections=\(maxConnections)",
            ])
        }
        try createDatabase()
    }

    /// Makes this cluster a streaming hot standby of `primary` (`pg_basebackup -R`) unless it
    /// already is one, and starts it: a read replica on this machine, for tests and trials of
    /// `--database-read-url`. Its `maxConnections` must be at least the primary's.
    public func startStandby(of primary: EmbeddedPostgres) throws {
        let files = FileManager.default
        try files.createDirectory(atPath: socketDirectory, withIntermediateDirectories: true)
        if runsAsRoot { try giveToPostgres() }
        if !files.fileExists(atPath: dataDirectory + "/PG_VERSION") {
            try? files.removeItem(atPath: dataDirectory)
            try run("pg_basebackup", [
                "-D", dataDirectory, "-R", "-X", "stream", "-c", "fast", "-h", primary.socketDirectory, "-p", "5432", "-U", "postgres",
            ])
        }
        if try run("pg_ctl", ["-D", dataDirectory, "status"], allowFailure: true) != 0 {
            try run("pg_ctl", [
                "-D", dataDirectory, "-l", logFile, "-w", "-t", "60", "start",
                "-o", "-c listen_addresses='' -k \(socketDirectory) -p 5432 -c max_connections=\(maxConnections) -c hot_standby=on",
            ])
        }
    }

    /// Stops the cluster (fast shutdown: open sessions are disconnected).
    public func stop() throws {
        try run("pg_ctl", ["-D", dataDirectory, "-m", "fast", "-w", "-t", "60", "stop"], allowFailure: true)
    }

    /// Creates `name` in the cluster if it does not exist (tests use one database per suite).
    public func createDatabase(_ name: String? = nil, template: String? = nil) throws {
        let database = name ?? databaseName
        for identifier in [database] + (template.map { [$0] } ?? []) {
            guard identifier.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
                throw EmbeddedPostgresError("invalid database name \(identifier)")
            }
        }
        let admin = try PostgresConnection(conninfo: "host=\(socketDirectory) port=5432 user=postgres dbname=postgres")
        do {
            try admin.executeBlocking("CREATE DATABASE \(database)" + (template.map { " TEMPLATE \($0)" } ?? ""))
        } catch let error as StoreError where error.sqlState == "42P04" {
            // duplicate_database: it exists, as wanted.
        }
    }

    private func giveToPostgres() throws {
        guard getpwnam("postgres") != nil else {
            throw EmbeddedPostgresError("running as root needs the `postgres` user (created by the Debian package postgresql)")
        }
        try run("/bin/chown", ["-R", "postgres:postgres", root], asRoot: true)
        if try postgresCanSearch(root) { return }
        // The postgres user must reach the cluster through every parent directory. The data
        // directory is ours: a private one (mktemp -d makes 0700) gets search permission for
        // others, o+x, which lists nothing (its secrets are 0600 files). A parent we were not
        // given is not ours to open: the error names it and the exact command.
        let dataDirectory = URL(fileURLWithPath: root).deletingLastPathComponent().path
        for directory in Self.ancestors(of: root) where try !postgresCanSearch(directory) {
            guard directory == dataDirectory else {
                throw EmbeddedPostgresError(
                    "the postgres user cannot reach \(root): \(directory) is closed to other users; "
                        + "run `chmod o+x \(directory)`, or choose a --data-dir outside it")
            }
            let mode = try FileManager.default.attributesOfItem(atPath: directory)[.posixPermissions] as? Int ?? 0o700
            try FileManager.default.setAttributes([.posixPermissions: mode | 0o001], ofItemAtPath: directory)
        }
        guard try postgresCanSearch(root) else {
            throw EmbeddedPostgresError("the postgres user cannot reach \(root): choose another --data-dir")
        }
    }

    /// Whether the `postgres` user can enter `directory` (checked as that user, so ACLs and
    /// groups count).
    private func postgresCanSearch(_ directory: String) throws -> Bool {
        try run("/usr/sbin/runuser", ["-u", "postgres", "--", "test", "-x", directory], asRoot: true, allowFailure: true) == 0
    }

    /// `/a/b/c` → `/a`, `/a/b` (the root directory itself is always searchable).
    static func ancestors(of path: String) -> [String] {
        var result: [String] = []
        var current = URL(fileURLWithPath: path).deletingLastPathComponent()
        while current.path != "/" && !current.path.isEmpty {
            result.append(current.path)
            current = current.deletingLastPathComponent()
        }
        return result.reversed()
    }

    /// Runs a PostgreSQL tool (as `postgres` when we are root); its output goes to a file in
    /// the cluster directory and into the error when it fails.
    @discardableResult
    private func run(_ tool: String, _ arguments: [String], asRoot: Bool = false, allowFailure: Bool = false) throws -> Int32 {
        let executable = tool.hasPrefix("/") ? tool : binDirectory + "/" + tool
        let outputPath = root + "/\(URL(fileURLWithPath: tool).lastPathComponent).out"
        let status: Int32
        if runsAsRoot && !asRoot {
            status = try Subprocess.run("/usr/sbin/runuser", ["-u", "postgres", "--", executable] + arguments, outputPath: outputPath)
        } else {
            status = try Subprocess.run(executable, arguments, outputPath: outputPath)
        }
        if status != 0 && !allowFailure {
            let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
            throw EmbeddedPostgresError("\(tool) failed (\(status)): \(text.suffix(600))")
        }
        return status
    }
}

/// The embedded cluster could not be created, started or stopped.
public struct EmbeddedPostgresError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
