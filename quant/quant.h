/* quant.h: FP8 quantization policy (placeholder until the numerics core lands). */
#ifndef FP8D_QUANT_H
#define FP8D_QUANT_H
#include "kernels/kernels.h"
#endif
