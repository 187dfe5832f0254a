import ArgumentParser
import CoreMetrics
import Foundation
import Logging
import PassionServerAPI
import PassionIdentity
import PassionRPCServer
import PassionServices
import PassionStore
import PassionTLS
import PassionTelemetry
import ServiceLifecycle
import UnixSignals

/// `passion-server`: every flag also reads `PASSION_<NAME>` from the environment; flags win.
/// A library, so that a build with an OTLP exporter (`Extras/otlp`) runs the same server.
public struct ServerCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "passion-server",
        abstract: "The passion-rpc server: passion/1 over TLS.",
        discussion: """
            Environment: PASSION_HOST, PASSION_PORT, PASSION_DATA_DIR, PASSION_DATABASE_URL, PASSION_DB_POOL_SIZE,
            PASSION_DB_CONNECT_TIMEOUT, PASSION_DB_STATEMENT_CACHE,
            PASSION_TLS_CERT, PASSION_TLS_KEY, PASSION_TLS_CLIENT_CA, PASSION_TLS_CLIENT_CN_FALLBACK, PASSION_TLS_MIN_VERSION,
            PASSION_PLAINTEXT,
            PASSION_LOG_LEVEL, PASSION_SERVICE_KEYS, PASSION_SESSION_TTL, PASSION_RATE_USER, PASSION_RATE_SERVICE,
            PASSION_OIDC (several separated by ';'), PASSION_OFFLINE_DAYS, PASSION_AUDIT_RETENTION, PASSION_DIAGNOSTICS, PASSION_MAX_CONNECTIONS,
            PASSION_METRICS_ADDRESS, PASSION_LOG_FORMAT, PASSION_SLOW_CALL_THRESHOLD, PASSION_OTLP_ENDPOINT, PASSION_TRACE_SAMPLE,
            PASSION_BUILD_COMMIT (shown in passion_build_info).
            """)

    public init() {}

    /// Parses the process's arguments and runs the server: the whole `main` of both executables.
    public static func runFromCommandLine() async {
        await main()
    }

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

    @Flag(
        name: .customLong("tls-client-cn-fallback"),
        help: "Match a client certificate without a subjectAltName extension by its common name (off: DNS/URI SANs only).")
    var tlsClientCommonNameFallback: Bool = ["1", "true", "yes"].contains(environment["PASSION_TLS_CLIENT_CN_FALLBACK"]?.lowercased() ?? "")

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

    @Option(
        name: .customLong("database-read-url"),
        help: "libpq URI or conninfo of a hot standby of the database, for reads that may lag: leaderboard loads, the achievement catalog, ledger history, audit queries.")
    var databaseReadURLFlag: String?
    private var databaseReadURL: String? { databaseReadURLFlag ?? Self.environment["PASSION_DATABASE_READ_URL"] }

    @Option(name: .customLong("db-pool-size"), help: "Database connections at most.")
    var databasePoolSize: Int = Int(environment["PASSION_DB_POOL_SIZE"] ?? "") ?? 10

    @Option(name: .customLong("db-connect-timeout"), help: "Seconds allowed to open a database connection.")
    var databaseConnectTimeout: Int = Int(environment["PASSION_DB_CONNECT_TIMEOUT"] ?? "") ?? 3

    @Option(name: .customLong("db-statement-cache"), help: "Prepared statements kept per database connection.")
    var databaseStatementCache: Int = Int(environment["PASSION_DB_STATEMENT_CACHE"] ?? "") ?? 256

    @Option(name: .customLong("service-keys"), help: "JSON file of service accounts: name, key_sha256 and/or certificate_name, scopes.")
    var serviceKeysFlag: String?

    private var serviceKeys: String? { serviceKeysFlag ?? Self.environment["PASSION_SERVICE_KEYS"] }

    @Option(name: .customLong("session-ttl"), help: "How long a session lasts: 7d, 12h, 90m.")
    var sessionTTL: String = environment["PASSION_SESSION_TTL"] ?? "7d"

    @Option(name: .customLong("rate-user"), help: "Calls per second per user (and per address for anonymous callers), RATE or RATE/BURST.")
    var userRate: String = environment["PASSION_RATE_USER"] ?? "50/100"

    @Option(name: .customLong("rate-service"), help: "Calls per second per service, RATE or RATE/BURST.")
    var serviceRate: String = environment["PASSION_RATE_SERVICE"] ?? "5000/10000"

    @Option(name: .customLong("oidc"), help: "Accept ID tokens: PROVIDER:jwks=PATH,audience=CLIENT_ID[,issuer=URL] (repeatable).")
    var oidcFlags: [String] = []

    private var oidc: [String] {
        oidcFlags.isEmpty ? (Self.environment["PASSION_OIDC"] ?? "").split(separator: ";").map(String.init) : oidcFlags
    }

    @Option(
        name: .customLong("diagnostics"),
        help: "Who may call passion.v1.Diagnostics: anyone, services or off (default: anyone on the embedded development database, services with --database-url).")
    var diagnosticsFlag: String?

    private var diagnostics: String? { diagnosticsFlag ?? Self.environment["PASSION_DIAGNOSTICS"] }

    private var diagnosticsAccess: DiagnosticsAccess {
        diagnostics.flatMap(DiagnosticsAccess.init(rawValue:)) ?? (databaseURL == nil ? .anyone : .services)
    }

    @Option(name: .customLong("max-connections"), help: "Connections open at once; more are closed as they arrive.")
    var maxConnections: Int = Int(environment["PASSION_MAX_CONNECTIONS"] ?? "") ?? 10_000

    @Option(
        name: .customLong("audit-retention"),
        help: "How long the audit log is kept: forever, or days like 400d (at least 90d); whole months go once past it.")
    var auditRetention: String = environment["PASSION_AUDIT_RETENTION"] ?? "forever"

    @Option(name: .customLong("offline-days"), help: "Days back a habit completion may be dated (offline clients) or taken back, 0–30.")
    var offlineDays: Int = Int(environment["PASSION_OFFLINE_DAYS"] ?? "") ?? ContentConfiguration().offlineDays

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = environment["PASSION_LOG_LEVEL"] ?? "info"

    @Option(name: .customLong("log-format"), help: "text (for people) or json (one object per line, for collectors).")
    var logFormat: String = environment["PASSION_LOG_FORMAT"] ?? "text"

    @Option(
        name: .customLong("slow-call-threshold"),
        help: "Log every call that takes at least this long, even when it succeeds: 500ms, 2s; 0 logs only failed calls.")
    var slowCallThreshold: String = environment["PASSION_SLOW_CALL_THRESHOLD"] ?? "500ms"

    @Option(
        name: .customLong("metrics-address"),
        help: "HOST:PORT of the HTTP listener for /metrics, /ready and /live (plain HTTP; port 0 picks one), or none.")
    var metricsAddress: String = environment["PASSION_METRICS_ADDRESS"] ?? "127.0.0.1:9464"

    @Option(
        name: .customLong("otlp-endpoint"),
        help: "Send spans to this OTLP/HTTP endpoint (http://collector:4318/v1/traces); needs passion-server-otlp (Extras/otlp).")
    var otlpEndpointFlag: String?

    private var otlpEndpoint: String? { otlpEndpointFlag ?? Self.environment["PASSION_OTLP_ENDPOINT"] }

    @Option(
        name: .customLong("trace-sample"),
        help: "With --otlp-endpoint: the fraction of calls without a sampled caller that are traced, 0–1.")
    var traceSample: Double = Double(environment["PASSION_TRACE_SAMPLE"] ?? "") ?? 0.01

    public func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("unknown log level \(logLevel)")
        }
        guard LogFormat(rawValue: logFormat) != nil else { throw ValidationError("--log-format must be text or json") }
        guard slowCallThreshold == "0" || Self.duration(slowCallThreshold) != nil else {
            throw ValidationError("--slow-call-threshold must be like 500ms or 2s, or 0")
        }
        guard metricsAddress == "none" || OperationsEndpoint.parseAddress(metricsAddress) != nil else {
            throw ValidationError("--metrics-address must be HOST:PORT (like 127.0.0.1:9464) or none")
        }
        guard (0...1).contains(traceSample) else { throw ValidationError("--trace-sample must be a fraction from 0 to 1") }
        if let otlpEndpoint {
            guard otlpEndpoint.hasPrefix("http://") || otlpEndpoint.hasPrefix("https://") else {
                throw ValidationError("--otlp-endpoint must be an http:// or https:// URL")
            }
            guard TracingBackends.registered != nil else {
                throw ValidationError(
                    "--otlp-endpoint: this passion-server was built without an OTLP exporter; build passion-server-otlp (Extras/otlp)")
            }
        }
        guard ["1.2", "1.3"].contains(tlsMinimumVersion) else {
            throw ValidationError("--tls-min-version must be 1.2 or 1.3")
        }
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0–65535") }
        guard (1...1000).contains(databasePoolSize) else { throw ValidationError("--db-pool-size must be 1–1000") }
        guard (1...300).contains(databaseConnectTimeout) else { throw ValidationError("--db-connect-timeout must be 1–300 seconds") }
        guard (0...100_000).contains(databaseStatementCache) else { throw ValidationError("--db-statement-cache must be 0–100000") }
        guard (0...30).contains(offlineDays) else { throw ValidationError("--offline-days must be 0–30") }
        guard (1...1_000_000).contains(maxConnections) else { throw ValidationError("--max-connections must be 1–1000000") }
        if let diagnostics, DiagnosticsAccess(rawValue: diagnostics) == nil {
            throw ValidationError("--diagnostics must be anyone, services or off")
        }
        if plaintext, !Self.isLoopback(host) {
            throw ValidationError("--plaintext is only allowed on a loopback address, not \(host)")
        }
        if (tlsCertificate == nil) != (tlsKey == nil) {
            throw ValidationError("--tls-cert and --tls-key go together")
        }
        guard Self.duration(sessionTTL).map({ $0 >= .seconds(60) && $0 <= .seconds(366 * 86_400) }) == true else {
            throw ValidationError("--session-ttl must be like 7d, 12h or 90m, between a minute and a year")
        }
        guard AuditRetention(parsing: auditRetention) != nil else {
            throw ValidationError(
                "--audit-retention must be forever or whole days like 400d, at least \(AuditRetention.shortestDays)d: "
                    + "Audit/RecentActivity reads up to \(AuditRetention.shortestDays) days of the audit log")
        }
        guard RateLimit(parsing: userRate) != nil else { throw ValidationError("--rate-user must be RATE or RATE/BURST, like 50/100") }
        guard RateLimit(parsing: serviceRate) != nil else {
            throw ValidationError("--rate-service must be RATE or RATE/BURST, like 5000/10000")
        }
    }

    /// `7d`, `12h`, `90m`, `30s`, `500ms`.
    static func duration(_ text: String) -> Duration? {
        if text.hasSuffix("ms") {
            guard let value = Int(text.dropLast(2)), value > 0 else { return nil }
            return .milliseconds(value)
        }
        guard let unit = text.last, let value = Int(text.dropLast()), value > 0 else { return nil }
        switch unit {
        case "d": return .seconds(value * 86_400)
        case "h": return .seconds(value * 3600)
        case "m": return .seconds(value * 60)
        case "s": return .seconds(value)
        default: return nil
        }
    }

    private func identityConfiguration(logger: Logger) throws -> IdentityConfiguration {
        var configuration = IdentityConfiguration()
        configuration.sessionLifetime = Self.duration(sessionTTL) ?? configuration.sessionLifetime
        configuration.userRate = RateLimit(parsing: userRate) ?? configuration.userRate
        configuration.serviceRate = RateLimit(parsing: serviceRate) ?? configuration.serviceRate
        configuration.certificateCommonNameFallback = tlsClientCommonNameFallback
        configuration.identityProviders = try oidc.map { try IdentityProviderConfiguration(parsing: $0) }
        // Read every JWKS now: a bad file stops the server before the database starts.
        _ = try IDTokenVerifier(configuration.identityProviders)
        var accounts = try serviceKeys.map { try ServiceRegistry.load(path: $0) } ?? []
        // Only the embedded default is a development setup: a server on a real database never
        // grows a key nobody configured.
        if databaseURL == nil {
            accounts.append(try DevelopmentServiceKey.ensure(dataDirectory: dataDirectory))
            logger.info("development service key (admin)", metadata: ["path": "\(DevelopmentServiceKey.path(dataDirectory: dataDirectory))"])
        }
        configuration.services = try ServiceRegistry(accounts: accounts)
        return configuration
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    public func run() async throws {
        LoggingSetup.bootstrap(format: LogFormat(rawValue: logFormat) ?? .text, level: Logger.Level(rawValue: logLevel) ?? .info)
        let logger = Logger(label: "passion-server")
        let telemetry = Telemetry(commit: Self.environment["PASSION_BUILD_COMMIT"])
        // Nobody can read metrics without the listener: then nothing records them either.
        let metrics: any MetricsFactory = metricsAddress == "none" ? NOOPMetricsHandler.instance : telemetry.factory
        let tls = try plaintext ? nil : tlsConfiguration(logger: logger)
        let identityConfiguration: IdentityConfiguration
        do {
            identityConfiguration = try self.identityConfiguration(logger: logger)
        } catch {
            logger.critical("invalid identity configuration: \(error)")
            throw ExitCode(2)
        }
        var storeConfiguration = StoreConfiguration(databaseURL: databaseURL, dataDirectory: dataDirectory)
        storeConfiguration.readURL = databaseReadURL
        storeConfiguration.poolSize = databasePoolSize
        storeConfiguration.connectTimeoutSeconds = databaseConnectTimeout
        storeConfiguration.statementCacheSize = databaseStatementCache
        storeConfiguration.metrics = metrics
        let tracing: TracingBackend?
        do {
            tracing = try otlpEndpoint.flatMap { endpoint in
                try TracingBackends.registered?(TracingBackendRequest(endpoint: endpoint, sampleRatio: traceSample, logger: logger))
            }
        } catch {
            logger.critical("cannot start the OTLP exporter: \(error)")
            throw ExitCode(2)
        }
        storeConfiguration.tracer = tracing?.tracer
        let health = HealthStatus(services: [])
        let store: StoreService
        do {
            store = try await StoreService.start(storeConfiguration, logger: logger) { reachable in
                health.set(reachable ? .serving : .notServing)
            }
        } catch {
            logger.critical("cannot start the database: \(error)")
            throw ExitCode(2)
        }
        var contentConfiguration = ContentConfiguration()
        contentConfiguration.offlineDays = offlineDays
        let application = try ApplicationServices(
            pool: store.pool, reads: store.readPool, configuration: identityConfiguration, content: contentConfiguration, metrics: metrics,
            logger: logger)
        let builtins = BuiltinServices(additional: application.services, health: health, diagnostics: diagnosticsAccess)
        var serverConfiguration = RPCServerConfiguration(host: host, port: port, tls: tls)
        serverConfiguration.maxConnections = maxConnections
        serverConfiguration.metrics = metrics
        serverConfiguration.tracer = tracing?.tracer
        serverConfiguration.connection.slowCallThreshold = slowCallThreshold == "0" ? nil : Self.duration(slowCallThreshold)
        let server = try RPCServer(
            configuration: serverConfiguration, router: builtins.router,
            authenticator: application.authenticator, logger: logger)
        let maintenance = SessionMaintenanceService(
            pool: store.pool, jobs: MaintenanceJob.all, auditRetention: AuditRetention(parsing: auditRetention) ?? .forever,
            metrics: metrics, logger: logger)
        let operations = OperationsEndpoint.parseAddress(metricsAddress).map { address in
            OperationsEndpoint(
                host: address.host, port: address.port, registry: telemetry.registry,
                readiness: {
                    if server.isShuttingDown { return "draining" }
                    guard health.status(of: "") == .serving else { return "database unreachable" }
                    return application.leaderboards.isReady ? nil : "leaderboards loading"
                },
                beforeScrape: {
                    store.pool.publishGauges()
                    application.events.publishGauges()
                    application.leaderboards.publishGauges()
                },
                logger: logger)
        }
        let host = self.host
        let announce = Task {
            let boundPort = try await server.port
            // The first line is what scripts wait for and read the port from: it stays as it was.
            var lines = "passion-server listening on \(host):\(boundPort)\(tls == nil ? " (plaintext)" : "")\n"
            if let operations { lines += "passion-server metrics on \(try await operations.url)/metrics\n" }
            FileHandle.standardOutput.write(Data(lines.utf8))
        }
        defer { announce.cancel() }
        // Shut down in reverse: the server drains first (the operations endpoint, stopped after
        // it, answers /ready with 503 `draining` meanwhile), then the database closes.
        // The exporter stops last, so the spans of the drain go out too.
        let services: [any Service] =
            (tracing.map { [$0.service] } ?? []) + [store, maintenance, application.events, application.leaderboards] + (operations.map { [$0] } ?? []) + [server]
        let group = ServiceGroup(configuration: .init(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
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
