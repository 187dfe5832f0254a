import ArgumentParser
import Foundation
import Histogram
import NIOCore
import NIOPosix
import PassionClient
import SwiftProtobuf
import Synchronization

/// `passion bench`: load on a unary method over `--connections`, from `--concurrency` callers
/// each sending its next call when the previous one answered (closed loop), or with each call
/// sent when it is due and at most `--concurrency` in flight (`--rate`, open loop).
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Load-test a unary method and report QPS and latency percentiles.")

    @OptionGroup var options: ClientOptions

    @Argument(help: "A unary method, for example passion.v1.Diagnostics/Echo.")
    var method: String

    @Option(name: .shortAndLong, help: ArgumentHelp(
        "Request JSON or @FILE.",
        discussion: """
            {{seq}} becomes a number unique in the run (idempotency keys); {{seq:N}} that number modulo N and {{rand:N}} a random \
            0..N-1, both zero-padded to 12 digits (the last group of a UUID). One call uses one number for every {{seq}} in the \
            request and in --as-user, so a request can name a resource of the user it acts for.
            """))
    var data: String = "{}"

    @Option(help: "Calls per second over all connections (open loop; latency counts from each call's scheduled time). Default: closed loop.")
    var rate: Double?

    @Option(help: ArgumentHelp(
        "With --rate: send the calls due within one tick together at its start, such as 1ms; 0 sends each at its own time.",
        discussion: """
            One wake-up and one write then carry every call due in the tick, as in wrk2, instead of one each: the open loop \
            costs the machine it measures far less. Latency counts from the tick's start, when the calls were sent.
            """))
    var tick: String = "1ms"

    @Option(help: "Connections to open.")
    var connections: Int = 1

    @Option(help: "Calls in flight at once, over all connections.")
    var concurrency: Int = 1

    @Option(help: ArgumentHelp(
        "Event-loop threads the connections share.",
        discussion: """
            One thread drives about 100,000 calls a second, and every thread more adds wake-ups that take CPU from the server \
            being measured when both share a machine. Raise it when the client's CPU per second nears the threads' count.
            """))
    var threads: Int = 1

    @Option(help: "How long to measure, such as 10s.")
    var duration: String = "10s"

    @Option(help: "How long to run before measuring.")
    var warmup: String = "2s"

    @Flag(help: "Print one JSON object instead of the text report.")
    var json = false

    @Option(
        name: .customLong("trace"),
        help: "Send a new W3C traceparent with every call, this fraction of them (0–1) marked sampled, as a traced front end would.")
    var traceSampled: Double?

    func validate() throws {
        guard connections >= 1, concurrency >= 1 else { throw ValidationError("--connections and --concurrency must be at least 1") }
        guard concurrency >= connections else { throw ValidationError("--concurrency must be at least --connections") }
        guard (1...connections).contains(threads) else { throw ValidationError("--threads must be from 1 to --connections") }
        if let rate, !(rate > 0 && rate.isFinite) { throw ValidationError("--rate must be a positive number of calls per second") }
        if let traceSampled, !(0...1).contains(traceSampled) { throw ValidationError("--trace must be a fraction from 0 to 1") }
        _ = try tickDuration()
        guard try ClientOptions.parseDuration(duration) > .zero else { throw ValidationError("--duration must be more than 0") }
    }

    private func tickDuration() throws -> Duration {
        let parsed = try ClientOptions.parseDuration(tick)
        guard parsed <= .seconds(1) else { throw ValidationError("--tick must be at most 1s") }
        return parsed
    }

    func run() async throws {
        let schema = try MethodLookup.schema(method)
        guard schema.descriptor.kind == .unary else { throw ValidationError("bench drives unary methods only") }
        let template = try RequestTemplate(data, type: schema.requestType, asUser: options.asUser)
        let measure = try ClientOptions.parseDuration(duration)
        let warm = try ClientOptions.parseDuration(warmup)
        var fixedOptions = options
        if template.asUser != nil { fixedOptions.asUser = nil }
        let callOptions = try fixedOptions.callOptions()
        let configuration = try options.connectionConfiguration()
        let tick = try tickDuration()

        let loops = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        defer { loops.shutdownGracefully { _ in } }
        var pool: [ClientConnection] = []
        do {
            for _ in 0..<connections { pool.append(try await ClientConnection.connect(configuration, group: loops.next())) }
        } catch {
            throw Failure.exit(error)
        }
        let start = ContinuousClock.now
        let measureFrom = start + warm
        let end = measureFrom + measure
        let progress = Progress()
        // CPU is counted over the measured window only, like the calls.
        let cpuAtStart = Task { () -> Double in
            try? await Task.sleep(until: measureFrom)
            return CPUTime.process()
        }
        let ticker = Task { await progress.report(until: end, from: measureFrom, live: isatty(STDOUT_FILENO) == 1 && !json) }

        let calls = CallMaker(method: schema.descriptor, template: template, options: callOptions, traceSampled: traceSampled)
        let window = Window(measureFrom: measureFrom, end: end, progress: progress)
        let results: WorkerResult
        if let rate {
            results = await Self.openLoop(
                pool: pool, calls: calls, window: window, concurrency: concurrency, start: start, rate: rate, tick: tick)
        } else {
            results = await Self.closedLoop(pool: pool, calls: calls, window: window, concurrency: concurrency)
        }
        let cpu = CPUTime.process() - (await cpuAtStart.value)
        ticker.cancel()
        for connection in pool { await connection.close() }
        // Over the time the window's calls took to answer: an open loop the server falls behind
        // answers its window's calls after the window, and reports the rate it was served at,
        // not the rate it offered.
        let took = max(measure, (results.lastAnswer ?? end) - measureFrom)
        printReport(results, seconds: Double(took.components.seconds) + Double(took.components.attoseconds) / 1e18, cpu: cpu)
    }

    /// Each caller sends its next call when the previous one answered, from a task that prefers
    /// its connection's event loop.
    private static func closedLoop(pool: [ClientConnection], calls: CallMaker, window: Window, concurrency: Int) async -> WorkerResult {
        await withTaskGroup(of: WorkerResult.self) { group in
            for worker in 0..<concurrency {
                let connection = pool[worker % pool.count]
                group.addTask(executorPreference: connection.taskExecutor) {
                    var result = WorkerResult()
                    var random = FastRandom()
                    while true {
                        let started = ContinuousClock.now
                        guard started < window.end else { break }
                        var failure: StatusCode?
                        do {
                            let (request, options) = try calls.next(random: &random)
                            _ = try await connection.unary(calls.method, request: request, options: options)
                        } catch {
                            failure = (error as? RPCError)?.code ?? .unknown
                        }
                        window.record(&result, due: started, sent: started, failure: failure)
                    }
                    return result
                }
            }
            var merged = WorkerResult()
            for await result in group { merged.merge(result) }
            return merged
        }
    }

    /// Each connection's calls go out on its event loop, a tick's worth per loop turn, and each
    /// answer is tallied in a callback there: no task, timer or thread hop per call. At most
    /// `concurrency` calls are in flight, shared out over the connections as the closed loop's
    /// callers are; a call due while its connection has none free waits, and that wait counts
    /// as latency.
    private static func openLoop(
        pool: [ClientConnection], calls: CallMaker, window: Window, concurrency: Int,
        start: ContinuousClock.Instant, rate: Double, tick: Duration
    ) async -> WorkerResult {
        await withTaskGroup(of: WorkerResult.self) { group in
            for (index, connection) in pool.enumerated() {
                let schedule = OpenLoopSchedule(
                    pacing: Pacing(start: start, interval: Double(pool.count) / rate, offset: Double(index) / rate, tick: tick),
                    end: window.end,
                    slots: concurrency / pool.count + (index < concurrency % pool.count ? 1 : 0))
                group.addTask {
                    await OpenLoopDriver.run(connection: connection, calls: calls, window: window, schedule: schedule)
                }
            }
            var merged = WorkerResult()
            for await result in group { merged.merge(result) }
            return merged
        }
    }

    private func printReport(_ result: WorkerResult, seconds: Double, cpu: Double) {
        let histogram = result.histogram
        let qps = Double(result.calls) / seconds
        let totalCalls = result.calls + result.errors.values.reduce(0, +)
        let cpuPerCall = totalCalls > 0 ? cpu / Double(totalCalls) * 1e6 : 0
        if json {
            let errors = result.errors.sorted { $0.key < $1.key }.map { "\"\($0.key)\": \($0.value)" }.joined(separator: ", ")
            print(
                "{\"calls\": \(result.calls), \"errors\": {\(errors)}, \"seconds\": \(String(format: "%.3f", seconds)), "
                    + "\"qps\": \(String(format: "%.1f", qps)), \(rate.map { "\"offered_qps\": \(String(format: "%.1f", $0)), " } ?? "")"
                    + "\"p50_us\": \(histogram.valueAtPercentile(50)), \"p90_us\": \(histogram.valueAtPercentile(90)), "
                    + "\"p99_us\": \(histogram.valueAtPercentile(99)), \"p999_us\": \(histogram.valueAtPercentile(99.9)), "
                    + "\"max_us\": \(result.calls > 0 ? histogram.max : 0), \"client_cpu_us_per_call\": \(String(format: "%.1f", cpuPerCall))}")
            return
        }
        print("method       \(method)  connections \(connections)  concurrency \(concurrency)")
        print("calls        \(result.calls) ok in \(String(format: "%.1f", seconds)) s")
        let errorText = result.errors.isEmpty ? "none" : result.errors.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        print("errors       \(errorText)")
        print("qps          \(String(format: "%.1f", qps))\(rate.map { String(format: " (offered %.1f)", $0) } ?? "")")
        print("latency µs   p50 \(histogram.valueAtPercentile(50))  p90 \(histogram.valueAtPercentile(90))  p99 \(histogram.valueAtPercentile(99))  p99.9 \(histogram.valueAtPercentile(99.9))  max \(result.calls > 0 ? histogram.max : 0)")
        print("client CPU   \(String(format: "%.1f", cpuPerCall)) µs per call")
    }
}

/// Builds each call's request and options from the template: its placeholders, the user it acts
/// for, and a fresh traceparent when asked.
struct CallMaker: Sendable {
    let method: MethodDescriptor
    let template: RequestTemplate
    let options: CallOptions
    let traceSampled: Double?

    func next(random: inout FastRandom) throws -> (ByteBuffer, CallOptions) {
        let (request, asUser) = try template.next(random: &random)
        var callOptions = options
        if let asUser { callOptions.metadata.add("as-user", asUser) }
        if let traceSampled {
            let sampled = Double(random.next() >> 11) / Double(1 << 53) < traceSampled
            callOptions.metadata.add(TraceContext.metadataKey, TraceContext.random(sampled: sampled, using: &random).traceparent)
        }
        return (request, callOptions)
    }
}

/// The measured window: which calls count, and the live progress line's counters.
struct Window: Sendable {
    let measureFrom: ContinuousClock.Instant
    let end: ContinuousClock.Instant
    let progress: Progress

    /// Counts a call by when it was due; its latency runs from when it was sent, or should have
    /// been: a stall then shows as latency instead of silently lowering the load (coordinated
    /// omission).
    func record(_ result: inout WorkerResult, due: ContinuousClock.Instant, sent: ContinuousClock.Instant, failure: StatusCode?) {
        guard due >= measureFrom else { return }
        let now = ContinuousClock.now
        let elapsed = now - sent
        let micros = UInt64(max(1, elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000))
        if let failure {
            result.errors[failure.name, default: 0] += 1
        } else {
            result.calls += 1
            _ = result.histogram.record(micros)
            // Failures do not stretch the time: one call running into its deadline after the
            // window would make a server that kept up look slow.
            result.lastAnswer = max(result.lastAnswer ?? now, now)
        }
        progress.count(failed: failure != nil)
    }
}

/// One worker's tally; merged at the end so workers never contend.
struct WorkerResult: Sendable {
    var calls = 0
    var errors: [String: Int] = [:]
    var histogram = Histogram<UInt64>(highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three)
    /// When the last of the window's calls answered successfully.
    var lastAnswer: ContinuousClock.Instant?

    mutating func merge(_ other: WorkerResult) {
        if let last = other.lastAnswer { lastAnswer = max(lastAnswer ?? last, last) }
        calls += other.calls
        errors.merge(other.errors, uniquingKeysWith: +)
        histogram.add(other.histogram)
    }
}

/// Live counters for the progress line.
final class Progress: Sendable {
    private let ok = Atomic<Int>(0)
    private let failed = Atomic<Int>(0)

    func count(failed didFail: Bool) {
        if didFail { failed.add(1, ordering: .relaxed) } else { ok.add(1, ordering: .relaxed) }
    }

    func report(until end: ContinuousClock.Instant, from start: ContinuousClock.Instant, live: Bool) async {
        guard live else { return }
        while ContinuousClock.now < end {
            try? await Task.sleep(for: .seconds(1))
            let now = ContinuousClock.now
            let calls = ok.load(ordering: .relaxed)
            let elapsed = now > start ? Double((now - start).components.seconds) + Double((now - start).components.attoseconds) / 1e18 : 0
            let rate = elapsed > 0 ? Double(calls) / elapsed : 0
            let line = String(format: "\r%@ %d calls, %.0f qps, %d errors   ", now < start ? "warming up" : "measuring", calls, rate, failed.load(ordering: .relaxed))
            FileHandle.standardError.write(Data(line.utf8))
        }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }
}

/// CPU time (user + system) of this process, in seconds.
enum CPUTime {
    static func process() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec)
            + Double(usage.ru_stime.tv_usec) / 1e6
    }
}
