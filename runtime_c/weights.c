/* onnx-emit runtime: weights kept outside the code (--weights file) and weights stored narrower than
 * they compute (--weight-dtype f16|int8). The blob's layout is documented in emit/codegen/storage.py;
 * every field is read byte by byte, so the check is the same on any host's endianness. */

#include "emit_runtime.h"
#include <string.h>

static uint32_t ek_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t ek_le64(const unsigned char *p)
{
    return (uint64_t)ek_le32(p) | (uint64_t)ek_le32(p + 4) << 32;
}

/* zlib's CRC-32 (reflected polynomial 0xEDB88320), table built on first use */
static uint32_t ek_crc32(const unsigned char *p, size_t n)
{
    static uint32_t table[256];
    static int ready;
    uint32_t c = 0xFFFFFFFFu;
    size_t i;
    if (!ready) {
        uint32_t k, b, r;
        for (k = 0; k < 256; ++k) {
            r = k;
            for (b = 0; b < 8; ++b)
                r = (r & 1u) ? 0xEDB88320u ^ (r >> 1) : r >> 1;
            table[k] = r;
        }
        ready = 1;
    }
    for (i = 0; i < n; ++i)
        c = table[(c ^ p[i]) & 0xFFu] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

int ek_check_weights(const unsigned char *blob, size_t n, const unsigned char hash[32], uint32_t dtype,
                     uint64_t payload_bytes)
{
    static const unsigned char magic[8] = { 'O', 'N', 'N', 'X', 'E', 'M', 'W', 0 };
    if (blob == NULL || n < 8 || memcmp(blob, magic, 8) != 0)
        return EK_WEIGHTS_BAD_MAGIC;
    if (n < EK_WEIGHTS_HEADER_BYTES)
        return EK_WEIGHTS_BAD_SIZE;
    if (((uintptr_t)blob & 15u) != 0)
        return EK_WEIGHTS_MISALIGNED;
    if (ek_le32(blob + 8) != 1u)
        return EK_WEIGHTS_BAD_VERSION;
    if (ek_le32(blob + 12) != dtype)
        return EK_WEIGHTS_BAD_DTYPE;
    if (memcmp(blob + 32, hash, 32) != 0)
        return EK_WEIGHTS_OTHER_MODEL;
    if (ek_le64(blob + 16) != payload_bytes || ek_le32(blob + 28) != EK_WEIGHTS_HEADER_BYTES ||
        (uint64_t)(n - EK_WEIGHTS_HEADER_BYTES) != payload_bytes)
        return EK_WEIGHTS_BAD_SIZE;
    if (ek_crc32(blob + EK_WEIGHTS_HEADER_BYTES, (size_t)payload_bytes) != ek_le32(blob + 24))
        return EK_WEIGHTS_CORRUPT;
    return 0;
}

void ek_expand_blocks(const float *blocks, const uint32_t *index, float *y, size_t n, size_t block)
{
    size_t i;
    for (i = 0; i < n; i += block)
        memcpy(y + i, blocks + (size_t)index[i / block] * block, (n - i < block ? n - i : block) * sizeof(float));
}

void ek_expand_i8(const int8_t *q, const float *scale, float *y, size_t outer, size_t channels, size_t inner,
                  size_t block)
{
    size_t o, c, i;
    for (o = 0; o < outer; ++o)
        for (c = 0; c < channels; ++c) {
            const float s = scale[o / block * channels + c];
            for (i = 0; i < inner; ++i)
                *y++ = s * (float)*q++;
        }
}
