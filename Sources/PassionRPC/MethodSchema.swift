import SwiftProtobuf

/// A method with its message types, so tools can convert JSON to requests and responses.
public struct MethodSchema: Sendable {
    public let descriptor: MethodDescriptor
    public let requestType: any SwiftProtobuf.Message.Type
    public let responseType: any SwiftProtobuf.Message.Type

    public init(
        _ descriptor: MethodDescriptor, request: any SwiftProtobuf.Message.Type,
        response: any SwiftProtobuf.Message.Type
    ) {
        self.descriptor = descriptor
        self.requestType = request
        self.responseType = response
    }
}
