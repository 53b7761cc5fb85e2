// swisted-hook-check: Swisted's wake-up hook (Sources/Swisted/Reactor/WakeUpHook.swift)
// in a process where another global-enqueue hook was installed first. Started
// by Tests/SwistedTests/WakeUpHookTests.swift as a child process: the hook is
// process-wide and installed once, so the test process cannot arrange this.
//
//     swisted-hook-check ROUNDS
//
// Installs a counting hook that passes every job on to the global pool, then
// runs a reactor on a thread of its own and an actor on it, from a task without
// an executor preference: the actor listens, connects to itself, and makes
// ROUNDS round trips between the two ends (every await isolated to the actor).
// Prints `ROUNDS <good>`, `CROSS <jobs that reached the reactor from other
// threads during the round trips>`, `PASSED_ON <jobs the counting hook saw
// after the reactor ran>`, `ON_TOP <yes|no>` (Swisted's hook is the one
// installed), and exits 0 if every check holds, 1 otherwise.

import CLibUV
import Glibc
import Swisted
import Synchronization

/// The hook installed before Swisted's: counts the jobs it is given.
enum CountingHook {
    static let count = Atomic<Int>(0)
    static let hook: WakeUpHook.Hook = { job, original in
        CountingHook.count.add(1, ordering: .relaxed)
        original(job)
    }
}

/// Both ends of a loopback connection, driven from the reactor thread.
actor Pair {
    let reactor: Reactor
    nonisolated var unownedExecutor: UnownedSerialExecutor { reactor.asUnownedSerialExecutor() }

    init(reactor: Reactor) {
        self.reactor = reactor
    }

    /// Reads exactly `count` bytes from `iterator`.
    private func read(_ iterator: inout AsyncConnection.Inbound.AsyncIterator, _ count: Int) async throws -> [UInt8] {
        var bytes: [UInt8] = []
        while bytes.count < count {
            guard let chunk = try await iterator.next(isolation: self) else { break }
            bytes += chunk
        }
        return bytes
    }

    /// Listens, connects, and makes `rounds` round trips; how many came back right.
    func run(rounds: Int) async throws -> (good: Int, cross: Int) {
        let listener = try await reactor.listen(port: 0, interface: "127.0.0.1")
        let client = try await reactor.connect(host: "127.0.0.1", port: listener.port)
        var accepted = listener.makeAsyncIterator()
        guard let server = try await accepted.next(isolation: self) else { return (0, 0) }
        let crossBefore = reactor.crossThreadExecutorJobs
        var atServer = server.inbound.makeAsyncIterator()
        var atClient = client.inbound.makeAsyncIterator()
        var good = 0
        for round in 0..<rounds {
            let message = withUnsafeBytes(of: UInt16(round).littleEndian, Array.init)
            try await client.write(message)
            try await server.write(try await read(&atServer, 2))
            if try await read(&atClient, 2) == message { good += 1 }
        }
        let cross = reactor.crossThreadExecutorJobs - crossBefore
        await client.close()
        await server.close()
        await listener.close()
        return (good, cross)
    }
}

@main
struct HookCheck {
    static func main() async {
        let rounds = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 200 : 200
        let slot = swisted_swift_task_enqueue_global_hook()
        let counting = unsafeBitCast(CountingHook.hook, to: UnsafeMutableRawPointer.self)
        slot.pointee = counting

        // Everything Swisted made is released before the checks print (the
        // sanitizers' leak check runs at exit).
        guard let outcome = await check(rounds: rounds) else { exit(1) }
        let onTop = slot.pointee != nil && slot.pointee != counting
        print("ROUNDS \(outcome.good)")
        print("CROSS \(outcome.cross)")
        print("PASSED_ON \(outcome.passedOn)")
        print("ON_TOP \(onTop ? "yes" : "no")")
        fflush(nil)
        let ok = outcome.good == rounds && outcome.cross <= 2 && outcome.passedOn >= 1 && onTop
        exit(ok ? 0 : 1)
    }

    /// Runs a reactor on a thread of its own, the round trips from an actor on
    /// it, and a global job after it; nil if something failed (printed).
    static func check(rounds: Int) async -> (good: Int, cross: Int, passedOn: Int)? {
        let reactor = Reactor()
        let background: ReactorThread
        do {
            background = try reactor.runInBackground(name: "hook-check")
        } catch {
            print("runInBackground failed: \(error)")
            return nil
        }
        let pair = Pair(reactor: reactor)
        let outcome: (good: Int, cross: Int)
        do {
            outcome = try await Task { try await pair.run(rounds: rounds) }.value
        } catch {
            print("round trips failed: \(error)")
            await background.stop()
            return nil
        }
        // A job for the global pool: Swisted's hook passes it on to the counting one.
        let seenBefore = CountingHook.count.load(ordering: .relaxed)
        _ = await Task.detached { 42 }.value
        let passedOn = CountingHook.count.load(ordering: .relaxed) - seenBefore
        await background.stop()
        return (outcome.good, outcome.cross, passedOn)
    }
}
