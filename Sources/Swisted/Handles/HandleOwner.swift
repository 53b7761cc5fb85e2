import CLibUV

// The one place that knows how a libuv handle's life is tied to its Swift
// owner:
//
// - the handle's memory is allocated here and freed only in the close
//   callback (`uv_close`), never earlier, so libuv can never call back into
//   freed memory;
// - `handle->data` holds a +1 reference to the owner from `adopt` until the
//   close callback, so an owner with a live handle cannot be deallocated
//   (a listening port the user dropped keeps listening, as in Twisted);
// - hot-path callbacks (read, alloc, write) borrow the owner without
//   retain/release (`_withUnsafeGuaranteedRef`): the handle's own +1 keeps it
//   alive for the duration of the callback.

/// A Swift object that owns one libuv handle.
/// Reactor thread only, as is everything that owns a handle.
protocol HandleOwning: AnyObject {
    /// Called from the close callback, once, after libuv is done with the
    /// handle and before its memory is freed. Deliver `connectionLost` and
    /// friends here.
    func handleDidClose()

    /// Called when the reactor shuts down with this handle open: close it,
    /// with whatever reason fits (Twisted: ConnectionLost).
    func reactorWillShutDown()
}

enum UVHandle {
    /// Allocates uninitialized memory for a handle of type `T` (`uv_tcp_t`, ...).
    /// Initialize it with the matching `uv_*_init`, then call ``adopt(_:owner:)``;
    /// if the init fails, call ``deallocateUninitialized(_:)`` instead.
    static func allocate<T>(_ type: T.Type) -> UnsafeMutablePointer<T> {
        let pointer = UnsafeMutablePointer<T>.allocate(capacity: 1)
        UnsafeMutableRawPointer(pointer).initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<T>.size)
        return pointer
    }

    /// Frees a handle whose `uv_*_init` failed (libuv never saw it).
    static func deallocateUninitialized<T>(_ handle: UnsafeMutablePointer<T>) {
        handle.deallocate()
    }

    /// Ties an initialized handle to its owner: `handle->data` takes a +1 reference.
    static func adopt<T>(_ handle: UnsafeMutablePointer<T>, owner: HandleOwning) {
        let base = asHandle(handle)
        precondition(base.pointee.data == nil, "handle adopted twice")
        base.pointee.data = Unmanaged.passRetained(owner as AnyObject).toOpaque()
    }

    /// Starts closing a handle adopted by an owner. The owner hears
    /// `handleDidClose()` from the close callback, which then frees the
    /// memory and drops the handle's reference. Closing twice is harmless.
    static func close<T>(_ handle: UnsafeMutablePointer<T>) {
        close(handle, callback: handleCloseCallback)
    }

    /// Starts closing like ``close(_:)``, with a close callback written for
    /// the owner's class (one that calls ``finishClose(_:owner:)`` with it),
    /// so the callback needs no dynamic cast to find `handleDidClose`. Used
    /// on the per-connection path (issue #7); the generic callback of
    /// ``close(_:)`` works for every owner.
    static func close<T>(_ handle: UnsafeMutablePointer<T>, callback: uv_close_cb) {
        let base = asHandle(handle)
        guard uv_is_closing(base) == 0 else { return }
        uv_close(base, callback)
    }

    /// The body of a close callback whose owner is known to be an `Owner`
    /// (the handle was adopted by one): tells it `handleDidClose()`, frees
    /// the memory and drops the handle's reference, as the generic callback
    /// does, but without a conformance lookup.
    @inline(__always)
    static func finishClose<Owner: HandleOwning>(_ handle: UnsafeMutablePointer<uv_handle_t>?, owner: Owner.Type) {
        finishClose(handle, as: Owner.self) { $0.handleDidClose() }
    }

    /// What every close callback does: hands the owner (taking back the
    /// handle's reference) to `notify`, then frees the handle's memory; the
    /// reference is dropped on return. A handle never adopted is just freed.
    @inline(__always)
    fileprivate static func finishClose<Object: AnyObject>(_ handle: UnsafeMutablePointer<uv_handle_t>?, as _: Object.Type,
                                                           _ notify: (Object) -> Void) {
        guard let handle else { return }
        guard let data = handle.pointee.data else {
            handle.deallocate()
            return
        }
        handle.pointee.data = nil
        let object = Unmanaged<Object>.fromOpaque(data).takeRetainedValue()
        notify(object)
        handle.deallocate()
    }

    /// Views any libuv handle type as the generic `uv_handle_t`.
    @inline(__always)
    static func asHandle<T>(_ handle: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<uv_handle_t> {
        UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self)
    }

    /// Views a TCP or pipe handle as the `uv_stream_t` it starts with.
    @inline(__always)
    static func asStream<T>(_ handle: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<uv_stream_t> {
        UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_stream_t.self)
    }

    /// The owner of an adopted handle, or nil for the reactor's own handles.
    static func owner(of handle: UnsafeMutablePointer<uv_handle_t>) -> HandleOwning? {
        guard let data = handle.pointee.data else { return nil }
        return Unmanaged<AnyObject>.fromOpaque(data).takeUnretainedValue() as? HandleOwning
    }
}

/// The close callback of every adopted handle whose owner's class is not
/// known here (a conformance lookup finds `handleDidClose`).
private func handleCloseCallback(_ handle: UnsafeMutablePointer<uv_handle_t>?) {
    UVHandle.finishClose(handle, as: AnyObject.self) { ($0 as! HandleOwning).handleDidClose() }
}
