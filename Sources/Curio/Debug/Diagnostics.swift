#if canImport(Glibc)
import Glibc
#endif
import Logging

/// Writes one message to standard error with a single write(2), so lines
/// from several threads never interleave.
func writeStderr(_ text: String) {
    var text = text
    text.withUTF8 { buf in
        var off = 0
        while off < buf.count {
            let n = write(2, buf.baseAddress! + off, buf.count - off)
            if n <= 0 {
                if n < 0 && errno == EINTR { continue }
                return
            }
            off += n
        }
    }
}

/// The metadata keys Curio attaches to its own log messages.
public enum CurioLogMetadataKey {
    /// The id of the task the message is about (`"3"`).
    public static let taskID = "curio.task.id"
    /// The name of the task the message is about (`"kid"`).
    public static let taskName = "curio.task.name"
    /// The peer address of the connection the message is about (`"127.0.0.1:50312"`).
    public static let peer = "curio.peer"
    /// The serial number of the kernel that logged (``Kernel/serial``).
    public static let kernel = "curio.kernel"
}

/// Sends one of Curio's own diagnostics to the kernel's logger
/// (``Kernel/Configuration/logger``), with the task and the connection as
/// metadata. Every diagnostic of the library goes through here.
///
/// `text` is what Curio has always written to stderr: one or more lines,
/// the last one ending in a newline. The newline is not part of the logged
/// message; the default handler adds it back, so its output stays
/// byte-identical to the plain `writeStderr` of earlier versions.
///
/// - Parameters:
///   - kernel: the kernel whose logger to use; by default the kernel
///     running on the calling thread, and without one the default logger.
///   - task: the task the message is about. Only pass one from the
///     kernel's own thread (its name is kernel-thread state).
///   - peer: the connection the message is about.
func diagnose(_ level: Logger.Level, kernel: Kernel? = nil, task: AnyCurioTask? = nil,
              peer: SocketAddress? = nil, _ text: String) {
    var k = kernel ?? Kernel.current
    // A task's own `kernel` reference may dangle once its kernel is gone
    // (a handle can outlive it): only the running kernel that owns the
    // task is asked for its logger.
    if kernel == nil, let task, k?.serial != task.kernelSerial { k = nil }
    let logger = k?.configuration.logger ?? Kernel.Configuration.defaultLogger
    guard logger.logLevel <= level else { return }
    var metadata: Logger.Metadata = [:]
    if let k { metadata[CurioLogMetadataKey.kernel] = "\(k.serial)" }
    // Kernel-thread code reports about the task it runs unless told otherwise.
    let task = task ?? (k?.isOnKernelThread == true ? k?.current : nil)
    if let task {
        metadata[CurioLogMetadataKey.taskID] = "\(task.id)"
        metadata[CurioLogMetadataKey.taskName] = "\(task.name)"
    }
    if let peer {
        metadata[CurioLogMetadataKey.peer] = "\(peer.family == .unix ? peer.host : "\(peer.host):\(peer.port)")"
    }
    let message = text.hasSuffix("\n") ? String(text.dropLast()) : text
    logger.log(level: level, "\(message)", metadata: metadata.isEmpty ? nil : metadata,
               source: "Curio")
}
