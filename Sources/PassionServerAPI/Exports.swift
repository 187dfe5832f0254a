// Serving a service needs its messages and descriptors (PassionAPI) and the server runtime;
// importing PassionServerAPI brings both.
@_exported import PassionAPI
@_exported import PassionRPCServer
