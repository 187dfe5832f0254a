import PassionServerAPI
import PassionRPCServer

/// Who may call `passion.v1.Diagnostics`, whose calls make the server generate up to 16 MiB per
/// response on request.
public enum DiagnosticsAccess: String, Sendable, CaseIterable {
    /// Anyone, as its `.proto` declares: development and tests.
    case anyone
    /// Authenticated services only.
    case services
    /// Not served at all.
    case off
}

/// The services every passion server hosts, wired together: health knows every service name,
/// introspection lists them.
public struct BuiltinServices: Sendable {
    public let health: HealthStatus
    public let router: RPCRouter

    /// A router with health, introspection and diagnostics plus `additional` services;
    /// `health` (for example one the store already reports to) learns every service name.
    public init(additional: [any RPCService] = [], health: HealthStatus? = nil, diagnostics: DiagnosticsAccess = .anyone) {
        var router = RPCRouter(services: [DiagnosticsService()] + additional)
        switch diagnostics {
        case .anyone: break
        case .services: router.require(.service, service: Diagnostics.serviceName)
        case .off: router.remove(service: Diagnostics.serviceName)
        }
        let names = Set(router.serviceNames + [Health.serviceName, Introspection.serviceName])
        let health = health ?? HealthStatus(services: [])
        for name in names where health.status(of: name) == nil { health.set(.serving, for: name) }
        HealthService(status: health).register(with: &router)
        IntrospectionService(services: Array(names)).register(with: &router)
        self.health = health
        self.router = router
    }
}
