/* engine.h: models and the engine thread (placeholder until the model engine lands). */
#ifndef FP8D_ENGINE_H
#define FP8D_ENGINE_H
#include "quant/quant.h"
#include "engine/tokenizer.h"
#endif
