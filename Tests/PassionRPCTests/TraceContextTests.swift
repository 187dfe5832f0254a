import PassionRPC
import PassionWire
import Testing

/// W3C `traceparent` parsing and formatting: no connection, only values.
@Suite("Trace context")
struct TraceContextTests {
    /// The example in the W3C Trace Context recommendation.
    static let specExample = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    @Test("the spec's example parses into its fields and formats back unchanged")
    func example() throws {
        let context = try #require(TraceContext(traceparent: Self.specExample))
        // Typed, because the low half does not fit the default literal type Int.
        let high: UInt64 = 0x4bf9_2f35_77b3_4da6
        let low: UInt64 = 0xa3ce_929d_0e0e_4736
        #expect(context.traceIDHigh == high)
        #expect(context.traceIDLow == low)
        #expect(context.traceIDHex == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(context.spanID == 0x00f0_67aa_0ba9_02b7)
        #expect(context.spanIDHex == "00f067aa0ba902b7")
        #expect(context.flags == 0x01)
        #expect(context.isSampled)
        #expect(context.traceparent == Self.specExample)
        #expect(context.description == Self.specExample)
        #expect(TraceContext(traceparent: Self.specExample.dropFirst(0)) == context)
    }

    @Test("flags: bit 0 is sampled; the other bits of version 00 are kept")
    func flags() throws {
        let notSampled = try #require(TraceContext(traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"))
        #expect(!notSampled.isSampled)
        #expect(notSampled.flags == 0)
        let other = try #require(TraceContext(traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02"))
        #expect(!other.isSampled)
        #expect(other.flags == 0x02)
        #expect(other.traceparent.hasSuffix("-02"))
        let all = try #require(TraceContext(traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff"))
        #expect(all.isSampled)
        #expect(all.traceparent.hasSuffix("-ff"))
    }

    @Test(
        "rejects malformed values",
        arguments: [
            "",
            "00",
            // Uppercase hex.
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
            // Wrong field lengths.
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47360-0f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // Missing or wrong separators.
            "004bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736000f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7001",
            // Not hex.
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473z-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bx-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
            "00-4bf92f3577b34da6a3ce929d0e0e473é-00f067aa0ba902b7-01",
            // Version ff is forbidden.
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // All-zero ids.
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // Version 00 has nothing after the flags.
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ",
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-010",
            // A later version's additions must follow a dash.
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01extra",
        ])
    func rejects(_ value: String) {
        #expect(TraceContext(traceparent: value) == nil)
    }

    @Test("a later version is read by its first four fields and re-sent as version 00")
    func futureVersion() throws {
        let extended = try #require(
            TraceContext(traceparent: "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"))
        #expect(extended.traceparent == Self.specExample)
        let exact = try #require(TraceContext(traceparent: "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
        #expect(exact == extended)
        // Only `sampled` is defined across versions.
        let flagged = try #require(TraceContext(traceparent: "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-"))
        #expect(flagged.flags == 0x01)
    }

    @Test("a child keeps the trace id and flags and names the new parent span")
    func child() throws {
        let parent = try #require(TraceContext(traceparent: Self.specExample))
        let child = parent.child(spanID: 0x1234)
        #expect(child.traceIDHex == parent.traceIDHex)
        #expect(child.spanID == 0x1234)
        #expect(child.flags == parent.flags)
        #expect(child.traceparent == "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000001234-01")
    }

    @Test("random contexts have non-zero ids and survive formatting and parsing")
    func random() {
        for _ in 0..<100 {
            let context = TraceContext.random()
            #expect(context.traceIDHex != String(repeating: "0", count: 32))
            #expect(context.spanID != 0)
            #expect(context.isSampled)
            #expect(TraceContext(traceparent: context.traceparent) == context)
        }
        let unsampled = TraceContext.random(sampled: false)
        #expect(!unsampled.isSampled)
        #expect(unsampled.traceparent.hasSuffix("-00"))
        #expect(TraceContext(traceparent: unsampled.traceparent) == unsampled)
    }

    @Test("a generator's zero ids are drawn again")
    func randomSkipsZero() {
        var generator = ScriptedGenerator(values: [0, 0, 0, 5, 0, 9])
        let context = TraceContext.random(using: &generator)
        #expect(context.traceIDHigh == 0)
        #expect(context.traceIDLow == 5)
        #expect(context.spanID == 9)
        #expect(context.traceparent == "00-00000000000000000000000000000005-0000000000000009-01")
        #expect(TraceContext(traceparent: context.traceparent) == context)
    }

    @Test("metadata: the traceparent entry is read; absent or invalid gives nil")
    func metadata() throws {
        #expect(Metadata.isValidKey(TraceContext.metadataKey))
        #expect(Metadata.isValidKey(TraceContext.stateMetadataKey))
        var metadata = Metadata()
        metadata.add("x-other", "1")
        #expect(TraceContext(metadata: metadata) == nil)
        metadata.add(TraceContext.metadataKey, Self.specExample)
        metadata.add(TraceContext.stateMetadataKey, "congo=t61rcWkgMzE")
        let context = try #require(TraceContext(metadata: metadata))
        #expect(context.traceparent == Self.specExample)
        let literal: Metadata = ["traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-xx"]
        #expect(TraceContext(metadata: literal) == nil)
        let options = CallOptions(metadata: [TraceContext.metadataKey: context.child(spanID: 7).traceparent])
        #expect(TraceContext(metadata: options.metadata)?.spanID == 7)
    }
}

/// Returns `values` in order, then non-zero numbers, so that a test cannot loop forever.
private struct ScriptedGenerator: RandomNumberGenerator {
    var values: [UInt64]
    var index = 0

    mutating func next() -> UInt64 {
        defer { index += 1 }
        return index < values.count ? values[index] : UInt64(index)
    }
}
