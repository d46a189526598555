#ifndef CSHA256_H
#define CSHA256_H

#include <stddef.h>
#include <stdint.h>

/// 1 when this CPU has the x86 SHA extensions (with SSSE3 and SSE4.1), else 0.
int csha256_accelerated(void);

/// Runs the SHA-256 compression over `blocks` 64-byte blocks at `data`, updating `state` (h0...h7) in place, with
/// the SHA extensions. Only call it when `csha256_accelerated()` is 1.
void csha256_compress(uint32_t state[8], const uint8_t *data, size_t blocks);

#endif
