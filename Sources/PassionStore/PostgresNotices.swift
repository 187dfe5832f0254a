import CLibPQ
import Logging

/// Where PostgreSQL's notices and warnings go: libpq's default prints them raw on standard
/// error, which broke `--log-format json` (a bare `WARNING:  …` line among the JSON) and
/// escaped `--log-level`. They become log lines of `passion-server.postgres`: warnings at
/// warning, notices (`relation … already exists, skipping`) at debug.
enum PostgresNotices {
    /// Made on first use, after the process bootstrapped its logging.
    static let logger = Logger(label: "passion-server.postgres")

    static func install(on connection: OpaquePointer) {
        PQsetNoticeProcessor(connection, { _, message in
            guard let message else { return }
            let text = String(cString: message)
            let trimmed = String(text.reversed().drop { $0 == "\n" || $0 == " " }.reversed())
            if trimmed.hasPrefix("WARNING") {
                PostgresNotices.logger.warning("\(trimmed)")
            } else {
                PostgresNotices.logger.debug("\(trimmed)")
            }
        }, nil)
    }
}
