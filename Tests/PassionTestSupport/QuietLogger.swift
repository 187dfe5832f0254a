import Logging

extension Logger {
    /// A logger that writes only critical lines: what servers and services under test log with,
    /// so the test output shows the tests' own reports.
    public static func quiet(_ label: String) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = .critical
        return logger
    }
}
