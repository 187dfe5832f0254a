/// A call's outcome: gRPC's canonical codes 0–16, with the same meanings.
public struct StatusCode: Hashable, Sendable, CustomStringConvertible {
    /// The code's number on the wire and in the CLI's exit status (64 + code).
    public let rawValue: UInt8

    /// Any byte is representable so that a newer peer's codes survive; `name` shows them.
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let ok = StatusCode(rawValue: 0)
    public static let cancelled = StatusCode(rawValue: 1)
    public static let unknown = StatusCode(rawValue: 2)
    public static let invalidArgument = StatusCode(rawValue: 3)
    public static let deadlineExceeded = StatusCode(rawValue: 4)
    public static let notFound = StatusCode(rawValue: 5)
    public static let alreadyExists = StatusCode(rawValue: 6)
    public static let permissionDenied = StatusCode(rawValue: 7)
    public static let resourceExhausted = StatusCode(rawValue: 8)
    public static let failedPrecondition = StatusCode(rawValue: 9)
    public static let aborted = StatusCode(rawValue: 10)
    public static let outOfRange = StatusCode(rawValue: 11)
    public static let unimplemented = StatusCode(rawValue: 12)
    public static let `internal` = StatusCode(rawValue: 13)
    public static let unavailable = StatusCode(rawValue: 14)
    public static let dataLoss = StatusCode(rawValue: 15)
    public static let unauthenticated = StatusCode(rawValue: 16)

    private static let names = [
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
        "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
        "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
    ]

    /// The canonical upper-case name, for example `NOT_FOUND`.
    public var name: String {
        Int(rawValue) < Self.names.count ? Self.names[Int(rawValue)] : "CODE_\(rawValue)"
    }

    /// Parses a canonical name or a number.
    public init?(name: String) {
        if let index = Self.names.firstIndex(of: name.uppercased()) {
            self.init(rawValue: UInt8(index))
        } else if let number = UInt8(name), number <= 16 {
            self.init(rawValue: number)
        } else {
            return nil
        }
    }

    public var description: String { name }
}
