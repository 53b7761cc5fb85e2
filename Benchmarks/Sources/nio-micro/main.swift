// nio-micro: the same microbenchmarks as swisted-micro on SwiftNIO, one JSON line.
//   scheduleTask+cancel: 1,000,000 times, schedule a task and cancel it at
//     once, on the loop's own thread: ns per pair; the same with 1,000 other
//     tasks pending (each round schedules one and cancels the oldest).
//   execute: 1,000,000 closures submitted with `execute` from another thread
//     and run by the loop: ns per call, first submit to last run.
import Glibc
import NIOCore
import NIOPosix
import Synchronization

let count = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1])! : 1_000_000

func now() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let loop = group.next()

let (scheduleNs, schedulePendingNs) = try loop.submit { () -> (Double, Double) in
    var t0 = now()
    for index in 0..<count {
        loop.scheduleTask(in: .milliseconds(1000 + Int64(index % 1000))) {}.cancel()
    }
    let immediate = Double(now() - t0) / Double(count)
    var ring = (0..<1000).map { index in loop.scheduleTask(in: .milliseconds(1000 + Int64(index))) {} }
    t0 = now()
    for index in 0..<count {
        let slot = index % ring.count
        ring[slot].cancel()
        ring[slot] = loop.scheduleTask(in: .milliseconds(1000 + Int64(index % 1000))) {}
    }
    let pending = Double(now() - t0) / Double(count)
    for task in ring { task.cancel() }
    return (immediate, pending)
}.wait()

final class Done: @unchecked Sendable { var ran = 0 }  // touched only on the loop
let done = Done()
let finished = loop.makePromise(of: UInt64.self)
let t0 = now()
for _ in 0..<count {
    loop.execute {
        done.ran += 1
        if done.ran == count { finished.succeed(now()) }
    }
}
let end = try finished.futureResult.wait()
let executeNs = Double(end - t0) / Double(count)
try group.syncShutdownGracefully()
print("{\"calllater_cancel_ns\": \(scheduleNs), \"calllater_cancel_1k_pending_ns\": \(schedulePendingNs), \"call_from_thread_ns\": \(executeNs), \"count\": \(count)}")
