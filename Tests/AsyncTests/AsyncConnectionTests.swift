// The async/await API over real loopback sockets: connect and listen, the
// inbound sequence's back-pressure, write's suspension and completion,
// close and half-close, cancellation, and errors.

import Glibc
@testable import Swisted
import Testing

/// Echoes every connection of `listener` until it ends (a server task).
@discardableResult
func serveEcho(_ listener: AsyncListener) -> Task<Void, Never> {
    Task {
        await withTaskGroup(of: Void.self) { group in
            do {
                for try await connection in listener {
                    group.addTask {
                        do {
                            for try await chunk in connection.inbound {
                                try await connection.write(chunk)
                            }
                        } catch {}
                        await connection.close()
                    }
                }
            } catch {}
        }
    }
}

/// Reads `count` bytes from `connection` (they may come in any chunks).
func read(_ connection: AsyncConnection, count: Int) async throws -> [UInt8] {
    var bytes: [UInt8] = []
    var iterator = connection.inbound.makeAsyncIterator()
    while bytes.count < count {
        guard let chunk = try await iterator.next() else { break }
        bytes += chunk
    }
    return bytes
}

/// Writes `total` bytes of the test pattern to `connection`, 64 KiB per write.
func writePattern(to connection: AsyncConnection, total: Int) async throws {
    var offset = 0
    while offset < total {
        let count = min(64 * 1024, total - offset)
        try await connection.write(pattern(from: offset, count: count))
        offset += count
    }
}

/// Reads until the inbound sequence ends.
func readToEnd(_ connection: AsyncConnection) async throws -> [UInt8] {
    var bytes: [UInt8] = []
    for try await chunk in connection.inbound { bytes += chunk }
    return bytes
}

@Suite("Async connections", .timeLimit(.minutes(1)))
struct AsyncConnectionTests {
    @Test("connect, write, read the echo, close: the server sees the end, every handle closes")
    func echoRoundTrip() async throws {
        let thread = await BackgroundReactor.start()
        let listener = try await thread.reactor.listen(port: 0, interface: "127.0.0.1")
        #expect(listener.port != 0)
        let server = serveEcho(listener)

        let client = try await thread.reactor.connect(host: "127.0.0.1", port: listener.port)
        #expect((client.peerAddress as? IPv4Address)?.port == listener.port)
        try await client.write("hello, async")
        let echoed = try await read(client, count: 12)
        #expect(String(decoding: echoed, as: UTF8.self) == "hello, async")
        await client.close()
        // After close, the inbound sequence ends and writes are refused.
        #expect(try await readToEnd(client) == [])
        await #expect(throws: AsyncConnectionError.closedForWriting) { try await client.write("late") }

        await listener.close()
        await server.value
        await thread.stop()
    }

    @Test("10,000 sequential await round trips over loopback")
    func tenThousandRoundTrips() async throws {
        let thread = await BackgroundReactor.start(timeLimit: 50)
        let listener = try await thread.reactor.listen(port: 0, interface: "127.0.0.1")
        let server = serveEcho(listener)
        let client = try await thread.reactor.connect(host: "127.0.0.1", port: listener.port)

        var iterator = client.inbound.makeAsyncIterator()
        var completed = 0
        var wrong = 0
        for round in 0..<10_000 {
            let message = withUnsafeBytes(of: UInt32(round).littleEndian, Array.init)
            try await client.write(message)
            var reply: [UInt8] = []
            while reply.count < message.count {
                guard let chunk = try await iterator.next() else { break }
                reply += chunk
            }
            if reply != message { wrong += 1 }
            completed += 1
        }
        #expect(completed == 10_000)
        #expect(wrong == 0)

        await client.close()
        await listener.close()
        await server.value
        await thread.stop()
    }

    @Test("from a task on the reactor's executor: 1,000 round trips, every step on the reactor thread (no hop)")
    func onReactorExecutor() async throws {
        let thread = await BackgroundReactor.start(timeLimit: 50)
        let reactor = thread.reactor
        let listener = try await reactor.listen(port: 0, interface: "127.0.0.1")
        let server = serveEcho(listener)
        let port = listener.port

        let jobsBefore = try await thread.onReactor { reactor.executorJobsRun }
        let afterReadBefore = try await thread.onReactor { reactor.jobBatchesRunAfterRead }
        let outcome = try await Task(executorPreference: reactor) { () -> (rounds: Int, offThread: Int) in
            let client = try await reactor.connect(host: "127.0.0.1", port: port)
            let connectedOffThread = reactor.isRunningOnCurrentThread ? 0 : 1
            let pinged = try await pingRounds(client, rounds: 1000) { reactor.isRunningOnCurrentThread }
            await client.close()
            return (pinged.good, connectedOffThread + pinged.wrongSteps)
        }.value
        #expect(outcome.rounds == 1000)
        #expect(outcome.offThread == 0)
        // One job per round trip: the read's wake-up (the echo server runs on
        // the global pool, so its awaits are not the reactor's jobs).
        let jobs = try await thread.onReactor { reactor.executorJobsRun } - jobsBefore
        #expect(jobs <= 1000 + 20, "\(jobs) jobs for 1,000 round trips")
        // Each wake-up ran at the end of the read callback that woke it (so
        // the next write goes out before libuv reads the socket again), not
        // at the next loop iteration.
        let afterRead = try await thread.onReactor { reactor.jobBatchesRunAfterRead } - afterReadBefore
        #expect(afterRead >= 1000 - 20, "\(afterRead) of 1,000 wake-ups ran at the end of their read callback")

        await listener.close()
        await server.value
        await thread.stop()
    }

    @Test("an actor on the reactor's executor, in a task that prefers the reactor: 1,000 echo round trips, no job from another thread, one job each")
    func actorOnReactorExecutor() async throws {
        let thread = await BackgroundReactor.start(timeLimit: 50)
        let reactor = thread.reactor
        let listener = try await reactor.listen(port: 0, interface: "127.0.0.1")
        let server = serveEcho(listener)
        let client = try await reactor.connect(host: "127.0.0.1", port: listener.port)
        let before = try await thread.onReactor { reactor.crossThreadExecutorJobs }
        let jobsBefore = try await thread.onReactor { reactor.executorJobsRun }

        let pinger = Pinger(reactor: reactor)
        // Without the preference, each resumption after a suspension would go
        // through the global executor first (see the README).
        let rounds = try await Task(executorPreference: reactor) { try await pinger.ping(client, rounds: 1000) }.value
        #expect(rounds == 1000)
        let after = try await thread.onReactor { reactor.crossThreadExecutorJobs }
        #expect(after - before <= 2, "only the test's own entry and exit cross threads, not the 2,000 awaits")
        // One job per round trip, as for nonisolated code: the read's wake-up
        // runs isolated to the actor at once (Reactor.resume(_:with:isolated:)), and
        // the wait suspends in the actor's isolation (no switch out and back).
        let jobs = try await thread.onReactor { reactor.executorJobsRun } - jobsBefore
        #expect(jobs <= 1000 + 20, "\(jobs) jobs for 1,000 round trips")

        await client.close()
        await listener.close()
        await server.value
        await thread.stop()
    }

    @Test("an actor on the reactor from a task without the preference: listen, connect, 200 round trips and close are each woken on the reactor thread, isolated, one job per wake-up")
    func actorWithoutPreference() async throws {
        let thread = await BackgroundReactor.start(timeLimit: 50)
        let reactor = thread.reactor
        let crossBefore = try await thread.onReactor { reactor.crossThreadExecutorJobs }
        let jobsBefore = try await thread.onReactor { reactor.executorJobsRun }

        // The task has no preference: a continuation resumed on the reactor
        // thread would re-enqueue it on the global pool, and its next step
        // hop back (a job from another thread per wake-up). Each wake-up
        // must instead run at once on the reactor, isolated to the actor
        // (Reactor.resume(_:with:isolated:) and the global-enqueue hook), with no
        // task executor (with one, Swift would switch once more).
        let pinger = Pinger(reactor: reactor)
        let session = try await Task { try await pinger.session(rounds: 200) }.value
        #expect(session == 200)
        let cross = try await thread.onReactor { reactor.crossThreadExecutorJobs } - crossBefore
        #expect(cross <= 2, "\(cross) jobs from other threads: only the task's entry into the actor should be one")
        let jobs = try await thread.onReactor { reactor.executorJobsRun } - jobsBefore
        #expect(jobs <= 200 + 20, "\(jobs) jobs for 200 round trips")
        // The wake-up mark must not stay set for the next task the reactor resumes.
        let hintLeft = try await thread.onReactor { reactor.wakingIsolated != nil }
        #expect(!hintLeft)

        // A nonisolated reader on the reactor afterwards: each wake-up one
        // job, each step on the reactor thread (not woken isolated).
        let listener = try await reactor.listen(port: 0, interface: "127.0.0.1")
        let server = serveEcho(listener)
        let client = try await reactor.connect(host: "127.0.0.1", port: listener.port)
        let readerJobsBefore = try await thread.onReactor { reactor.executorJobsRun }
        let pinged = try await Task(executorPreference: reactor) {
            try await pingRounds(client, rounds: 200) { reactor.isRunningOnCurrentThread }
        }.value
        #expect(pinged.good == 200)
        #expect(pinged.wrongSteps == 0)
        let readerJobs = try await thread.onReactor { reactor.executorJobsRun } - readerJobsBefore
        #expect(readerJobs <= 200 + 20, "\(readerJobs) jobs for 200 round trips")

        await client.close()
        await listener.close()
        await server.value
        await thread.stop()
    }

    @Test("an actor on reactor A reading a connection of reactor B (two reactor threads): correct, every step isolated to A, no wake-up mark left on either")
    func actorReadsAnotherReactorsConnection() async throws {
        // B's read callbacks resume the actor's task: it does not wait
        // isolated to B's executor, so B wakes it as any task (through the
        // global pool, then into A).
        try await pingAcrossReactors(connectionOnA: false, taskPrefersB: false)
    }

    @Test("a task preferring reactor B waits in an actor on reactor A, reading A's connection: every step isolated to A, every reply right, no wake-up mark left on either")
    func actorOnAInTaskPreferringB() async throws {
        // A's read callbacks wake the task as one waiting isolated to A, but
        // Swift enqueues it on its preferred executor, B (from A's thread):
        // B must run it as an ordinary task of its own (not as a wake-up it
        // marked), and the task then enters A again.
        try await pingAcrossReactors(connectionOnA: true, taskPrefersB: true)
    }

    /// Two reactor threads, A and B; an actor on A makes 100 round trips
    /// over an echo connection of A or B, from a task preferring B or none.
    /// Pinger traps on any step not isolated to A; afterwards neither
    /// reactor may keep a wake-up mark.
    private func pingAcrossReactors(connectionOnA: Bool, taskPrefersB: Bool) async throws {
        let threadA = await BackgroundReactor.start(timeLimit: 50)
        let threadB = await BackgroundReactor.start(timeLimit: 50)
        let reactorA = threadA.reactor, reactorB = threadB.reactor
        let connectionReactor = connectionOnA ? reactorA : reactorB
        let listener = try await connectionReactor.listen(port: 0, interface: "127.0.0.1")
        let server = serveEcho(listener)
        let client = try await connectionReactor.connect(host: "127.0.0.1", port: listener.port)

        let pinger = Pinger(reactor: reactorA)
        let rounds = try await (taskPrefersB
            ? Task(executorPreference: reactorB) { try await pinger.ping(client, rounds: 100) }
            : Task { try await pinger.ping(client, rounds: 100) }).value
        #expect(rounds == 100)
        let markA = try await threadA.onReactor { reactorA.wakingIsolated != nil }
        let markB = try await threadB.onReactor { reactorB.wakingIsolated != nil }
        #expect(!markA && !markB)

        await client.close()
        await listener.close()
        await server.value
        await threadB.stop()
        await threadA.stop()
    }

    @Test("another reactor run() inside a callback of the first while the first has a job queued: the nested run runs only its own jobs; the first's job runs after it returned, on the first reactor's thread")
    func nestedRunWithJobQueued() async throws {
        let thread = await BackgroundReactor.start(timeLimit: 50)
        let reactor = thread.reactor
        let order = Locked([String]())
        let (queued, innerJob) = try await thread.onReactor { () -> (Task<Bool, Never>, Task<Bool, Never>) in
            // Queued on this reactor's thread, to run when its loop goes on.
            let outer = Task(executorPreference: reactor) { () -> Bool in
                order.withLock { $0.append("outer job") }
                return reactor.isRunningOnCurrentThread
            }
            let inner = Reactor()
            // Runs once `inner` runs (queued while it is not running), and stops it.
            let innerJob = Task(executorPreference: inner) { () -> Bool in
                order.withLock { $0.append("inner job") }
                let onInner = inner.isRunningOnCurrentThread
                try? inner.stop()
                return onInner
            }
            try inner.run()
            order.withLock { $0.append("inner run returned") }
            return (outer, innerJob)
        }
        #expect(await innerJob.value, "the inner job ran on the thread running the inner reactor")
        #expect(await queued.value, "the outer job ran on the outer reactor's thread")
        #expect(order.withLock { $0 } == ["inner job", "inner run returned", "outer job"])
        let mark = try await thread.onReactor { reactor.wakingIsolated != nil }
        #expect(!mark)
        await thread.stop()
    }

    @Test("a task woken by a read may stop the reactor right there (at the end of the read callback): the reactor shuts down cleanly, every handle closes")
    func stopFromWakeUpAfterRead() async throws {
        let thread = await BackgroundReactor.start(timeLimit: 50)
        let reactor = thread.reactor
        let (listener, client, server) = try await ConnectedAsyncPair.unix(on: thread).parts

        let reader = Task(executorPreference: reactor) { () -> (chunk: [UInt8]?, inReadCallback: Bool) in
            var iterator = server.inbound.makeAsyncIterator()
            let roundsBefore = reactor.jobBatchesRunAfterRead
            let chunk = try await iterator.next()
            // Woken at the end of the read callback (that round is counted
            // before it runs), not from the idle phase.
            let inReadCallback = reactor.jobBatchesRunAfterRead == roundsBefore + 1
            try reactor.stop()
            return (chunk, inReadCallback)
        }
        try await client.write("x")
        let outcome = try await reader.value
        #expect(outcome.chunk == Array("x".utf8))
        #expect(outcome.inReadCallback)
        // run() returns by itself (stopped from the job), with every handle
        // closed (BackgroundReactor.stop checks both).
        await thread.stop()
        withExtendedLifetime(listener) {}  // the port stayed open until the reactor closed it
    }

    @Test("a task woken by a read may answer and close that connection right there (at the end of its read callback): the peer gets the answer, then the end")
    func closeFromWakeUpAfterRead() async throws {
        let thread = await BackgroundReactor.start(timeLimit: 50)
        let reactor = thread.reactor
        let (listener, client, server) = try await ConnectedAsyncPair.unix(on: thread).parts

        let closer = Task(executorPreference: reactor) { () -> Bool in
            var iterator = server.inbound.makeAsyncIterator()
            let roundsBefore = reactor.jobBatchesRunAfterRead
            guard let chunk = try await iterator.next() else { return false }
            let inReadCallback = reactor.jobBatchesRunAfterRead == roundsBefore + 1
            try await server.write(chunk + chunk)  // handed to the kernel at once
            await server.close()
            return inReadCallback
        }
        try await client.write("ping")
        #expect(try await closer.value, "the task ran at the end of the read callback")
        #expect(try await readToEnd(client) == Array("pingping".utf8))

        await client.close()
        await listener.close()
        await thread.stop()
    }

    @Test("a slow inbound consumer pauses reading: the buffer stays bounded and nothing is lost")
    func slowConsumer() async throws {
        let thread = await BackgroundReactor.start(timeLimit: 50)
        let options = AsyncConnection.Options(inboundHighWaterMark: 64 * 1024, inboundLowWaterMark: 16 * 1024)
        let (listener, client, server) = try await ConnectedAsyncPair.tcp(on: thread, options: options).parts

        let total = 8 * 1024 * 1024
        let writer = Task {
            try await writePattern(to: client, total: total)
            await client.close()
        }

        // Nobody consumes yet: reading must pause once 64 KiB wait.
        let core = server.core
        await thread.eventually("the server's reading is paused") {
            core.inbound.withLock { $0.paused }
        }
        #expect(core.inbound.withLock { $0.buffered } > 64 * 1024)

        // Now a consumer slower than the network: one reactor round trip per chunk.
        var checker = PatternChecker()
        for try await chunk in server.inbound {
            checker.check(chunk)
            _ = try await thread.onReactor { 0 }
        }
        try await writer.value
        #expect(checker.received == total)
        #expect(checker.mismatches == 0)
        let stats = core.inbound.withLock { (max: $0.maxBuffered, pauses: $0.pauseCount) }
        // Bounded: the high-water mark plus at most one read (the reactor reads 64 KiB at a time).
        #expect(stats.max <= 64 * 1024 + Reactor.readSlabSize)
        #expect(stats.pauses >= 2, "reading was paused, resumed and paused again")

        await server.close()
        await listener.close()
        await thread.stop()
    }

    @Test("large reads land in their own arrays (no copy, capacity at most twice the bytes); small reads go back to copying; an idle connection holds no read memory")
    func readArrays() async throws {
        let thread = await BackgroundReactor.start(timeLimit: 50)
        let (listener, client, server) = try await ConnectedAsyncPair.tcp(on: thread).parts
        let core = server.core

        // 4 MiB streamed: the expected read size grows to the maximum and the
        // reads are handed over as they landed.
        let total = 4 * 1024 * 1024
        let writer = Task { try await writePattern(to: client, total: total) }
        var checker = PatternChecker()
        var iterator = server.inbound.makeAsyncIterator()
        var wasteful = 0
        var heldByReactor = 0
        while checker.received < total, let chunk = try await iterator.next() {
            checker.check(chunk)
            if chunk.capacity > 2 * chunk.count, chunk.count >= ConnectionCore.ownArrayReadSize / 2 { wasteful += 1 }
            // A chunk read in place is not kept by the reactor for reuse (a
            // reader mutating it would copy it): only copied chunks are.
            let address = chunk.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
            let (inPlace, recycled) = try await thread.onReactor {
                (core.lastUncopiedChunk, thread.reactor.recycledChunk.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) })
            }
            if inPlace == address, recycled == address { heldByReactor += 1 }
        }
        #expect(heldByReactor == 0, "\(heldByReactor) chunks read in place were kept for reuse")
        try await writer.value
        #expect(checker.received == total)
        #expect(checker.mismatches == 0)
        #expect(wasteful == 0, "a handed-over chunk's capacity is at most twice its bytes")
        let large = try await thread.onReactor { (core.uncopiedChunks, core.expectedReadSize, core.holdsReadArray) }
        #expect(large.0 > 0, "some chunks were the read arrays themselves")
        #expect(large.1 == ConnectionCore.maxReadSize)
        #expect(!large.2, "no read array is kept between reads")

        // Then small messages, one at a time: the expected size shrinks below
        // the own-array threshold (reads land in the reactor's slab again).
        for index in 0..<24 {
            let message = pattern(from: index * 100, count: 100)
            try await client.write(message)
            #expect(try await iterator.next() == message)
        }
        let small = try await thread.onReactor { (core.expectedReadSize, core.holdsReadArray) }
        #expect(small.0 < ConnectionCore.ownArrayReadSize)
        #expect(!small.1)

        await client.close()
        await server.close()
        await listener.close()
        await thread.stop()
    }

    @Test("a small read is copied into the last chunk's memory once its reader let it go; a chunk a reader keeps never changes")
    func recycledChunks() async throws {
        let thread = await BackgroundReactor.start(timeLimit: 50)
        let (listener, client, server) = try await ConnectedAsyncPair.tcp(on: thread).parts
        let core = server.core
        let recycles = try await thread.onReactor { thread.reactor.recyclesChunks }
        var iterator = server.inbound.makeAsyncIterator()

        // One message at a time, each chunk dropped before the next is sent:
        // from the second on, each lands in the memory of the one before.
        for index in 0..<50 {
            let message = pattern(from: index * 100, count: 100)
            try await client.write(message)
            let chunk = try #require(try await iterator.next())
            #expect(chunk == message)
            #expect(chunk.capacity <= 2 * chunk.count)
        }
        let dropped = try await thread.onReactor { core.recycledChunks }
        if recycles {
            #expect(dropped >= 45, "the chunks' memory was reused (\(dropped) of 49)")
        } else {
            #expect(dropped == 0, "no recycling under ThreadSanitizer")
        }

        // Every chunk kept: none may be reused, and each keeps its bytes.
        var kept: [[UInt8]] = []
        for index in 0..<20 {
            try await client.write(pattern(from: 10_000 + index * 100, count: 100))
            kept.append(try #require(try await iterator.next()))
        }
        for (index, chunk) in kept.enumerated() {
            #expect(chunk == pattern(from: 10_000 + index * 100, count: 100), "chunk \(index) is unchanged")
        }
        // Only the first kept chunk may take memory: the last dropped chunk's.
        let reused = try await thread.onReactor { core.recycledChunks } - dropped
        #expect(reused <= (recycles ? 1 : 0), "no kept chunk's memory was reused (\(reused) reuses)")

        await client.close()
        await server.close()
        await listener.close()
        await thread.stop()
    }

    @Test("write suspends above the high-water mark and returns once the kernel has every byte")
    func writeSuspendsAboveHighWaterMark() async throws {
        let thread = await BackgroundReactor.start(timeLimit: 50)
        let (listener, client, server) = try await ConnectedAsyncPair.unix(on: thread).parts
        let core = client.core

        // 4 MiB: far more than a Unix socket's kernel buffers and the peer's
        // 64 KiB inbound buffer, and nobody reads on the server yet.
        let big = 4 * 1024 * 1024
        let done = Locked<[String]>([])
        let bigBytes = pattern(count: big)
        // Both writers prefer the reactor: it resumes them in completion order
        // and runs their jobs in that order, so `done` records the library's
        // order. On the global pool two writers resumed in order may append in
        // either order (seen once under ThreadSanitizer); the cross-thread
        // admission path is tested by the cancellation and close-after-writes tests.
        let reactor = thread.reactor
        let first = Task(executorPreference: reactor) {
            try await client.write(bigBytes)
            done.withLock { $0.append("first") }
        }
        await thread.eventually("the first write is queued above the high-water mark") {
            core.bytesSubmitted == big && core.transportBufferSize > core.writeHighWaterMark
        }
        // On the reactor thread: bytes are still queued, so the write cannot have returned.
        let firstPending = try await thread.onReactor {
            core.transportBufferSize > 0 && done.withLock { $0.isEmpty }
        }
        #expect(firstPending)

        let second = Task(executorPreference: reactor) {
            try await client.write(pattern(from: big, count: 1024))
            done.withLock { $0.append("second") }
        }
        await thread.eventually("the second write waits for admission") { core.waitingOps == 1 }
        let secondHeld = try await thread.onReactor {
            core.bytesSubmitted == big && core.waitingOps == 1 && done.withLock { $0.isEmpty }
        }
        #expect(secondHeld, "the second write was not handed to the transport above the high-water mark")

        // The server reads: both writes complete, in order, with every byte.
        var checker = PatternChecker()
        var iterator = server.inbound.makeAsyncIterator()
        while checker.received < big + 1024, let chunk = try await iterator.next() {
            checker.check(chunk)
        }
        try await first.value
        try await second.value
        #expect(checker.received == big + 1024)
        #expect(checker.mismatches == 0)
        #expect(done.withLock { $0 } == ["first", "second"])
        let drained = try await thread.onReactor { core.transportBufferSize }
        #expect(drained == 0)

        await client.close()
        await server.close()
        await listener.close()
        await thread.stop()
    }

    @Test("close right after writes delivers every byte, including writes still waiting to be admitted")
    func closeAfterWritesDeliversEverything() async throws {
        let thread = await BackgroundReactor.start(timeLimit: 50)
        // A Unix socket: its small kernel buffers (no TCP autotuning) make
        // the queue fill deterministically.
        let (listener, client, server) = try await ConnectedAsyncPair.unix(on: thread).parts
        let core = client.core

        // Three writes from separate tasks, handed over in order: the first
        // fills the queue, the others wait for admission; then close.
        let size = 6 * 1024 * 1024
        var writers: [Task<Void, any Error>] = []
        let parts = (0..<3).map { pattern(from: $0 * size, count: size) }
        for part in 0..<3 {
            let bytes = parts[part]
            writers.append(Task { try await client.write(bytes) })
            await thread.eventually("write \(part) reached the reactor") {
                core.bytesSubmitted + core.waitingOps * size == (part + 1) * size
            }
        }
        let waiting = try await thread.onReactor { (core.bytesSubmitted, core.waitingOps) }
        #expect(waiting.0 == size && waiting.1 == 2, "one write queued in the transport, two waiting for admission")
        let closer = Task { await client.close() }

        var checker = PatternChecker()
        for try await chunk in server.inbound { checker.check(chunk) }
        #expect(checker.received == 3 * size)
        #expect(checker.mismatches == 0)
        for writer in writers { try await writer.value }
        await closer.value

        await server.close()
        await listener.close()
        await thread.stop()
    }

    @Test("closeWrite half-closes after the writes: the peer reads to EOF and can still answer")
    func halfClose() async throws {
        let thread = await BackgroundReactor.start()
        let (listener, client, server) = try await ConnectedAsyncPair.tcp(on: thread).parts

        try await client.write(pattern(count: 100_000))
        try await client.closeWrite()
        await #expect(throws: AsyncConnectionError.closedForWriting) { try await client.write("more") }

        let request = try await readToEnd(server)
        #expect(request == pattern(count: 100_000))
        try await server.write("got \(request.count)")
        await server.close()

        let reply = try await readToEnd(client)
        #expect(String(decoding: reply, as: UTF8.self) == "got 100000")
        await client.close()
        await listener.close()
        await thread.stop()
    }

    @Test("Task cancellation cancels a pending connect (stuck in name resolution)")
    func cancelPendingConnect() async throws {
        let thread = await BackgroundReactor.start()
        let resolver = HangingResolver()
        let asked = resolver.asked
        let cancelled = resolver.cancelled
        try await thread.onReactor { thread.reactor.resolver = resolver }

        let attempt = Task { try await thread.reactor.connect(host: "never.invalid", port: 80) }
        await thread.eventually("the lookup started") { asked.withLock { $0 } }
        attempt.cancel()
        await #expect(throws: CancellationError.self) { _ = try await attempt.value }
        await thread.eventually("the lookup was cancelled") { cancelled.withLock { $0 } }

        // The protocol helper too.
        asked.withLock { $0 = false }
        cancelled.withLock { $0 = false }
        let helper = Task { try await thread.reactor.connectTCP("never.invalid", 80) { Protocol() } }
        await thread.eventually("the second lookup started") { asked.withLock { $0 } }
        helper.cancel()
        await #expect(throws: CancellationError.self) { _ = try await helper.value }
        await thread.eventually("the second lookup was cancelled") { cancelled.withLock { $0 } }

        // Cancelled before it started: no attempt at all.
        asked.withLock { $0 = false }
        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await thread.reactor.connect(host: "never.invalid", port: 80)
        }
        await #expect(throws: CancellationError.self) { _ = try await early.value }
        let none = try await thread.onReactor { asked.withLock { $0 } }
        #expect(!none)

        await thread.stop()
    }

    @Test("a refused connect throws ConnectionRefusedError")
    func connectRefused() async throws {
        let thread = await BackgroundReactor.start()
        let listener = try await thread.reactor.listen(port: 0, interface: "127.0.0.1")
        let port = listener.port
        await listener.close()
        await #expect(throws: ConnectionRefusedError.self) {
            _ = try await thread.reactor.connect(host: "127.0.0.1", port: port)
        }
        await #expect(throws: ConnectionRefusedError.self) {
            _ = try await thread.reactor.connectTCP("127.0.0.1", port) { Protocol() }
        }
        await thread.stop()
    }

    @Test("connectTCP { protocol } returns the protocol after its connectionMade ran")
    func connectProtocol() async throws {
        let thread = await BackgroundReactor.start()
        let listener = try await thread.reactor.listen(port: 0, interface: "127.0.0.1")
        let server = serveEcho(listener)

        let client = try await thread.reactor.connectTCP("127.0.0.1", listener.port) { Greeter() }
        let made = try await thread.onReactor { client.value.made }
        #expect(made)
        // It talks: the greeting comes back through the echo server.
        await thread.eventually("the echo of the greeting arrived") { client.value.received == Array("hi".utf8) }
        try await thread.onReactor { client.value.transport?.loseConnection() }
        await thread.eventually("the client's connection is lost") { client.value.lost }

        await listener.close()
        await server.value
        await thread.stop()
    }

    @Test("the peer's reset makes inbound throw ConnectionLost, and writes then throw it too")
    func peerReset() async throws {
        let thread = await BackgroundReactor.start()
        let listener = try await thread.reactor.listen(port: 0, interface: "127.0.0.1")
        let raw = rawConnect(port: listener.port)
        var accepted = listener.makeAsyncIterator()
        let server = try #require(try await accepted.next())

        #expect(send(raw, "x", 1, 0) == 1)
        #expect(try await read(server, count: 1) == Array("x".utf8))
        resetAndClose(raw)  // SO_LINGER 0: close sends a reset
        await #expect(throws: ConnectionLost.self) { _ = try await readToEnd(server) }
        await #expect(throws: ConnectionLost.self) { try await server.write("z") }

        await listener.close()
        await thread.stop()
    }

    @Test("abort: our inbound delivers what was buffered, then ends; the peer sees the end")
    func abortLocally() async throws {
        let thread = await BackgroundReactor.start()
        let (listener, client, server) = try await ConnectedAsyncPair.tcp(on: thread).parts

        try await client.write("y")
        await thread.eventually("the server buffered y") { server.core.inbound.withLock { $0.buffered } == 1 }
        server.abort()
        #expect(try await readToEnd(server) == Array("y".utf8))
        #expect(try await readToEnd(client) == [])
        await #expect(throws: ConnectionAborted.self) { try await server.write("z") }

        await client.close()
        await listener.close()
        await thread.stop()
    }

    @Test("stopping the reactor ends waiting readers and fails pending connects")
    func reactorStop() async throws {
        let thread = await BackgroundReactor.start()
        let listener = try await thread.reactor.listen(port: 0, interface: "127.0.0.1")
        let client = try await thread.reactor.connect(host: "127.0.0.1", port: listener.port)
        let resolver = HangingResolver()
        let asked = resolver.asked
        try await thread.onReactor { thread.reactor.resolver = resolver }

        let reader = Task { try await readToEnd(client) }
        let acceptor = Task { () -> [AsyncConnection] in
            var kept: [AsyncConnection] = []  // kept open: dropping one would close it
            for try await connection in listener { kept.append(connection) }
            return kept
        }
        let connecting = Task { try await thread.reactor.connect(host: "never.invalid", port: 80) }
        await thread.eventually("the lookup started") { asked.withLock { $0 } }
        await thread.eventually("the reader waits") { client.core.inbound.withLock { $0.consumer.isWaiting } }

        await thread.stop()
        await #expect(throws: ConnectionLost.self) { _ = try await reader.value }
        await #expect(throws: UserError.self) { _ = try await connecting.value }
        // The shutdown closed the port: the accept sequence ended.
        let kept = try await acceptor.value
        #expect(kept.count == 1)
        await #expect(throws: ConnectionLost.self) { _ = try await readToEnd(kept[0]) }
        // Calls after the stop answer at once (the connection is gone, the port closed).
        await #expect(throws: ConnectionLost.self) { try await client.write("late") }
        await listener.close()
        await client.close()
    }

    @Test("one task at a time on inbound; a cancelled read loses nothing")
    func cancelledRead() async throws {
        let thread = await BackgroundReactor.start()
        let (listener, client, server) = try await ConnectedAsyncPair.tcp(on: thread).parts

        let waiting = Task { try await read(server, count: 1) }
        await thread.eventually("the read waits") { server.core.inbound.withLock { $0.consumer.isWaiting } }
        await #expect(throws: AsyncConnectionError.concurrentIteration) { _ = try await read(server, count: 1) }
        waiting.cancel()
        await #expect(throws: CancellationError.self) { _ = try await waiting.value }

        try await client.write("after")
        #expect(try await read(server, count: 5) == Array("after".utf8))

        await client.close()
        await server.close()
        await listener.close()
        await thread.stop()
    }

    @Test("cancellation ends only the wait it interrupts: after reads, before a read, during an accept")
    func cancellationIsScopedToItsWait() async throws {
        let thread = await BackgroundReactor.start()
        let (listener, client, server) = try await ConnectedAsyncPair.tcp(on: thread).parts

        // Three reads that complete, then one that waits and is cancelled: each
        // read's cancellation handler was removed when its read returned (a
        // stale one would run here, on a finished wait's frame: ASan's check).
        let reads = Locked(0)
        let reader = Task {
            for _ in 0..<3 {
                _ = try await read(server, count: 1)
                reads.withLock { $0 += 1 }
            }
            _ = try await read(server, count: 1)
        }
        for (index, byte) in Array("abc".utf8).enumerated() {
            try await client.write([byte])
            await thread.eventually("read \(index + 1) returned") { reads.withLock { $0 } == index + 1 }
        }
        await thread.eventually("the fourth read waits") { server.core.inbound.withLock { $0.consumer.isWaiting } }
        reader.cancel()
        await #expect(throws: CancellationError.self) { try await reader.value }
        #expect(reads.withLock { $0 } == 3)
        #expect(!server.core.inbound.withLock { $0.consumer.isWaiting })

        // A task cancelled before it reads: it throws at once, without waiting,
        // and the bytes stay for the next reader.
        try await client.write("kept")
        await thread.eventually("the bytes are buffered") { server.core.inbound.withLock { $0.buffered == 4 } }
        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            var iterator = server.inbound.makeAsyncIterator()
            return try await iterator.next()
        }
        // A buffered chunk is returned without waiting, so the early reader
        // either takes it or, had it waited, would throw; here it must take it.
        #expect(try await early.value == Array("kept".utf8))
        let waitingEarly = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await read(server, count: 1)
        }
        await #expect(throws: CancellationError.self) { _ = try await waitingEarly.value }
        try await client.write("after")
        #expect(try await read(server, count: 5) == Array("after".utf8))

        // An accept wait, cancelled; the listener still accepts afterwards.
        let accepting = Task {
            var iterator = listener.makeAsyncIterator()
            return try await iterator.next()
        }
        await thread.eventually("the accept waits") { listener.core.state.withLock { $0.consumer.isWaiting } }
        accepting.cancel()
        await #expect(throws: CancellationError.self) { _ = try await accepting.value }
        let second = try await thread.reactor.connect(host: "127.0.0.1", port: listener.port)
        var iterator = listener.makeAsyncIterator()
        let accepted = try #require(try await iterator.next())
        #expect((accepted.peerAddress as? IPv4Address)?.port == (second.localAddress as? IPv4Address)?.port)

        for connection in [client, server, second, accepted] { await connection.close() }
        await listener.close()
        await thread.stop()
    }

    @Test("accept back-pressure: at most maxPendingConnections wait, none is lost")
    func acceptBackPressure() async throws {
        let thread = await BackgroundReactor.start()
        let listener = try await thread.reactor.listen(port: 0, interface: "127.0.0.1", maxPendingConnections: 2)
        var clients: [AsyncConnection] = []
        for _ in 0..<5 {
            // The kernel completes the handshake from the backlog even while accepting is paused.
            clients.append(try await thread.reactor.connect(host: "127.0.0.1", port: listener.port))
        }
        let core = listener.core
        await thread.eventually("two connections wait and accepting is paused") {
            core.state.withLock { $0.count == 2 && $0.acceptPaused }
        }
        let paused = try await thread.onReactor { core.port?.consumerPaused == true }
        #expect(paused)

        var servers: [AsyncConnection] = []
        var iterator = listener.makeAsyncIterator()
        while servers.count < 5, let connection = try await iterator.next() {
            servers.append(connection)
        }
        #expect(servers.count == 5)
        #expect(core.state.withLock { $0.maxQueued } <= 2)
        // Every accepted connection is one of ours: each carries its client's port.
        let clientPorts = Set(clients.compactMap { ($0.localAddress as? IPv4Address)?.port })
        let serverPeers = Set(servers.compactMap { ($0.peerAddress as? IPv4Address)?.port })
        #expect(clientPorts == serverPeers)

        for connection in clients + servers { await connection.close() }
        await listener.close()
        await thread.stop()
    }
}

@Suite("Async connections: cancellation and release", .timeLimit(.minutes(1)))
struct AsyncReleaseTests {
    @Test("a write cancelled while waiting for the high-water mark is never sent; later writes are")
    func cancelledWriteIsNotSent() async throws {
        let thread = await BackgroundReactor.start(timeLimit: 50)
        let (listener, client, server) = try await ConnectedAsyncPair.unix(on: thread).parts
        let core = client.core

        let big = 2 * 1024 * 1024
        let bigBytes = pattern(count: big)
        let first = Task { try await client.write(bigBytes) }
        await thread.eventually("the first write is queued above the high-water mark") {
            core.bytesSubmitted == big && core.transportBufferSize > core.writeHighWaterMark
        }
        let second = Task { try await client.write([UInt8](repeating: 0xEE, count: 1000)) }
        await thread.eventually("the second write waits for admission") { core.waitingOps == 1 }
        second.cancel()
        await #expect(throws: CancellationError.self) { try await second.value }
        let third = Task { try await client.write(pattern(from: big, count: 1000)) }
        let closer = Task {
            try await third.value
            await client.close()
        }

        var checker = PatternChecker()
        for try await chunk in server.inbound { checker.check(chunk) }
        #expect(checker.received == big + 1000, "the cancelled write's 1000 bytes were not sent")
        #expect(checker.mismatches == 0)
        try await first.value
        try await closer.value

        await server.close()
        await listener.close()
        await thread.stop()
    }

    @Test("a write from a cancelled task on the reactor (the no-suspension path) is never sent; a later write is")
    func cancelledTaskWriteOnReactorIsNotSent() async throws {
        let thread = await BackgroundReactor.start(timeLimit: 50)
        let reactor = thread.reactor
        let (listener, client, server) = try await ConnectedAsyncPair.unix(on: thread).parts

        let outcome = await Task(executorPreference: reactor) { () -> (onReactor: Bool, cancelledWrite: Bool) in
            withUnsafeCurrentTask { $0?.cancel() }
            let onReactor = reactor.isRunningOnCurrentThread
            do {
                try await client.write([UInt8](repeating: 0xEE, count: 100))
                return (onReactor, false)
            } catch {
                return (onReactor, error is CancellationError)
            }
        }.value
        #expect(outcome.onReactor, "the write took the reactor-thread path")
        #expect(outcome.cancelledWrite, "the cancelled task's write threw CancellationError")
        try await client.write(pattern(count: 1000))
        await client.close()

        var checker = PatternChecker()
        for try await chunk in server.inbound { checker.check(chunk) }
        #expect(checker.received == 1000, "only the later write's bytes arrived")
        #expect(checker.mismatches == 0)

        await server.close()
        await listener.close()
        await thread.stop()
    }

    @Test("cancelling close() aborts the connection: the stuck write throws ConnectionAborted")
    func cancelledCloseAborts() async throws {
        let thread = await BackgroundReactor.start(timeLimit: 50)
        let (listener, client, server) = try await ConnectedAsyncPair.unix(on: thread).parts
        let core = client.core

        let big = 2 * 1024 * 1024
        let bigBytes = pattern(count: big)
        let writer = Task { try await client.write(bigBytes) }
        await thread.eventually("the write is queued") { core.bytesSubmitted == big && core.transportBufferSize > 0 }
        let closer = Task { await client.close() }
        await thread.eventually("close was requested") { core.transportBufferSize > 0 && client.core.closeWasRequested }
        closer.cancel()
        await closer.value
        await #expect(throws: ConnectionAborted.self) { try await writer.value }
        // The server gets a part of the stream, then the end (or a reset): never more than was written.
        var checker = PatternChecker()
        do { for try await chunk in server.inbound { checker.check(chunk) } } catch is ConnectionLost {}
        #expect(checker.received < big)
        #expect(checker.mismatches == 0)

        await server.close()
        await listener.close()
        await thread.stop()
    }

    @Test("dropping the last reference to a connection closes it; closing a listener closes the connections nobody took")
    func releaseCloses() async throws {
        let thread = await BackgroundReactor.start()
        let listener = try await thread.reactor.listen(port: 0, interface: "127.0.0.1")
        var accepted = listener.makeAsyncIterator()

        // Dropped client: the server's inbound ends.
        var dropped: AsyncConnection? = try await thread.reactor.connect(host: "127.0.0.1", port: listener.port)
        let server = try #require(try await accepted.next())
        try await dropped!.write("bye")
        dropped = nil
        #expect(try await readToEnd(server) == Array("bye".utf8))
        await server.close()

        // A connection accepted but never taken is closed with the listener.
        let client = try await thread.reactor.connect(host: "127.0.0.1", port: listener.port)
        await thread.eventually("the listener holds the connection") { listener.core.state.withLock { $0.count == 1 } }
        await listener.close()
        #expect(try await accepted.next() == nil)
        #expect(try await readToEnd(client) == [])
        await client.close()
        await thread.stop()
    }
}

/// Says "hi" in connectionMade and records what comes back (reactor thread only).
final class Greeter: Protocol {
    var made = false
    var received: [UInt8] = []
    var lost = false

    override func connectionMade() throws {
        made = true
        transport!.write("hi")
    }

    override func dataReceived(_ data: Span<UInt8>) throws {
        received += data.array
    }

    override func connectionLost(_ reason: any Error) {
        lost = true
    }
}

/// A resolver that never answers (reactor thread only); records the
/// request and its cancellation where other threads can look.
final class HangingResolver: NameResolver, @unchecked Sendable {
    let asked = Locked(false)
    let cancelled = Locked(false)

    final class Lookup: HostResolution {
        let cancelled: Locked<Bool>
        init(_ cancelled: Locked<Bool>) { self.cancelled = cancelled }
        func cancel() { cancelled.withLock { $0 = true } }
    }

    func resolveHostName(_ host: String, on reactor: Reactor,
                         completion: @escaping (Result<[String], any Error>) -> Void) -> (any HostResolution)? {
        asked.withLock { $0 = true }
        return Lookup(cancelled)
    }
}

/// An actor on the reactor's executor that runs echo round trips.
actor Pinger {
    let reactor: Reactor
    nonisolated var unownedExecutor: UnownedSerialExecutor { reactor.asUnownedSerialExecutor() }

    init(reactor: Reactor) {
        self.reactor = reactor
    }

    /// `rounds` two-byte round trips over `connection`, isolated to this
    /// actor at every step (it traps otherwise); how many came back right.
    func ping(_ connection: AsyncConnection, rounds: Int) async throws -> Int {
        try await pingRounds(connection, rounds: rounds) {
            reactor.preconditionIsolated()
            return true
        }.good
    }

    /// Listens, connects to its own echo server, makes `rounds` round trips
    /// and closes both ends, every step isolated to this actor (it traps
    /// otherwise).
    func session(rounds: Int) async throws -> Int {
        let listener = try await reactor.listen(port: 0, interface: "127.0.0.1")
        reactor.preconditionIsolated()
        let server = serveEcho(listener)
        let client = try await reactor.connect(host: "127.0.0.1", port: listener.port)
        reactor.preconditionIsolated()
        let good = try await ping(client, rounds: rounds)
        try await client.write("bye")
        await client.close()
        reactor.preconditionIsolated()
        await listener.close()
        reactor.preconditionIsolated()
        await server.value
        return good
    }
}

/// `rounds` two-byte round trips over `connection`, in the caller's
/// isolation (an actor's `inbound` wait stays in it); `stepIsRight` is asked
/// before each write, after it and after each reply (the thread, the
/// isolation). Returns how many replies came back right and how many steps
/// were not.
nonisolated(nonsending) func pingRounds(_ connection: AsyncConnection, rounds: Int,
                                        stepIsRight: () -> Bool) async throws -> (good: Int, wrongSteps: Int) {
    var iterator = connection.inbound.makeAsyncIterator()
    var good = 0
    var wrongSteps = 0
    for round in 0..<rounds {
        if !stepIsRight() { wrongSteps += 1 }
        let message = withUnsafeBytes(of: UInt16(round).littleEndian, Array.init)
        try await connection.write(message)
        if !stepIsRight() { wrongSteps += 1 }
        var reply: [UInt8] = []
        while reply.count < message.count, let chunk = try await iterator.next(isolation: #isolation) { reply += chunk }
        if !stepIsRight() { wrongSteps += 1 }
        if reply == message { good += 1 }
    }
    return (good, wrongSteps)
}
