import ArgumentParser
import Foundation
import NIOCore
import PassionClient
import SwiftProtobuf
import Synchronization

/// The request of each call: encoded once, or per call when the JSON has placeholders.
struct RequestTemplate: Sendable {
    private let fixed: ByteBuffer?
    private let text: PlaceholderText
    private let type: any SwiftProtobuf.Message.Type
    private let sequence = SequenceCounter()

    final class SequenceCounter: Sendable {
        private let value = Atomic<Int>(0)
        func next() -> Int { value.wrappingAdd(1, ordering: .relaxed).newValue }
    }

    /// An `--as-user` with placeholders, filled per call like the request.
    let asUser: PlaceholderText?

    init(_ data: String, type: any SwiftProtobuf.Message.Type, asUser: String? = nil) throws {
        let json = data.hasPrefix("@") ? try String(contentsOfFile: String(data.dropFirst()), encoding: .utf8) : data
        text = try PlaceholderText(json)
        self.type = type
        self.asUser = try asUser.map(PlaceholderText.init).flatMap { $0.hasPlaceholders ? $0 : nil }
        fixed = text.hasPlaceholders ? nil : try RequestInput.messages(from: json, type: type, streaming: false)[0]
        // The first call's request is made now, so that a template that cannot make one fails
        // before any call is sent.
        var random = FastRandom()
        if fixed == nil || self.asUser != nil { _ = try next(random: &random) }
    }

    /// The next call's request, and its `as-user` when that is a template.
    func next(random: inout FastRandom) throws -> (ByteBuffer, String?) {
        guard fixed == nil || asUser != nil else { return (fixed ?? ByteBuffer(), nil) }
        let number = sequence.next()
        let request = try fixed ?? RequestInput.messages(from: text.fill(number: number, random: &random), type: type, streaming: false)[0]
        return (request, asUser?.fill(number: number, random: &random))
    }
}

/// A text with `{{seq}}`, `{{seq:N}}` and `{{rand:N}}` placeholders, parsed once: a call pays
/// only for joining its parts. Parsing per call (through Foundation's `range(of:)`) and drawing
/// from the system generator (a `getrandom` call each) were 15% of the bench client's CPU.
struct PlaceholderText: Sendable {
    enum Part: Sendable, Equatable {
        case text(String)
        /// The call's number, 1, 2, ...
        case sequence
        /// The call's number modulo N, zero-padded to 12 digits (the tail of a user id).
        case sequenceModulo(Int)
        /// A number below N drawn per call, zero-padded to 12 digits.
        case random(Int)
    }

    let parts: [Part]

    var hasPlaceholders: Bool {
        parts.contains { if case .text = $0 { false } else { true } }
    }

    init(_ text: String) throws {
        var parts: [Part] = []
        var rest = Substring(text)
        while let open = rest.firstRange(of: "{{"), let close = rest[open.upperBound...].firstRange(of: "}}") {
            if open.lowerBound > rest.startIndex { parts.append(.text(String(rest[..<open.lowerBound]))) }
            let name = rest[open.upperBound..<close.lowerBound]
            if name == "seq" {
                parts.append(.sequence)
            } else if name.hasPrefix("seq:"), let bound = Int(name.dropFirst(4)), bound > 0 {
                parts.append(.sequenceModulo(bound))
            } else if name.hasPrefix("rand:"), let bound = Int(name.dropFirst(5)), bound > 0 {
                parts.append(.random(bound))
            } else {
                throw ValidationError("unknown placeholder {{\(name)}}: use {{seq}}, {{seq:N}} or {{rand:N}} with N > 0")
            }
            rest = rest[close.upperBound...]
        }
        if !rest.isEmpty { parts.append(.text(String(rest))) }
        self.parts = parts
    }

    func fill(number: Int, random: inout FastRandom) -> String {
        var filled = ""
        for part in parts {
            switch part {
            case .text(let text): filled += text
            case .sequence: filled += String(number)
            case .sequenceModulo(let bound): Self.appendPadded(number % bound, to: &filled)
            case .random(let bound): Self.appendPadded(Int.random(in: 0..<bound, using: &random), to: &filled)
            }
        }
        return filled
    }

    private static func appendPadded(_ value: Int, to text: inout String) {
        let digits = String(value)
        if digits.count < 12 { text += String(repeating: "0", count: 12 - digits.count) }
        text += digits
    }
}

/// SplitMix64: the bench's placeholder numbers need speed and spread, not secrecy, and the
/// system generator costs a `getrandom` call per number. Seeded from the system generator.
struct FastRandom: RandomNumberGenerator {
    private var state = UInt64.random(in: .min ... .max)

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}
