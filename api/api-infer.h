/* api-infer.h: the call object shared by api_infer.c (parsing,
 * validation, submission) and api_call.c (engine callbacks and response
 * bodies).  Never included from outside api/. */
#ifndef FP8D_API_INFER_H
#define FP8D_API_INFER_H

#include "api/api-int.h"

#include <jansson.h>
#include <pthread.h>

#define API_MAX_TOP 20

typedef struct api__buf {
    char  *s;
    size_t len, cap;
} api__buf;

int api__buf_add(api__buf *b, const char *s, size_t n);
double api__now(void);       /* CLOCK_MONOTONIC seconds */

/* One token as reported, for logprobs; lp NaN = null (first prompt token). */
typedef struct api__tokrec {
    int32_t id;
    float   lp;
    uint8_t n_top;
    int32_t top_ids[API_MAX_TOP];
    float   top_lp[API_MAX_TOP];
} api__tokrec;

typedef struct api__prompt {
    int32_t *ids;
    size_t   n_ids;
} api__prompt;

typedef struct api__choice {
    struct api_call *c;
    size_t       index;
    eng_request *req;
    bool         done, oom, role_sent, finish_sent;
    int          rc;
    eng_stop_reason why;
    api__buf     text;         /* echoed prompt (completions echo) + generated text */
    size_t       sent;         /* bytes of text already streamed */
    size_t       n_gen;
    api__tokrec *toks;         /* logprob records: prompt (echo) then generated */
    size_t       n_toks, cap_toks, toks_sent, offset;
    double       t_first, t_last;
} api__choice;

struct api_call {
    api_service    *svc;
    api__eng       *pin;           /* the engine it submits to, pinned until freed */
    const eng_tokenizer *tok;      /* pin's */
    pthread_mutex_t mu;
    int             refs;          /* transport + submitted choices not done */
    api_wake_fn     wake;
    void           *wake_ud;
    bool            released, chat, stream, include_usage, ended, oom;
    bool            refused;       /* answered 429/503 at submit: not a cancellation */
    int             logprobs;      /* -1 none, else top alternatives to show */
    long long       timeout_ms;
    char            id[48];
    long long       created;
    char            fingerprint[128];
    bool            have_epoch;    /* mode/epoch of the first token seen */
    int             fp8_mode;
    uint64_t        epoch;
    api__prompt    *prompts;
    size_t          n_prompts;
    api__choice    *ch;            /* n_prompts * n, prompt-major */
    size_t          n_choices, n_submitted, n_done;
    api__buf        out;           /* SSE bytes not yet read */
    size_t          out_off;
    double          t_start, t_wake;
};

api_call *api__call_new(api_service *svc, size_t n_prompts, size_t n_choices);
/* Submits every choice; on error the ones submitted stay the engine's
 * until their on_done, and the caller answers and calls api_call_release. */
int  api__call_submit(api_call *c, const eng_req_params *base, bool prompt_lp);
/* Adds the null record of prompt token 0 (echo with logprobs). */
int  api__choice_prompt_first(api__choice *ch, int32_t id);

#endif
