import CLibUV

/// An error reported by libuv: its negative error code, with libuv's own
/// name and message for it.
///
/// Printed as libuv prints it, for example `ECONNREFUSED: connection refused`.
/// Match a particular code with the Swift-named constants:
///
/// ```swift
/// catch let error as UVError where error == .connectionRefused { ... }
/// ```
///
/// Threading: a value type, `Sendable`; use it anywhere.
public struct UVError: Error, Hashable, Sendable, CustomStringConvertible {
    /// libuv's error code (negative, for example `UV_ECONNREFUSED`).
    public let code: Int32

    /// Wraps a libuv error code. `code` should be negative, as libuv returns it.
    public init(code: Int32) {
        self.code = code
    }

    /// Wraps a libuv error constant such as `UV_EADDRINUSE`.
    public init(_ errno: uv_errno_t) {
        self.code = errno.rawValue
    }

    /// libuv's name for the error, such as `ECONNREFUSED` (`uv_err_name_r`).
    public var name: String {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { buffer in
            String(cString: uv_err_name_r(code, buffer.baseAddress, 64))
        }
    }

    /// libuv's message for the error, such as `connection refused` (`uv_strerror_r`).
    public var message: String {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 256) { buffer in
            String(cString: uv_strerror_r(code, buffer.baseAddress, 256))
        }
    }

    /// `NAME: message`, for example `ECONNREFUSED: connection refused`.
    public var description: String { "\(name): \(message)" }

    /// The corresponding libuv error is `UV_EOF`.
    public static let endOfFile = UVError(UV_EOF)
    /// The corresponding libuv error is `UV_EAGAIN`.
    public static let wouldBlock = UVError(UV_EAGAIN)
    /// The corresponding libuv error is `UV_ECANCELED`.
    public static let cancelled = UVError(UV_ECANCELED)
    /// The corresponding libuv error is `UV_ECONNREFUSED`.
    public static let connectionRefused = UVError(UV_ECONNREFUSED)
    /// The corresponding libuv error is `UV_ECONNRESET`.
    public static let connectionReset = UVError(UV_ECONNRESET)
    /// The corresponding libuv error is `UV_EPIPE`.
    public static let brokenPipe = UVError(UV_EPIPE)
    /// The corresponding libuv error is `UV_ETIMEDOUT`.
    public static let timedOut = UVError(UV_ETIMEDOUT)
    /// The corresponding libuv error is `UV_EADDRINUSE`.
    public static let addressInUse = UVError(UV_EADDRINUSE)
    /// The corresponding libuv error is `UV_EADDRNOTAVAIL`.
    public static let addressNotAvailable = UVError(UV_EADDRNOTAVAIL)
    /// The corresponding libuv error is `UV_EINVAL`.
    public static let invalidArgument = UVError(UV_EINVAL)
    /// The corresponding libuv error is `UV_EACCES`.
    public static let permissionDenied = UVError(UV_EACCES)
    /// The corresponding libuv error is `UV_EMFILE`.
    public static let tooManyOpenFiles = UVError(UV_EMFILE)
    /// The corresponding libuv error is `UV_ENOTCONN`.
    public static let notConnected = UVError(UV_ENOTCONN)
    /// The corresponding libuv error is `UV_ENETUNREACH`.
    public static let networkUnreachable = UVError(UV_ENETUNREACH)
    /// The corresponding libuv error is `UV_EAI_NONAME`.
    public static let unknownHost = UVError(UV_EAI_NONAME)

    /// Pattern-matches a `UVError` against any error, so `catch UVError.connectionRefused` works.
    public static func ~= (lhs: UVError, rhs: any Error) -> Bool {
        (rhs as? UVError) == lhs
    }
}

/// Turns a libuv return code into a thrown ``UVError`` when it is negative.
/// Returns the code otherwise (some calls return a count).
@inline(__always)
@discardableResult
func uvCheck(_ rc: Int32) throws(UVError) -> Int32 {
    if rc < 0 { throw UVError(code: rc) }
    return rc
}

/// Checks a libuv call that can fail only through a bug of ours (a NULL
/// callback, a closing handle): a precondition, named after the call.
@inline(__always)
func uvMustSucceed(_ rc: Int32, _ call: StaticString) {
    precondition(rc == 0, "Swisted bug: \(call) failed: \(UVError(code: rc))")
}
