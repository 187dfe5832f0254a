import PassionWire
import Synchronization

/// A W3C Trace Context `traceparent` value (version 00): which trace a call belongs to and
/// which span called it. See https://www.w3.org/TR/trace-context/.
public struct TraceContext: Sendable, Hashable, CustomStringConvertible {
    /// The trace id's first 8 bytes, big-endian; the id is never all zero.
    public let traceIDHigh: UInt64
    /// The trace id's last 8 bytes, big-endian.
    public let traceIDLow: UInt64
    /// The parent span's id; never zero.
    public let spanID: UInt64
    /// The trace flags byte; bit 0 is `sampled`.
    public let flags: UInt8

    /// The trace of the call this task serves, if its caller sent one: read by log lines and by
    /// the SQL the call sends.
    @TaskLocal public static var current: TraceContext?

    /// The metadata key that carries `traceparent`.
    public static let metadataKey = "traceparent"
    /// The metadata key that carries the vendors' `tracestate`, which this type does not interpret.
    public static let stateMetadataKey = "tracestate"

    private init(traceIDHigh: UInt64, traceIDLow: UInt64, spanID: UInt64, flags: UInt8) {
        self.traceIDHigh = traceIDHigh
        self.traceIDLow = traceIDLow
        self.spanID = spanID
        self.flags = flags
    }

    /// Parses a `traceparent` value strictly; nil if it is malformed or names an invalid id.
    public init?(traceparent: some StringProtocol) {
        var text = String(traceparent)
        guard let parsed = text.withUTF8({ TraceContext(utf8: $0) }) else { return nil }
        self = parsed
    }

    /// Parses the value's bytes where they are: the server reads one per traced call, and a
    /// String or an Array of them would be an allocation each.
    init?(utf8 bytes: UnsafeBufferPointer<UInt8>) {
        let dash = UInt8(ascii: "-")
        guard bytes.count >= 55, bytes[2] == dash, bytes[35] == dash, bytes[52] == dash,
            let version = Self.parseHex(bytes, at: 0, digits: 2), version != 0xff,
            let high = Self.parseHex(bytes, at: 3, digits: 16),
            let low = Self.parseHex(bytes, at: 19, digits: 16),
            let span = Self.parseHex(bytes, at: 36, digits: 16),
            let flags = Self.parseHex(bytes, at: 53, digits: 2)
        else { return nil }
        // Version 00 is exactly 55 bytes; a later version may append fields after a dash.
        let lengthIsValid = version == 0 ? bytes.count == 55 : (bytes.count == 55 || bytes[55] == dash)
        guard lengthIsValid, high | low != 0, span != 0 else { return nil }
        // A later version's other flag bits may mean something else than in 00, which is what
        // this value is re-sent as, so only `sampled` survives.
        let kept = version == 0 ? UInt8(flags) : UInt8(flags) & 0x01
        self.init(traceIDHigh: high, traceIDLow: low, spanID: span, flags: kept)
    }

    /// The first `traceparent` entry of `metadata`; nil if there is none or it is invalid.
    public init?(metadata: Metadata) {
        guard let entry = metadata.first(where: { $0.key == Self.metadataKey }),
            let parsed = entry.withValueBytes({ TraceContext(utf8: $0) })
        else { return nil }
        self = parsed
    }

    /// The trace id as 32 lowercase hex digits.
    public var traceIDHex: String {
        String(unsafeUninitializedCapacity: 32) { buffer in
            Self.writeHex(traceIDHigh, digits: 16, into: buffer, at: 0)
            Self.writeHex(traceIDLow, digits: 16, into: buffer, at: 16)
            return 32
        }
    }

    /// The parent span id as 16 lowercase hex digits.
    public var spanIDHex: String {
        String(unsafeUninitializedCapacity: 16) { Self.writeHex(spanID, digits: 16, into: $0, at: 0) }
    }

    /// Whether the caller may have recorded its span (flags bit 0).
    public var isSampled: Bool { flags & 0x01 != 0 }

    /// The value as a version 00 `traceparent`.
    public var traceparent: String {
        // Written in place: a client sending one per call paid five allocations for it.
        String(unsafeUninitializedCapacity: 55) { buffer in
            let dash = UInt8(ascii: "-")
            buffer[0] = UInt8(ascii: "0")
            buffer[1] = UInt8(ascii: "0")
            buffer[2] = dash
            Self.writeHex(traceIDHigh, digits: 16, into: buffer, at: 3)
            Self.writeHex(traceIDLow, digits: 16, into: buffer, at: 19)
            buffer[35] = dash
            Self.writeHex(spanID, digits: 16, into: buffer, at: 36)
            buffer[52] = dash
            return Self.writeHex(UInt64(flags), digits: 2, into: buffer, at: 53)
        }
    }

    /// The `traceparent` value.
    public var description: String { traceparent }

    /// The context to send from a span with id `spanID` (non-zero) within the same trace.
    public func child(spanID: UInt64) -> TraceContext {
        // A zero span id makes the value invalid for every receiver: a bug of the caller.
        precondition(spanID != 0, "a trace context's span id must not be zero")
        return TraceContext(traceIDHigh: traceIDHigh, traceIDLow: traceIDLow, spanID: spanID, flags: flags)
    }

    /// A new trace with random non-zero ids from `generator`.
    public static func random(
        sampled: Bool = true, using generator: inout some RandomNumberGenerator
    ) -> TraceContext {
        // Drawing again rather than setting a bit keeps every valid id equally likely.
        var high: UInt64
        var low: UInt64
        repeat {
            high = generator.next()
            low = generator.next()
        } while high | low == 0
        var span: UInt64
        repeat { span = generator.next() } while span == 0
        return TraceContext(traceIDHigh: high, traceIDLow: low, spanID: span, flags: sampled ? 0x01 : 0x00)
    }

    /// A new span id, never zero, without a system call: the system's generator costs a
    /// `getrandom` per call, and a server names a span for every traced call. A random start
    /// and a bijective mix of a counter give ids that never repeat within a process.
    public static func nextSpanID() -> UInt64 {
        while true {
            var mixed = spanCounter.wrappingAdd(0x9E37_79B9_7F4A_7C15, ordering: .relaxed).newValue
            mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
            mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
            mixed ^= mixed >> 31
            if mixed != 0 { return mixed }
        }
    }

    private static let spanCounter = Atomic<UInt64>(UInt64.random(in: .min ... .max))

    /// A new trace with random non-zero ids from the system's generator.
    public static func random(sampled: Bool = true) -> TraceContext {
        var generator = SystemRandomNumberGenerator()
        return random(sampled: sampled, using: &generator)
    }

    /// Each byte's hex value; 0xFF for anything but `0-9a-f` (the spec forbids uppercase).
    private static let hexValues: [UInt8] = (0...255).map { byte in
        switch byte {
        case 0x30...0x39: UInt8(byte - 0x30)
        case 0x61...0x66: UInt8(byte - 0x61 + 10)
        default: 0xFF
        }
    }

    /// The value of `digits` lowercase hex digits at `start`. One table load a digit and one
    /// check at the end: the server parses a traceparent per traced call.
    private static func parseHex(_ bytes: UnsafeBufferPointer<UInt8>, at start: Int, digits: Int) -> UInt64? {
        hexValues.withUnsafeBufferPointer { table in
            var value: UInt64 = 0
            var invalid: UInt8 = 0
            for index in start..<start + digits {
                let digit = table[Int(bytes[index])]
                invalid |= digit
                value = value << 4 | UInt64(digit & 0x0f)
            }
            return invalid & 0xf0 == 0 ? value : nil
        }
    }

    /// Writes the low `digits` hex digits of `value`, zero-padded, at `start`; returns the end.
    @discardableResult
    private static func writeHex(_ value: UInt64, digits: Int, into buffer: UnsafeMutableBufferPointer<UInt8>, at start: Int) -> Int {
        let hex: StaticString = "0123456789abcdef"
        hex.withUTF8Buffer { alphabet in
            for index in 0..<digits {
                let shift = UInt64((digits - 1 - index) * 4)
                buffer[start + index] = alphabet[Int((value >> shift) & 0xf)]
            }
        }
        return start + digits
    }
}
