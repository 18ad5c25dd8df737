/* tokenizer.h: tokenizer and chat templates (included by engine/engine.h;
 * placeholder until the tokenizer lands). */
#ifndef FP8D_ENG_TOKENIZER_H
#define FP8D_ENG_TOKENIZER_H
#endif
