import CLibUV
import Glibc

/// A host-name lookup in progress, which can be cancelled.
/// Threading: reactor thread only.
public protocol HostResolution: AnyObject {
    /// Cancels the lookup: its completion will not be called.
    func cancel()
}

/// Resolves host names for the reactor's connectors (Twisted's
/// `installNameResolver` idea): replace ``Reactor/resolver`` to answer names
/// from a table in tests, add a cache, or use another lookup.
///
/// Threading: called on the reactor thread; must call `completion` exactly
/// once on the reactor thread (synchronously is allowed: the connector still
/// delivers its outcome asynchronously), unless cancelled first.
public protocol NameResolver: AnyObject {
    /// Looks up `host` and returns its IP addresses as text (`"127.0.0.1"`,
    /// `"::1"`), in the order to try them, or an error (typically ``DNSLookupError``).
    func resolveHostName(_ host: String, on reactor: Reactor,
                         completion: @escaping (Result<[String], any Error>) -> Void) -> (any HostResolution)?
}

/// The default resolver: `uv_getaddrinfo` on libuv's thread pool (so the
/// reactor never blocks on a lookup), IPv6 and IPv4 results in the order
/// the system prefers.
///
/// Errors: ``DNSLookupError`` carrying the ``UVError`` (for example
/// `EAI_NONAME: unknown node or service`).
/// Threading: reactor thread only.
public final class UVNameResolver: NameResolver {
    public init() {}

    public func resolveHostName(_ host: String, on reactor: Reactor,
                                completion: @escaping (Result<[String], any Error>) -> Void) -> (any HostResolution)? {
        let request = AddressLookup(host: host, completion: completion)
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        let rc = uv_getaddrinfo(reactor.loop, request.request, addressLookupCallback, host, nil, &hints)
        if rc < 0 {
            // libuv never calls back for a call that failed: answer from here, later.
            request.release()
            reactor.callSoon { completion(.failure(DNSLookupError(host: host, underlying: UVError(code: rc)))) }
            return nil
        }
        return request
    }
}

/// One `uv_getaddrinfo` request. The request's `data` holds a +1 reference
/// until the callback, which frees the request memory.
private final class AddressLookup: HostResolution {
    let host: String
    let request: UnsafeMutablePointer<uv_getaddrinfo_t>
    var completion: ((Result<[String], any Error>) -> Void)?
    /// Set when the callback ran and the request memory is gone.
    var done = false

    init(host: String, completion: @escaping (Result<[String], any Error>) -> Void) {
        self.host = host
        self.completion = completion
        request = .allocate(capacity: 1)
        request.pointee.data = Unmanaged.passRetained(self).toOpaque()
    }

    /// Undoes `init`'s reference and memory when libuv did not take the request.
    func release() {
        request.deallocate()
        Unmanaged.passUnretained(self).release()
    }

    func cancel() {
        completion = nil
        guard !done else { return }
        // EBUSY: the lookup is already running on the thread pool; its
        // callback still comes, and finds no completion to call.
        _ = uv_cancel(UnsafeMutableRawPointer(request).assumingMemoryBound(to: uv_req_t.self))
    }

    func finished(_ status: Int32, _ result: UnsafeMutablePointer<addrinfo>?) {
        done = true
        var addresses: [String] = []
        var entry = result
        while let current = entry {
            if let sa = current.pointee.ai_addr, let address = SocketAddress(UnsafePointer(sa)) {
                let text = address.ipString
                if !addresses.contains(text) { addresses.append(text) }
            }
            entry = current.pointee.ai_next
        }
        if let result { uv_freeaddrinfo(result) }
        guard let completion else { return }
        self.completion = nil
        if status < 0 {
            completion(.failure(DNSLookupError(host: host, underlying: UVError(code: status))))
        } else if addresses.isEmpty {
            completion(.failure(DNSLookupError(host: host, detail: "no addresses")))
        } else {
            completion(.success(addresses))
        }
    }
}

private func addressLookupCallback(_ request: UnsafeMutablePointer<uv_getaddrinfo_t>?, _ status: Int32, _ result: UnsafeMutablePointer<addrinfo>?) {
    let lookup = Unmanaged<AddressLookup>.fromOpaque(request!.pointee.data).takeRetainedValue()
    request!.deallocate()
    lookup.finished(status, result)
}
