import Logging
import PassionRPC

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How the process writes its logs: `text` for people at a terminal, `json` for log collectors.
public enum LogFormat: String, Sendable, CaseIterable {
    /// swift-log's `StreamLogHandler` lines.
    case text
    /// One JSON object per line, from `JSONLogHandler`.
    case json
}

/// Writes each event to standard error as one JSON object on one line: `ts`, `level`, `label`,
/// `message`, the metadata keys in sorted order, then `source`.
public struct JSONLogHandler: LogHandler {
    /// Seconds and nanoseconds since the Unix epoch.
    typealias TimeSource = @Sendable () -> (seconds: Int64, nanoseconds: Int32)

    /// The least severe level this handler writes.
    public var logLevel: Logger.Level = .info
    /// Metadata written with every event, below the provider's and the call's.
    public var metadata: Logger.Metadata = [:]
    /// Metadata taken from the context of each call (a request's trace ID, say).
    public var metadataProvider: Logger.MetadataProvider?

    private let label: String
    private let now: TimeSource
    private let output: @Sendable ([UInt8]) -> Void

    /// A handler writing to standard error with the metadata provider `LoggingSystem` was bootstrapped with.
    public init(label: String, metadataProvider: Logger.MetadataProvider? = LoggingSystem.metadataProvider) {
        self.init(
            label: label, metadataProvider: metadataProvider,
            now: { JSONLogHandler.realtimeNow() }, output: { JSONLogHandler.writeStandardError($0) })
    }

    /// `now` and `output` replace the clock and standard error, so tests see exact lines.
    init(
        label: String, metadataProvider: Logger.MetadataProvider? = nil, now: @escaping TimeSource,
        output: @escaping @Sendable ([UInt8]) -> Void
    ) {
        self.label = label
        self.metadataProvider = metadataProvider
        self.now = now
        self.output = output
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() {
            merged.merge(provided) { _, new in new }
        }
        if let explicit = event.metadata {
            merged.merge(explicit) { _, new in new }
        }
        if let error = event.error {
            // StreamLogHandler's names, so switching formats keeps the fields people search by.
            merged["error.message"] = .string("\(error)")
            merged["error.type"] = .string(String(reflecting: type(of: error)))
        }
        let time = now()
        var line: [UInt8] = []
        line.reserveCapacity(256)
        line.append(contentsOf: "{\"ts\":\"".utf8)
        Self.appendTimestamp(seconds: time.seconds, nanoseconds: time.nanoseconds, to: &line)
        line.append(contentsOf: "\",\"level\":".utf8)
        Self.appendJSONString(event.level.rawValue, to: &line)
        line.append(contentsOf: ",\"label\":".utf8)
        Self.appendJSONString(label, to: &line)
        line.append(contentsOf: ",\"message\":".utf8)
        Self.appendJSONString(event.message.description, to: &line)
        for field in Self.fields(merged) {
            line.append(UInt8(ascii: ","))
            Self.appendJSONString(field.key, to: &line)
            line.append(UInt8(ascii: ":"))
            Self.appendJSONValue(field.value, to: &line)
        }
        let source = event.source
        if !source.isEmpty {
            line.append(contentsOf: ",\"source\":".utf8)
            Self.appendJSONString(source, to: &line)
        }
        line.append(contentsOf: "}\n".utf8)
        output(line)
    }

    /// The line's own keys. A metadata key equal to one gets `_` prefixes instead of making a
    /// duplicate JSON key, which parsers resolve differently (first wins, last wins, or reject).
    private static let reservedKeys: Set<String> = ["ts", "level", "label", "message", "source"]

    private static func fields(_ metadata: Logger.Metadata) -> [(key: String, value: Logger.MetadataValue)] {
        var fields: [(key: String, value: Logger.MetadataValue)] = []
        for (key, value) in metadata {
            var name = key
            while reservedKeys.contains(name) || (name != key && metadata[name] != nil) { name = "_" + name }
            fields.append((key: name, value: value))
        }
        fields.sort { $0.key < $1.key }
        return fields
    }

    static func appendJSONValue(_ value: Logger.MetadataValue, to buffer: inout [UInt8]) {
        switch value {
        case .string(let string):
            appendJSONString(string, to: &buffer)
        case .stringConvertible(let convertible):
            appendJSONString(convertible.description, to: &buffer)
        case .array(let values):
            buffer.append(UInt8(ascii: "["))
            for (index, element) in values.enumerated() {
                if index > 0 { buffer.append(UInt8(ascii: ",")) }
                appendJSONValue(element, to: &buffer)
            }
            buffer.append(UInt8(ascii: "]"))
        case .dictionary(let dictionary):
            buffer.append(UInt8(ascii: "{"))
            for (index, entry) in dictionary.sorted(by: { $0.key < $1.key }).enumerated() {
                if index > 0 { buffer.append(UInt8(ascii: ",")) }
                appendJSONString(entry.key, to: &buffer)
                buffer.append(UInt8(ascii: ":"))
                appendJSONValue(entry.value, to: &buffer)
            }
            buffer.append(UInt8(ascii: "}"))
        }
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// Appends `string` as a quoted JSON string. A Swift string's UTF-8 is always valid, so every
    /// byte from 0x20 up except the quote and backslash may go out as it is.
    static func appendJSONString(_ string: String, to buffer: inout [UInt8]) {
        buffer.append(UInt8(ascii: "\""))
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): buffer.append(contentsOf: [UInt8(ascii: "\\"), byte])
            case UInt8(ascii: "\n"): buffer.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case UInt8(ascii: "\r"): buffer.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case UInt8(ascii: "\t"): buffer.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20:
                buffer.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0")])
                buffer.append(hexDigits[Int(byte >> 4)])
                buffer.append(hexDigits[Int(byte & 0x0F)])
            default: buffer.append(byte)
            }
        }
        buffer.append(UInt8(ascii: "\""))
    }

    /// Appends RFC 3339 UTC with milliseconds (`2026-12-03T07:55:02.123Z`). Days become a date by
    /// Howard Hinnant's civil-from-days arithmetic: no DateFormatter, no time zone database.
    static func appendTimestamp(seconds: Int64, nanoseconds: Int32, to buffer: inout [UInt8]) {
        // A clock before 1970 or past 9999 is wrong anyway; clamping keeps the arithmetic
        // non-negative and the year four digits, as RFC 3339 requires.
        let clamped = min(max(seconds, 0), 253_402_300_799)
        let secondOfDay = clamped % 86_400
        let shifted = clamped / 86_400 + 719_468  // days since 0000-03-01: a year from March ends in its leap day
        let era = shifted / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthFromMarch = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthFromMarch + 2) / 5 + 1
        let month = monthFromMarch < 10 ? monthFromMarch + 3 : monthFromMarch - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        let millisecond = Int64(min(max(nanoseconds, 0), 999_999_999) / 1_000_000)
        appendDigits(year, width: 4, then: "-", to: &buffer)
        appendDigits(month, width: 2, then: "-", to: &buffer)
        appendDigits(day, width: 2, then: "T", to: &buffer)
        appendDigits(secondOfDay / 3_600, width: 2, then: ":", to: &buffer)
        appendDigits(secondOfDay % 3_600 / 60, width: 2, then: ":", to: &buffer)
        appendDigits(secondOfDay % 60, width: 2, then: ".", to: &buffer)
        appendDigits(millisecond, width: 3, then: "Z", to: &buffer)
    }

    /// `value` (never negative) zero-padded to `width` digits, then `separator`.
    private static func appendDigits(_ value: Int64, width: Int, then separator: Unicode.Scalar, to buffer: inout [UInt8]) {
        var divisor: Int64 = 1
        for _ in 1..<width { divisor *= 10 }
        while divisor > 0 {
            buffer.append(UInt8(ascii: "0") + UInt8(value / divisor % 10))
            divisor /= 10
        }
        buffer.append(UInt8(ascii: separator))
    }

    private static func realtimeNow() -> (seconds: Int64, nanoseconds: Int32) {
        var spec = timespec()
        _ = clock_gettime(CLOCK_REALTIME, &spec)
        return (Int64(spec.tv_sec), Int32(truncatingIfNeeded: spec.tv_nsec))
    }

    /// One write(2) per line, not stdio: stdio may split a long line into several writes, and then
    /// lines from concurrent loggers interleave.
    private static func writeStandardError(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { buffer in
            guard var next = buffer.baseAddress else { return }
            var remaining = buffer.count
            while remaining > 0 {
                let written = write(STDERR_FILENO, next, remaining)
                if written < 0 && errno == EINTR { continue }
                // A line that cannot be written has nowhere else to be reported.
                guard written > 0 else { return }
                next = next.advanced(by: written)
                remaining -= written
            }
        }
    }
}

/// Chooses the process's log handler, once, at startup.
public enum LoggingSetup {
    /// Bootstraps `LoggingSystem` with `format`'s handler at `level`; like `LoggingSystem.bootstrap`,
    /// call it at most once per process.
    public static func bootstrap(format: LogFormat, level: Logger.Level) {
        let provider = traceMetadata
        LoggingSystem.bootstrap(
            { label, provider in
                var handler: any LogHandler =
                    switch format {
                    case .text: StreamLogHandler.standardError(label: label, metadataProvider: provider)
                    case .json: JSONLogHandler(label: label, metadataProvider: provider)
                    }
                handler.logLevel = level
                return handler
            }, metadataProvider: provider)
    }

    /// `trace_id` on every line logged inside a call whose caller sent a `traceparent`,
    /// whichever logger wrote it.
    public static let traceMetadata = Logger.MetadataProvider {
        guard let trace = TraceContext.current else { return [:] }
        return ["trace_id": "\(trace.traceIDHex)"]
    }
}
