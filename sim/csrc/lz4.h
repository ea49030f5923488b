/* The two entry points of the system's liblz4 that Verilator's FST writer calls. intvit ships
 * this declaration so that FST tracing builds where the runtime library is installed but its
 * development header is not (as on a fresh Debian machine). Signatures per the LZ4 block API. */
#ifndef INTVIT_LZ4_DECLARATIONS_H
#define INTVIT_LZ4_DECLARATIONS_H
#ifdef __cplusplus
extern "C" {
#endif
int LZ4_compressBound(int inputSize);
int LZ4_compress_default(const char *src, char *dst, int srcSize, int dstCapacity);
#ifdef __cplusplus
}
#endif
#endif
