#ifndef PASSION_COPENSSL_SHIM_H
#define PASSION_COPENSSL_SHIM_H
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
#include <openssl/evp.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/rand.h>

/* Macros (or variadic functions) in OpenSSL 3 that Swift cannot import. */

static inline int passion_ssl_ctx_set_min_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_min_proto_version(ctx, version);
}

static inline int passion_ssl_ctx_set_max_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_max_proto_version(ctx, version);
}

static inline int passion_ssl_set_tlsext_host_name(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}

static inline uint64_t passion_ssl_op_no_compression(void) { return SSL_OP_NO_COMPRESSION; }
static inline uint64_t passion_ssl_op_no_renegotiation(void) { return SSL_OP_NO_RENEGOTIATION; }
static inline uint64_t passion_ssl_op_no_ticket(void) { return SSL_OP_NO_TICKET; }

static inline long passion_ssl_ctx_set_session_cache_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_session_cache_mode(ctx, mode);
}

/* EVP_EC_gen is a macro over the variadic EVP_PKEY_Q_keygen. */
static inline EVP_PKEY *passion_generate_p256_key(void) {
    return EVP_EC_gen("P-256");
}

static inline BIO *passion_bio_new_mem(void) { return BIO_new(BIO_s_mem()); }

static inline long passion_bio_pending(BIO *bio) { return (long)BIO_ctrl_pending(bio); }

/* BIO_set_mem_eof_return is a macro: a drained read BIO must report "retry", not EOF. */
static inline void passion_bio_set_mem_eof_return(BIO *bio, int value) {
    BIO_set_mem_eof_return(bio, value);
}

static inline void passion_ssl_ctx_set_verify_depth(SSL_CTX *ctx, int depth) {
    SSL_CTX_set_verify_depth(ctx, depth);
}

static inline STACK_OF(X509_NAME) *passion_load_client_ca_file(const char *path) {
    return SSL_load_client_CA_file(path);
}
static inline int passion_mbstring_asc(void) { return MBSTRING_ASC; }

static inline void passion_x509v3_set_ctx_nodb(X509V3_CTX *ctx) { X509V3_set_ctx_nodb(ctx); }
#endif
