/* fuzz_chat.c: the chat template renderer with arbitrary messages,
 * template names and template texts, then the encode of what it rendered.
 *
 * Input: a template byte, a flags byte, then NUL-separated fields.
 *   template byte (mod 16): 0..12 the 13 names of eng_chat_format_name,
 *     14 none (detect from the template text), 13 and 15 "no-such-format"
 *   flags: bit 0 add_generation_prompt; bits 1-2 enable_thinking (-1, 0,
 *     1, -1); bit 3 the first field is the template text (Jinja source to
 *     detect from); bit 4 render through eng_chat_render / eng_chat_encode
 *     with a loaded tokenizer (bit 5 picks the SentencePiece one)
 *   fields: role, content, role, content, ... (at most 64 messages; a
 *     trailing role without content gets "")
 * A render must fail only with -EINVAL or -ENOTSUP (and say why), or give
 * a NUL-terminated text of the length it reports, which then must encode
 * as fuzz_tok_exercise requires; eng_chat_encode must give in-vocabulary
 * ids. */
#include "config.h"

#include "tests/fuzz/fuzz_tok.h"
#include "tests/fuzz/fuzz_util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MSGS 64

static eng_tokenizer *g_tok[2];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    g_tok[0] = fuzz_tok_load("examples/models/shakespeare-tiny-bf16");
    g_tok[1] = fuzz_tok_load("tests/data/tokenizer/stories260k");
    return 0;
}

static void check_rc(int rc, const char *err, const char *what)
{
    FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ENOTSUP || rc == -EILSEQ || rc == -ENOMEM,
               "%s: rc %d (%s)", what, rc, err);
    FUZZ_CHECK(rc == 0 || rc == -ENOMEM || err[0] != '\0', "%s: rc %d, empty message", what, rc);
}

static void check_text(const eng_tokenizer *tok, int rc, char *text, size_t len)
{
    if (rc != 0)
        return;
    FUZZ_CHECK(text != NULL && strlen(text) == len, "rendered length %zu, strlen %zu", len,
               text != NULL ? strlen(text) : 0);
    fuzz_tok_exercise(tok, text, len, false, true, false);
}

static void run(const eng_chat_params *p, const eng_chat_msg *msgs, size_t n, bool gen,
                unsigned flags)
{
    const eng_tokenizer *tok = g_tok[(flags >> 5) & 1];
    char *text = NULL, err[512] = "";
    size_t len = 0;
    int rc;

    if (flags & 16) {
        int32_t *ids = NULL;
        size_t n_ids = 0;
        rc = eng_chat_render(tok, msgs, n, gen, p->template_name, &text, &len, err, sizeof(err));
        check_rc(rc, err, "eng_chat_render");
        check_text(tok, rc, text, len);
        err[0] = '\0';
        rc = eng_chat_encode(tok, msgs, n, gen, p->template_name, &ids, &n_ids, err, sizeof(err));
        check_rc(rc, err, "eng_chat_encode");
        for (size_t i = 0; rc == 0 && i < n_ids; i++)
            FUZZ_CHECK(ids[i] >= 0 && (size_t)ids[i] < eng_tokenizer_vocab_size(tok),
                       "id #%zu = %d", i, ids[i]);
        free(ids);
    } else {
        rc = eng_chat_render_params(p, msgs, n, gen, &text, &len, err, sizeof(err));
        check_rc(rc, err, "eng_chat_render_params");
        check_text(tok, rc, text, len);
    }
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int thinking[4] = { -1, 0, 1, -1 };
    eng_chat_msg msgs[MAX_MSGS];
    eng_chat_params p;
    size_t n = 0;

    if (size < 2)
        return 0;
    unsigned tmpl = data[0] % 16, flags = data[1];
    char *buf = fuzz_strndup(data + 2, size - 2), *end = buf + (size - 2), *f = buf;

    eng_chat_params_default(&p);
    p.template_name = tmpl < ENG_CHAT_FORMAT_COUNT - 1 ? eng_chat_format_name(tmpl + 1)
                    : tmpl == 14 ? NULL : "no-such-format";
    p.enable_thinking = thinking[(flags >> 1) & 3];
    if (flags & 8) {
        p.template_text = f;
        f += strlen(f) + 1;
    }
    while (f < end && n < MAX_MSGS) {
        msgs[n].role = f;
        f += strlen(f) + 1;
        msgs[n].content = f < end ? f : "";
        f += f < end ? strlen(f) + 1 : 0;
        n++;
    }
    run(&p, msgs, n, flags & 1, flags);
    free(buf);
    return 0;
}
