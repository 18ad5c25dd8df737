/* kn_math.h: forward-pass math kernels (included by kernels/kernels.h;
 * include that, not this). */
#ifndef FP8D_KN_MATH_H
#define FP8D_KN_MATH_H

#endif
