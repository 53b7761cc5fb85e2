// get-poetry: downloads poems from several servers at once.
// swift run get-poetry [HOST:]PORT ...
import ArgumentParser
import Glibc
import PoetryClient
import Swisted

@main
struct GetPoetry: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get-poetry",
        abstract: "Get poetry from one or more poetry servers, all at once.",
        discussion: "An address is [HOST:]PORT; HOST defaults to 127.0.0.1. Write IPv6 literals in brackets: [::1]:10001."
    )

    @Argument(help: "The servers, as [HOST:]PORT.") var addresses: [String]
    @Option(help: "Write each poem, byte for byte, to DIR/poem-N.txt.") var output: String?
    @Flag(name: .customLong("print"), help: "Print the poems after the summary.") var printPoems = false

    func run() throws {
        var destinations: [(host: String, port: Int)] = []
        for address in addresses {
            do { destinations.append(try parseAddress(address)) } catch { throw fail("\(error)") }
        }

        let reactor = Reactor()
        let start = reactor.seconds()
        let factory = PoetryClientFactory(poetryCount: destinations.count, reactor: reactor)
        for (host, port) in destinations {
            reactor.connectTCP(host, port, factory)
        }
        try reactor.run()
        let elapsed = reactor.seconds() - start

        print("Got \(destinations.count) poems in \(formatElapsed(elapsed))")
        fflush(nil)

        let poems = factory.poems.sorted { $0.key < $1.key }
        if let output {
            if mkdir(output, 0o755) != 0, errno != EEXIST {
                throw fail("cannot create \(output): \(String(cString: strerror(errno)))", status: 1)
            }
            for (taskNum, poem) in poems {
                try writePoem(poem, to: "\(output)/poem-\(taskNum).txt")
            }
        }
        if printPoems {
            for (_, poem) in poems {
                writeOut(poem)
                if poem.last != UInt8(ascii: "\n") { writeOut(Array("\n".utf8)) }
                writeOut(Array("\n".utf8))
            }
        }
        if factory.failures > 0 { throw ExitCode.failure }
    }
}

/// Writes bytes to standard output, all of them.
func writeOut(_ bytes: [UInt8]) {
    bytes.withUnsafeBytes { buffer in
        var offset = 0
        while offset < buffer.count {
            let written = write(1, buffer.baseAddress! + offset, buffer.count - offset)
            if written < 0 { if errno == EINTR { continue } else { return } }
            offset += written
        }
    }
}

/// Writes a poem to a file, byte for byte.
func writePoem(_ poem: [UInt8], to path: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw fail("cannot write \(path): \(String(cString: strerror(errno)))", status: 1) }
    defer { close(fd) }
    try poem.withUnsafeBytes { buffer in
        var offset = 0
        while offset < buffer.count {
            let written = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                throw fail("cannot write \(path): \(String(cString: strerror(errno)))", status: 1)
            }
            offset += written
        }
    }
}

/// Writes `get-poetry: error: MESSAGE` to standard error; exit status 2 (a usage error) unless told.
func fail(_ message: String, status: Int32 = 2) -> ExitCode {
    let line = "get-poetry: error: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    return ExitCode(status)
}
