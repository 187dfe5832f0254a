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
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <string.h>

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

/* An RSA public key from a JWK's big-endian modulus and exponent (OpenSSL 3 has no
   non-deprecated one-call constructor; EVP_PKEY_PUBLIC_KEY is a composite macro). */
static inline EVP_PKEY *passion_rsa_public_key(const unsigned char *n, size_t n_len, const unsigned char *e, size_t e_len) {
    EVP_PKEY *key = NULL;
    BIGNUM *modulus = BN_bin2bn(n, (int)n_len, NULL);
    BIGNUM *exponent = BN_bin2bn(e, (int)e_len, NULL);
    OSSL_PARAM_BLD *builder = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (modulus && exponent && builder && ctx
        && OSSL_PARAM_BLD_push_BN(builder, OSSL_PKEY_PARAM_RSA_N, modulus)
        && OSSL_PARAM_BLD_push_BN(builder, OSSL_PKEY_PARAM_RSA_E, exponent)
        && (params = OSSL_PARAM_BLD_to_param(builder)) != NULL
        && EVP_PKEY_fromdata_init(ctx) == 1) {
        if (EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) != 1) key = NULL;
    }
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(builder);
    EVP_PKEY_CTX_free(ctx);
    BN_free(modulus);
    BN_free(exponent);
    return key;
}

/* EVP_RSA_gen is a macro over the variadic EVP_PKEY_Q_keygen. */
static inline EVP_PKEY *passion_generate_rsa_key(unsigned int bits) {
    return EVP_RSA_gen(bits);
}

/* Big-endian bytes of an RSA key's "n" or "e"; returns the length, or -1. */
static inline int passion_rsa_component(const EVP_PKEY *key, const char *name, unsigned char *out, int capacity) {
    BIGNUM *value = NULL;
    if (EVP_PKEY_get_bn_param(key, name, &value) != 1) return -1;
    int length = BN_num_bytes(value);
    if (length > capacity) { BN_free(value); return -1; }
    BN_bn2bin(value, out);
    BN_free(value);
    return length;
}
/* The index-th subjectAltName entry of kind `type` (GEN_DNS or GEN_URI), copied into `out`.
   Returns its length; -1 for an entry that cannot be a name (too long, or a byte outside
   printable ASCII: a NUL would let "a.example\0.evil" compare as "a.example", and non-ASCII
   text compares equal to other text under Unicode equivalence); -2 when there is no such entry. */
static inline int passion_x509_alt_name(X509 *certificate, int type, int index, char *out, int capacity) {
    GENERAL_NAMES *names = X509_get_ext_d2i(certificate, NID_subject_alt_name, NULL, NULL);
    if (names == NULL) return -2;
    int seen = 0, result = -2;
    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *name = sk_GENERAL_NAME_value(names, i);
        if (name->type != type || seen++ != index) continue;
        const ASN1_IA5STRING *text = type == GEN_DNS ? name->d.dNSName : name->d.uniformResourceIdentifier;
        int length = ASN1_STRING_length(text);
        const unsigned char *data = ASN1_STRING_get0_data(text);
        int printable = length >= 0 && length <= capacity;
        for (int j = 0; printable && j < length; j++) printable = data[j] >= 0x21 && data[j] <= 0x7E;
        if (!printable) {
            result = -1;
        } else {
            memcpy(out, data, (size_t)length);
            result = length;
        }
        break;
    }
    GENERAL_NAMES_free(names);
    return result;
}

/* Whether the certificate has a subjectAltName extension at all (usable or not). */
static inline int passion_x509_has_alt_names(X509 *certificate) {
    return X509_get_ext_by_NID(certificate, NID_subject_alt_name, -1) >= 0;
}

/* SSL_CTX_set1_groups_list is a macro. */
static inline int passion_ssl_ctx_set1_groups_list(SSL_CTX *ctx, const char *list) {
    return (int)SSL_CTX_set1_groups_list(ctx, list);
}

/* Seconds from now until the certificate's notAfter (negative once expired); 0 on failure with *ok 0. */
static inline long passion_x509_seconds_left(X509 *certificate, int *ok) {
    int days = 0, seconds = 0;
    *ok = ASN1_TIME_diff(&days, &seconds, NULL, X509_get0_notAfter(certificate));
    return (long)days * 86400 + seconds;
}

static inline int passion_gen_dns(void) { return GEN_DNS; }
static inline int passion_gen_uri(void) { return GEN_URI; }
#endif
