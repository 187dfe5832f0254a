import NIOCore

/// Ordered, binary-safe key/value pairs sent with a call, its response headers and trailers.
///
/// Keys are 1–255 bytes of lowercase ASCII letters, digits, `-`, `_` and `.`; values are any
/// bytes. A key may appear more than once. Keys starting with `passion-` are reserved.
public struct Metadata: Sendable, Hashable, Sequence, ExpressibleByDictionaryLiteral {
    /// One key and its value.
    public struct Entry: Sendable, Hashable {
        public var key: String
        /// Text when the bytes are UTF-8, as nearly every value is (credentials, ids, trace
        /// context): readers ask for text, and a value read as bytes cost each call an array on
        /// arrival and a string when read.
        private var storage: Storage

        fileprivate enum Storage: Sendable {
            case text(String)
            case bytes([UInt8])
        }

        public init(key: String, value: [UInt8]) {
            self.key = key
            storage = .bytes(value)
        }

        init(key: String, text: String) {
            self.key = key
            storage = .text(text)
        }

        fileprivate init(key: String, storage: Storage) {
            self.key = key
            self.storage = storage
        }

        /// The value's bytes.
        public var value: [UInt8] {
            get {
                switch storage {
                case .text(let text): Array(text.utf8)
                case .bytes(let bytes): bytes
                }
            }
            set { storage = .bytes(newValue) }
        }

        /// The value as UTF-8 text, or nil if it is not valid UTF-8.
        public var stringValue: String? {
            switch storage {
            case .text(let text): text
            case .bytes(let bytes): String(validating: bytes, as: UTF8.self)
            }
        }

        /// Bytes in the value.
        public var valueCount: Int {
            switch storage {
            case .text(let text): text.utf8.count
            case .bytes(let bytes): bytes.count
            }
        }

        /// The value's bytes, without copying them.
        public func withValueBytes<Result>(_ body: (UnsafeBufferPointer<UInt8>) throws -> Result) rethrows -> Result {
            switch storage {
            case .text(var text): try text.withUTF8(body)
            case .bytes(let bytes): try bytes.withUnsafeBufferPointer(body)
            }
        }

        /// Equal when keys and value bytes are: text compares byte for byte here, not by
        /// Unicode canonical equivalence as `String` would.
        public static func == (lhs: Entry, rhs: Entry) -> Bool {
            lhs.key == rhs.key && lhs.withValueBytes { left in rhs.withValueBytes { right in left.elementsEqual(right) } }
        }

        public func hash(into hasher: inout Hasher) {
            hasher.combine(key)
            withValueBytes { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        }
    }

    public private(set) var entries: [Entry] = []

    public init() {}

    public init(dictionaryLiteral elements: (String, String)...) {
        for (key, value) in elements { add(key, value) }
    }

    public var isEmpty: Bool { entries.isEmpty }
    public var count: Int { entries.count }

    public func makeIterator() -> IndexingIterator<[Entry]> { entries.makeIterator() }

    /// Room for `count` entries, so that reading a block grows the storage once.
    mutating func reserveCapacity(_ count: Int) {
        entries.reserveCapacity(count)
    }

    /// Appends a text value.
    public mutating func add(_ key: String, _ value: String) {
        entries.append(Entry(key: key, text: value))
    }

    /// Appends an entry as it is.
    public mutating func append(_ entry: Entry) {
        entries.append(entry)
    }

    /// Appends a binary value.
    public mutating func add(_ key: String, bytes: [UInt8]) {
        entries.append(Entry(key: key, value: bytes))
    }

    /// Replaces every value of `key` with one text value.
    public mutating func replace(_ key: String, _ value: String) {
        removeAll(key)
        add(key, value)
    }

    public mutating func removeAll(_ key: String) {
        entries.removeAll { $0.key == key }
    }

    /// The first value of `key` as text.
    public subscript(key: String) -> String? {
        entries.first { $0.key == key }?.stringValue
    }

    /// Every value of `key`, in order, as bytes.
    public func values(_ key: String) -> [[UInt8]] {
        entries.filter { $0.key == key }.map(\.value)
    }

    /// Whether `key` is syntactically valid.
    public static func isValidKey(_ key: String) -> Bool {
        let utf8 = key.utf8
        guard (1...255).contains(utf8.count) else { return false }
        return utf8.allSatisfy { byte in
            (0x61...0x7A).contains(byte) || (0x30...0x39).contains(byte)
                || byte == 0x2D || byte == 0x5F || byte == 0x2E
        }
    }

    /// Bytes of the encoded block.
    public var encodedSize: Int {
        entries.reduce(2) { $0 + 3 + $1.key.utf8.count + $1.valueCount }
    }
}

extension ByteBuffer {
    /// Writes a metadata block: `count u16 | (key_len u8 | key | value_len u16 | value)*`.
    /// Invalid keys and over-long values are a bug of the sender's own code, so they trap in
    /// `Metadata.validate()` callers rather than here.
    public mutating func writeMetadata(_ metadata: Metadata) {
        writeInteger(UInt16(truncatingIfNeeded: metadata.count))
        for entry in metadata.entries {
            writeInteger(UInt8(truncatingIfNeeded: entry.key.utf8.count))
            writeString(entry.key)
            writeInteger(UInt16(truncatingIfNeeded: entry.valueCount))
            entry.withValueBytes { _ = writeBytes($0) }
        }
    }

    /// Reads a metadata block, enforcing `limit` on its encoded size and the key syntax.
    public mutating func readMetadata(limit: Int) throws -> Metadata {
        let start = readerIndex
        guard let count = readInteger(as: UInt16.self) else {
            throw WireError(.malformedFrame, "truncated metadata block")
        }
        var metadata = Metadata()
        // The count is the sender's claim: room for no more entries than the bytes left could
        // hold (3 bytes at least each), so a 2-byte block claiming 65,535 costs nothing.
        metadata.reserveCapacity(min(Int(count), readableBytes / 3))
        for _ in 0..<count {
            guard let keyLength = readInteger(as: UInt8.self),
                let key = readString(length: Int(keyLength)),
                let valueLength = readInteger(as: UInt16.self),
                let value = readMetadataValue(length: Int(valueLength))
            else {
                throw WireError(.malformedFrame, "truncated metadata entry")
            }
            guard readerIndex - start <= limit else {
                throw WireError(.metadataTooLarge, "metadata exceeds \(limit) bytes")
            }
            guard Metadata.isValidKey(key) else {
                throw WireError(.malformedFrame, "invalid metadata key")
            }
            metadata.append(Metadata.Entry(key: key, storage: value))
        }
        return metadata
    }

    /// A value's bytes, as text when they are valid UTF-8: one string instead of an array
    /// now and a string each time the value is read.
    private mutating func readMetadataValue(length: Int) -> Metadata.Entry.Storage? {
        guard length <= readableBytes else { return nil }
        let text = withUnsafeReadableBytes { raw in
            String(validating: raw.prefix(length).assumingMemoryBound(to: UInt8.self), as: UTF8.self)
        }
        if let text {
            moveReaderIndex(forwardBy: length)
            return .text(text)
        }
        return readBytes(length: length).map { .bytes($0) }
    }
}

extension Metadata {
    /// The entries with valid keys and values, in order, up to `limit` encoded bytes; for
    /// metadata a sender builds from sources it does not control (handler trailers).
    public func sanitized(limit: Int) -> Metadata {
        var result = Metadata()
        var size = 2
        for entry in entries where Metadata.isValidKey(entry.key) && entry.valueCount <= Int(UInt16.max) {
            let entrySize = 3 + entry.key.utf8.count + entry.valueCount
            guard size + entrySize <= limit, result.count < Int(UInt16.max) else { break }
            size += entrySize
            result.entries.append(entry)
        }
        return result
    }

    /// Checks keys and value sizes before sending; the error names the first bad key.
    public func validate(limit: Int) throws {
        for entry in entries {
            guard Metadata.isValidKey(entry.key) else {
                throw WireError(.malformedFrame, "invalid metadata key \"\(entry.key)\"")
            }
            guard entry.valueCount <= Int(UInt16.max) else {
                throw WireError(.metadataTooLarge, "metadata value of \"\(entry.key)\" too long")
            }
        }
        guard encodedSize <= limit, count <= Int(UInt16.max) else {
            throw WireError(.metadataTooLarge, "metadata of \(encodedSize) bytes exceeds \(limit)")
        }
    }
}
