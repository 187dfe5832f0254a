import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Runs a command to completion with posix_spawn and waitpid, its output going to a file.
///
/// Foundation's `Process` learns of exits through a dispatch source, which never fires when the
/// threads dispatch would use are all blocked (as they can be under a busy test run); waitpid
/// needs no other thread. Output goes to a file, never a pipe: a postmaster started by pg_ctl
/// inherits it and would hold a pipe open forever.
///
/// A child gets only its standard input, output and error. NIO opens its sockets without
/// close-on-exec, so a child would otherwise hold a copy of every connection open at that moment
/// and a connection the server closed stayed open for as long as the child lived (a postmaster
/// for the server's lifetime): the peer never saw the close.
public enum Subprocess {
    /// Runs `executable` and returns its exit status (128 + signal when killed).
    public static func run(_ executable: String, _ arguments: [String], outputPath: String) throws -> Int32 {
        try wait(spawn(executable, arguments, outputPath: outputPath), executable: executable)
    }

    /// Starts `executable` with stdin from `inputPath`, stdout to `outputPath` and stderr to
    /// `errorPath` (or stdout), in `directory` when given; returns its pid for `wait`.
    public static func spawn(
        _ executable: String, _ arguments: [String], inputPath: String = "/dev/null", outputPath: String,
        errorPath: String? = nil, directory: String? = nil
    ) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, inputPath, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        if let errorPath {
            posix_spawn_file_actions_addopen(&actions, 2, errorPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        } else {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        closeInherited(&actions)
        // posix_spawn_file_actions_addchdir_np does not import: a shell changes directory and
        // execs, the arguments passed as arguments, never spliced into the script.
        let command = directory.map { ["/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", $0, executable] } ?? [executable]
        let argv: [UnsafeMutablePointer<CChar>?] = (command + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        // Threads of a Swift process block signals; a child must start with none blocked, or a
        // tool that relies on SIGALRM or SIGTERM (pgbench -T, postgres) never sees them.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, command[0], &actions, &attributes, argv, environ)
        guard spawned == 0 else {
            throw EmbeddedPostgresError("cannot run \(executable): \(String(cString: strerror(spawned)))")
        }
        return pid
    }

    /// glibc 2.34+ has `posix_spawn_file_actions_addclosefrom_np`, declared only under
    /// _GNU_SOURCE, which Swift's Glibc module does not define: it is looked up by name.
    private typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private static let closeFrom: CloseFrom? = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np").map {
        unsafeBitCast($0, to: CloseFrom.self)
    }

    private static func closeInherited(_ actions: inout posix_spawn_file_actions_t) {
        guard let closeFrom else { return }  // an older libc: children inherit descriptors, as before
        _ = closeFrom(&actions, 3)
    }

    /// Waits for a spawned process; its exit status (128 + signal when killed).
    public static func wait(_ pid: pid_t, executable: String = "child") throws -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 {
            guard errno == EINTR else { throw EmbeddedPostgresError("waitpid failed for \(executable)") }
        }
        // WIFEXITED / WEXITSTATUS are macros: the exit code is bits 8–15 when the low 7 bits are 0.
        return status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    }
}
