/* chat_template.c: chat templates rendered by hand, one small function per
 * family, instead of running the Jinja source (model-formats.md 5.2, 5.3).
 * The format is named by the caller or detected from substrings of the
 * template text; an unknown template is an error, never a guess.
 * Output is the exact string transformers' apply_chat_template(...,
 * tokenize=False) gives for plain text conversations (no tools). */
#include "config.h"

#include "engine/tok-int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const kNames[ENG_CHAT_FORMAT_COUNT] = {
    [ENG_CHAT_UNKNOWN] = "unknown",
    [ENG_CHAT_LLAMA3] = "llama3",
    [ENG_CHAT_LLAMA31] = "llama3.1",
    [ENG_CHAT_CHATML] = "chatml",
    [ENG_CHAT_QWEN3] = "qwen3",
    [ENG_CHAT_MISTRAL] = "mistral",
    [ENG_CHAT_MISTRAL_V1] = "mistral-v1",
    [ENG_CHAT_MISTRAL_V3] = "mistral-v3",
    [ENG_CHAT_MISTRAL_V3_TEKKEN] = "mistral-v3-tekken",
    [ENG_CHAT_MISTRAL_V7] = "mistral-v7",
    [ENG_CHAT_LLAMA2] = "llama2",
    [ENG_CHAT_ZEPHYR] = "zephyr",
    [ENG_CHAT_PHI3] = "phi3",
    [ENG_CHAT_GEMMA] = "gemma",
};

#define KNOWN_NAMES "llama3, llama3.1, chatml, qwen3, mistral, mistral-v1, mistral-v3, " \
                    "mistral-v3-tekken, mistral-v7, llama2, zephyr, phi3, gemma"

eng_chat_format eng_chat_format_from_name(const char *name)
{
    for (int i = 1; name != NULL && i < ENG_CHAT_FORMAT_COUNT; i++)
        if (strcmp(name, kNames[i]) == 0)
            return (eng_chat_format)i;
    return ENG_CHAT_UNKNOWN;
}

const char *eng_chat_format_name(eng_chat_format fmt)
{
    return (unsigned)fmt < ENG_CHAT_FORMAT_COUNT ? kNames[fmt] : "unknown";
}

/* Substring rules, first hit wins (the order of 5.3; llama.cpp's
 * llm_chat_detect_template is the same idea). */
eng_chat_format eng_chat_detect(const char *x)
{
#define HAS(s) (strstr(x, (s)) != NULL)
    if (x == NULL)
        return ENG_CHAT_UNKNOWN;
    if (HAS("<|start_header_id|>") && HAS("<|end_header_id|>"))
        return HAS("Cutting Knowledge Date") ? ENG_CHAT_LLAMA31 : ENG_CHAT_LLAMA3;
    if (HAS("<|im_start|>")) {
        if (HAS("<|im_sep|>"))
            return ENG_CHAT_UNKNOWN;          /* Phi-4: not implemented */
        return HAS("enable_thinking") || HAS("</think>") ? ENG_CHAT_QWEN3 : ENG_CHAT_CHATML;
    }
    if (HAS("[INST]")) {
        if (HAS("<<SYS>>"))
            return ENG_CHAT_LLAMA2;
        if (HAS("[SYSTEM_PROMPT]"))
            return ENG_CHAT_MISTRAL_V7;
        if (HAS("' [INST] ' + system_message") || HAS("[AVAILABLE_TOOLS]")) {
            if (HAS(" [INST]"))
                return ENG_CHAT_MISTRAL_V1;
            return HAS("\"[INST]\"") ? ENG_CHAT_MISTRAL_V3_TEKKEN : ENG_CHAT_MISTRAL_V3;
        }
        /* v0.1 writes a space after each eos_token; v0.2 does not. */
        return HAS("eos_token + ' '") ? ENG_CHAT_MISTRAL_V1 : ENG_CHAT_MISTRAL;
    }
    if (HAS("<|user|>") && HAS("<|assistant|>"))
        return HAS("<|end|>") ? ENG_CHAT_PHI3 : ENG_CHAT_ZEPHYR;
    if (HAS("<start_of_turn>"))
        return ENG_CHAT_GEMMA;
    return ENG_CHAT_UNKNOWN;
#undef HAS
}

void eng_chat_params_default(eng_chat_params *p)
{
    memset(p, 0, sizeof(*p));
    p->enable_thinking = -1;
}

/* ---- rendering helpers ------------------------------------------------ */

typedef struct rd {
    tok_buf out;
    int rc;                       /* sticky: the first failure */
    const eng_chat_params *p;
    const eng_chat_msg *m;
    size_t n;
    char *err;
    size_t errlen;
    size_t *spans;                /* [2 * n_spans] message-content byte ranges */
    size_t n_spans, cap_spans;
} rd;

static void put(rd *r, const char *s)
{
    if (r->rc == 0)
        r->rc = eng__buf_put(&r->out, s, strlen(s));
}

static void putn(rd *r, const char *s, size_t n)
{
    if (r->rc == 0)
        r->rc = eng__buf_put(&r->out, s, n);
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Jinja's trim / Python's strip() on ASCII whitespace. */
static void put_trim(rd *r, const char *s)
{
    size_t a = 0, b = strlen(s);
    while (a < b && is_ws(s[a]))
        a++;
    while (b > a && is_ws(s[b - 1]))
        b--;
    putn(r, s + a, b - a);
}

/* Message content (as opposed to template text) is recorded as a span, so
 * that eng_chat_encode can keep special-token text typed by a user from
 * becoming a special token (model-formats.md 4.4, prompt injection). */
static void span_add(rd *r, size_t start)
{
    if (r->rc != 0 || r->out.len == start)
        return;
    if (r->n_spans == r->cap_spans) {
        size_t cap = r->cap_spans ? r->cap_spans * 2 : 16;
        size_t *v = realloc(r->spans, 2 * cap * sizeof(*v));
        if (v == NULL) {
            r->rc = -ENOMEM;
            return;
        }
        r->spans = v;
        r->cap_spans = cap;
    }
    r->spans[2 * r->n_spans] = start;
    r->spans[2 * r->n_spans + 1] = r->out.len;
    r->n_spans++;
}

static void cput(rd *r, const char *s)
{
    size_t start = r->out.len;
    put(r, s);
    span_add(r, start);
}

static void cputn(rd *r, const char *s, size_t n)
{
    size_t start = r->out.len;
    putn(r, s, n);
    span_add(r, start);
}

static void cput_trim(rd *r, const char *s)
{
    size_t start = r->out.len;
    put_trim(r, s);
    span_add(r, start);
}

static const char *bos(const rd *r) { return r->p->bos_token ? r->p->bos_token : ""; }
static const char *eos(const rd *r) { return r->p->eos_token ? r->p->eos_token : ""; }

static bool role_is(const eng_chat_msg *m, const char *role)
{
    return strcmp(m->role, role) == 0;
}

static int fail(rd *r, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(rd *r, int rc, const char *fmt, ...)
{
    va_list ap;
    if (r->err != NULL && r->errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(r->err, r->errlen, fmt, ap);
        va_end(ap);
    }
    if (r->rc == 0)
        r->rc = rc;
    return rc;
}

/* Messages after an optional leading system message must go user,
 * assistant, user, ... (the raise_exception of the Mistral / Llama 2 /
 * Gemma templates). */
static int check_alternation(rd *r, eng_chat_format fmt, size_t first)
{
    for (size_t i = first; i < r->n; i++) {
        const char *want = (i - first) % 2 == 0 ? "user" : "assistant";
        if (!role_is(&r->m[i], want))
            return fail(r, -EINVAL, "chat template \"%s\": message %zu has role \"%.32s\", "
                        "expected \"%s\" (roles must alternate user/assistant after an "
                        "optional system message)", eng_chat_format_name(fmt), i,
                        r->m[i].role, want);
    }
    return 0;
}

/* ---- families --------------------------------------------------------- */

static void llama3_block(rd *r, const char *role, const char *content)
{
    put(r, "<|start_header_id|>");
    put(r, role);
    put(r, "<|end_header_id|>\n\n");
    cput_trim(r, content);
    put(r, "<|eot_id|>");
}

static void render_llama3(rd *r, bool gen, bool v31)
{
    size_t i = 0;
    put(r, bos(r));
    if (v31) {
        /* 3.1+: the system block is always there, with the date preamble. */
        char date[64];
        const char *d = r->p->date_string;
        if (d == NULL && r->p->template_text && strstr(r->p->template_text, "strftime_now")) {
            time_t now = time(NULL);
            struct tm tm;
            if (gmtime_r(&now, &tm) && strftime(date, sizeof(date), "%d %b %Y", &tm) > 0)
                d = date;
        }
        put(r, "<|start_header_id|>system<|end_header_id|>\n\n"
               "Cutting Knowledge Date: December 2023\nToday Date: ");
        put(r, d ? d : "26 Jul 2024");
        put(r, "\n\n");
        if (r->n > 0 && role_is(&r->m[0], "system")) {
            cput_trim(r, r->m[0].content);
            i = 1;
        }
        put(r, "<|eot_id|>");
    }
    for (; i < r->n; i++)
        llama3_block(r, r->m[i].role, r->m[i].content);
    if (gen)
        put(r, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* The default system text of a ChatML template: the literal in
 * '<|im_start|>system\n...<|im_end|>' when it holds no expression. */
static bool chatml_default_system(const char *tmpl, const char **s, size_t *n)
{
    static const char kHead[] = "<|im_start|>system";
    for (const char *p = tmpl ? strstr(tmpl, kHead) : NULL; p; p = strstr(p + 1, kHead)) {
        const char *a = p + sizeof(kHead) - 1;
        if (strncmp(a, "\\n", 2) == 0)
            a += 2;                 /* "\n" escaped inside a Jinja string */
        else if (*a == '\n')
            a += 1;
        else
            continue;
        const char *b = strstr(a, "<|im_end|>");
        if (b == NULL || b == a)
            continue;
        if (memchr(a, '\'', (size_t)(b - a)) || memchr(a, '"', (size_t)(b - a)) ||
            memchr(a, '{', (size_t)(b - a)) || memchr(a, '+', (size_t)(b - a)))
            continue;
        *s = a;
        *n = (size_t)(b - a);
        return true;
    }
    return false;
}

static void chatml_block(rd *r, const char *role, const char *content, size_t len, bool user)
{
    put(r, "<|im_start|>");
    put(r, role);
    put(r, "\n");
    if (user)
        cputn(r, content, len);
    else
        putn(r, content, len);
    put(r, "<|im_end|>\n");
}

static void render_chatml(rd *r, bool gen)
{
    const char *ds;
    size_t dn;
    const char *tmpl = r->p->template_text;

    /* Only templates that write {{ bos_token }} get one (Qwen does not). */
    if (tmpl && strstr(tmpl, "bos_token"))
        put(r, bos(r));
    if ((r->n == 0 || !role_is(&r->m[0], "system")) && chatml_default_system(tmpl, &ds, &dn))
        chatml_block(r, "system", ds, dn, false);
    for (size_t i = 0; i < r->n; i++)
        chatml_block(r, r->m[i].role, r->m[i].content, strlen(r->m[i].content), true);
    if (gen)
        put(r, "<|im_start|>assistant\n");
}

static void span_strip_nl(const char **a, const char **b, bool left, bool right)
{
    while (left && *a < *b && **a == '\n')
        (*a)++;
    while (right && *b > *a && (*b)[-1] == '\n')
        (*b)--;
}

/* Qwen3: ChatML plus <think> handling of assistant turns. */
static void render_qwen3(rd *r, bool gen)
{
    size_t last_user = 0;
    bool any_user = false;

    for (size_t i = 0; i < r->n; i++)
        if (role_is(&r->m[i], "user")) {
            last_user = i;
            any_user = true;
        }
    for (size_t i = 0; i < r->n; i++) {
        const char *c = r->m[i].content, *end = c + strlen(c);
        if (!role_is(&r->m[i], "assistant")) {
            chatml_block(r, r->m[i].role, c, strlen(c), true);
            continue;
        }
        /* content.split('</think>')[-1].lstrip('\n'); the reasoning is
         * what lies between the last <think> and the first </think>. */
        const char *ra = c, *rb = c, *ca = c;
        const char *close = strstr(c, "</think>");
        if (close != NULL) {
            const char *last_close = close, *q;
            while ((q = strstr(last_close + 1, "</think>")) != NULL)
                last_close = q;
            ca = last_close + 8;
            rb = close;
            for (q = c; (q = strstr(q, "<think>")) != NULL && q < close; q += 7)
                ra = q + 7;
            span_strip_nl(&ra, &rb, true, true);
        }
        const char *cb = end;
        span_strip_nl(&ca, &cb, true, false);
        put(r, "<|im_start|>assistant\n");
        if (any_user && i > last_user && (i + 1 == r->n || rb > ra)) {
            put(r, "<think>\n");
            cputn(r, ra, (size_t)(rb - ra));
            put(r, "\n</think>\n\n");
        }
        cputn(r, ca, (size_t)(cb - ca));
        put(r, "<|im_end|>\n");
    }
    if (gen) {
        put(r, "<|im_start|>assistant\n");
        if (r->p->enable_thinking == 0)
            put(r, "<think>\n\n</think>\n\n");
    }
}

/* Mistral v0.1/v0.2 (and mistral-v1): "[INST] U [/INST]A</s>", no system. */
static void render_mistral_plain(rd *r, eng_chat_format fmt)
{
    if (r->n > 0 && role_is(&r->m[0], "system")) {
        fail(r, -EINVAL, "chat template \"%s\" has no system role (message 0)",
             eng_chat_format_name(fmt));
        return;
    }
    if (check_alternation(r, fmt, 0) < 0)
        return;
    put(r, bos(r));
    for (size_t i = 0; i < r->n; i++) {
        if (role_is(&r->m[i], "user")) {
            put(r, "[INST] ");
            cput(r, r->m[i].content);
            put(r, " [/INST]");
        } else {
            cput(r, r->m[i].content);
            put(r, eos(r));
            if (fmt == ENG_CHAT_MISTRAL_V1)
                put(r, " ");
        }
    }
}

/* v3 and v3-tekken: the system text goes before the last user message. */
static void render_mistral_v3(rd *r, bool tekken)
{
    size_t first = r->n > 0 && role_is(&r->m[0], "system") ? 1 : 0, last_user = 0;
    eng_chat_format fmt = tekken ? ENG_CHAT_MISTRAL_V3_TEKKEN : ENG_CHAT_MISTRAL_V3;

    if (check_alternation(r, fmt, first) < 0)
        return;
    for (size_t i = first; i < r->n; i++)
        if (role_is(&r->m[i], "user"))
            last_user = i;
    put(r, bos(r));
    for (size_t i = first; i < r->n; i++) {
        if (role_is(&r->m[i], "user")) {
            put(r, tekken ? "[INST]" : "[INST] ");
            if (first == 1 && i == last_user) {
                cput(r, r->m[0].content);
                put(r, "\n\n");
            }
            cput(r, r->m[i].content);
            put(r, "[/INST]");
        } else {
            if (!tekken)
                put(r, " ");
            cput(r, r->m[i].content);
            put(r, eos(r));
        }
    }
}

/* v7 (llama.cpp's mistral-v7), with BOS first like the other templates
 * that write it. */
static void render_mistral_v7(rd *r)
{
    size_t first = r->n > 0 && role_is(&r->m[0], "system") ? 1 : 0;

    if (check_alternation(r, ENG_CHAT_MISTRAL_V7, first) < 0)
        return;
    put(r, bos(r));
    if (first) {
        put(r, "[SYSTEM_PROMPT] ");
        cput(r, r->m[0].content);
        put(r, "[/SYSTEM_PROMPT]");
    }
    for (size_t i = first; i < r->n; i++) {
        if (role_is(&r->m[i], "user")) {
            put(r, "[INST] ");
            cput(r, r->m[i].content);
            put(r, "[/INST]");
        } else {
            put(r, " ");
            cput(r, r->m[i].content);
            put(r, eos(r));
        }
    }
}

/* Llama-2-chat: the system text folded into the first user turn, every
 * user turn opened with BOS, contents stripped. */
static void render_llama2(rd *r)
{
    size_t first = r->n > 0 && role_is(&r->m[0], "system") ? 1 : 0;

    if (check_alternation(r, ENG_CHAT_LLAMA2, first) < 0)
        return;
    for (size_t i = first; i < r->n; i++) {
        if (role_is(&r->m[i], "user")) {
            put(r, bos(r));
            put(r, "[INST] ");
            if (first == 1 && i == 1) {
                tok_buf c = { 0 };
                int rc = 0;
                const char *s = r->m[0].content, *u = r->m[i].content;
                if ((rc = eng__buf_put(&c, "<<SYS>>\n", 8)) == 0 &&
                    (rc = eng__buf_put(&c, s, strlen(s))) == 0 &&
                    (rc = eng__buf_put(&c, "\n<</SYS>>\n\n", 11)) == 0 &&
                    (rc = eng__buf_put(&c, u, strlen(u))) == 0)
                    cput_trim(r, c.p);     /* <<SYS>> is plain text */
                if (rc < 0 && r->rc == 0)
                    r->rc = rc;
                eng__buf_cleanup(&c);
            } else {
                cput_trim(r, r->m[i].content);
            }
            put(r, " [/INST]");
        } else {
            put(r, " ");
            cput_trim(r, r->m[i].content);
            put(r, " ");
            put(r, eos(r));
        }
    }
}

/* Zephyr / TinyLlama-Chat and Phi-3: "<|role|>\ncontent" + end marker. */
static void render_zephyr(rd *r, bool gen, const char *end)
{
    for (size_t i = 0; i < r->n; i++) {
        put(r, "<|");
        put(r, r->m[i].role);
        put(r, "|>\n");
        cput(r, r->m[i].content);
        put(r, end);
        put(r, "\n");
    }
    if (gen)
        put(r, "<|assistant|>\n");
}

/* Gemma: no system role, so it is folded into the first user turn
 * (llama.cpp's choice; Gemma 1's own template raises instead). */
static void render_gemma(rd *r, bool gen)
{
    size_t first = r->n > 0 && role_is(&r->m[0], "system") ? 1 : 0;

    if (check_alternation(r, ENG_CHAT_GEMMA, first) < 0)
        return;
    put(r, bos(r));
    for (size_t i = first; i < r->n; i++) {
        bool user = role_is(&r->m[i], "user");
        put(r, user ? "<start_of_turn>user\n" : "<start_of_turn>model\n");
        if (user && first == 1 && i == 1) {
            cput_trim(r, r->m[0].content);
            put(r, "\n\n");
        }
        cput_trim(r, r->m[i].content);
        put(r, "<end_of_turn>\n");
    }
    if (gen)
        put(r, "<start_of_turn>model\n");
}

static eng_chat_format pick_format(rd *r)
{
    const eng_chat_params *p = r->p;
    eng_chat_format fmt;

    if (p->template_name != NULL) {
        fmt = eng_chat_format_from_name(p->template_name);
        if (fmt == ENG_CHAT_UNKNOWN)
            fail(r, -EINVAL, "unknown chat template name \"%.64s\" (known: " KNOWN_NAMES ")",
                 p->template_name);
        return fmt;
    }
    if (p->template_text == NULL) {
        fail(r, -ENOTSUP, "the model has no chat template; pass a template name (" KNOWN_NAMES
             ")");
        return ENG_CHAT_UNKNOWN;
    }
    fmt = eng_chat_detect(p->template_text);
    if (fmt == ENG_CHAT_UNKNOWN)
        fail(r, -ENOTSUP, "the model's chat template matches no known format; pass a template "
             "name (" KNOWN_NAMES ")");
    return fmt;
}

int eng__chat_render_spans(const eng_chat_params *p, const eng_chat_msg *msgs, size_t n_msgs,
                           bool gen, char **text, size_t *len, size_t **spans,
                           size_t *n_spans, char *err, size_t errlen)
{
    rd r = { .p = p, .m = msgs, .n = n_msgs, .err = err, .errlen = errlen };
    eng_chat_format fmt;

    *text = NULL;
    *len = 0;
    if (spans != NULL) {
        *spans = NULL;
        *n_spans = 0;
    }
    for (size_t i = 0; i < n_msgs; i++)
        if (msgs[i].role == NULL || msgs[i].content == NULL || msgs[i].role[0] == '\0' ||
            strpbrk(msgs[i].role, "<>|[]\n") != NULL)
            return fail(&r, -EINVAL, "chat message %zu: role and content are required and the "
                        "role must be a plain word", i);
    fmt = pick_format(&r);
    switch (fmt) {
    case ENG_CHAT_UNKNOWN:           break;
    case ENG_CHAT_LLAMA3:            render_llama3(&r, gen, false); break;
    case ENG_CHAT_LLAMA31:           render_llama3(&r, gen, true); break;
    case ENG_CHAT_CHATML:            render_chatml(&r, gen); break;
    case ENG_CHAT_QWEN3:             render_qwen3(&r, gen); break;
    case ENG_CHAT_MISTRAL:
    case ENG_CHAT_MISTRAL_V1:        render_mistral_plain(&r, fmt); break;
    case ENG_CHAT_MISTRAL_V3:        render_mistral_v3(&r, false); break;
    case ENG_CHAT_MISTRAL_V3_TEKKEN: render_mistral_v3(&r, true); break;
    case ENG_CHAT_MISTRAL_V7:        render_mistral_v7(&r); break;
    case ENG_CHAT_LLAMA2:            render_llama2(&r); break;
    case ENG_CHAT_ZEPHYR:            render_zephyr(&r, gen, eos(&r)); break;
    case ENG_CHAT_PHI3:              render_zephyr(&r, gen, "<|end|>"); break;
    case ENG_CHAT_GEMMA:             render_gemma(&r, gen); break;
    case ENG_CHAT_FORMAT_COUNT:      break;
    }
    if (r.rc == 0 && r.out.p == NULL)
        put(&r, "");
    if (r.rc < 0) {
        if (r.rc == -ENOMEM)
            kn_errf(err, errlen, "chat template: out of memory");
        eng__buf_cleanup(&r.out);
        free(r.spans);
        return r.rc;
    }
    *text = r.out.p;
    *len = r.out.len;
    if (spans != NULL) {
        *spans = r.spans;
        *n_spans = r.n_spans;
    } else {
        free(r.spans);
    }
    return 0;
}

int eng_chat_render_params(const eng_chat_params *p, const eng_chat_msg *msgs, size_t n_msgs,
                           bool gen, char **text, size_t *len, char *err, size_t errlen)
{
    return eng__chat_render_spans(p, msgs, n_msgs, gen, text, len, NULL, NULL, err, errlen);
}

static void params_from(eng_chat_params *p, const eng_tokenizer *tok, const char *name)
{
    eng_chat_params_default(p);
    p->template_name = name;
    p->template_text = tok->chat_template;
    p->bos_token = tok->bos_text;
    p->eos_token = tok->eos_text;
}

int eng_chat_encode(const eng_tokenizer *tok, const eng_chat_msg *msgs, size_t n_msgs,
                    bool gen, const char *template_name, int32_t **ids, size_t *n_ids,
                    char *err, size_t errlen)
{
    eng_chat_params p;
    char *text;
    size_t len, *spans, n_spans;
    int rc;

    *ids = NULL;
    *n_ids = 0;
    params_from(&p, tok, template_name);
    if ((rc = eng__chat_render_spans(&p, msgs, n_msgs, gen, &text, &len, &spans, &n_spans, err,
                                     errlen)) < 0)
        return rc;
    rc = eng__tok_encode_protected(tok, text, len, spans, n_spans, ids, n_ids);
    if (rc == -EILSEQ)
        kn_errf(err, errlen, "chat message content is not valid UTF-8");
    else if (rc < 0)
        kn_errf(err, errlen, "chat encode: %s", kn_strerror(rc));
    free(text);
    free(spans);
    return rc;
}

int eng_chat_render(const eng_tokenizer *tok, const eng_chat_msg *msgs, size_t n_msgs,
                    bool gen, const char *template_name, char **text, size_t *len,
                    char *err, size_t errlen)
{
    eng_chat_params p;

    params_from(&p, tok, template_name);
    return eng_chat_render_params(&p, msgs, n_msgs, gen, text, len, err, errlen);
}
