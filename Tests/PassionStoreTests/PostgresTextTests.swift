import Foundation
import PassionStore
import Testing

/// The text forms sent to and read from PostgreSQL, written by hand: checked against what
/// Foundation and `String(format:)` produce.
@Suite("PostgreSQL text forms")
struct PostgresTextTests {
    @Test("a UUID is written lower-case as Foundation writes it, and read back from either case")
    func uuid() throws {
        for _ in 0..<1000 {
            let id = UUID()
            #expect(id.postgresText == id.uuidString.lowercased())
            #expect(try UUID(postgresText: id.postgresText) == id)
            #expect(try UUID(postgresText: id.uuidString) == id)
        }
        #expect(UUID(uuid: (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 255)).postgresText == "00010203-0405-0607-0809-0a0b0c0d0eff")
    }

    @Test("anything but 36 characters of hex with dashes in place is refused", arguments: [
        "", "0", "00010203-0405-0607-0809-0a0b0c0d0ef", "00010203-0405-0607-0809-0a0b0c0d0eff0",
        "000102030-405-0607-0809-0a0b0c0d0eff", "00010203-0405-0607-0809-0a0b0c0d0efg", "00010203x0405-0607-0809-0a0b0c0d0eff",
        "{00010203-0405-0607-0809-0a0b0c0d0e}", "00010203-0405-0607-0809-0a0b0c0d0eé",
    ])
    func badUUID(_ text: String) {
        #expect(throws: PostgresDecodingError.self) { try UUID(postgresText: text) }
    }

    @Test("a timestamp is written as String(format:) wrote it, years 1 to 9999, and read back to the microsecond")
    func timestamp() throws {
        func formatted(_ date: Date) -> String {
            let seconds = date.timeIntervalSince1970
            let whole = floor(seconds)
            var time = time_t(whole)
            var parts = tm()
            gmtime_r(&time, &parts)
            return String(
                format: "%04d-%02d-%02d %02d:%02d:%02d.%06d+00", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
                Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec),
                Int(((seconds - whole) * 1_000_000).rounded()))
        }
        let instants = [-62_135_596_800, -1, 0, 0.5, 1_764_547_200.123456, 253_402_300_799] + (0..<500).map { _ in
            Double.random(in: -62_135_596_800 ..< 253_402_300_799).rounded(.down) + Double(Int.random(in: 0..<1_000_000)) / 1e6
        }
        for seconds in instants {
            let date = Date(timeIntervalSince1970: seconds)
            guard (seconds - floor(seconds)) * 1_000_000 < 999_999.4 else { continue }
            #expect(date.postgresText == formatted(date))
            #expect(abs(try Date(postgresText: date.postgresText).timeIntervalSince(date)) < 0.000_001)
        }
        #expect(Date(timeIntervalSince1970: 0).postgresText == "1970-01-01 00:00:00.000000+00")
        #expect(Date(timeIntervalSince1970: -62_135_596_801).postgresText == "-infinity")
        #expect(Date(timeIntervalSince1970: 253_402_300_800).postgresText == "infinity")
        #expect(Date(timeIntervalSince1970: .infinity).postgresText == "infinity")
        #expect(Date(timeIntervalSince1970: -.infinity).postgresText == "-infinity")
        #expect(Date(timeIntervalSince1970: .nan).postgresText == "-infinity")
    }

    @Test("a fraction that rounds up to a whole second carries into the seconds, never seven digits")
    func carry() {
        #expect(Date(timeIntervalSince1970: 59.999_999_7).postgresText == "1970-01-01 00:01:00.000000+00")
        #expect(Date(timeIntervalSince1970: 253_402_300_799.999_999_9).postgresText == "infinity")
    }

    @Test("a calendar day is written zero-padded")
    func localDate() throws {
        #expect(LocalDate(year: 7, month: 3, day: 9).postgresText == "0007-03-09")
        #expect(LocalDate(year: 2026, month: 12, day: 31).postgresText == "2026-12-31")
        // Every edge of the direct path and the ways around it: year 0 and 9999, five digits,
        // before year 0, and fields out of a calendar's range as they are.
        #expect(LocalDate(year: 0, month: 1, day: 1).description == "0000-01-01")
        #expect(LocalDate(year: 9999, month: 12, day: 31).description == "9999-12-31")
        #expect(LocalDate(year: 12026, month: 1, day: 31).description == "12026-01-31")
        #expect(LocalDate(year: -44, month: 3, day: 15).description == "-0044-03-15")
        #expect(LocalDate(year: 2026, month: 13, day: 100).description == "2026-13-100")
        #expect(try LocalDate(postgresText: "2026-12-03") == LocalDate(year: 2026, month: 12, day: 3))
        #expect(try LocalDate(postgresText: "12026-01-31") == LocalDate(year: 12026, month: 1, day: 31))
        for bad in ["2026-13-01", "2026-00-10", "2026-01-32", "2026-1x-01", "2026/01/01", "", "2026-01"] {
            #expect(throws: PostgresDecodingError.self, "\(bad)") { try LocalDate(postgresText: bad) }
        }
    }
}
