/// Renders one service: method descriptors and the typed client (PassionAPI, all a client
/// needs), and apart from them the server protocol and its registration (PassionServerAPI).
struct ServiceRenderer {
    let service: ServiceModel

    func render(into out: inout SwiftWriter) {
        if service.comment.isEmpty {
            out.doc("The `\(service.fullName)` service.")
        } else {
            out.doc(service.comment)
        }
        out.block("public enum \(service.swiftName)") { out in
            out.line("public static let serviceName = \"\(service.fullName)\"")
            out.line()
            renderDescriptors(into: &out)
            out.line()
            renderClient(into: &out)
        }
    }

    func renderServer(into out: inout SwiftWriter) {
        // Qualified: a service may share its name with a Foundation type (Progress).
        out.block("extension PassionAPI.\(service.swiftName)") { out in
            renderServerProtocol(into: &out)
        }
        out.line()
        renderRegistration(into: &out)
    }

    private func renderDescriptors(into out: inout SwiftWriter) {
        out.doc("What the runtime knows about each method, including its `passion.v1.policy`.")
        out.block("public enum Method") { out in
            for method in service.methods {
                out.line(
                    "public static let \(method.functionName) = MethodDescriptor(service: serviceName, method: \"\(method.name)\", kind: .\(method.kind), idempotency: .\(method.idempotency), principal: .\(method.principal)\(method.scope.map { ", scope: \"\($0)\"" } ?? "")\(method.cost == 1 ? "" : ", cost: \(method.cost)"))"
                )
            }
            out.line()
            out.doc("Every method of the service, in declaration order.")
            out.line("public static let all: [MethodDescriptor] = [\(service.methods.map(\.functionName).joined(separator: ", "))]")
            out.line()
            out.doc("Request and response message types, for tools that work from JSON.")
            out.line("public static let schemas: [MethodSchema] = [")
            for method in service.methods {
                out.line("    MethodSchema(\(method.functionName), request: \(method.inputType).self, response: \(method.outputType).self),")
            }
            out.line("]")
        }
    }

    private func renderServerProtocol(into out: inout SwiftWriter) {
        out.doc("Implement this to serve `\(service.fullName)`; register it with an `RPCRouter`.")
        out.block("public protocol ServiceProtocol: RPCService") { out in
            for (index, method) in service.methods.enumerated() {
                if index > 0 { out.line() }
                if !method.comment.isEmpty { out.doc(method.comment) }
                out.line("func \(serverSignature(method))")
            }
        }
    }

    private func serverSignature(_ method: ServiceModel.Method) -> String {
        let name = method.functionName
        switch method.kind {
        case "unary":
            return "\(name)(request: \(method.inputType), context: ServerContext) async throws -> \(method.outputType)"
        case "serverStreaming":
            return "\(name)(request: \(method.inputType), context: ServerContext, responses: RPCWriter<\(method.outputType)>) async throws"
        case "clientStreaming":
            return "\(name)(requests: RPCStream<\(method.inputType)>, context: ServerContext) async throws -> \(method.outputType)"
        default:
            return "\(name)(requests: RPCStream<\(method.inputType)>, context: ServerContext, responses: RPCWriter<\(method.outputType)>) async throws"
        }
    }

    private func renderRegistration(into out: inout SwiftWriter) {
        out.block("extension PassionAPI.\(service.swiftName).ServiceProtocol") { out in
            out.doc("Adds every method of `\(service.fullName)` to `router`.")
            out.block("public func register(with router: inout RPCRouter)") { out in
                for method in service.methods {
                    let descriptor = "PassionAPI.\(service.swiftName).Method.\(method.functionName)"
                    let types = "\(method.inputType).self, \(method.outputType).self"
                    switch method.kind {
                    case "unary":
                        out.line("router.registerUnary(\(descriptor), \(types)) { try await self.\(method.functionName)(request: $0, context: $1) }")
                    case "serverStreaming":
                        out.line("router.registerServerStreaming(\(descriptor), \(types)) { try await self.\(method.functionName)(request: $0, context: $1, responses: $2) }")
                    case "clientStreaming":
                        out.line("router.registerClientStreaming(\(descriptor), \(types)) { try await self.\(method.functionName)(requests: $0, context: $1) }")
                    default:
                        out.line("router.registerBidirectional(\(descriptor), \(types)) { try await self.\(method.functionName)(requests: $0, context: $1, responses: $2) }")
                    }
                }
            }
        }
    }

    private func renderClient(into out: inout SwiftWriter) {
        out.doc("Calls `\(service.fullName)` over any transport: a connection or an `RPCClient` pool.")
        out.block("public struct Client: Sendable") { out in
            out.line("public let transport: any RPCClientTransport")
            out.line()
            out.block("public init(transport: any RPCClientTransport)") { out in
                out.line("self.transport = transport")
            }
            for method in service.methods {
                out.line()
                renderClientMethod(method, into: &out)
            }
        }
    }

    private func renderClientMethod(_ method: ServiceModel.Method, into out: inout SwiftWriter) {
        let name = method.functionName
        let descriptor = "Method.\(name)"
        let input = method.inputType
        let output = method.outputType
        if !method.comment.isEmpty { out.doc(method.comment) }
        switch method.kind {
        case "unary":
            out.block("public func \(name)(_ request: \(input), options: CallOptions = .defaults) async throws -> \(output)") { out in
                out.line("try await transport.unary(\(descriptor), request, as: \(output).self, options: options).message")
            }
            out.line()
            out.doc("`\(name)` with the request built in place: `\(name) { $0.field = value }`. It runs in the")
            out.doc("caller's isolation, so the closure is never sent: the form works from `@MainActor` code.")
            out.block("public func \(name)(options: CallOptions = .defaults, isolation: isolated (any Actor)? = #isolation, _ configure: (inout \(input)) throws -> Void) async throws -> \(output)") { out in
                out.line("var request = \(input)()")
                out.line("try configure(&request)")
                out.line("return try await \(name)(request, options: options)")
            }
            out.line()
            out.doc("`\(name)` returning the response metadata too.")
            out.block("public func \(name)WithMetadata(_ request: \(input), options: CallOptions = .defaults) async throws -> RPCResponse<\(output)>") { out in
                out.line("try await transport.unary(\(descriptor), request, as: \(output).self, options: options)")
            }
        case "serverStreaming":
            out.block("public func \(name)(_ request: \(input), options: CallOptions = .defaults) async throws -> ResponseStream<\(output)>") { out in
                out.line("try await transport.serverStreaming(\(descriptor), request, as: \(output).self, options: options)")
            }
        case "clientStreaming":
            out.block("public func \(name)(options: CallOptions = .defaults, requests: @Sendable (RPCRequestWriter<\(input)>) async throws -> Void) async throws -> \(output)") { out in
                out.line("try await transport.clientStreaming(\(descriptor), as: \(output).self, options: options, requests: requests).message")
            }
            out.line()
            out.doc("`\(name)` sending `messages` in order.")
            out.block("public func \(name)(_ messages: [\(input)], options: CallOptions = .defaults) async throws -> \(output)") { out in
                out.line("try await \(name)(options: options) { writer in")
                out.line("    for message in messages { try await writer.write(message) }")
                out.line("}")
            }
        default:
            out.block("public func \(name)<Result: Sendable>(options: CallOptions = .defaults, body: @Sendable (RPCRequestWriter<\(input)>, ResponseStream<\(output)>) async throws -> Result) async throws -> Result") { out in
                out.line("try await transport.bidirectional(\(descriptor), as: \(output).self, options: options, body: body)")
            }
        }
    }
}
