// Handlers speak swift-http-types (HTTPRequest, HTTPResponse, HTTPFields):
// importing CurioHTTP brings them along.
@_exported import HTTPTypes
