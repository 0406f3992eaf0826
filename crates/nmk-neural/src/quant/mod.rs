//! Quantized weight formats and the kernels that read them (dequantization, activation
//! quantization, dot products, matrix-vector products).
