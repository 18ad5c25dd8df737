/* fuzz_tokenizer_encode.c: the tokenizer on arbitrary bytes, with the two
 * tokenizer kinds we ship: byte-level BPE (the bundled
 * examples/models/shakespeare-tiny-bf16) and SentencePiece-style BPE with
 * byte fallback (tests/data/tokenizer/stories260k), loaded once.
 *
 * Input: one flags byte, then the payload.
 *   bit 0  tokenizer: 0 byte-level, 1 SentencePiece
 *   bit 1  add_special      bit 2  parse_special
 *   bit 3  payload is little-endian int32 ids to decode and stream (any
 *          value, in or out of the vocabulary), not text to encode
 * Text must encode exactly when it is UTF-8, to ids in the vocabulary whose
 * decode, streamed or not, agrees; byte-level BPE with no special handling
 * must give the text back byte for byte. */
#include "config.h"

#include "tests/fuzz/fuzz_tok.h"
#include "tests/fuzz/fuzz_util.h"

#include <stdlib.h>
#include <string.h>

static eng_tokenizer *g_tok[2];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    g_tok[0] = fuzz_tok_load("examples/models/shakespeare-tiny-bf16");
    g_tok[1] = fuzz_tok_load("tests/data/tokenizer/stories260k");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    unsigned flags = data[0];
    const eng_tokenizer *tok = g_tok[flags & 1];
    bool add = flags & 2, special = flags & 4;

    data++;
    size--;
    if (flags & 8) {
        size_t n = size / 4;
        int32_t *ids = malloc((n + 1) * sizeof(*ids));
        FUZZ_CHECK(ids != NULL, "out of memory");
        for (size_t i = 0; i < n; i++)
            ids[i] = (int32_t)((uint32_t)data[4 * i] | (uint32_t)data[4 * i + 1] << 8 |
                               (uint32_t)data[4 * i + 2] << 16 | (uint32_t)data[4 * i + 3] << 24);
        fuzz_tok_check_decode(tok, ids, n);
        free(ids);
        return 0;
    }
    fuzz_tok_exercise(tok, (const char *)data, size, add, special,
                      (flags & 1) == 0 && !add && !special);
    return 0;
}
