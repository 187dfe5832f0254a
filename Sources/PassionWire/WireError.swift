/// A violation of the wire protocol by the peer, or a limit it exceeded.
///
/// Connection-level errors close the connection after a GOAWAY carrying `goAwayCode`;
/// call-level errors fail only the call (see `isConnectionError`).
public struct WireError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What went wrong, as a stable category.
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Value: Hashable, Sendable {
            case badPreface, frameTooLarge, malformedFrame, unexpectedFrame, unknownFrameType
            case callIDReuse, messageTooLarge, metadataTooLarge, decompressionFailed
            case compressionNotNegotiated, tooManyCalls, enhanceYourCalm, flowControl
        }
        fileprivate let value: Value

        /// The connection did not start with the 8-byte preface.
        public static let badPreface = Kind(value: .badPreface)
        /// A frame header declared a payload above the negotiated maximum frame size.
        public static let frameTooLarge = Kind(value: .frameTooLarge)
        /// A frame's payload does not parse as its type requires.
        public static let malformedFrame = Kind(value: .malformedFrame)
        /// A known frame arrived where the protocol does not allow it.
        public static let unexpectedFrame = Kind(value: .unexpectedFrame)
        /// A frame of an unknown type without the IGNORABLE flag.
        public static let unknownFrameType = Kind(value: .unknownFrameType)
        /// A CALL reused or went below an earlier call id.
        public static let callIDReuse = Kind(value: .callIDReuse)
        /// A message (after reassembly, or while inflating) exceeded the maximum message size.
        public static let messageTooLarge = Kind(value: .messageTooLarge)
        /// A metadata block exceeded the maximum metadata size.
        public static let metadataTooLarge = Kind(value: .metadataTooLarge)
        /// A compressed message did not inflate.
        public static let decompressionFailed = Kind(value: .decompressionFailed)
        /// The COMPRESSED flag was set although compression was not negotiated.
        public static let compressionNotNegotiated = Kind(value: .compressionNotNegotiated)
        /// More calls were opened than the negotiated maximum.
        public static let tooManyCalls = Kind(value: .tooManyCalls)
        /// The peer sent control frames (PING, CANCEL) faster than allowed.
        public static let enhanceYourCalm = Kind(value: .enhanceYourCalm)
        /// The peer sent more MESSAGE bytes on a call than its window allowed.
        public static let flowControl = Kind(value: .flowControl)

        public var description: String { "\(value)" }

        /// The kind in snake case, as metrics label it (`frame_too_large`, `call_id_reuse`).
        public var label: String {
            switch value {
            case .badPreface: "bad_preface"
            case .frameTooLarge: "frame_too_large"
            case .malformedFrame: "malformed_frame"
            case .unexpectedFrame: "unexpected_frame"
            case .unknownFrameType: "unknown_frame_type"
            case .callIDReuse: "call_id_reuse"
            case .messageTooLarge: "message_too_large"
            case .metadataTooLarge: "metadata_too_large"
            case .decompressionFailed: "decompression_failed"
            case .compressionNotNegotiated: "compression_not_negotiated"
            case .tooManyCalls: "too_many_calls"
            case .enhanceYourCalm: "enhance_your_calm"
            case .flowControl: "flow_control"
            }
        }
    }

    public var kind: Kind
    /// Human-readable detail; never contains payload bytes.
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    /// Whether the error ends the connection rather than one call.
    public var isConnectionError: Bool {
        switch kind {
        case .messageTooLarge, .metadataTooLarge, .decompressionFailed: false
        default: true
        }
    }

    /// The GOAWAY code a receiver sends before closing for this error.
    public var goAwayCode: GoAwayCode {
        switch kind {
        case .frameTooLarge: .frameSizeError
        case .enhanceYourCalm: .enhanceYourCalm
        default: .protocolError
        }
    }

    public var description: String { "\(kind): \(message)" }
}
