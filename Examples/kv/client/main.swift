// swisted-kv-client: sends each argument as one command to a swisted-kv
// server and prints the replies; written with AsyncConnection.
//   swift run swisted-kv-client --port 7000 "SET greeting hello" "GET greeting"
import ArgumentParser
import Glibc
import KeyValue
import Swisted

@main
struct KeyValueClientCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swisted-kv-client",
        abstract: "Send commands to a swisted-kv server and print its replies."
    )

    @Option(help: "The server's port.") var port = 7000
    @Option(help: "The server's host.") var host = "127.0.0.1"
    @Argument(help: "Commands, one per argument: SET key value, GET key, DEL key, COUNT, QUIT.") var commands: [String]

    func run() async throws {
        let reactor = Reactor()
        let background = try reactor.runInBackground()
        do {
            var client = try await KeyValueClient.connect(reactor, host: host, port: port)
            for command in commands {
                guard let reply = try await client.send(command) else {
                    print("(the server closed the connection)")
                    break
                }
                print(reply)
            }
            await client.connection.close()
        } catch {
            await background.stop()
            var message = "swisted-kv-client: error: \(host):\(port): \(error)\n"
            message.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
            throw ExitCode(1)
        }
        await background.stop()
    }
}
