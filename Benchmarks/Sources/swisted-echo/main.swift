// swisted-echo: the echo server on Swisted, written the way a user would.
//
//   swisted-echo --port N [--host 127.0.0.1]
//
// Prints "listening on PORT" once listening (port 0 = ephemeral), serves until
// SIGINT/SIGTERM (reactor.run(installSignalHandlers: true) returns), exits 0.
import Swisted

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

final class Echo: Protocol {
    override func dataReceived(_ data: Span<UInt8>) throws { transport!.write(data) }
}

/// Writes to stderr (the C `stderr` global is not usable in Swift 6 mode).
func eprint(_ message: String) {
    var m = message + "\n"
    m.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

func usage() -> Never {
    eprint("usage: swisted-echo --port N [--host 127.0.0.1]")
    exit(2)
}

var host = "127.0.0.1"
var portNumber: Int? = nil
var args = CommandLine.arguments.dropFirst()
while let a = args.popFirst() {
    switch a {
    case "--port": guard let v = args.popFirst(), let p = Int(v) else { usage() }; portNumber = p
    case "--host": guard let v = args.popFirst() else { usage() }; host = v
    default: usage()
    }
}
guard let portNumber else { usage() }

let reactor = Reactor()
// The same listen backlog as uv-echo and nio-echo (Swisted defaults to Twisted's 50,
// which overflows when thousands of clients connect at once).
let port = try reactor.listenTCP(portNumber, Factory.forProtocol(Echo.self), backlog: 4096, interface: host)
let bound = port.getHost() as! IPv4Address
print("listening on \(bound.port)")
fflush(nil)
try reactor.run(installSignalHandlers: true)
exit(0)
