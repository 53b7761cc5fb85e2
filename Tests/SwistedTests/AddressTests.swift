import Testing
@testable import Swisted
#if canImport(Glibc)
import Glibc
#endif

/// IPv4 addresses read from the kernel keep the raw address and format it on
/// demand (issue #7); they must read, print, compare and hash exactly as
/// addresses made from text.
@Suite("TCP addresses (IPv4 formatted on demand)")
struct AddressTests {
    /// `a.b.c.d` as `sin_addr.s_addr` (network byte order), via inet_pton.
    func raw(_ text: String) -> UInt32 {
        var addr = in_addr()
        let rc = text.withCString { inet_pton(AF_INET, $0, &addr) }
        precondition(rc == 1)
        return addr.s_addr
    }

    @Test("the raw form formats as inet_ntop does, for every octet width")
    func formatsLikeInetNtop() {
        for text in ["0.0.0.0", "127.0.0.1", "255.255.255.255", "10.0.99.100", "1.22.200.9", "192.168.1.254"] {
            let address = IPv4Address(type: .tcp, networkOrder: raw(text), port: 80)
            #expect(address.host == text)
            #expect(IPv4Host.format(networkOrder: raw(text)) == text)
        }
        // Against libc for a spread of addresses.
        for value in stride(from: UInt32(0), to: UInt32.max - 40_000_000, by: 40_000_003) {
            var addr = in_addr(s_addr: value)
            var buffer = [CChar](repeating: 0, count: 32)
            inet_ntop(AF_INET, &addr, &buffer, 32)
            let expected = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            #expect(IPv4Host.format(networkOrder: value) == expected)
        }
    }

    @Test("raw and text forms of one address are equal, hash alike and print alike")
    func rawEqualsText() {
        let lazy = IPv4Address(type: .tcp, networkOrder: raw("127.0.0.1"), port: 8000)
        let text = IPv4Address(type: .tcp, host: "127.0.0.1", port: 8000)
        #expect(lazy == text)
        #expect(lazy.hashValue == text.hashValue)
        #expect(Set([lazy, text]).count == 1)
        #expect(lazy.description == "IPv4Address(type='TCP', host='127.0.0.1', port=8000)")
        #expect(lazy != IPv4Address(type: .tcp, networkOrder: raw("127.0.0.2"), port: 8000))
        #expect(lazy != IPv4Address(type: .udp, host: "127.0.0.1", port: 8000))
        #expect(lazy != IPv4Address(type: .tcp, host: "127.0.0.1", port: 8001))
    }

    @Test("setting host replaces the raw address")
    func settingHost() {
        var address = IPv4Address(type: .tcp, networkOrder: raw("10.1.2.3"), port: 1)
        address.host = "localhost"
        #expect(address.host == "localhost")
        #expect(address == IPv4Address(type: .tcp, host: "localhost", port: 1))
    }

    @Test("SocketAddress gives the lazily formatted IPv4Address, and the same text as before")
    func fromSocketAddress() throws {
        let socket = try #require(SocketAddress(ipLiteral: "192.0.2.33", port: 4242))
        let address = try #require(socket.address(type: .tcp) as? IPv4Address)
        #expect(address.host == "192.0.2.33")
        #expect(address.port == 4242)
        #expect(socket.ipString == "192.0.2.33")
        let v6 = try #require(SocketAddress(ipLiteral: "::1", port: 1))
        #expect(v6.ipString == "::1")
    }
}
