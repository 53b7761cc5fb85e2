// What every Swift echo server of the benchmark shares: its command line
// (`NAME --port N [--host 127.0.0.1]`) and writing to stderr.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Writes a line to stderr (the C `stderr` global is not usable in Swift 6 mode).
public func eprint(_ message: String) {
    var m = message + "\n"
    m.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

/// An echo server's command line: `--port N` (0: ephemeral) and `--host`
/// (default 127.0.0.1).
public struct ServerArguments: Sendable {
    public var host = "127.0.0.1"
    public var port: Int

    /// Parses `CommandLine.arguments`; on anything else prints the usage of
    /// `program` and exits with status 2.
    public static func parse(program: String) -> ServerArguments {
        func usage() -> Never {
            eprint("usage: \(program) --port N [--host 127.0.0.1]")
            exit(2)
        }
        var host = "127.0.0.1"
        var port: Int? = nil
        var args = CommandLine.arguments.dropFirst()
        while let a = args.popFirst() {
            switch a {
            case "--port": guard let v = args.popFirst(), let p = Int(v) else { usage() }; port = p
            case "--host": guard let v = args.popFirst() else { usage() }; host = v
            default: usage()
            }
        }
        guard let port else { usage() }
        return ServerArguments(host: host, port: port)
    }
}
