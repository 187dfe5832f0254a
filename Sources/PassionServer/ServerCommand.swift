import ArgumentParser
import Foundation
import Logging
import PassionAPI
import PassionRPC
import PassionServices
import PassionStore
import PassionTLS
import ServiceLifecycle
import UnixSignals

/// `passion-server`: every flag also reads `PASSION_<NAME>` from the environment; flags win.
@main
struct ServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "passion-server",
        abstract: "The passion-rpc server: passion/1 over TLS.",
        discussion: """
            Environment: PASSION_HOST, PASSION_PORT, PASSION_DATA_DIR, PASSION_DATABASE_URL, PASSION_DB_POOL_SIZE,
            PASSION_DB_CONNECT_TIMEOUT, PASSION_DB_STATEMENT_CACHE,
            PASSION_TLS_CERT, PASSION_TLS_KEY, PASSION_TLS_CLIENT_CA, PASSION_TLS_MIN_VERSION, PASSION_PLAINTEXT,
            PASSION_LOG_LEVEL.
            """)

    private static let environment = ProcessInfo.processInfo.environment

    @Option(help: "Address to listen on.")
    var host: String = environment["PASSION_HOST"] ?? "127.0.0.1"

    @Option(help: "Port to listen on (0 picks a free port).")
    var port: Int = Int(environment["PASSION_PORT"] ?? "") ?? 7443

    @Option(name: .customLong("data-dir"), help: "Directory for generated certificates and data.")
    var dataDirectory: String = environment["PASSION_DATA_DIR"] ?? "./.passion"

    @Option(name: .customLong("tls-cert"), help: "PEM certificate chain (default: a development certificate under <data-dir>/tls/).")
    var tlsCertFlag: String?

    @Option(name: .customLong("tls-key"), help: "PEM private key of --tls-cert.")
    var tlsKeyFlag: String?

    @Option(name: .customLong("tls-client-ca"), help: "Require client certificates signed by these CAs (mTLS).")
    var tlsClientCAFlag: String?

    private var tlsCertificate: String? { tlsCertFlag ?? Self.environment["PASSION_TLS_CERT"] }
    private var tlsKey: String? { tlsKeyFlag ?? Self.environment["PASSION_TLS_KEY"] }
    private var tlsClientCA: String? { tlsClientCAFlag ?? Self.environment["PASSION_TLS_CLIENT_CA"] }

    @Option(name: .customLong("tls-min-version"), help: "Lowest TLS version accepted: 1.3 or 1.2.")
    var tlsMinimumVersion: String = environment["PASSION_TLS_MIN_VERSION"] ?? "1.3"

    @Flag(help: "Serve without TLS; refused unless --host is a loopback address.")
    var plaintext: Bool = ["1", "true", "yes"].contains(environment["PASSION_PLAINTEXT"]?.lowercased() ?? "")

    @Option(name: .customLong("database-url"), help: "libpq URI or conninfo of an existing database (default: an embedded cluster in <data-dir>/postgres).")
    var databaseURLFlag: String?

    private var databaseURL: String? { databaseURLFlag ?? Self.environment["PASSION_DATABASE_URL"] }

    @Option(name: .customLong("db-pool-size"), help: "Database connections at most.")
    var databasePoolSize: Int = Int(environment["PASSION_DB_POOL_SIZE"] ?? "") ?? 10

    @Option(name: .customLong("db-connect-timeout"), help: "Seconds allowed to open a database connection.")
    var databaseConnectTimeout: Int = Int(environment["PASSION_DB_CONNECT_TIMEOUT"] ?? "") ?? 3

    @Option(name: .customLong("db-statement-cache"), help: "Prepared statements kept per database connection.")
    var databaseStatementCache: Int = Int(environment["PASSION_DB_STATEMENT_CACHE"] ?? "") ?? 256

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = environment["PASSION_LOG_LEVEL"] ?? "info"

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("unknown log level \(logLevel)")
        }
        guard ["1.2", "1.3"].contains(tlsMinimumVersion) else {
            throw ValidationError("--tls-min-version must be 1.2 or 1.3")
        }
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0–65535") }
        guard (1...1000).contains(databasePoolSize) else { throw ValidationError("--db-pool-size must be 1–1000") }
        guard (1...300).contains(databaseConnectTimeout) else { throw ValidationError("--db-connect-timeout must be 1–300 seconds") }
        guard (0...100_000).contains(databaseStatementCache) else { throw ValidationError("--db-statement-cache must be 0–100000") }
        if plaintext, !Self.isLoopback(host) {
            throw ValidationError("--plaintext is only allowed on a loopback address, not \(host)")
        }
        if (tlsCertificate == nil) != (tlsKey == nil) {
            throw ValidationError("--tls-cert and --tls-key go together")
        }
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "passion-server")
        let tls = try plaintext ? nil : tlsConfiguration(logger: logger)
        let builtins = BuiltinServices()
        var storeConfiguration = StoreConfiguration(databaseURL: databaseURL, dataDirectory: dataDirectory)
        storeConfiguration.poolSize = databasePoolSize
        storeConfiguration.connectTimeoutSeconds = databaseConnectTimeout
        storeConfiguration.statementCacheSize = databaseStatementCache
        let health = builtins.health
        let store: StoreService
        do {
            store = try await StoreService.start(storeConfiguration, logger: logger) { reachable in
                health.set(reachable ? .serving : .notServing)
            }
        } catch {
            logger.critical("cannot start the database: \(error)")
            throw ExitCode(2)
        }
        let server = try RPCServer(
            configuration: RPCServerConfiguration(host: host, port: port, tls: tls), router: builtins.router,
            logger: logger)
        let announce = Task {
            let boundPort = try await server.port
            let line = "passion-server listening on \(host):\(boundPort)\(tls == nil ? " (plaintext)" : "")\n"
            FileHandle.standardOutput.write(Data(line.utf8))
        }
        defer { announce.cancel() }
        let group = ServiceGroup(configuration: .init(
            // Shut down in reverse: the server drains first, then the database closes.
            services: [store, server], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }

    private func tlsConfiguration(logger: Logger) throws -> TLSConfiguration {
        let minimum: TLSConfiguration.MinimumVersion = tlsMinimumVersion == "1.2" ? .tls12 : .tls13
        if let tlsCertificate, let tlsKey {
            return .server(
                certificateChainPath: tlsCertificate, privateKeyPath: tlsKey, clientCAPath: tlsClientCA,
                minimumVersion: minimum)
        }
        let development = DevelopmentCertificates(dataDirectory: dataDirectory)
        try development.ensure(host: host)
        logger.info("using development TLS certificate", metadata: ["ca": "\(development.caPath)"])
        return .server(
            certificateChainPath: development.certificatePath, privateKeyPath: development.privateKeyPath,
            clientCAPath: tlsClientCA, minimumVersion: minimum)
    }
}
