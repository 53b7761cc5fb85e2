/// The address of a Unix-domain socket, printed as Twisted prints it:
/// `UNIXAddress('/tmp/poetry.sock')`. `name` is nil for an unnamed end
/// (the client side of a connection, usually). A name starting with a NUL
/// byte (`"\0name"`) is in Linux's abstract namespace; it prints as `'\x00name'`.
///
/// Threading: a value, `Sendable`, usable on any thread.
public struct UNIXAddress: Address, Hashable {
    /// The socket's path or abstract name, or nil when unnamed.
    public var name: String?

    public init(name: String?) {
        self.name = name
    }

    public var description: String {
        guard let name else { return "UNIXAddress(None)" }
        return "UNIXAddress('\(name.replacingOccurrences(of: "\0", with: "\\x00"))')"
    }
}

extension String {
    /// Replaces every occurrence of `target` (no Foundation in the library).
    fileprivate func replacingOccurrences(of target: Character, with replacement: String) -> String {
        var result = ""
        for character in self { if character == target { result += replacement } else { result.append(character) } }
        return result
    }
}
