// A server needs the shared call types too (RPCError, MethodDescriptor, CallKind, …); importing
// PassionRPCServer brings them.
@_exported import PassionRPC
