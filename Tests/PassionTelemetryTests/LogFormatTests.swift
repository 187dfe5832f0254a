import Foundation
import Logging
import Synchronization
import Testing

@testable import PassionTelemetry

/// The lines a handler wrote, in order.
private final class LineSink: Sendable {
    private let lines = Mutex<[String]>([])

    func append(_ bytes: [UInt8]) {
        lines.withLock { $0.append(String(decoding: bytes, as: UTF8.self)) }
    }

    var all: [String] { lines.withLock { $0 } }
}

private enum Failure: Error {
    case diskFull
}

/// 2026-12-03T07:55:02.123Z, checked against Python's `datetime.fromtimestamp(1796284502, timezone.utc)`.
private let fixedTime: (seconds: Int64, nanoseconds: Int32) = (1_796_284_502, 123_000_000)

private func makeLogger(
    sink: LineSink, label: String = "passion-server", level: Logger.Level = .info,
    provider: Logger.MetadataProvider? = nil
) -> Logger {
    var handler = JSONLogHandler(label: label, metadataProvider: provider, now: { fixedTime }, output: { sink.append($0) })
    handler.logLevel = level
    return Logger(label: label, factory: { _ in handler })
}

/// Parses one written line back, as a log collector would.
private func parse(_ line: String) throws -> [String: Any] {
    #expect(line.hasSuffix("\n"))
    #expect(!line.dropLast().contains("\n"))
    let object = try JSONSerialization.jsonObject(with: Data(line.dropLast().utf8))
    return try #require(object as? [String: Any])
}

@Suite("JSON log lines")
struct LogFormatTests {
    @Test("a line is ts, level, label, message, sorted metadata, then source")
    func exactLine() {
        let sink = LineSink()
        let logger = makeLogger(sink: sink)
        logger.info("server started", metadata: ["port": "8443", "address": "0.0.0.0"], source: "PassionServer")
        let expected =
            #"{"ts":"2026-12-03T07:55:02.123Z","level":"info","label":"passion-server","message":"server started","#
            + #""address":"0.0.0.0","port":"8443","source":"PassionServer"}"# + "\n"
        #expect(sink.all == [expected])
    }

    @Test("timestamps are RFC 3339 UTC with milliseconds, across leap days and the ends of the range")
    func timestamps() {
        let cases: [(seconds: Int64, nanoseconds: Int32, expected: String)] = [
            (0, 0, "1970-01-01T00:00:00.000Z"),
            (951_782_400, 999_999, "2000-02-29T00:00:00.000Z"),
            (1_709_208_059, 999_999_999, "2024-02-29T12:00:59.999Z"),
            (1_796_284_502, 123_000_000, "2026-12-03T07:55:02.123Z"),
            (253_402_300_799, 0, "9999-12-31T23:59:59.000Z"),
            // Out of range: clamped, still a valid RFC 3339 time.
            (-5, -1, "1970-01-01T00:00:00.000Z"),
            (253_402_300_800, 1_500_000_000, "9999-12-31T23:59:59.999Z"),
        ]
        for testCase in cases {
            var buffer: [UInt8] = []
            JSONLogHandler.appendTimestamp(seconds: testCase.seconds, nanoseconds: testCase.nanoseconds, to: &buffer)
            #expect(String(decoding: buffer, as: UTF8.self) == testCase.expected)
        }
    }

    @Test("metadata merges handler, provider, then the call's, the later winning, in sorted key order")
    func metadataMerge() {
        let sink = LineSink()
        let provider = Logger.MetadataProvider { ["c": "provider", "shared": "provider", "both": "provider"] }
        var logger = makeLogger(sink: sink, provider: provider)
        logger[metadataKey: "b"] = "handler"
        logger[metadataKey: "shared"] = "handler"
        logger.info("merged", metadata: ["a": "call", "both": "call"], source: "tests")
        let expected =
            #"{"ts":"2026-12-03T07:55:02.123Z","level":"info","label":"passion-server","message":"merged","#
            + #""a":"call","b":"handler","both":"call","c":"provider","shared":"provider","source":"tests"}"# + "\n"
        #expect(sink.all == [expected])
    }

    @Test("metadata keys equal to the line's own keys are renamed, never duplicated")
    func reservedKeys() {
        let sink = LineSink()
        let logger = makeLogger(sink: sink)
        logger.info("real", metadata: ["message": "fake", "_message": "taken", "ts": "then", "source": "elsewhere"], source: "tests")
        let expected =
            #"{"ts":"2026-12-03T07:55:02.123Z","level":"info","label":"passion-server","message":"real","#
            + #""__message":"fake","_message":"taken","_source":"elsewhere","_ts":"then","source":"tests"}"# + "\n"
        #expect(sink.all == [expected])
    }

    @Test("quotes, backslashes, control characters and non-ASCII text come back unchanged from a JSON parser")
    func escaping() throws {
        let awkward = "quote \" backslash \\ newline \n return \r tab \t nul \u{0} bell \u{7} us \u{1F} del \u{7F} é 日本 😀 \u{2028}"
        let sink = LineSink()
        let logger = makeLogger(sink: sink, label: "label \"\n\\")
        logger.info("\(awkward)", metadata: ["key \"\n\u{1}": .string(awkward)], source: "tests")
        let line = try #require(sink.all.first)
        #expect(line.contains(#"nul \u0000 bell \u0007 us \u001f del "#))
        #expect(line.contains(#"quote \" backslash \\ newline \n return \r tab \t"#))
        let object = try parse(line)
        #expect(object["message"] as? String == awkward)
        #expect(object["label"] as? String == "label \"\n\\")
        #expect(object["key \"\n\u{1}"] as? String == awkward)

        var buffer: [UInt8] = []
        JSONLogHandler.appendJSONString("a\"b\\c\nd\u{1}e\u{1F}", to: &buffer)
        #expect(String(decoding: buffer, as: UTF8.self) == #""a\"b\\c\nd\u0001e\u001f""#)
    }

    @Test("arrays and dictionaries are JSON arrays and objects, dictionary keys sorted")
    func nestedValues() throws {
        let sink = LineSink()
        let logger = makeLogger(sink: sink)
        let metadata: Logger.Metadata = [
            "list": .array([.string("a"), .stringConvertible(42), .array([.string("nested")])]),
            "map": .dictionary(["z": .string("1"), "a": .dictionary(["k": .string("v\"")])]),
            "emptyList": .array([]),
            "emptyMap": .dictionary([:]),
        ]
        logger.info("nested", metadata: metadata, source: "tests")
        let line = try #require(sink.all.first)
        #expect(
            line.contains(#""emptyList":[],"emptyMap":{},"list":["a","42",["nested"]],"map":{"a":{"k":"v\""},"z":"1"}"#))
        let object = try parse(line)
        let list = try #require(object["list"] as? [Any])
        #expect(list.count == 3)
        #expect(list.first as? String == "a")
        let map = try #require(object["map"] as? [String: Any])
        let inner = try #require(map["a"] as? [String: Any])
        #expect(inner["k"] as? String == "v\"")
    }

    @Test("an error passed to the logger is written as error.message and error.type")
    func errorFields() throws {
        let sink = LineSink()
        let logger = makeLogger(sink: sink)
        logger.error("write failed", error: Failure.diskFull, source: "tests")
        let line = try #require(sink.all.first)
        let object = try parse(line)
        #expect(object["level"] as? String == "error")
        #expect(object["error.message"] as? String == "diskFull")
        #expect((object["error.type"] as? String)?.hasSuffix("Failure") == true)
    }

    @Test("the handler's level is the logger's: less severe events are not written")
    func levelThroughLogger() throws {
        let sink = LineSink()
        var logger = makeLogger(sink: sink, level: .warning)
        #expect(logger.logLevel == .warning)
        logger.info("dropped")
        logger.warning("kept")
        logger.logLevel = .debug
        logger.debug("now kept")
        logger.trace("still dropped")
        let lines = sink.all
        #expect(lines.count == 2)
        #expect(try lines.map { try parse($0)["message"] as? String } == ["kept", "now kept"])
        let last = try #require(lines.last)
        #expect(try parse(last)["level"] as? String == "debug")
    }

    @Test("the formats are text and json, by those names")
    func formats() {
        #expect(LogFormat.allCases == [.text, .json])
        #expect(LogFormat(rawValue: "json") == .json)
        #expect(LogFormat(rawValue: "JSON") == nil)
    }
}
