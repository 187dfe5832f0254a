import Foundation
import PassionServerAPI
import PassionRPCServer
import SwiftProtobuf
import PassionWire

/// `passion.v1.Diagnostics`: every call kind with chosen sizes, delays and statuses.
public struct DiagnosticsService: Diagnostics.ServiceProtocol {
    /// Largest payload a diagnostics call generates (sizes above answer INVALID_ARGUMENT).
    public static let maxGeneratedBytes = 16 * 1024 * 1024

    public init() {}

    public func echo(request: EchoRequest, context: ServerContext) async throws -> EchoResponse {
        echoMetadata(context)
        context.compressResponses = request.compressResponse
        return try response(to: request)
    }

    public func streamMessages(
        request: StreamRequest, context: ServerContext, responses: RPCWriter<StreamItem>
    ) async throws {
        guard (0...1_000_000).contains(request.count) else {
            throw RPCError(code: .invalidArgument, message: "count must be 0–1,000,000")
        }
        guard (0...Self.maxGeneratedBytes).contains(Int(request.size)) else {
            throw RPCError(code: .invalidArgument, message: "size must be 0–\(Self.maxGeneratedBytes)")
        }
        echoMetadata(context)
        let payload = Data(repeating: 0x61, count: Int(request.size))
        for index in 0..<request.count {
            if request.intervalMs > 0, index > 0 {
                try await Task.sleep(for: .milliseconds(Int(request.intervalMs)))
            }
            try await responses.write(StreamItem.with {
                $0.index = index
                $0.payload = payload
            })
        }
    }

    public func countBytes(requests: RPCStream<Chunk>, context: ServerContext) async throws -> ByteCount {
        echoMetadata(context)
        var count = ByteCount()
        for try await chunk in requests {
            count.messages += 1
            count.bytes += Int64(chunk.payload.count)
        }
        return count
    }

    public func echoStream(
        requests: RPCStream<EchoRequest>, context: ServerContext, responses: RPCWriter<EchoResponse>
    ) async throws {
        echoMetadata(context)
        for try await request in requests {
            try await responses.write(try response(to: request), compress: request.compressResponse)
        }
    }

    public func sleep(request: SleepRequest, context: ServerContext) async throws -> SleepResponse {
        guard (0...3_600_000).contains(request.durationMs) else {
            throw RPCError(code: .invalidArgument, message: "duration_ms must be 0–3,600,000")
        }
        let start = ContinuousClock.now
        try await Task.sleep(for: .milliseconds(request.durationMs))
        let slept = ContinuousClock.now - start
        return SleepResponse.with { $0.sleptMs = slept.components.seconds * 1000 + slept.components.attoseconds / 1_000_000_000_000_000 }
    }

    public func fail(request: FailRequest, context: ServerContext) async throws -> FailResponse {
        guard (1...16).contains(request.code) else {
            throw RPCError(code: .invalidArgument, message: "code must be 1–16")
        }
        var initial = Metadata()
        for (key, value) in request.initialMetadata.sorted(by: { $0.key < $1.key }) { initial.add(key, value) }
        var trailing = Metadata()
        for (key, value) in request.trailingMetadata.sorted(by: { $0.key < $1.key }) { trailing.add(key, value) }
        for key in (initial.map(\.key) + trailing.map(\.key)) where !Metadata.isValidKey(key) {
            throw RPCError(code: .invalidArgument, message: "invalid metadata key \"\(key)\"")
        }
        context.initialMetadata = initial
        let details = request.reason.isEmpty && request.fields.isEmpty
            ? nil : ErrorDetails(reason: request.reason, fields: request.fields)
        throw RPCError(
            code: StatusCode(rawValue: UInt8(request.code)), message: request.message, details: details,
            metadata: trailing)
    }

    private func response(to request: EchoRequest) throws -> EchoResponse {
        guard (0...Self.maxGeneratedBytes).contains(Int(request.responseSize)) else {
            throw RPCError(code: .invalidArgument, message: "response_size must be 0–\(Self.maxGeneratedBytes)")
        }
        return EchoResponse.with {
            $0.payload = request.responseSize > 0 ? Data(repeating: 0x61, count: Int(request.responseSize)) : request.payload
        }
    }

    /// Copies `x-echo-initial` to the response headers and `x-echo-trailing-bin` to the trailers.
    private func echoMetadata(_ context: ServerContext) {
        var initial = Metadata()
        for value in context.requestMetadata.values("x-echo-initial") { initial.add("x-echo-initial", bytes: value) }
        if !initial.isEmpty { context.initialMetadata = initial }
        var trailing = Metadata()
        for value in context.requestMetadata.values("x-echo-trailing-bin") { trailing.add("x-echo-trailing-bin", bytes: value) }
        if !trailing.isEmpty { context.trailingMetadata = trailing }
    }
}
