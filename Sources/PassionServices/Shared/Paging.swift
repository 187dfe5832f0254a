import Foundation
import PassionServerAPI
import PassionIdentity
import PassionRPCServer
import PassionStore
import PassionTLS
import SwiftProtobuf

/// Opaque page tokens: base64url of the keyset position, so clients cannot depend on its shape.
enum PageToken {
    static func encode(_ parts: [String]) -> String {
        Crypto.base64URL(Array(parts.joined(separator: "|").utf8))
    }

    static func decode(_ token: String, count: Int, field: String = "page_token") throws -> [String]? {
        guard !token.isEmpty else { return nil }
        guard let bytes = Crypto.bytes(base64URL: token), let text = String(validating: bytes, as: UTF8.self) else {
            throw Validate.invalid(field, "is not a token from a previous response")
        }
        let parts = text.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == count else { throw Validate.invalid(field, "is not a token from a previous response") }
        return parts
    }
}

/// Opaque keyset positions for lists ordered by a text sort key and then id. A token names
/// its list's order: keys of one order mean nothing in another.
enum SortKeyToken {
    static func encode(key: String, id: String, order: String = "created") -> String { PageToken.encode([order, key, id]) }

    static func decode(_ token: String, order: String = "created") throws -> (key: String, id: UUID)? {
        guard let parts = try PageToken.decode(token, count: 3) else { return nil }
        guard let id = (try? UUID(postgresText: parts[2])) else { throw Validate.invalid("page_token", "is not a token from a previous response") }
        guard parts[0] == order else {
            throw Validate.invalid("page_token", "belongs to a list in \(parts[0]) order, not \(order): keep the order while paging")
        }
        return (parts[1], id)
    }
}
