// Unix-domain stream sockets: the same stream transport as TCP, with the
// socket-file rules of twisted.internet.unix. Sockets live under a fresh
// temporary directory per test.

import Foundation
import Glibc
import Swisted
import Testing

/// A temporary directory, removed at the end of the test.
private final class SocketDirectory {
    let path: String
    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("swisted-unix-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func socket(_ name: String = "s.sock") -> String { path + "/" + name }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// The target of a symbolic link (the PID in a wantPID lock).
private func linkTarget(_ path: String) -> String? {
    var buffer = [UInt8](repeating: 0, count: 64)
    let count = buffer.withUnsafeMutableBufferPointer { readlink(path, $0.baseAddress!, 63) }
    return count > 0 ? String(decoding: buffer[..<count], as: UTF8.self) : nil
}

private func fileExists(_ path: String) -> Bool {
    var info = stat()
    return lstat(path, &info) == 0
}

/// Leaves a socket file behind with nobody listening (as a crashed server would).
private func makeStaleSocket(at path: String) {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    precondition(rc == 0, "bind failed: errno \(errno)")
    close(fd)  // the file stays
}

/// Runs one echo exchange from a client to `path`; returns what came back and the client probe.
private func echoOnce(_ reactor: Reactor, to path: String, message: [UInt8]) -> (RecordingFactory, () -> Probe?) {
    let client = RecordingFactory()
    client.build = { _ in
        let probe = Probe()
        probe.onMade = { $0.transport!.write(message) }
        probe.onData = { probe, _ in
            if probe.receivedCount >= message.count { probe.transport!.loseConnection() }
        }
        probe.onLost = { _, _ in try? reactor.stop() }
        return probe
    }
    client.onFailed = { _, _ in try? reactor.stop() }
    reactor.connectUNIX(path, client, timeout: 2)
    return (client, { client.probes.first })
}

@Suite("Unix sockets")
struct UNIXTests {
    @Test("echo over a Unix socket; the ends print as Twisted's UNIXAddress")
    func echo() throws {
        let directory = try SocketDirectory()
        let path = directory.socket()
        let reactor = Reactor()
        let server = RecordingFactory()
        server.build = { _ in Echo() }
        let port = try reactor.listenUNIX(path, server)
        #expect(port.getHost().description == "UNIXAddress('\(path)')")
        let message = pattern(count: 300_000)
        let (client, probe) = echoOnce(reactor, to: path, message: message)
        try runReactor(reactor)
        let received = try #require(probe())
        #expect(received.received == message)
        #expect(received.lostCount == 1)
        #expect(received.lostReason is ConnectionDone)
        #expect(client.lostCount == 1)
        #expect(client.builtAddresses == ["UNIXAddress('\(path)')"])
        #expect(server.builtAddresses == ["UNIXAddress(None)"])
        #expect(received.transport!.getPeer().description == "UNIXAddress('\(path)')")
        #expect(received.transport!.getHost().description == "UNIXAddress(None)")
    }

    @Test("mode bits are applied to the socket file")
    func modeBits() throws {
        let directory = try SocketDirectory()
        let reactor = Reactor()
        let path = directory.socket()
        let port = try reactor.listenUNIX(path, Factory.forProtocol(Echo.self), mode: 0o600)
        var info = stat()
        #expect(lstat(path, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        port.stopListening()
        reactor.callWhenRunning { try reactor.stop() }
        try runReactor(reactor)
    }

    @Test("stopListening removes the socket file it created")
    func stopListeningRemovesFile() throws {
        let directory = try SocketDirectory()
        let reactor = Reactor()
        let path = directory.socket()
        let port = try reactor.listenUNIX(path, Factory.forProtocol(Echo.self))
        #expect(fileExists(path))
        port.stopListening()
        #expect(!fileExists(path))
        reactor.callWhenRunning { try reactor.stop() }
        try runReactor(reactor)
    }

    @Test("a stale socket file left by a dead server is replaced")
    func staleSocketReplaced() throws {
        let directory = try SocketDirectory()
        let path = directory.socket()
        makeStaleSocket(at: path)
        #expect(fileExists(path))
        let reactor = Reactor()
        try reactor.listenUNIX(path, Factory.forProtocol(Echo.self))
        let (_, probe) = echoOnce(reactor, to: path, message: Array("still works".utf8))
        try runReactor(reactor)
        #expect(probe()?.receivedString == "still works")
    }

    @Test("a live socket is not replaced: CannotListenError with EADDRINUSE")
    func liveSocketRefused() throws {
        let directory = try SocketDirectory()
        let path = directory.socket()
        let reactor = Reactor()
        let first = try reactor.listenUNIX(path, Factory.forProtocol(Echo.self))
        let error = #expect(throws: CannotListenError.self) {
            try reactor.listenUNIX(path, Factory.forProtocol(Echo.self))
        }
        #expect(error?.underlying as? UVError == .addressInUse)
        #expect(error?.description.contains(path) == true)
        #expect(error?.description.contains("EADDRINUSE") == true)
        #expect(fileExists(path))  // the live server's file is untouched
        first.stopListening()
        reactor.callWhenRunning { try reactor.stop() }
        try runReactor(reactor)
    }

    @Test("wantPID: the lock names our PID, blocks a second server, and is removed on stopListening")
    func wantPIDLock() throws {
        let directory = try SocketDirectory()
        let path = directory.socket()
        let lock = path + ".lock"
        let reactor = Reactor()
        let port = try reactor.listenUNIX(path, Factory.forProtocol(Echo.self), wantPID: true)
        #expect(linkTarget(lock) == String(getpid()))
        // A second server on the same path finds the lock held by a live process (us).
        let error = #expect(throws: CannotListenError.self) {
            try reactor.listenUNIX(path, Factory.forProtocol(Echo.self), wantPID: true)
        }
        #expect(error?.underlying is SocketLockError)
        #expect(linkTarget(lock) == String(getpid()))  // the refused attempt left the lock alone
        // Another path has its own lock.
        let other = try reactor.listenUNIX(directory.socket("other.sock"), Factory.forProtocol(Echo.self), wantPID: true)
        other.stopListening()
        port.stopListening()
        #expect(!fileExists(lock))
        #expect(!fileExists(path))
        reactor.callWhenRunning { try reactor.stop() }
        try runReactor(reactor)
    }

    @Test("wantPID: a lock held by a live process refuses; one left by a dead process is replaced")
    func wantPIDLiveAndStale() throws {
        let directory = try SocketDirectory()
        let path = directory.socket()
        let lock = path + ".lock"
        let reactor = Reactor()
        // PID 1 is alive (init); the lock says it owns the socket.
        #expect(symlink("1", lock) == 0)
        let error = #expect(throws: CannotListenError.self) {
            try reactor.listenUNIX(path, Factory.forProtocol(Echo.self), wantPID: true)
        }
        #expect(error?.underlying is SocketLockError)
        #expect(error?.description.contains("process 1") == true)
        #expect(!fileExists(path))
        // A PID no process can have (above any pid_max) is dead: the lock is stale.
        unlink(lock)
        #expect(symlink("2147483646", lock) == 0)
        let port = try reactor.listenUNIX(path, Factory.forProtocol(Echo.self), wantPID: true)
        #expect(linkTarget(lock) == String(getpid()))
        port.stopListening()
        reactor.callWhenRunning { try reactor.stop() }
        try runReactor(reactor)
    }

    @Test("checkPID: a lock naming a dead process, or no lock, fails fast with BadFileError")
    func checkPID() throws {
        let directory = try SocketDirectory()
        let path = directory.socket()
        makeStaleSocket(at: path)
        #expect(symlink("2147483646", path + ".lock") == 0)
        let reactor = Reactor()
        let dead = RecordingFactory()
        reactor.connectUNIX(path, dead, checkPID: true)
        let unlocked = RecordingFactory()
        reactor.connectUNIX(directory.socket("nolock.sock"), unlocked, checkPID: true)
        let done = Countdown(2) { try? reactor.stop() }
        dead.onFailed = { _, _ in done.tick() }
        unlocked.onFailed = { _, _ in done.tick() }
        try runReactor(reactor)
        #expect(dead.failedReason is BadFileError)
        #expect(dead.failedReason.map { "\($0)" }?.contains("2147483646") == true)
        #expect(unlocked.failedReason is BadFileError)
        #expect(dead.buildCount == 0 && unlocked.buildCount == 0)
    }

    @Test("a Linux abstract name works and creates no file")
    func abstractNamespace() throws {
        let name = "\0swisted-test-\(UUID().uuidString)"
        let reactor = Reactor()
        let port = try reactor.listenUNIX(name, Factory.forProtocol(Echo.self))
        #expect(port.getHost().description.hasPrefix("UNIXAddress('\\x00swisted-test-"))
        let (_, probe) = echoOnce(reactor, to: name, message: Array("abstract".utf8))
        try runReactor(reactor)
        #expect(probe()?.receivedString == "abstract")
        #expect(!fileExists(name.replacingOccurrences(of: "\0", with: "")))
    }

    @Test("a path over the platform limit: a clear error naming the limit, for listen and connect, no truncation")
    func pathTooLong() throws {
        let directory = try SocketDirectory()
        let path = directory.path + "/" + String(repeating: "x", count: 120)
        let reactor = Reactor()
        let error = #expect(throws: CannotListenError.self) {
            try reactor.listenUNIX(path, Factory.forProtocol(Echo.self))
        }
        #expect(error?.underlying is InvalidAddressError)
        #expect(error?.description.contains("limit is 107 bytes") == true)
        let truncated = String(path.utf8.prefix(107))!
        #expect(!fileExists(truncated))
        let client = RecordingFactory()
        client.onFailed = { _, _ in try? reactor.stop() }
        reactor.connectUNIX(path, client)
        try runReactor(reactor)
        #expect(client.failedReason is InvalidAddressError)
        #expect(client.failedReason.map { "\($0)" }?.contains("limit is 107 bytes") == true)
    }

    @Test("connecting to a missing path fails with ENOENT, to a stale socket with ConnectionRefusedError, asynchronously")
    func connectFailures() throws {
        let directory = try SocketDirectory()
        let stale = directory.socket("stale.sock")
        makeStaleSocket(at: stale)
        let reactor = Reactor()
        let missing = RecordingFactory()
        let refused = RecordingFactory()
        var insideConnect = true
        var failedInside = false
        let done = Countdown(2) { try? reactor.stop() }
        for factory in [missing, refused] {
            factory.onFailed = { _, _ in
                if insideConnect { failedInside = true }
                done.tick()
            }
        }
        reactor.connectUNIX(directory.socket("missing.sock"), missing)
        reactor.connectUNIX(stale, refused)
        insideConnect = false
        try runReactor(reactor)
        #expect(!failedInside)
        #expect((missing.failedReason as? ConnectError)?.underlying == UVError(code: -ENOENT))
        #expect(refused.failedReason is ConnectionRefusedError)
        #expect(missing.startedConnectingCount == 1 && refused.startedConnectingCount == 1)
        #expect(missing.stopCount == 1 && refused.stopCount == 1)
    }

    @Test("abortConnection on a Unix connection: ConnectionAborted here, connectionLost once on both sides")
    func abort() throws {
        let directory = try SocketDirectory()
        let path = directory.socket()
        let reactor = Reactor()
        let server = RecordingFactory()
        server.build = { _ in Probe() }
        try reactor.listenUNIX(path, server)
        let client = RecordingFactory()
        client.build = { _ in
            let probe = Probe()
            probe.onMade = { $0.transport!.write("x"); $0.transport!.abortConnection() }
            return probe
        }
        let done = Countdown(2) { try? reactor.stop() }
        client.onLost = { _, _ in done.tick() }
        server.build = { _ in
            let probe = Probe()
            probe.onLost = { _, _ in done.tick() }
            return probe
        }
        reactor.connectUNIX(path, client)
        try runReactor(reactor)
        #expect(client.probes.first?.lostReason is ConnectionAborted)
        #expect(client.probes.map(\.lostCount) == [1])
        #expect(server.probes.map(\.lostCount) == [1])
    }
}
