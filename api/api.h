/* api.h: HTTP/JSON contract (placeholder until the foundation lands). */
#ifndef FP8D_API_H
#define FP8D_API_H
#include "engine/engine.h"
#endif
