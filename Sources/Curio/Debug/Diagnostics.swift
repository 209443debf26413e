#if canImport(Glibc)
import Glibc
#endif

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
