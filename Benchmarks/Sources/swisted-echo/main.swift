// swisted-echo: the echo server on Swisted, written the way a user would.
//
//   swisted-echo --port N [--host 127.0.0.1]
//
// Prints "listening on PORT" once listening (port 0 = ephemeral), serves until
// SIGINT/SIGTERM (reactor.run(installSignalHandlers: true) returns), exits 0.
import Swisted

import EchoServerCommon
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

final class Echo: Protocol {
    override func dataReceived(_ data: Span<UInt8>) throws { transport!.write(data) }
}

let arguments = ServerArguments.parse(program: "swisted-echo")
let host = arguments.host
let portNumber = arguments.port

let reactor = Reactor()
// The same listen backlog as uv-echo and nio-echo (Swisted defaults to Twisted's 50,
// which overflows when thousands of clients connect at once).
let port = try reactor.listenTCP(portNumber, Factory.forProtocol(Echo.self), backlog: 4096, interface: host)
let bound = port.getHost() as! IPv4Address
print("listening on \(bound.port)")
fflush(nil)
try reactor.run(installSignalHandlers: true)
exit(0)
