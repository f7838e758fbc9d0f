#ifndef TETHER_CHIREDIS_SHIM_H
#define TETHER_CHIREDIS_SHIM_H

#include <hiredis/hiredis.h>
#include <hiredis/read.h>

/// `redisReaderGetError` is a macro in hiredis 0.14.1, invisible to Swift: this wraps it.
static inline const char *tether_redisReaderGetError(redisReader *reader) {
    return reader->errstr;
}

/// The reader's error flag (0 when it has none).
static inline int tether_redisReaderErr(redisReader *reader) {
    return reader->err;
}

/// Lets the reader keep any amount of unused buffer instead of shrinking it after every reply batch.
static inline void tether_redisReaderSetMaxBuf(redisReader *reader, size_t maxbuf) {
    reader->maxbuf = maxbuf;
}

#endif
