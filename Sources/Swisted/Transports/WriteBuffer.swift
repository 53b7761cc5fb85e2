import Glibc

/// A growable byte buffer in malloc'ed memory that libuv can write from.
/// Used for the part of a write that the kernel did not take at once.
/// Memory is stable while a `uv_write` reads it (nothing appends to the
/// buffer that is in flight).
struct WriteBuffer {
    private(set) var base: UnsafeMutableRawPointer?
    private(set) var capacity = 0
    private(set) var count = 0

    /// Capacity kept after a drain, so a connection that writes steadily does
    /// not allocate per write, and one that sent a burst gives the memory back.
    static let retainedCapacity = 64 * 1024

    var isEmpty: Bool { count == 0 }

    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        let needed = count + bytes.count
        if needed > capacity {
            var newCapacity = max(capacity * 2, 4096)
            while newCapacity < needed { newCapacity *= 2 }
            base = realloc(base, newCapacity)
            precondition(base != nil, "Swisted: out of memory for a write buffer of \(newCapacity) bytes")
            capacity = newCapacity
        }
        (base! + count).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        count = needed
    }

    /// Empties the buffer, keeping a modest capacity for reuse.
    mutating func clear() {
        count = 0
        if capacity > WriteBuffer.retainedCapacity { release() }
    }

    /// Frees the memory.
    mutating func release() {
        free(base)
        base = nil
        capacity = 0
        count = 0
    }
}
