import OTel
import PassionServerCommand

// `--otlp-endpoint` gets swift-otel's tracer: W3C trace context propagation, a parent-based
// sampler (a caller's sampled flag wins; `--trace-sample` decides for the rest), batches of
// spans over OTLP/HTTP protobuf. Metrics and logs stay with passion-server's own exporters.
TracingBackends.register { request in
    var configuration = OTel.Configuration.default
    configuration.serviceName = "passion-server"
    configuration.propagators = [.traceContext]
    configuration.diagnosticLogger = .custom(request.logger)
    configuration.metrics.enabled = false
    configuration.logs.enabled = false
    configuration.traces.enabled = true
    configuration.traces.exporter = .otlp
    configuration.traces.otlpExporter.protocol = .httpProtobuf
    configuration.traces.otlpExporter.endpoint = request.endpoint
    configuration.traces.sampler = .parentBasedTraceIDRatio(ratio: request.sampleRatio) ?? .parentBasedAlwaysOn
    let (tracer, service) = try OTel.makeTracingBackend(configuration: configuration)
    return TracingBackend(tracer: tracer, service: service)
}
await ServerCommand.runFromCommandLine()
