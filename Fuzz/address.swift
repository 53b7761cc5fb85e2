// Fuzz target: address and endpoint parsing, the checks listenTCP,
// connectTCP, listenUDP, UDP writes and listenUNIX/connectUNIX make before
// touching a socket: port ranges (isValidPort), IP literals
// (SocketAddress(ipLiteral:port:) over uv_ip4_addr/uv_ip6_addr), listen
// interfaces ("" / "localhost" / literals, brackets), Unix socket names
// (UNIXSocketName: length limits, NUL bytes, the abstract namespace), and the
// printable forms (IPv4Address, IPv6Address, UNIXAddress).
//
// No socket is opened: these are the functions the reactor calls to
// validate its arguments, reached with @testable import.
//
// Invariants: nothing crashes; an accepted IP literal is what inet_pton
// accepts (before any %zone) and holds no NUL byte; its text form parses
// back to the same address and port; Unix names are accepted exactly when
// non-empty, within sun_path, and NUL-free unless abstract.
//
// Input: [which check] [port: 4 bytes, little-endian, signed] then the string bytes.

@testable import Swisted
import Glibc

/// What inet_pton says of `text` (the part before a `%zone` for IPv6).
func ptonAccepts(_ text: [UInt8], v6: Bool) -> Bool {
    var bytes = text
    if v6, let percent = bytes.firstIndex(of: UInt8(ascii: "%")) { bytes = Array(bytes[..<percent]) }
    if bytes.contains(0) { return false }
    bytes.append(0)
    var storage = in6_addr()
    return bytes.withUnsafeBufferPointer { buffer in
        buffer.withMemoryRebound(to: CChar.self) { inet_pton(v6 ? AF_INET6 : AF_INET, $0.baseAddress!, &storage) == 1 }
    }
}

func checkLiteral(_ text: String, port: Int) {
    guard isValidPort(port) else { return }  // the callers check the port first (it is a precondition)
    let parsed = SocketAddress(ipLiteral: text, port: port)
    let bytes = Array(text.utf8)
    let v6 = text.contains(":")
    let pton = ptonAccepts(bytes, v6: v6)
    if let parsed {
        check(!bytes.contains(0), "accepted an address with a NUL byte: \(show(bytes))")
        check(pton, "accepted \(show(bytes)), which inet_pton refuses")
        check(parsed.port == port, "port \(parsed.port) != \(port)")
        check(parsed.isIPv6 == v6, "family of \(show(bytes))")
        let canonical = parsed.ipString
        let again = SocketAddress(ipLiteral: canonical, port: port)
        check(again != nil, "the text form \(canonical) of \(show(bytes)) does not parse")
        check(again?.ipString == canonical, "\(canonical) parses back as \(again?.ipString ?? "nil")")
        let printable = parsed.address(type: .tcp)
        check(!printable.description.isEmpty, "empty description")
        if let v4 = printable as? IPv4Address {
            check(v4.port == port && v4.host == canonical, "\(v4)")
        } else if let v6 = printable as? IPv6Address {
            check(v6.port == port && v6.host == canonical, "\(v6)")
        } else {
            check(false, "\(printable) is neither IPv4Address nor IPv6Address")
        }
    } else if !v6 {
        // An IPv4 string inet_pton accepts (and has no % or NUL) must be accepted too.
        check(!pton || bytes.contains(0), "refused \(show(bytes)), which inet_pton accepts")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAddress(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    let which = input.byte()
    let portBytes = input.take(4)
    // A port anywhere in Int32 (negative ones too), sometimes beyond it.
    var port = Int(Int32(bitPattern: UInt32(portBytes[0]) | UInt32(portBytes[1]) << 8
                         | UInt32(portBytes[2]) << 16 | UInt32(portBytes[3]) << 24))
    if which & 0x80 != 0 { port = port &* 65536 }
    let raw = input.rest
    // Valid UTF-8 is repaired by String(decoding:); NUL bytes stay in.
    let text = String(decoding: raw, as: UTF8.self)

    check(isValidPort(port) == (0...65535).contains(port), "isValidPort(\(port))")

    switch which % 4 {
    case 0:
        // connectTCP / UDP destinations: brackets stripped, then a literal.
        let stripped = stripBrackets(text)
        if text.hasPrefix("["), text.hasSuffix("]"), text.count >= 2 {
            check(stripped == String(text.dropFirst().dropLast()), "stripBrackets(\(text))")
        } else {
            check(stripped == text, "stripBrackets changed \(text)")
        }
        checkLiteral(stripped, port: port)
    case 1:
        // listenTCP / listenUDP interfaces.
        guard isValidPort(port) else { break }
        let address = SocketAddress(listenInterface: text, port: port)
        switch text {
        case "": check(address?.ipString == "0.0.0.0", "\"\" binds \(String(describing: address?.ipString))")
        case "localhost": check(address?.ipString == "127.0.0.1", "localhost binds \(String(describing: address?.ipString))")
        default:
            let literal = SocketAddress(ipLiteral: stripBrackets(text), port: port)
            check((address == nil) == (literal == nil), "listenInterface and ipLiteral disagree on \(show(raw))")
            checkLiteral(stripBrackets(text), port: port)
        }
    case 2:
        // listenUNIX / connectUNIX names.
        let bytes = Array(text.utf8)
        let abstract = bytes.first == 0
        let limit = UNIXSocketName.maxPathBytes + (abstract ? 1 : 0)
        let expected = !bytes.isEmpty && bytes.count <= limit && (abstract || !bytes.contains(0))
        do {
            let name = try UNIXSocketName(text)
            check(expected, "accepted the Unix name \(show(bytes))")
            check(name.isAbstract == abstract, "isAbstract of \(show(bytes))")
        } catch {
            check(!expected, "refused the Unix name \(show(bytes)): \(error)")
            check(!error.reason.isEmpty, "an InvalidAddressError without a reason")
        }
        let printable = UNIXAddress(name: text).description
        check(!printable.utf8.contains(0), "UNIXAddress prints a NUL byte: \(printable)")
        check(UNIXAddress(name: nil).description == "UNIXAddress(None)", "unnamed UNIXAddress")
    default:
        // The printable forms take any host text and any port.
        let v4 = IPv4Address(type: .udp, host: text, port: port)
        let v6 = IPv6Address(type: .tcp, host: text, port: port, flowInfo: port, scopeID: -port)
        // Compared as bytes: a combining mark in `text` joins the quote before it into one Character.
        check(v4.description.utf8.starts(with: "IPv4Address(type='UDP', host='".utf8), "\(v4)")
        check(v6.description.utf8.reversed().starts(with: "scopeID=\(-port))".utf8.reversed()), "\(v6)")
        checkLiteral(text, port: port & 0xFFFF)
    }
    return 0
}
