/* fuzz_tokenizer_load.c: eng_tokenizer_load on an arbitrary tokenizer.json
 * (the input, written alone into a temporary model directory).  A file the
 * loader accepts must then encode and decode without fault and keep the
 * contracts checked by fuzz_tok_exercise, ids outside its vocabulary
 * included (they are dropped, as HF does). */
#include "config.h"

#include "tests/fuzz/fuzz_tok.h"
#include "tests/fuzz/fuzz_util.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

static const char *const k_texts[] = {
    "",
    "Hello, world!\n",
    " First Citizen:\n\tBefore we proceed any further, hear me speak.  ",
    "<s>caf\xc3\xa9 \xe2\x82\xac 12345 \xf0\x9f\x98\x80</s><|im_start|>",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *dir = fuzz_tmpdir();
    eng_tokenizer *tok = NULL;
    char err[512] = "";
    int rc;

    fuzz_write_file(dir, "tokenizer.json", data, size);
    rc = eng_tokenizer_load(&tok, dir, err, sizeof(err));
    FUZZ_CHECK((rc == 0) == (tok != NULL), "rc %d with tok %p", rc, (void *)tok);
    if (rc < 0) {
        FUZZ_CHECK(rc == -ENOMEM || err[0] != '\0', "rc %d with an empty error message", rc);
        return 0;
    }
    for (size_t i = 0; i < sizeof(k_texts) / sizeof(k_texts[0]); i++)
        for (int flags = 0; flags < 4; flags++)
            fuzz_tok_exercise(tok, k_texts[i], strlen(k_texts[i]), flags & 1, flags & 2, false);
    int32_t v = (int32_t)eng_tokenizer_vocab_size(tok);
    int32_t ids[] = { 0, 1, 2, v - 1, v, -1, INT32_MAX, INT32_MIN, 3, 0x41, 0xE2, 0x82 };
    fuzz_tok_check_decode(tok, ids, sizeof(ids) / sizeof(ids[0]));
    eng_tokenizer_free(tok);
    return 0;
}
