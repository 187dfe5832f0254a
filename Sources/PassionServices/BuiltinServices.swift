import PassionAPI
import PassionRPC

/// The services every passion server hosts, wired together: health knows every service name,
/// introspection lists them.
public struct BuiltinServices: Sendable {
    public let health: HealthStatus
    public let router: RPCRouter

    /// A router with health, introspection and diagnostics plus `additional` services;
    /// `health` (for example one the store already reports to) learns every service name.
    public init(additional: [any RPCService] = [], health: HealthStatus? = nil) {
        var router = RPCRouter(services: [DiagnosticsService()] + additional)
        let names = Set(router.serviceNames + [Health.serviceName, Introspection.serviceName])
        let health = health ?? HealthStatus(services: [])
        for name in names where health.status(of: name) == nil { health.set(.serving, for: name) }
        HealthService(status: health).register(with: &router)
        IntrospectionService(services: Array(names)).register(with: &router)
        self.health = health
        self.router = router
    }
}
