/// A connection for async/await code: read with ``inbound``, write with
/// ``write(_:)``, end with ``close()``, ``closeWrite()`` or ``abort()``.
///
/// Made by ``Reactor/connect(host:port:timeout:bindAddress:options:)``,
/// ``Reactor/connect(unixPath:timeout:options:)`` or yielded by an
/// ``AsyncListener``. Underneath it is an ordinary Swisted transport with a
/// protocol that forwards to it, so the reactor's flow control works both ways:
///
/// - **Reading.** Chunks are buffered until the ``inbound`` consumer takes
///   them. Above ``Options/inboundHighWaterMark`` buffered bytes the
///   transport's reading is paused (`pauseProducing`: the socket is no longer
///   read, so the kernel's window closes and the peer is slowed down); it is
///   resumed once the consumer has drained the buffer to
///   ``Options/inboundLowWaterMark``. A slow consumer costs bounded memory
///   and loses nothing.
/// - **Writing.** ``write(_:)`` waits while the transport holds more than
///   its write high-water mark, then queues the bytes, and returns only when
///   the kernel has taken every one of them (or throws if the connection
///   failed first).
///
/// ```swift
/// let connection = try await reactor.connect(host: "127.0.0.1", port: 8000)
/// try await connection.write("hello\n")
/// for try await chunk in connection.inbound { print(chunk.count) }
/// await connection.close()
/// ```
///
/// Dropping the last reference to an `AsyncConnection` closes it (as
/// ``close()`` does, flushing first). The connection is also closed when its
/// reactor stops: pending calls then throw ``ConnectionLost``.
///
/// Threading: `Sendable`; every method may be called from any task or
/// thread. Work on the connection runs on the reactor's thread: inline when
/// the caller is already on it, otherwise through
/// ``Reactor/callFromThread(_:)``. Calls made while the reactor is stopped
/// wait until it runs again.
public final class AsyncConnection: Sendable {
    /// Tuning for one connection's inbound buffer.
    public struct Options: Sendable {
        /// Reading is paused when more than this many received bytes wait for
        /// the ``AsyncConnection/inbound`` consumer (default 64 KiB). The
        /// buffer can exceed it by at most one read (64 KiB).
        public var inboundHighWaterMark: Int
        /// Reading resumes once the consumer has drained the buffer to this
        /// many bytes (default 16 KiB; at most the high-water mark).
        public var inboundLowWaterMark: Int

        /// The defaults: 64 KiB high, 16 KiB low.
        public init(inboundHighWaterMark: Int = 64 * 1024, inboundLowWaterMark: Int = 16 * 1024) {
            self.inboundHighWaterMark = inboundHighWaterMark
            self.inboundLowWaterMark = inboundLowWaterMark
        }
    }

    let core: ConnectionCore
    /// The address of the other end.
    public let peerAddress: any Address
    /// The address of this end.
    public let localAddress: any Address

    init(core: ConnectionCore, peerAddress: any Address, localAddress: any Address) {
        self.core = core
        self.peerAddress = peerAddress
        self.localAddress = localAddress
    }

    deinit {
        let core = core
        core.reactor.perform { core.releasedByUser() }
    }

    /// The reactor the connection belongs to.
    public var reactor: Reactor { core.reactor }

    /// The bytes received, as chunks of any size, in order.
    ///
    /// The sequence ends (returns nil) when the peer shuts down its write side
    /// (EOF) or the connection is closed by ``close()``/``abort()``; it throws
    /// the reason (``ConnectionLost``, ...) when the connection is lost
    /// otherwise. Chunks received before the end are delivered first.
    ///
    /// One task at a time may wait on it: a second concurrent `next()` throws
    /// ``AsyncConnectionError/concurrentIteration``. Iterating again later
    /// (a new `for await`) continues where the last one stopped. Cancelling
    /// the waiting task makes `next()` throw `CancellationError`; no data is lost.
    public var inbound: Inbound { Inbound(connection: self) }

    /// Sends `bytes`, after everything written before.
    ///
    /// Suspends while the transport holds more than its write high-water mark
    /// (64 KiB), then hands the bytes to the transport, and returns only once
    /// the kernel has taken all of them. Concurrent writes from several tasks
    /// go out whole, in the order they reached the reactor.
    ///
    /// - Throws: the reason the connection was lost (``ConnectionLost``,
    ///   ``ConnectionAborted``, ``ConnectionDone``) if it ended before the
    ///   bytes reached the kernel; ``AsyncConnectionError/closedForWriting``
    ///   after ``close()`` or ``closeWrite()``; `CancellationError` if the
    ///   task is cancelled. A write cancelled while waiting for the
    ///   high-water mark is never sent; one cancelled after it was handed to
    ///   the transport is still sent (only the waiting stops).
    ///
    /// From a task on the reactor's executor (or an actor on it), a write
    /// with nothing queued ahead of it, below the high-water mark, is handed
    /// to the transport at once; if the kernel takes it all, as it usually
    /// does, `write` returns without suspending.
    ///
    /// `nonisolated(nonsending)`: it runs in the caller's isolation (an
    /// actor on the reactor's executor stays on it: no hop to the global
    /// executor and back).
    public nonisolated(nonsending) func write(_ bytes: [UInt8]) async throws {
        let core = core
        if core.reactor.isRunningOnCurrentThread {
            // A task on the reactor's executor (or an actor on it): no hop,
            // and usually no suspension either.
            // A write cancelled before it was handed over is never sent.
            if CancellationScope.currentTaskIsCancelled { throw CancellationError() }
            switch core.writeNow(bytes) {
            case .done:
                return
            case .flushing(let waiter):
                // Nothing runs on this thread until the task suspends, so the
                // waiter cannot be resolved before it is installed.
                try await waiter.wait(on: core.reactor, start: {})
                return
            case .notTaken:
                break
            }
        }
        try await submitWrite(bytes)
    }

    /// `write` through the reactor's queue: from another thread, or when the
    /// bytes cannot be handed over at once. Kept out of `write`, whose
    /// fast path would otherwise make its closure's task allocation.
    @inline(never)
    private nonisolated(nonsending) func submitWrite(_ bytes: [UInt8]) async throws {
        let core = core
        let waiter = OneShot<Void>()
        try await waiter.wait(on: core.reactor, start: {
            core.reactor.perform { core.submit(.write(bytes, waiter)) }
        })
    }

    /// Sends a string as UTF-8, as the byte-array `write` does (same suspension, same errors).
    public nonisolated(nonsending) func write(_ string: String) async throws {
        try await write(Array(string.utf8))
    }

    /// Shuts down the write side once every earlier write is sent (a TCP
    /// FIN, `uv_shutdown`); reading goes on until the peer closes. Returns
    /// once the FIN is sent; if the peer had already finished, the
    /// connection then closes. Later writes throw
    /// ``AsyncConnectionError/closedForWriting``.
    /// - Throws: the reason the connection was lost, if it ended uncleanly
    ///   first; `CancellationError` if the task is cancelled (the half-close still happens).
    public nonisolated(nonsending) func closeWrite() async throws {
        let core = core
        let waiter = OneShot<Void>()
        try await waiter.wait(on: core.reactor, start: {
            core.reactor.perform { core.submit(.closeWrite(waiter)) }
        })
    }

    /// Closes the connection once every earlier write is sent, and returns
    /// when it is closed. No write is dropped: writes waiting for the
    /// high-water mark go out first. Calling it again, or after the
    /// connection was lost, just waits for (or returns after) the end.
    ///
    /// Cancelling the task waiting here aborts the connection (what is not
    /// sent yet is dropped) and returns at once.
    public nonisolated(nonsending) func close() async {
        let core = core
        let waiter = OneShot<Void>()
        _ = try? await waiter.wait(on: core.reactor, start: {
            core.reactor.perform { core.submit(.close(waiter)) }
        }, onCancel: {
            core.reactor.perform { core.abort() }
        })
    }

    /// Closes the connection now, dropping anything not yet sent. Pending
    /// writes throw ``ConnectionAborted``; ``inbound`` ends. Returns at once.
    public func abort() {
        let core = core
        core.reactor.perform { core.abort() }
    }

    /// The chunks a connection receives: see ``AsyncConnection/inbound``.
    /// Threading: `Sendable`; one task at a time may wait in `next()`.
    public struct Inbound: AsyncSequence, Sendable {
        /// One chunk of received bytes, as the network delivered it.
        public typealias Element = [UInt8]
        let connection: AsyncConnection

        /// An iterator that continues where the last one stopped.
        public func makeAsyncIterator() -> AsyncIterator {
            AsyncIterator(connection: connection)
        }

        /// Iterates ``AsyncConnection/inbound``. Threading: one task at a time
        /// (a second waiting task gets ``AsyncConnectionError/concurrentIteration``);
        /// `next()` throws the connection's loss reason or `CancellationError`.
        public struct AsyncIterator: AsyncIteratorProtocol {
            let connection: AsyncConnection
            /// Whether the caller's actor runs on the reactor.
            var isolation = IsolationCache()

            /// The next chunk, nil at the end.
            /// - Throws: the reason the connection was lost uncleanly;
            ///   `CancellationError`; ``AsyncConnectionError/concurrentIteration``.
            public mutating func next() async throws -> [UInt8]? {
                try await connection.core.nextChunk(isolatedToReactor: false)
            }

            /// The next chunk, nil at the end, in the caller's isolation
            /// (what `for try await` calls): an actor on the reactor's
            /// executor waits here without leaving it.
            /// - Throws: as ``next()``.
            public mutating func next(isolation actor: isolated (any Actor)?) async throws -> [UInt8]? {
                let core = connection.core
                return try await core.nextChunk(isolatedToReactor: isolation.runsOn(core.reactor, actor))
            }
        }
    }
}
