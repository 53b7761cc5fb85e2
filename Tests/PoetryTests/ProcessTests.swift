// poetry-server and get-poetry as real processes on loopback: what a user runs.
import Foundation
import Testing

/// The directory holding the built executables: the test bundle's own (`.build/debug`).
private let binDirectory: URL = {
    let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return URL(fileURLWithPath: me).deletingLastPathComponent()
}()

private func executable(_ name: String) throws -> URL {
    let url = binDirectory.appendingPathComponent(name)
    guard FileManager.default.isExecutableFile(atPath: url.path) else {
        throw ProcessTestError("\(url.path) is not built; run `swift build` (or `make test`) first")
    }
    return url
}

private struct ProcessTestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A temporary directory, removed by `remove()`.
private struct TempDir {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("poetry-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> URL { url.appendingPathComponent(name) }
    func remove() { try? FileManager.default.removeItem(at: url) }
}

/// A finished process: its exit status and output.
private struct Finished {
    let status: Int32
    let stdout: String
    let stderr: String
    var lines: [String] { stdout.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init) }
    var stderrLines: [String] { stderr.split(separator: "\n").map(String.init) }
}

/// Runs `name` with `arguments` to the end (killed after `limit` seconds).
private func run(_ name: String, _ arguments: [String], limit: Double = 10) throws -> Finished {
    let temp = try TempDir()
    defer { temp.remove() }
    _ = FileManager.default.createFile(atPath: temp.file("out").path, contents: nil)
    _ = FileManager.default.createFile(atPath: temp.file("err").path, contents: nil)
    let process = Process()
    process.executableURL = try executable(name)
    process.arguments = arguments
    process.standardOutput = try FileHandle(forWritingTo: temp.file("out"))
    process.standardError = try FileHandle(forWritingTo: temp.file("err"))
    process.standardInput = FileHandle.nullDevice
    let done = DispatchSemaphore(value: 0)
    process.terminationHandler = { _ in done.signal() }
    try process.run()
    if done.wait(timeout: .now() + limit) == .timedOut {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        throw ProcessTestError("\(name) \(arguments) still running after \(limit) s")
    }
    process.waitUntilExit()
    return Finished(status: process.terminationStatus,
                    stdout: try String(contentsOf: temp.file("out"), encoding: .utf8),
                    stderr: try String(contentsOf: temp.file("err"), encoding: .utf8))
}

/// A running poetry-server; `stop()` ends it (call it on every path: `defer`).
private final class Server {
    let process = Process()
    let temp: TempDir
    private(set) var port = 0
    private(set) var firstLine = ""

    init(_ arguments: [String]) throws {
        temp = try TempDir()
        _ = FileManager.default.createFile(atPath: temp.file("out").path, contents: nil)
        process.executableURL = try executable("poetry-server")
        process.arguments = ["--port", "0"] + arguments
        process.standardOutput = try FileHandle(forWritingTo: temp.file("out"))
        process.standardError = try FileHandle(forWritingTo: temp.file("out"))
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Wait for "Serving FILE on port N." (the server flushes it at once).
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            let text = (try? String(contentsOf: temp.file("out"), encoding: .utf8)) ?? ""
            if let line = text.split(separator: "\n").first, text.contains("\n") {
                firstLine = String(line)
                if let match = firstLine.wholeMatch(of: /Serving .* on port (\d+)\./) { port = Int(match.1)! }
                break
            }
            if !process.isRunning { break }
            usleep(2_000)
        }
        guard port != 0 else {
            stop()
            throw ProcessTestError("poetry-server \(arguments) did not start: \(log)")
        }
    }

    var log: String { (try? String(contentsOf: temp.file("out"), encoding: .utf8)) ?? "" }

    /// Kills the server (SIGKILL), waits for it, cleans up. Idempotent.
    ///
    /// Not SIGTERM: a child spawned by Foundation's `Process` from a test
    /// thread inherits that (libdispatch) thread's signal mask, which blocks
    /// SIGTERM and SIGINT, so they would stay pending for ever.
    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        temp.remove()
    }
}

/// A loopback port where nothing listens: a server's, after it stopped.
private func deadPort() throws -> Int {
    let server = try Server([Poems.path("loopback.txt")])
    server.stop()
    return server.port
}

private var chunkPattern: Regex<(Substring, Substring, Substring, Substring)> { /Task (\d+): got (\d+) bytes of poetry from IPv4Address\(type='TCP', host='127\.0\.0\.1', port=(\d+)\)/ }
private var summaryPattern: Regex<(Substring, Substring, Substring?)> { /Got (\d+) poems in \d+:\d\d:\d\d(\.\d{6})?/ }

@Suite("poetry-server and get-poetry as processes", .serialized)
struct PoetryProcessTests {
    @Test("a slow and a fast server: the lines, the byte counts, the files, exit 0")
    func slowAndFast() throws {
        let cafe = try Poems.bytes("cafe-at-midnight.txt")
        let long = try Poems.bytes("night-shift.txt")
        let slow = try Server(["--delay", "0.04", "--num-bytes", "50", Poems.path("cafe-at-midnight.txt")])
        defer { slow.stop() }
        let fast = try Server(["--delay", "0", Poems.path("night-shift.txt")])
        defer { fast.stop() }
        #expect(slow.firstLine == "Serving \(Poems.path("cafe-at-midnight.txt")) on port \(slow.port).")
        let out = try TempDir()
        defer { out.remove() }

        let result = try run("get-poetry", [String(slow.port), "127.0.0.1:\(fast.port)", "--output", out.url.path])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(result.stderr.isEmpty)

        var taskOfPort: [Int: Int] = [:]
        var bytesOfTask: [Int: Int] = [:]
        var chunksOfTask: [Int: Int] = [:]
        var index = 0
        while index < result.lines.count, let match = result.lines[index].wholeMatch(of: chunkPattern) {
            let (task, bytes, port) = (Int(match.1)!, Int(match.2)!, Int(match.3)!)
            taskOfPort[port] = task
            bytesOfTask[task, default: 0] += bytes
            chunksOfTask[task, default: 0] += 1
            index += 1
        }
        let slowTask = try #require(taskOfPort[slow.port])
        let fastTask = try #require(taskOfPort[fast.port])
        #expect(Set([slowTask, fastTask]) == [1, 2])
        #expect(bytesOfTask[slowTask] == cafe.count)
        #expect(bytesOfTask[fastTask] == long.count)
        // 577 bytes, 50 every 40 ms: 12 writes. Two of them can reach the
        // client in one read when a loaded machine deschedules it, so only
        // "several pieces" is certain, not the exact count.
        #expect(chunksOfTask[slowTask]! >= 3)
        #expect(chunksOfTask[fastTask]! >= 2)   // more than one 64 KiB read
        let poems = [slowTask: cafe, fastTask: long]
        #expect(Array(result.lines[index...]) == [
            "Task 1: \(pythonLength(poems[1]!)) characters of poetry",
            "Task 2: \(pythonLength(poems[2]!)) characters of poetry",
        ] + [result.lines.last!])
        #expect(result.lines.last!.wholeMatch(of: summaryPattern)?.1 == "2")

        #expect(try Array(Data(contentsOf: out.file("poem-\(slowTask).txt"))) == cafe)
        #expect(try Array(Data(contentsOf: out.file("poem-\(fastTask).txt"))) == long)

        #expect(slow.log.split(separator: "\n").dropFirst().allSatisfy { $0.hasPrefix("Somebody at IPv4Address(type='TCP', host='127.0.0.1', port=") })
    }

    @Test("a port where nothing listens: one Failed line, the summary, exit 1")
    func failedAddress() throws {
        let server = try Server(["--delay", "0", Poems.path("loopback.txt")])
        defer { server.stop() }
        let dead = try deadPort()
        let result = try run("get-poetry", [String(dead), "localhost:\(server.port)", "--print"])
        #expect(result.status == 1)
        let poem = try Poems.bytes("loopback.txt")
        #expect(result.lines.filter { $0 == "Failed to connect to: IPv4Address(type='TCP', host='127.0.0.1', port=\(dead))" }.count == 1)
        #expect(result.lines.contains("Task 1: \(poem.count) characters of poetry"))
        #expect(result.stdout.contains("Got 2 poems in "))
        // --print: the poem itself, after the summary.
        let summary = try #require(result.stdout.range(of: "Got 2 poems in "))
        #expect(result.stdout[summary.upperBound...].contains(String(decoding: poem, as: UTF8.self)))
    }

    @Test("IPv6: a server on ::1 and get-poetry [::1]:PORT")
    func ipv6() throws {
        let server = try Server(["--iface", "::1", "--delay", "0.005", "--num-bytes", "100", Poems.path("slow-server.txt")])
        defer { server.stop() }
        let result = try run("get-poetry", ["[::1]:\(server.port)"])
        #expect(result.status == 0)
        // Chunks of 100 bytes; two may arrive in one read on a loaded machine.
        let first = try #require(result.lines.first)
        #expect(first.hasPrefix("Task 1: got "))
        #expect(first.hasSuffix(" bytes of poetry from IPv6Address(type='TCP', host='::1', port=\(server.port), flowInfo=0, scopeID=0)"))
        #expect(result.lines.contains("Task 1: 540 characters of poetry"))
    }

    @Test("poetry-server: a missing file, a bad port, a port in use: one line on stderr, exit 2")
    func serverBadInput() throws {
        let missing = try run("poetry-server", ["/nonexistent/poem.txt"])
        #expect(missing.status == 2)
        #expect(missing.stderrLines == ["poetry-server: error: cannot read /nonexistent/poem.txt: No such file or directory"])
        #expect(missing.stdout.isEmpty)

        let directory = try run("poetry-server", [Poems.directory.path])
        #expect(directory.status == 2)
        #expect(directory.stderrLines.count == 1 && directory.stderr.contains("Is a directory"))

        let badPort = try run("poetry-server", ["--port", "99999", Poems.path("loopback.txt")])
        #expect(badPort.status == 2)
        #expect(badPort.stderrLines.count == 1 && badPort.stderr.contains("99999"))

        let badDelay = try run("poetry-server", ["--delay=-1", Poems.path("loopback.txt")])
        #expect(badDelay.status == 2 && badDelay.stderrLines.count == 1)

        let server = try Server([Poems.path("loopback.txt")])
        defer { server.stop() }
        let inUse = try run("poetry-server", ["--port", String(server.port), Poems.path("loopback.txt")])
        #expect(inUse.status == 2)
        #expect(inUse.stderrLines.count == 1 && inUse.stderr.contains("address already in use"), "\(inUse.stderr)")

        // Not a number at all: ArgumentParser's own usage error (exit 64), still no crash.
        let notNumber = try run("poetry-server", ["--port", "abc", Poems.path("loopback.txt")])
        #expect(notNumber.status == 64)
        #expect(notNumber.stderr.hasPrefix("Error: "))
    }

    @Test("get-poetry: nonsense addresses give one line on stderr, exit 2", arguments: ["notaport", "host:99999", "::1:10001"])
    func clientBadInput(address: String) throws {
        let result = try run("get-poetry", [address])
        #expect(result.status == 2)
        #expect(result.stderrLines.count == 1 && result.stderr.hasPrefix("get-poetry: error: "), "\(result.stderr)")
        #expect(result.stdout.isEmpty)
    }

    @Test("get-poetry: a host name that does not resolve is a failed address, not a crash")
    func unresolvable() throws {
        let result = try run("get-poetry", ["no-such-host.invalid:10001"])
        #expect(result.status == 1)
        #expect(result.lines.first == "Failed to connect to: IPv4Address(type='TCP', host='no-such-host.invalid', port=10001)")
    }
}
