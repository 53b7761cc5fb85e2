// The README's "Framing" (with "Pausing delivery") and "Testing your protocols" examples, verbatim,
// so the documentation cannot drift from the API.
import Swisted
import SwistedTesting
import Testing

final class Chat: LineReceiver {
    override func lineReceived(_ line: Span<UInt8>) throws {
        if line.string == "bye" { transport!.loseConnection(); return }
        sendLine("you said: " + line.string)    // line + "\r\n", one write
    }
}

final class InOrder: LineReceiver {
    var lookUp: (String) -> Deferred<String> = { Deferred.succeed($0) }

    override func lineReceived(_ line: Span<UInt8>) throws {
        pauseProducing()                       // no more lines until this one is answered
        lookUp(line.string)
            .addErrback { error in "ERR \(error)" }  // a failed lookup is answered too
            .addCallback { answer in
                self.sendLine(answer)
                self.resumeProducing()         // the next pipelined line, if any, now
            }
    }
}

@Test("README: InOrder answers pipelined lines one at a time, in order")
func inOrderAnswersPipelinedLines() throws {
    let transport = StringTransport()
    let server = InOrder()
    var waiting: [(request: String, answer: Deferred<String>)] = []
    server.lookUp = { request in
        let answer = Deferred<String>()
        waiting.append((request, answer))
        return answer
    }
    try server.makeConnection(transport)
    try server.receive("one\r\ntwo\r\nthree\r\n")          // three requests in one read
    #expect(waiting.map(\.request) == ["one"])
    #expect(server.paused && transport.producerState == .paused)
    try waiting[0].answer.callback("ONE")
    #expect(waiting.map(\.request) == ["one", "two"])
    struct NotFound: Error {}
    try waiting[1].answer.errback(NotFound())
    try waiting[2].answer.callback("THREE")
    #expect(transport.string == "ONE\r\nERR NotFound()\r\nTHREE\r\n")
    #expect(!server.paused && transport.producerState == .producing)

    let immediate = InOrder()                                    // answers at once: paused and resumed in one call
    let immediateTransport = StringTransport()
    try immediate.makeConnection(immediateTransport)
    try immediate.receive("a\r\nb\r\n")
    #expect(immediateTransport.string == "a\r\nb\r\n")
    #expect(!immediate.paused)
}

@Test("README: Chat answers every line, fed one byte at a time")
func chatAnswersEveryLine() throws {
    let transport = StringTransport()
    let chat = Chat()
    try chat.makeConnection(transport)
    try chat.receive("hi\r\nthere\r\n", chunkSize: 1)    // one byte at a time
    #expect(transport.string == "you said: hi\r\nyou said: there\r\n")
}
