// The parts of OpenSSL 3 that CurioTLS uses, with the macros Swift cannot
// import wrapped as functions. Linked against the system's libssl and
// libcrypto (Debian: libssl-dev).
#ifndef CCURIO_OPENSSL_H
#define CCURIO_OPENSSL_H

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stddef.h>
#include <stdint.h>

/// A new context for a client (is_server 0) or a server, limited to
/// TLS 1.2 ... TLS 1.3 (or the narrower range given), with renegotiation
/// off. NULL on failure (the error queue says why).
SSL_CTX *ccurio_ctx_new(int is_server, int min_version, int max_version);

/// Loads a PEM certificate chain (leaf first) from memory into `ctx`.
/// 1 on success.
int ccurio_ctx_use_chain_pem(SSL_CTX *ctx, const char *pem, size_t len);

/// Loads a PEM private key from memory into `ctx`. 1 on success.
int ccurio_ctx_use_key_pem(SSL_CTX *ctx, const char *pem, size_t len);

/// Adds every certificate of a PEM bundle in memory to the trust store
/// of `ctx` → how many were added (0: none, or a parse error).
int ccurio_ctx_add_trusted_pem(SSL_CTX *ctx, const char *pem, size_t len);

/// Server side: picks the first protocol of `wire` (ALPN wire format,
/// server preference) the client also offers; the context keeps a copy.
/// No overlap ends the handshake with a no_application_protocol alert
/// (RFC 7301 §3.2). 1 on success.
int ccurio_ctx_set_alpn_select(SSL_CTX *ctx, const unsigned char *wire, unsigned int len);

/// The server-name (SNI) callback of a server context and its argument.
typedef int (*ccurio_servername_cb)(SSL *ssl, int *alert, void *arg);
void ccurio_ctx_set_servername_callback(SSL_CTX *ctx, ccurio_servername_cb cb, void *arg);

/// Wrappers of macros.
long ccurio_ctx_set_session_cache_mode(SSL_CTX *ctx, long mode);
void ccurio_ctx_disable_tickets(SSL_CTX *ctx);
int ccurio_ssl_set_sni(SSL *ssl, const char *name);
void ccurio_bio_set_mem_eof_return(BIO *bio, int value);
int ccurio_err_reason(unsigned long code);
int ccurio_err_is_ssl_lib(unsigned long code);

/// The peer's certificate subject as one line ("CN=client,O=..."), written
/// into `buf`; 0 when the peer sent no certificate.
int ccurio_peer_subject(SSL *ssl, char *buf, int len);

#endif
