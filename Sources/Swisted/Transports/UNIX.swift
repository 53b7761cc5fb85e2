import CLibUV
import Glibc

/// A connection over a Unix-domain stream socket (`uv_pipe_t`): the same
/// stream transport as TCP, with ``UNIXAddress`` ends.
final class UNIXConnection: StreamConnection {
    let pipe: UnsafeMutablePointer<uv_pipe_t>
    private let hostName: String?
    private let peerName: String?

    /// Creates an unconnected pipe handle on the reactor's loop.
    /// - Throws: ``UVError`` from `uv_pipe_init`.
    init(reactor: Reactor, state: State, hostName: String?, peerName: String?) throws(UVError) {
        let pipe = UVHandle.allocate(uv_pipe_t.self)
        let rc = uv_pipe_init(reactor.loop, pipe, 0)
        if rc < 0 {
            UVHandle.deallocateUninitialized(pipe)
            throw UVError(code: rc)
        }
        self.pipe = pipe
        self.hostName = hostName
        self.peerName = peerName
        super.init(reactor: reactor, stream: UVHandle.asStream(pipe), state: state)
    }

    override func getPeer() -> any Address { UNIXAddress(name: peerName) }
    override func getHost() -> any Address { UNIXAddress(name: hostName) }
}

/// A Unix socket name checked against the platform limit, as a `sockaddr_un`.
///
/// libuv 1.44's `uv_pipe_bind`/`uv_pipe_connect` silently truncate long
/// paths and cannot express abstract names, so Swisted makes the socket
/// itself and hands the descriptor to libuv with `uv_pipe_open`.
struct UNIXSocketName {
    let name: String
    private var address = sockaddr_un()
    private let length: socklen_t

    /// Bytes a path may have (sun_path holds 108, with the terminating NUL).
    static let maxPathBytes = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    /// True for Linux abstract names (leading NUL): no file is created.
    var isAbstract: Bool { name.utf8.first == 0 }

    /// - Throws: ``InvalidAddressError`` for an empty name or one over the limit, naming the limit.
    init(_ name: String) throws(InvalidAddressError) {
        let bytes = Array(name.utf8)
        let abstract = bytes.first == 0
        let limit = abstract ? UNIXSocketName.maxPathBytes + 1 : UNIXSocketName.maxPathBytes
        guard !bytes.isEmpty, bytes.count <= limit else {
            throw InvalidAddressError(address: name, reason: bytes.isEmpty
                ? "a Unix socket needs a path"
                : "Unix socket path is \(bytes.count) bytes; the limit is \(limit) bytes (sun_path)")
        }
        guard abstract || !bytes.contains(0) else {
            throw InvalidAddressError(address: name, reason: "a Unix socket path cannot contain a NUL byte")
        }
        self.name = name
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count + (abstract ? 0 : 1))
    }

    private func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        var address = self.address
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }

    private static func newSocket() throws(UVError) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw UVError(code: -errno) }
        return fd
    }

    /// A new socket bound to this name (not yet listening).
    /// - Throws: ``UVError`` from `socket` or `bind` (`EADDRINUSE`, `EACCES`, `ENOENT`, ...).
    func bind() throws(UVError) -> Int32 {
        let fd = try UNIXSocketName.newSocket()
        let rc = withSockAddr { Glibc.bind(fd, $0, $1) }
        if rc < 0 {
            let error = UVError(code: -errno)
            close(fd)
            throw error
        }
        return fd
    }

    /// A new socket connected to this name. Unix-domain connects finish at
    /// once: refused (`ECONNREFUSED`), missing (`ENOENT`), queue full (`EAGAIN`) or done.
    func connect() throws(UVError) -> Int32 {
        let fd = try UNIXSocketName.newSocket()
        var rc: Int32
        repeat { rc = withSockAddr { Glibc.connect(fd, $0, $1) } } while rc < 0 && errno == EINTR
        if rc < 0 {
            let error = UVError(code: -errno)
            close(fd)
            throw error
        }
        return fd
    }

    /// True when something accepts connections on this name now.
    func isLive() -> Bool {
        guard let fd = try? connect() else { return false }
        close(fd)
        return true
    }
}

/// A `wantPID` lock: `PATH.lock`, a symbolic link whose target is the
/// owner's PID (Twisted's FilesystemLock), created atomically.
enum UNIXSocketLock {
    /// The PID a lock names, if the lock exists.
    static func owner(of lockFile: String) -> pid_t? {
        var buffer = [CChar](repeating: 0, count: 32)
        let count = readlink(lockFile, &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        return pid_t(String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }

    static func isAlive(_ pid: pid_t) -> Bool {
        kill(pid, 0) == 0 || errno == EPERM
    }

    /// Takes the lock, replacing one left by a dead process.
    /// - Throws: ``SocketLockError`` when a live process holds it, ``UVError`` when it cannot be made.
    static func acquire(_ lockFile: String) throws -> Void {
        for _ in 0..<2 {
            if symlink(String(getpid()), lockFile) == 0 { return }
            guard errno == EEXIST else { throw UVError(code: -errno) }
            if let pid = owner(of: lockFile), isAlive(pid) {
                throw SocketLockError(lockFile: lockFile, pid: pid)
            }
            unlink(lockFile)  // stale: its owner is gone
        }
        throw UVError(UV_EEXIST)
    }
}

/// A `wantPID` lock file is held by a live process.
public struct SocketLockError: Error, Sendable, CustomStringConvertible {
    public let lockFile: String
    public let pid: Int32
    public var description: String { "\(lockFile) is held by process \(pid), which is running." }
}

/// A Unix socket's lock file says no server is there (`checkPID`).
public struct BadFileError: Error, Sendable, CustomStringConvertible {
    /// The socket path.
    public let path: String
    public let reason: String
    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }
    public var description: String { "File \(path) is not usable: \(reason)." }
}

extension Reactor {
    /// Listens on a Unix-domain stream socket at `path` (Twisted's `listenUNIX`).
    ///
    /// A stale socket file (nobody accepts on it) is replaced; a live one is
    /// not. The file gets `mode`. A path starting with NUL (`"\0name"`) is a
    /// Linux abstract name: no file. ``ListeningPort/stopListening(_:)``
    /// removes the file (and the lock).
    ///
    /// - Parameters:
    ///   - mode: permission bits for the socket file (default `0o666`).
    ///   - wantPID: also hold `path.lock` (a symlink naming our PID), so a
    ///     second server fails while we live; a lock left by a dead process is replaced.
    /// - Throws: ``CannotListenError`` carrying the path and the reason: a
    ///   ``UVError`` (`EADDRINUSE` when a live server listens there,
    ///   `EACCES`, `ENOENT` for a missing directory), an ``InvalidAddressError``
    ///   for a path over the platform limit (naming it), or ``SocketLockError``.
    ///
    /// Reactor thread only.
    @discardableResult
    public func listenUNIX(_ path: String, _ factory: Factory, backlog: Int = 50, mode: Int = 0o666,
                           wantPID: Bool = false) throws(CannotListenError) -> ListeningPort {
        assertOnReactorThread()
        func failure(_ error: any Error & Sendable) -> CannotListenError {
            CannotListenError(interface: path, port: 0, underlying: error)
        }
        let name: UNIXSocketName
        do { name = try UNIXSocketName(path) } catch { throw failure(error) }
        let lockFile = wantPID && !name.isAbstract ? path + ".lock" : nil
        if let lockFile {
            do { try UNIXSocketLock.acquire(lockFile) } catch let error as SocketLockError {
                throw failure(error)
            } catch {
                throw failure(error as? UVError ?? UVError(UV_EEXIST))
            }
        }
        var cleanUp = lockFile.map { lock in { unlink(lock); return () } } ?? {}
        if !name.isAbstract {
            var info = stat()
            if lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFSOCK {
                if name.isLive() {
                    cleanUp()
                    throw failure(UVError.addressInUse)
                }
                unlink(path)  // stale: left by a server that is gone
            }
        }
        let fd: Int32
        do { fd = try name.bind() } catch { cleanUp(); throw failure(error) }
        if !name.isAbstract {
            let socketFile = path
            let previous = cleanUp
            cleanUp = { unlink(socketFile); previous() }
            if chmod(path, mode_t(mode)) != 0 {
                let error = UVError(code: -errno)
                close(fd)
                cleanUp()
                throw failure(error)
            }
        }
        let pipe = UVHandle.allocate(uv_pipe_t.self)
        let initRC = uv_pipe_init(loop, pipe, 0)
        if initRC < 0 {
            UVHandle.deallocateUninitialized(pipe)
            close(fd)
            cleanUp()
            throw failure(UVError(code: initRC))
        }
        let openRC = uv_pipe_open(pipe, fd)
        if openRC < 0 {
            close(fd)
            UVHandle.close(pipe)
            cleanUp()
            throw failure(UVError(code: openRC))
        }
        do {
            try ListeningPort.startListening(UVHandle.asStream(pipe), backlog: backlog)
        } catch {
            cleanUp()
            throw failure(error)
        }
        return ListeningPort(reactor: self, factory: factory, stream: UVHandle.asStream(pipe),
                             host: UNIXAddress(name: path),
                             family: .unix(name: path, socketFile: name.isAbstract ? nil : path, lockFile: lockFile))
    }

    /// Connects to the Unix-domain stream socket at `path` (Twisted's
    /// `connectUNIX`), with `factory` building the protocol. The outcome
    /// comes as for ``connectTCP(_:_:_:timeout:bindAddress:)``, always
    /// asynchronously: `clientConnectionFailed` with ``ConnectionRefusedError``
    /// (nobody listens), ``ConnectError`` (`ENOENT`: no such file, `EAGAIN`:
    /// the server's queue is full), ``InvalidAddressError`` (a path over
    /// the platform limit, naming it), ``BadFileError`` (`checkPID`), or ``UserError``.
    ///
    /// - Parameters:
    ///   - checkPID: first check `path.lock` (see `listenUNIX(wantPID:)`):
    ///     fail at once if it is missing or names a dead process.
    ///
    /// Reactor thread only.
    @discardableResult
    public func connectUNIX(_ path: String, _ factory: ClientFactory, timeout: Double? = 30, checkPID: Bool = false) -> Connector {
        assertOnReactorThread()
        let connector = Connector(reactor: self, unixPath: path, checkPID: checkPID, factory: factory, timeout: timeout)
        try! connector.connect()  // a new connector is disconnected: cannot throw
        return connector
    }
}
