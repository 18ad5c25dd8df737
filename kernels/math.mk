# kernels/: forward-pass math (matmul, norms, rope, softmax).
