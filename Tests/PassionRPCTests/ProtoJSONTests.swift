import Foundation
import PassionServerAPI
import PassionProtoJSON
import SwiftProtobuf
import Testing

/// JSON ↔ protobuf through descriptors alone (what `passion call` does with a server's schema),
/// checked against SwiftProtobuf's own mapping of the compiled types.
@Suite("Protobuf JSON from descriptors")
struct ProtoJSONTests {
    static let index = DescriptorIndex(files: PassionCatalog.fileDescriptors.values.compactMap {
        try? Google_Protobuf_FileDescriptorProto(serializedBytes: $0)
    })
    static let encoder = ProtoJSONEncoder(index: index)
    static let decoder = ProtoJSONDecoder(index: index)

    /// Encodes with the descriptors, decodes with the compiled type, and back.
    static func roundTrip<M: SwiftProtobuf.Message & Equatable>(_ json: String, as type: M.Type) throws {
        let name = M.protoMessageName
        let bytes = try encoder.encode(json, as: name)
        let ours = try M(serializedBytes: bytes)
        let theirs = try M(jsonString: json)
        #expect(ours == theirs, "\(name): \(json)")
        #expect(try decoder.decode(try theirs.serializedBytes() as [UInt8], as: name) == (try theirs.jsonString()), "\(name)")
    }

    @Test("scalars, bytes, enums, oneofs, maps, repeated, nested messages, 64-bit ids and well-known types agree with SwiftProtobuf")
    func agreesWithSwiftProtobuf() throws {
        try Self.roundTrip(#"{"payload": "aGVsbG8=", "responseSize": 7, "compressResponse": true}"#, as: EchoRequest.self)
        try Self.roundTrip(#"{"userId": "u", "points": -800, "reason": "penalty", "idempotencyKey": "k"}"#, as: AwardXPRequest.self)
        try Self.roundTrip(
            #"{"identity": {"provider": "AZURE", "providerUserId": "s", "email": "a@b.c", "emailVerified": true}}"#,
            as: SignInRequest.self)
        try Self.roundTrip(#"{"code": 9, "fields": {"balance": "40", "b": ""}, "trailingMetadata": {"x-a": "1"}}"#, as: FailRequest.self)
        try Self.roundTrip(
            #"{"progress": {"totalXp": "9007199254740993", "level": 3}, "ledgerId": "12", "events": [{"id": "1", "type": "LEVEL_UP", "createdAt": "2026-12-02T10:00:00.250Z"}, {"id": "2"}], "replayed": true}"#,
            as: RewardResult.self)
        try Self.roundTrip(
            #"{"goal": {"id": "g", "metadata": {"a": 1.5, "b": [true, null, "x"], "c": {"d": {}}}}, "updateMask": "title,targetDate"}"#,
            as: UpdateGoalRequest.self)
        try Self.roundTrip(#"{"events": [{"createdAt": "1969-07-20T20:17:40Z"}]}"#, as: RewardResult.self)
    }

    @Test("proto (snake_case) names are accepted for fields and field-mask paths, and sent as the proto names")
    func snakeCase() throws {
        let bytes = try Self.encoder.encode(#"{"goal": {"id": "g", "target_date": "2026-12-31"}, "update_mask": "target_date,title"}"#, as: "passion.v1.UpdateGoalRequest")
        let request = try UpdateGoalRequest(serializedBytes: bytes)
        #expect(request.updateMask.paths == ["target_date", "title"])
        #expect(request.goal.id == "g")
    }

    @Test("every mismatch names the field (with its path) and the JSON it expected")
    func errors() {
        func problem(_ json: String, _ type: String) -> String {
            do {
                _ = try Self.encoder.encode(json, as: type)
                return "accepted"
            } catch {
                return error.description
            }
        }
        #expect(problem(#"{"points": "ten"}"#, "passion.v1.AwardXPRequest") == "field points: expected an integer (int32), got a string")
        #expect(problem(#"{"points": 2147483648}"#, "passion.v1.AwardXPRequest") == "field points: expected an integer (int32), got a number")
        #expect(problem(#"{"identity": {"emailVerified": "yes"}}"#, "passion.v1.SignInRequest") == "field identity.email_verified: expected true or false, got a string")
        #expect(problem(#"{"identity": {"provider": "FACEBOOK"}}"#, "passion.v1.SignInRequest").hasPrefix("field identity.provider: FACEBOOK is not a value of passion.v1.IdentityProvider (IDENTITY_PROVIDER_UNSPECIFIED, GOOGLE, AZURE)"))
        #expect(problem(#"{"pints": 5}"#, "passion.v1.AwardXPRequest") == "AwardXPRequest has no field pints")
        #expect(problem(#"{"identity": {}, "idToken": {}}"#, "passion.v1.SignInRequest").contains("one of a oneof"))
        #expect(problem(#"{"events": [{"createdAt": "yesterday"}]}"#, "passion.v1.RewardResult").hasPrefix("field events[0].created_at: expected an RFC 3339 time"))
        #expect(problem(#"{"ledgerId": 9007199254740993}"#, "passion.v1.RewardResult").contains("expected an integer or a string of one (int64)"))
        #expect(problem(#"{"payload": "not base64!"}"#, "passion.v1.EchoRequest") == "field payload: expected a base64 string (bytes), got a string")
        #expect(problem(#"{"a": 1, "a": 2}"#, "passion.v1.EchoRequest").hasPrefix("not valid JSON"))
        #expect(problem(#"[1]"#, "passion.v1.EchoRequest") == "expected an object (EchoRequest), got a list")
    }

    @Test("--emit-defaults prints every field at its default except unset messages and oneof members")
    func emitDefaults() throws {
        var decoder = Self.decoder
        decoder.emitDefaults = true
        #expect(try decoder.decode([], as: "passion.v1.EchoRequest") == #"{"payload":"","responseSize":0,"compressResponse":false}"#)
        let result = try decoder.decode([], as: "passion.v1.RewardResult")
        #expect(result == #"{"ledgerId":"0","events":[],"replayed":false}"#)
        #expect(try decoder.decode([], as: "passion.v1.FailRequest").contains(#""fields":{}"#))
    }

    @Test("bytes that are not the message's protobuf are refused, not printed half")
    func malformedBytes() {
        #expect(throws: ProtoJSONError.self) { try Self.decoder.decode([0x0A, 0x05, 0x61], as: "passion.v1.EchoResponse") }
        #expect(throws: ProtoJSONError.self) { try Self.decoder.decode([0x08, 0x01], as: "passion.v1.EchoResponse") }
    }

    @Test("hostile bytes and values are refused with an error, never a trap: far timestamps, deep nesting, impossible dates")
    func hostileInput() throws {
        // seconds = Int64.min: formatting it would overflow.
        #expect(throws: ProtoJSONError.self) {
            try Self.decoder.decode([0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01], as: "google.protobuf.Timestamp")
        }
        // A Value holding a list holding a list … 300 deep.
        var nested: [UInt8] = [0x08, 0x00]  // null_value
        for _ in 0..<300 {
            let list: [UInt8] = [0x0A] + Self.varint(nested.count) + nested  // ListValue.values
            nested = [0x32] + Self.varint(list.count) + list  // Value.list_value
        }
        #expect(throws: ProtoJSONError.self) { try Self.decoder.decode(nested, as: "google.protobuf.Value") }
        #expect(throws: ProtoJSONError.self) { try Self.encoder.encode(#""2026-02-31T00:00:00Z""#, as: "google.protobuf.Timestamp") }
        #expect(throws: ProtoJSONError.self) { try Self.encoder.encode(#""+5s""#, as: "google.protobuf.Duration") }
        #expect(try Self.decoder.decode(try Self.encoder.encode(#""-1.5s""#, as: "google.protobuf.Duration"), as: "google.protobuf.Duration") == #""-1.500s""#)
        #expect(throws: ProtoJSONError.self) { try Self.encoder.encode(#"{"userId": "a", "user_id": "b"}"#, as: "passion.v1.AwardXPRequest") }
    }

    @Test("a message field that comes twice on the wire is merged, as protobuf parsers do")
    func mergesRepeatedMessageField() throws {
        let first = try RewardResult.with { $0.progress.totalXp = 5 }.serializedBytes() as [UInt8]
        let second = try RewardResult.with { $0.progress.level = 3 }.serializedBytes() as [UInt8]
        let json = try Self.decoder.decode(first + second, as: "passion.v1.RewardResult")
        #expect(json == (try RewardResult(serializedBytes: first + second).jsonString()))
        #expect(json.contains(#""totalXp":"5""#) && json.contains(#""level":3"#))
    }

    @Test("a oneof whose members both come on the wire prints only the one set last, as protobuf parsers keep it")
    func oneofLastWins() throws {
        let heartbeat = try SubscribeResponse.with { $0.heartbeat.lastEventID = 7 }.serializedBytes() as [UInt8]
        let event = try SubscribeResponse.with { $0.event.id = 9 }.serializedBytes() as [UInt8]
        // Switching members clears the first: event A, a heartbeat, event B is B alone, not A merged with B.
        let otherEvent = try SubscribeResponse.with { $0.event.reason = "earlier" }.serializedBytes() as [UInt8]
        for bytes in [heartbeat + event, event + heartbeat, otherEvent + heartbeat + event, otherEvent + event] {
            let json = try Self.decoder.decode(bytes, as: "passion.v1.SubscribeResponse")
            #expect(json == (try SubscribeResponse(serializedBytes: bytes).jsonString()), "\(json)")
        }
        #expect(try Self.decoder.decode(heartbeat + event, as: "passion.v1.SubscribeResponse").contains(#""event""#))
        #expect(try !Self.decoder.decode(heartbeat + event, as: "passion.v1.SubscribeResponse").contains(#""heartbeat""#))
        // google.protobuf.Value is a oneof too: a string then a number is the number.
        let value: [UInt8] = [0x1A, 0x01, 0x61] + [0x11] + Array(repeating: 0, count: 6) + [0xF0, 0x3F]  // string_value "a", number_value 1.0
        #expect(try Self.decoder.decode(value, as: "google.protobuf.Value") == "1")
    }

    @Test("a map key that comes twice on the wire is printed once, with the last value, never as a repeated JSON key")
    func mapKeyLastWins() throws {
        let first = try FailRequest.with { $0.fields = ["a": "1", "b": "2"] }.serializedBytes() as [UInt8]
        let second = try FailRequest.with { $0.fields = ["a": "3"] }.serializedBytes() as [UInt8]
        let json = try Self.decoder.decode(first + second, as: "passion.v1.FailRequest")
        let parsed = try FailRequest(jsonString: json)
        #expect(parsed == (try FailRequest(serializedBytes: first + second)), "\(json)")
        #expect(parsed.fields == ["a": "3", "b": "2"])
        #expect(json.components(separatedBy: #""a":"#).count == 2, "\(json)")
        // google.protobuf.Struct's fields are a map as well.
        let structure = try Google_Protobuf_Struct(fields: ["k": .init(stringValue: "old")]).serializedBytes() as [UInt8]
            + (try Google_Protobuf_Struct(fields: ["k": .init(stringValue: "new")]).serializedBytes() as [UInt8])
        #expect(try Self.decoder.decode(structure, as: "google.protobuf.Struct") == #"{"k":"new"}"#)
    }

    static func varint(_ value: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        var rest = UInt64(value)
        while rest >= 0x80 {
            bytes.append(UInt8(rest & 0x7F) | 0x80)
            rest >>= 7
        }
        return bytes + [UInt8(rest)]
    }
}
