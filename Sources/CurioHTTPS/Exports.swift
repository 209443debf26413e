// An HTTPS server needs both halves: importing CurioHTTPS brings CurioHTTP
// (with swift-http-types) and CurioTLS along.
@_exported import CurioHTTP
@_exported import CurioTLS
