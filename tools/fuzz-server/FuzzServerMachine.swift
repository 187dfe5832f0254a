import NIOCore
@testable import PassionRPC
@testable import PassionRPCServer
import PassionWire

/// Arbitrary bytes after a valid preface and HELLO, fed to a fresh server connection machine in
/// chunks the input chooses, with every call the bytes start answered and the clock moved: the
/// machine must never trap, and must give back all the memory it took once closed.
///
/// Built two ways: with `-DFUZZING -sanitize=fuzzer,address` (tools/fuzz) it is a libFuzzer target;
/// otherwise it runs the files given as arguments (a corpus, or a crash to reproduce).
enum ServerMachineFuzz {
    static let router: RPCRouter = {
        var router = RPCRouter()
        router.register(MethodDescriptor(service: "t.T", method: "U", kind: .unary), .unary { bytes, _ in bytes })
        router.register(MethodDescriptor(service: "t.T", method: "S", kind: .serverStreaming), .serverStreaming { _, _, _ in })
        router.register(MethodDescriptor(service: "t.T", method: "C", kind: .clientStreaming), .clientStreaming { _, _ in ByteBuffer() })
        router.register(MethodDescriptor(service: "t.T", method: "B", kind: .bidirectional), .bidirectional { _, _, _ in })
        return router
    }()

    static func run(_ data: UnsafeRawBufferPointer) {
        let budget = ServerMemoryBudget(limit: 8 * 1024 * 1024)
        var configuration = ServerConnectionConfiguration()
        configuration.maxBufferedRequestBytes = 4 * 1024 * 1024
        let start = MonotonicInstant.now
        var now = start
        var machine = ServerConnectionMachine(configuration: configuration, router: router, budget: budget, now: now)
        machine.start()
        var opening = ByteBuffer(bytes: ConnectionPreface.bytes)
        var client = ConnectionSettings()
        client.initialWindowSize = 65_536
        FrameWriter.writeHello(client.hello, into: &opening)
        var actions = machine.receive(opening, now: now)
        var input = ByteBuffer(bytes: data)
        // The first byte picks the chunk size, so partial frames and frame boundaries vary.
        let chunk = max(1, Int(input.readInteger(as: UInt8.self) ?? 0) * 37 + 1)
        while input.readableBytes > 0, let piece = input.readSlice(length: min(chunk, input.readableBytes)) {
            actions += machine.receive(piece, now: now)
            answer(&actions, &machine, now: now)
            _ = machine.takeOutput(limit: 64 * 1024, now: now)
            now = now + .milliseconds(700)
            actions += machine.tick(now: now)
            precondition(machine.bufferedRequestBytes >= 0 && machine.runningHandlers >= 0, "accounting went negative")
            precondition(machine.bufferedRequestBytes <= configuration.maxBufferedRequestBytes + 65_536, "request bytes beyond the limit")
        }
        answer(&actions, &machine, now: now)
        for _ in 0..<4 {
            _ = machine.takeOutput(limit: .max, now: now)
            now = now + .seconds(40)
            actions = machine.tick(now: now)
            answer(&actions, &machine, now: now)
        }
        _ = machine.closeNow(now: now)
        precondition(budget.inUse == 0, "memory budget not given back: \(budget.inUse)")
    }

    /// Plays the handler's part: every started call is authenticated and answered.
    static func answer(_ actions: inout [ServerConnectionAction], _ machine: inout ServerConnectionMachine, now: MonotonicInstant) {
        while !actions.isEmpty {
            let current = actions
            actions = []
            for action in current {
                guard case .startCall(let start) = action else { continue }
                actions += machine.authenticated(start.id)
                if start.id % 3 == 0 {
                    actions += machine.writeResponse(start.id, message: ByteBuffer(repeating: 1, count: 70_000), compress: start.id % 7 == 0, initialMetadata: Metadata()).1
                }
                let outcome = ServerCallOutcome(
                    message: start.id % 2 == 0 ? ByteBuffer(repeating: 2, count: Int(start.id % 100_000)) : nil,
                    error: start.id % 5 == 0 ? RPCError(code: .internal, message: "x") : nil,
                    initialMetadata: Metadata(), trailingMetadata: Metadata(), compress: start.id % 7 == 0)
                actions += machine.handlerFinished(start.id, outcome, now: now)
            }
        }
    }
}

#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    ServerMachineFuzz.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

/// SwiftPM links an executable's entry point under this name; libFuzzer's driver runs from it,
/// so libFuzzer's own `main` is never pulled in.
@_cdecl("passion_fuzz_server_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return runFuzzerDriver(&count, &arguments, fuzzOneInput)
}
#else
import Foundation

@main
struct FuzzServerMachineMain {
    static func main() throws {
        for path in CommandLine.arguments.dropFirst() {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            data.withUnsafeBytes { ServerMachineFuzz.run($0) }
            print("ok \(path)")
        }
    }
}
#endif
