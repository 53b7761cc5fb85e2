import Glibc

/// Streams a file through a transport in chunks, as a pull producer:
/// Twisted's `FileSender`. Memory stays at one chunk however large the file
/// is, and the transport's pace decides how fast it is read.
///
/// ```swift
/// let sender = FileSender()
/// try sender.beginFileTransfer(path: "big.iso", to: transport!) { result in
///     transport?.loseConnection()
/// }
/// ```
///
/// Reads are ordinary blocking `read(2)` calls on the reactor thread, one
/// chunk per call (as in Twisted): fine for local files, not for slow network file systems.
///
/// Threading: reactor thread only.
public final class FileSender: PullProducer {
    /// Bytes read and written per round.
    public let chunkSize: Int
    private var fd: Int32 = -1
    private var consumer: (any Transport)?
    private var completion: ((Result<Int, any Error>) -> Void)?
    private var buffer: [UInt8]
    /// Bytes written to the consumer so far.
    public private(set) var bytesSent = 0

    public init(chunkSize: Int = 64 * 1024) {
        self.chunkSize = max(1, chunkSize)
        buffer = [UInt8](repeating: 0, count: self.chunkSize)
    }

    /// Opens `path` and starts sending it to `consumer`, registered as its
    /// (non-streaming) producer. `completion` runs once: `.success(bytes)` at
    /// the end of the file (after unregistering), or `.failure` if reading
    /// fails or the consumer stops the transfer (its connection was lost).
    /// - Throws: ``UVError`` if the file cannot be opened (`ENOENT`,
    ///   `EACCES`, ...), ``ProducerError`` if the consumer already has a producer.
    public func beginFileTransfer(path: String, to consumer: any Transport,
                                  completion: @escaping (Result<Int, any Error>) -> Void) throws {
        precondition(self.consumer == nil, "FileSender: one transfer at a time")
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw UVError(code: -errno) }
        self.fd = fd
        self.consumer = consumer
        self.completion = completion
        do {
            try consumer.registerProducer(self, streaming: false)
        } catch {
            close(fd)
            self.fd = -1
            self.consumer = nil
            self.completion = nil
            throw error
        }
    }

    public func resumeProducing() {
        guard let consumer, fd >= 0 else { return }
        var count: Int
        repeat {
            count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        } while count < 0 && errno == EINTR
        if count > 0 {
            bytesSent += count
            buffer.withUnsafeBytes { consumer.write(UnsafeRawBufferPointer(rebasing: $0[..<count])) }
        } else if count == 0 {
            finish(.success(bytesSent), unregister: true)
        } else {
            finish(.failure(UVError(code: -errno)), unregister: true)
        }
    }

    public func stopProducing() {
        finish(.failure(ConnectionLost(detail: "the consumer stopped the file transfer after \(bytesSent) bytes")), unregister: false)
    }

    private func finish(_ result: Result<Int, any Error>, unregister: Bool) {
        if fd >= 0 { close(fd) }
        fd = -1
        let consumer = self.consumer
        self.consumer = nil
        if unregister { consumer?.unregisterProducer() }
        let completion = self.completion
        self.completion = nil
        completion?(result)
    }
}
