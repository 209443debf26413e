#include "CCurioOpenSSL.h"

#include <string.h>

SSL_CTX *ccurio_ctx_new(int is_server, int min_version, int max_version) {
    SSL_CTX *ctx = SSL_CTX_new(is_server ? TLS_server_method() : TLS_client_method());
    if (!ctx) return NULL;
    if (!SSL_CTX_set_min_proto_version(ctx, min_version) || !SSL_CTX_set_max_proto_version(ctx, max_version)) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    // Memory BIOs accept every byte, so a write is always whole; the
    // buffer of a retried write may move (Swift arrays).
    // Idle connections give their record buffers back.
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    return ctx;
}

int ccurio_ctx_use_chain_pem(SSL_CTX *ctx, const char *pem, size_t len) {
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio) return 0;
    int ok = 0;
    X509 *leaf = PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL);
    if (leaf && SSL_CTX_use_certificate(ctx, leaf) == 1) {
        ok = 1;
        SSL_CTX_clear_chain_certs(ctx);
        X509 *extra;
        while ((extra = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
            if (!SSL_CTX_add0_chain_cert(ctx, extra)) {
                X509_free(extra);
                ok = 0;
                break;
            }
        }
        if (ok) {
            // The end of the bundle leaves a "no start line" error behind.
            unsigned long e = ERR_peek_last_error();
            if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) ERR_clear_error();
        }
    }
    X509_free(leaf);
    BIO_free(bio);
    return ok;
}

int ccurio_ctx_use_key_pem(SSL_CTX *ctx, const char *pem, size_t len) {
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio) return 0;
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    int ok = key && SSL_CTX_use_PrivateKey(ctx, key) == 1;
    EVP_PKEY_free(key);
    BIO_free(bio);
    return ok;
}

int ccurio_ctx_add_trusted_pem(SSL_CTX *ctx, const char *pem, size_t len) {
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio) return 0;
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    int added = 0;
    X509 *cert;
    while ((cert = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (X509_STORE_add_cert(store, cert) == 1) added++;
        X509_free(cert);
    }
    unsigned long e = ERR_peek_last_error();
    if (added > 0 && ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) ERR_clear_error();
    BIO_free(bio);
    return added;
}

// The server's ALPN list, owned by its context (ex_data frees it).
struct alpn_list {
    unsigned int len;
    unsigned char wire[];
};

static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg) {
    (void)ssl;
    const struct alpn_list *mine = arg;
    unsigned char *chosen = NULL;
    if (SSL_select_next_proto(&chosen, outlen, mine->wire, mine->len, in, inlen) != OPENSSL_NPN_NEGOTIATED) {
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
}

static int alpn_index = -1;
static CRYPTO_ONCE alpn_once = CRYPTO_ONCE_STATIC_INIT;

static void free_alpn(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp) {
    (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
    OPENSSL_free(ptr);
}

static void make_alpn_index(void) {
    alpn_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_alpn);
}

int ccurio_ctx_set_alpn_select(SSL_CTX *ctx, const unsigned char *wire, unsigned int len) {
    if (!CRYPTO_THREAD_run_once(&alpn_once, make_alpn_index) || alpn_index < 0) return 0;
    struct alpn_list *list = OPENSSL_malloc(sizeof *list + len);
    if (!list) return 0;
    list->len = len;
    memcpy(list->wire, wire, len);
    if (!SSL_CTX_set_ex_data(ctx, alpn_index, list)) {
        OPENSSL_free(list);
        return 0;
    }
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, list);
    return 1;
}

void ccurio_ctx_set_servername_callback(SSL_CTX *ctx, ccurio_servername_cb cb, void *arg) {
    SSL_CTX_set_tlsext_servername_callback(ctx, cb);
    SSL_CTX_set_tlsext_servername_arg(ctx, arg);
}

long ccurio_ctx_set_session_cache_mode(SSL_CTX *ctx, long mode) { return SSL_CTX_set_session_cache_mode(ctx, mode); }
void ccurio_ctx_disable_tickets(SSL_CTX *ctx) { SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET); }
int ccurio_ssl_set_sni(SSL *ssl, const char *name) { return (int)SSL_set_tlsext_host_name(ssl, name); }
void ccurio_bio_set_mem_eof_return(BIO *bio, int value) { BIO_set_mem_eof_return(bio, value); }
int ccurio_err_reason(unsigned long code) { return ERR_GET_REASON(code); }
int ccurio_err_is_ssl_lib(unsigned long code) { return ERR_GET_LIB(code) == ERR_LIB_SSL; }

int ccurio_peer_subject(SSL *ssl, char *buf, int len) {
    X509 *peer = SSL_get1_peer_certificate(ssl);
    if (!peer) return 0;
    BIO *bio = BIO_new(BIO_s_mem());
    int n = 0;
    if (bio && X509_NAME_print_ex(bio, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253) >= 0) {
        n = BIO_read(bio, buf, len - 1);
        if (n < 0) n = 0;
        buf[n] = 0;
    }
    BIO_free(bio);
    X509_free(peer);
    return n > 0;
}
