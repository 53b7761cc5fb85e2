import InMemoryLogging
import Logging
import Swisted
import Testing

@Suite("Deferred: errors nobody handled are logged once")
struct UnhandledErrorTests {
    @Test("A failed Deferred dropped unhandled logs 'Unhandled error in Deferred' once, with where it was created")
    func logsOnceWithCreationSite() throws {
        let log = TestLog()
        var line: UInt = 0
        do {
            line = #line + 1
            let d = Deferred<Int>()
            d.logger = log.logger
            try d.errback(Boom(tag: 7))
            d.addCallback { $0 + 1 }  // a callback does not handle an error
        }
        #expect(log.messages.count == 1)
        let entry = try #require(log.handler.entries.first)
        #expect(entry.level == .error)
        #expect(entry.message.description.hasPrefix("Unhandled error in Deferred created at DeferredTests/UnhandledErrorTests.swift:\(line): "))
        #expect(entry.message.description.contains("Boom(tag: 7)"))
        #expect(entry.metadata["created"] == .string("DeferredTests/UnhandledErrorTests.swift:\(line)"))
    }

    @Test("Handled errors, values, and Deferreds that never fired log nothing")
    func handledLogsNothing() throws {
        let log = TestLog()
        do {
            let recovered = Deferred<Int>()
            recovered.logger = log.logger
            recovered.addErrback { _ in 0 }
            try recovered.errback(Boom())

            let fine = Deferred<Int>.succeed(1)
            fine.logger = log.logger

            let pending = Deferred<Int>()
            pending.logger = log.logger

            // Handed on to the Deferred it waits on: handled there.
            let inner = Deferred<Int>.fail(Boom())
            inner.logger = log.logger
            let outer = Deferred<Int>()
            outer.logger = log.logger
            outer.addCallback { _ in inner }
            outer.addErrback { _ in 0 }
            try outer.callback(0)
        }
        #expect(log.messages.isEmpty, "\(log.messages)")
    }

    @Test("An error carried into a type-changing step is logged once, by the Deferred that holds it at the end")
    func derivedLogsOnce() throws {
        let log = TestLog()
        var line: UInt = 0
        do {
            let d = Deferred<Int>()
            d.logger = log.logger
            line = #line + 1
            let text = d.addCallback { "\($0)" }
            try d.errback(Boom(tag: 1))
            _ = text
        }
        #expect(log.messages.count == 1)
        #expect(log.messages.first?.hasPrefix("Unhandled error in Deferred created at DeferredTests/UnhandledErrorTests.swift:\(line)") == true)
    }

    @Test("An errback that throws leaves a new unhandled error; cancel() without errback leaves CancelledError")
    func rethrownAndCancelled() throws {
        let log = TestLog()
        do {
            let d = Deferred<Int>()
            d.logger = log.logger
            d.addErrback { _ -> Int in throw Boom(tag: 2) }
            try d.errback(Boom(tag: 1))
            let c = Deferred<Int>()
            c.logger = log.logger
            c.cancel()
        }
        #expect(log.messages.count == 2)
        #expect(log.messages.contains { $0.contains("Boom(tag: 2)") })
        #expect(log.messages.contains { $0.contains("CancelledError") })
    }
}

@Suite("Deferred: the default logger is SwistedLog.logger", .serialized)
struct UnhandledErrorGlobalLoggerTests {
    @Test("Without a logger of its own, a Deferred logs through SwistedLog.logger")
    func globalLogger() throws {
        // SwistedLog.logger is process-wide: other tests may log through it
        // meanwhile, so look only for this test's own error.
        struct Marker: Error { let id = "marker-\(UInt64.random(in: 0...UInt64.max))" }
        let marker = Marker()
        let handler = InMemoryLogHandler()
        let saved = SwistedLog.logger
        SwistedLog.logger = Logger(label: "deferred-global-test") { _ in handler }
        defer { SwistedLog.logger = saved }
        do {
            let d = Deferred<Int>()
            try d.errback(marker)
        }
        let mine = handler.entries.filter { $0.message.description.contains(marker.id) }
        #expect(mine.count == 1)
        #expect(mine.first?.message.description.hasPrefix("Unhandled error in Deferred") == true)
    }
}
