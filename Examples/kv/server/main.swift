// swisted-kv: the key-value server (Examples/kv/KeyValue) under a
// swift-service-lifecycle ServiceGroup: SIGTERM or SIGINT stop it gracefully
// (stop accepting, tell clients, give them --grace seconds, close the rest).
//   swift run swisted-kv --port 7000
import ArgumentParser
import Glibc
import KeyValue
import Logging
import ServiceLifecycle
import Swisted
import SwistedServiceLifecycle

@main
struct KeyValueServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swisted-kv",
        abstract: "A line-protocol key-value server: an actor on the reactor's executor, run by a ServiceGroup."
    )

    @Option(help: "The port to listen on (0: a free port).") var port = 7000
    @Option(help: "The interface to listen on.") var iface = "127.0.0.1"
    @Option(help: "Seconds open connections get to finish on SIGTERM/SIGINT.") var grace = 5.0

    func run() async throws {
        let logger = Logger(label: "swisted-kv")
        let reactor = Reactor()
        let store = KeyValueStore(reactor: reactor)
        let listening: ListeningPort
        do {
            listening = try reactor.listenTCP(port, KeyValueFactory(store: store), interface: iface)
        } catch {
            throw ValidationError("cannot listen on \(iface):\(port): \(error)")
        }
        print("swisted-kv: listening on port \((listening.getHost() as! any IPAddress).port)")
        fflush(nil)  // a script waiting for the port reads it now
        // Runs on the reactor thread as it shuts down, so it may enter the actor synchronously.
        reactor.addSystemEventTrigger(.after, .shutdown) {
            let (served, keys) = store.assumeIsolated { ($0.commandsServed, $0.count) }
            print("swisted-kv: stopped; commands served: \(served), keys held: \(keys)")
            fflush(nil)
        }
        let service = ReactorService(reactor: reactor, gracePeriod: .milliseconds(Int64(grace * 1000)), logger: logger)
        let group = ServiceGroup(services: [service], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await group.run()
    }
}
