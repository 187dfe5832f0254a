#ifndef PASSION_CZLIB_SHIM_H
#define PASSION_CZLIB_SHIM_H
#include <zlib.h>

/* deflateInit2/inflateInit2 are macros Swift cannot import. windowBits 15 = zlib (RFC 1950). */
static inline int passion_deflate_init(z_stream *stream, int level) {
    return deflateInit2(stream, level, Z_DEFLATED, 15, 8, Z_DEFAULT_STRATEGY);
}

static inline int passion_inflate_init(z_stream *stream) {
    return inflateInit2(stream, 15);
}
#endif
