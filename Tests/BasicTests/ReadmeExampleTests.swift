// The README's "Framing" and "Testing your protocols" examples, verbatim,
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

@Test("README: Chat answers every line, fed one byte at a time")
func chatAnswersEveryLine() throws {
    let transport = StringTransport()
    let chat = Chat()
    try chat.makeConnection(transport)
    try chat.receive("hi\r\nthere\r\n", chunkSize: 1)    // one byte at a time
    #expect(transport.string == "you said: hi\r\nyou said: there\r\n")
}
