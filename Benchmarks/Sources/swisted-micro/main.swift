// swisted-micro: reactor microbenchmarks, one JSON line on stdout.
//   callLater+cancel: 1,000,000 times, schedule a delayed call and cancel
//     it at once (a timeout that was not needed), on the reactor thread: ns per pair;
//   the same with 1,000 other calls pending (a server's many timeouts): each
//     round schedules one and cancels the oldest.
//   callFromThread: 1,000,000 closures posted from another thread and run
//     by the running reactor: ns per call, first post to last run.
import Glibc
import Swisted
import Synchronization

let count = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1])! : 1_000_000

func now() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

// callLater + cancel
let reactor = Reactor()
var t0 = now()
for index in 0..<count {
    try reactor.callLater(1 + Double(index % 1000) * 0.001) {}.cancel()
}
let calllaterNs = Double(now() - t0) / Double(count)

var ring: [DelayedCall] = (0..<1000).map { index in reactor.callLater(1 + Double(index) * 0.001) {} }
t0 = now()
for index in 0..<count {
    let slot = index % ring.count
    try ring[slot].cancel()
    ring[slot] = reactor.callLater(1 + Double(index % 1000) * 0.001) {}
}
let calllaterPendingNs = Double(now() - t0) / Double(count)
for call in ring { try call.cancel() }
ring.removeAll()

// callFromThread from one other thread
final class Done: @unchecked Sendable { var ran = 0; var end: UInt64 = 0 }
let done = ReactorBound(Done(), reactor: reactor)
let start = Atomic<UInt64>(0)
reactor.callWhenRunning {
    let thread = Thread {
        start.store(now(), ordering: .relaxed)
        for _ in 0..<count {
            reactor.callFromThread {
                let state = done.value
                state.ran += 1
                if state.ran == count {
                    state.end = now()
                    try reactor.stop()
                }
            }
        }
    }
    thread.start()
}
try reactor.run()
let cftNs = Double(done.value.end - start.load(ordering: .relaxed)) / Double(count)
print("{\"calllater_cancel_ns\": \(calllaterNs), \"calllater_cancel_1k_pending_ns\": \(calllaterPendingNs), \"call_from_thread_ns\": \(cftNs), \"count\": \(count)}")

/// A minimal thread (Foundation is not needed for one).
final class Thread: @unchecked Sendable {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    func start() {
        var tid = pthread_t()
        let box = Unmanaged.passRetained(self).toOpaque()
        pthread_create(&tid, nil, { arg in
            let thread = Unmanaged<Thread>.fromOpaque(arg!).takeRetainedValue()
            thread.body()
            return nil
        }, box)
        pthread_detach(tid)
    }
}
