# kernels/: FP8 weight matrix products (decode GEMV, small-M GEMM, prefill panels).
