/* The first-stage scan: inner products of float32 queries with float8 (e4m3fn) code rows,
 * keeping the top k per query. Called from indexing/float8_scan.py on the code buffer that
 * FAISS's IndexPQ holds (zero copy), with OpenMP over row blocks.
 *
 * Why not FAISS's own PQ scan: it does one table lookup per byte (~8x slower per byte than this).
 * With AVX-512 (BW, VL) each 32 code bytes become float16 by moving bit fields (e4m3 and float16
 * differ only in exponent bias, folded into the query as 2^8) and float32 by vcvtph2ps; a single
 * query scores four rows per step (independent FMA chains, one shared horizontal reduction), with
 * AVX512-BF16 as bfloat16 pairs in vdpbf16ps instead (integer ops only, see dot_rows4_bf16); a
 * block of queries decodes 16 rows once into a column tile and scores four queries at a time with
 * broadcast FMAs. Without AVX-512 a portable loop decodes byte by byte. Codes are written
 * flush-to-zero (no subnormals) and never NaN (0x7f/0xff); such bytes, if found, count as 0 in
 * both paths, as in the IndexPQ codebook. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#include <pthread.h>
#endif

static inline float f8_to_f32(uint8_t b) {
    uint32_t mag = (uint32_t)(b & 0x7F);
    uint32_t bits = ((uint32_t)(b & 0x80) << 24) | ((mag << 20) + (120u << 23));
    float f;
    memcpy(&f, &bits, sizeof f);
    return ((mag >> 3) && mag != 0x7F) ? f : 0.0f; /* exponent 0 (flushed) and NaN -> 0 */
}

/* A bounded min-heap of (score, id): the root is the smallest score kept. */
/* The order of results: a higher score first, on equal scores the lower row (so ties come out the
   same however rows are split over threads or segments). better(a, b): a comes before b. */
static inline int better(float va, int64_t ia, float vb, int64_t ib) { return va > vb || (va == vb && ia < ib); }

static void heap_push(float *val, int64_t *ids, Py_ssize_t k, Py_ssize_t *size, float v, int64_t id) {
    Py_ssize_t i; /* a heap of the k best with the worst at the root */
    if (*size < k) {
        i = (*size)++;
        while (i > 0 && better(val[(i - 1) / 2], ids[(i - 1) / 2], v, id)) {
            val[i] = val[(i - 1) / 2];
            ids[i] = ids[(i - 1) / 2];
            i = (i - 1) / 2;
        }
    } else {
        if (!better(v, id, val[0], ids[0])) return;
        i = 0;
        for (;;) {
            Py_ssize_t l = 2 * i + 1, r = l + 1, m = i;
            float mv = v;
            int64_t mi = id;
            if (l < k && better(mv, mi, val[l], ids[l])) { m = l; mv = val[l]; mi = ids[l]; }
            if (r < k && better(mv, mi, val[r], ids[r])) { m = r; }
            if (m == i) break;
            val[i] = val[m];
            ids[i] = ids[m];
            i = m;
        }
    }
    val[i] = v;
    ids[i] = id;
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__)
#include <immintrin.h>
#define F8_SIMD 32 /* bytes per step */
/* 32 code bytes (`m` masks d % 32) and which of them are valid e4m3: exponent-0 and NaN bytes,
 * never written, count as 0 so every path agrees with the IndexPQ codebook on corrupt codes. */
static inline __m256i load_codes(const uint8_t *c, __mmask32 m, __mmask32 *ok) {
    __m256i b = _mm256_maskz_loadu_epi8(m, c);
    __m256i mag = _mm256_and_si256(b, _mm256_set1_epi8(0x7F));
    *ok = _mm256_cmplt_epu8_mask(_mm256_sub_epi8(mag, _mm256_set1_epi8(8)), _mm256_set1_epi8(0x77));
    return b;
}

/* 32 e4m3 bytes -> 32 float16 (as 2 x 16 float32): sign-extend each byte to 16 bits, shift the
 * exponent and mantissa into float16 position (bias 7 -> 15, so values come out 2^-8 too small;
 * the caller folds 2^8 into the query), keep the sign bit. */
static inline void f8x32_to_f32(const uint8_t *c, __mmask32 m, __m512 *lo, __m512 *hi) {
    __mmask32 ok;
    __m256i b = load_codes(c, m, &ok);
    __m512i w = _mm512_cvtepi8_epi16(_mm256_maskz_mov_epi8(ok, b));
    __m512i h = _mm512_and_si512(_mm512_slli_epi16(w, 7), _mm512_set1_epi16((short)0xBF80));
    *lo = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
    *hi = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1));
}

static inline __mmask32 step_mask(Py_ssize_t d, Py_ssize_t j) {
    Py_ssize_t left = d - j;
    return left >= 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1u << left) - 1u);
}

/* row . q; q is zero-padded to a multiple of 32 and scaled by 2^8 */
static inline float dot_row(const uint8_t *c, const float *q, Py_ssize_t d) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (Py_ssize_t j = 0; j < d; j += F8_SIMD) {
        __m512 lo, hi;
        f8x32_to_f32(c + j, step_mask(d, j), &lo, &hi);
        acc0 = _mm512_fmadd_ps(lo, _mm512_loadu_ps(q + j), acc0);
        acc1 = _mm512_fmadd_ps(hi, _mm512_loadu_ps(q + j + 16), acc1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

/* out[r] = the 16-lane sum of acc[r], for four rows: one shuffle tree instead of four */
static inline void row_sums4(const __m512 acc[4], float out[4]) {
    __m256 h[4];
    for (int r = 0; r < 4; r++) /* 512 -> 256: fold the halves */
        h[r] = _mm256_add_ps(_mm512_castps512_ps256(acc[r]), _mm512_extractf32x8_ps(acc[r], 1));
    __m256 ab = _mm256_hadd_ps(h[0], h[1]), ef = _mm256_hadd_ps(h[2], h[3]);
    __m256 abef = _mm256_hadd_ps(ab, ef); /* row sums of the four, split over the two 128-bit halves */
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(abef), _mm256_extractf128_ps(abef, 1)));
}

/* four rows at once, interleaved: four independent FMA chains */
static inline void dot_rows4(const uint8_t *c, const float *q, Py_ssize_t d, float out[4]) {
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (Py_ssize_t j = 0; j < d; j += F8_SIMD) {
        __mmask32 m = step_mask(d, j);
        __m512 qlo = _mm512_loadu_ps(q + j), qhi = _mm512_loadu_ps(q + j + 16);
        for (int r = 0; r < 4; r++) {
            __m512 lo, hi;
            f8x32_to_f32(c + r * d + j, m, &lo, &hi);
            acc[r] = _mm512_fmadd_ps(lo, qlo, acc[r]);
            acc[r] = _mm512_fmadd_ps(hi, qhi, acc[r]);
        }
    }
    row_sums4(acc, out);
}
#define ROWS_PER_STEP 4

#ifdef __AVX512BF16__
#define BF16_SINGLE 1
#define BF16_MAX_DIMS 4096
/* One query, AVX512-BF16: e4m3 is bfloat16 with a 4-bit exponent, so each byte becomes bf16 by
 * integer ops alone (exponent bias 7 -> 127: shift, mask, add 120 << 7; sign-extension carries the
 * sign to bit 15), and vdpbf16ps multiplies 32 pairs per instruction. The query is split into
 * bf16 hi + lo parts (~16 mantissa bits), so scores match the float path to ~1e-5. */
static inline __m512i f8x32_to_bf16(const uint8_t *c, __mmask32 m) {
    __mmask32 ok;
    __m256i b = load_codes(c, m, &ok);
    __m512i w = _mm512_and_si512(_mm512_slli_epi16(_mm512_cvtepi8_epi16(b), 4), _mm512_set1_epi16((short)0x87F0));
    return _mm512_maskz_add_epi16(ok, w, _mm512_set1_epi16(0x3C00)); /* zero where exponent 0 or NaN */
}

static inline void dot_rows4_bf16(const uint8_t *c, const uint16_t *qh, const uint16_t *ql, Py_ssize_t d, float out[4]) {
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (Py_ssize_t j = 0; j < d; j += F8_SIMD) {
        __mmask32 m = step_mask(d, j);
        __m512bh h = (__m512bh)_mm512_loadu_si512(qh + j), l = (__m512bh)_mm512_loadu_si512(ql + j);
        for (int r = 0; r < 4; r++) {
            __m512bh x = (__m512bh)f8x32_to_bf16(c + r * d + j, m);
            acc[r] = _mm512_dpbf16_ps(_mm512_dpbf16_ps(acc[r], x, h), x, l);
        }
    }
    row_sums4(acc, out);
}

static inline uint16_t to_bf16(float f) { /* round to nearest even */
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

static inline float from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
#endif

static inline void decode_row(const uint8_t *c, float *row, Py_ssize_t d) {
    for (Py_ssize_t j = 0; j < d; j += F8_SIMD) {
        __m512 lo, hi;
        f8x32_to_f32(c + j, step_mask(d, j), &lo, &hi);
        _mm512_storeu_ps(row + j, lo);
        _mm512_storeu_ps(row + j + 16, hi);
    }
}
#define TILE 16 /* rows decoded together for a block of queries: one 16-float register per column */
/* acc[u][r] = x[u] . row r, for 4 queries x (rows of stride dp) and the TILE rows of `tile`,
 * stored column-major (dp, TILE): four independent FMA chains share each column load. */
static inline void score_tile(const float *tile, const float *x, Py_ssize_t dp, Py_ssize_t d, float acc[4][TILE]) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    for (Py_ssize_t j = 0; j < d; j++) {
        __m512 col = _mm512_loadu_ps(tile + j * TILE);
        a0 = _mm512_fmadd_ps(_mm512_set1_ps(x[j]), col, a0);
        a1 = _mm512_fmadd_ps(_mm512_set1_ps(x[dp + j]), col, a1);
        a2 = _mm512_fmadd_ps(_mm512_set1_ps(x[2 * dp + j]), col, a2);
        a3 = _mm512_fmadd_ps(_mm512_set1_ps(x[3 * dp + j]), col, a3);
    }
    _mm512_storeu_ps(acc[0], a0); _mm512_storeu_ps(acc[1], a1);
    _mm512_storeu_ps(acc[2], a2); _mm512_storeu_ps(acc[3], a3);
}
#define QUERY_SCALE 256.0f /* decoded values are 2^-8 of the true ones */
#else
#define F8_SIMD 1
static inline float dot_row(const uint8_t *c, const float *q, Py_ssize_t d) {
    float s = 0.0f;
    for (Py_ssize_t j = 0; j < d; j++) s += q[j] * f8_to_f32(c[j]);
    return s;
}
static inline void decode_row(const uint8_t *c, float *row, Py_ssize_t d) {
    for (Py_ssize_t j = 0; j < d; j++) row[j] = f8_to_f32(c[j]);
}
static inline void dot_rows4(const uint8_t *c, const float *q, Py_ssize_t d, float out[4]) {
    for (int r = 0; r < 4; r++) out[r] = dot_row(c + r * d, q, d);
}
#define ROWS_PER_STEP 4
#define TILE 16
static inline void score_tile(const float *tile, const float *x, Py_ssize_t dp, Py_ssize_t d, float acc[4][TILE]) {
    for (int u = 0; u < 4; u++)
        for (int r = 0; r < TILE; r++) {
            float s = 0.0f;
            for (Py_ssize_t j = 0; j < d; j++) s += x[u * dp + j] * tile[j * TILE + r];
            acc[u][r] = s;
        }
}
#define QUERY_SCALE 1.0f
#endif


#define SMALL_SCAN_BYTES ((size_t)1 << 20)

/* GNU OpenMP's thread pool does not survive fork(): a parallel region in a child forked after the
   parent ran one never returns (multiprocessing's default start method on Linux). A forked child
   scans on its own thread, without entering a parallel region. */
static int forked_child = 0;
static void mark_forked_child(void) { forked_child = 1; }

/* One code buffer of a multi-segment scan: n rows, reported as row numbers offset + 0 .. n - 1. */
typedef struct {
    const uint8_t *codes;
    Py_ssize_t n;
    int64_t offset;
} segment_t;

/* Top-k over every segment in one parallel region: the threads split each segment's rows and
   move on without a barrier, so many small segments cost about what one segment of their size
   costs (one team start and join per call, not per segment). */
static int search(const segment_t *segs, int nseg, Py_ssize_t d, const float *xq_in, Py_ssize_t nq,
                  Py_ssize_t k, float *outD, int64_t *outI) {
    Py_ssize_t total = 0;
    for (int s = 0; s < nseg; s++) total += segs[s].n;
    int nt = 1;
#ifdef _OPENMP
    nt = omp_get_max_threads();
#endif
    /* a small scan (a small segment: an upload) runs on one thread: under 1 MiB of code bytes per
       query block, starting and joining the team costs more than the second core saves */
    if ((size_t)total * (size_t)d * (size_t)nq < SMALL_SCAN_BYTES || forked_child) nt = 1;
    if (nq == 0) return 0;
    Py_ssize_t dp = (d + 31) / 32 * 32;
    /* queries padded with zeros to a multiple of 4 queries and 32 dimensions for the SIMD steps */
    float *xq = calloc((size_t)((nq + 3) / 4 * 4) * dp, sizeof(float));
    /* per thread, for blocks of queries only: decoded rows + their transpose */
    float *work = malloc(sizeof(float) * (nq > 1 ? nt * 2 * TILE * dp : 1));
    float *hv = malloc(sizeof(float) * nt * nq * k);
    int64_t *hi = malloc(sizeof(int64_t) * nt * nq * k);
    Py_ssize_t *hs = calloc((size_t)nt * nq, sizeof(Py_ssize_t));
    if (!xq || !work || !hv || !hi || !hs) {
        free(xq); free(work); free(hv); free(hi); free(hs);
        return -1;
    }
    for (Py_ssize_t q = 0; q < nq; q++)
        for (Py_ssize_t j = 0; j < d; j++) xq[q * dp + j] = xq_in[q * d + j] * QUERY_SCALE;
#ifdef BF16_SINGLE
    uint16_t qbf[2 * BF16_MAX_DIMS]; /* one query as bf16 hi, lo (zero-padded); wider queries use the float path */
    int use_bf16 = nq == 1 && dp <= BF16_MAX_DIMS;
    if (use_bf16) {
        memset(qbf, 0, sizeof(uint16_t) * 2 * dp);
        for (Py_ssize_t j = 0; j < d; j++) {
            qbf[j] = to_bf16(xq_in[j]);
            qbf[dp + j] = to_bf16(xq_in[j] - from_bf16(qbf[j]));
        }
    }
#endif
    #pragma omp parallel num_threads(nt) if(nt > 1)
    {
        int t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        for (int sg = 0; sg < nseg; sg++) {
        const uint8_t *codes = segs[sg].codes;
        const Py_ssize_t n = segs[sg].n;
        const int64_t off = segs[sg].offset;
        if (nq == 1) { /* one query: decode and multiply in one pass, four rows per step */
            float *v = hv + (Py_ssize_t)t * k;
            int64_t *id = hi + (Py_ssize_t)t * k;
            Py_ssize_t nb = (n + ROWS_PER_STEP - 1) / ROWS_PER_STEP;
            #pragma omp for schedule(static) nowait
            for (Py_ssize_t b = 0; b < nb; b++) {
                Py_ssize_t i0 = b * ROWS_PER_STEP;
                float s[ROWS_PER_STEP];
                if (i0 + ROWS_PER_STEP <= n) {
#ifdef BF16_SINGLE
                    if (use_bf16) dot_rows4_bf16(codes + i0 * d, qbf, qbf + dp, d, s);
                    else
#endif
                    dot_rows4(codes + i0 * d, xq, d, s);
                }
                else for (Py_ssize_t r = 0; i0 + r < n; r++) s[r] = dot_row(codes + (i0 + r) * d, xq, d);
                for (Py_ssize_t r = 0; r < ROWS_PER_STEP && i0 + r < n; r++)
                    if (hs[t] < k || s[r] >= v[0]) heap_push(v, id, k, hs + t, s[r], off + (int64_t)(i0 + r));
            }
        } else { /* a block of queries: decode TILE rows once, score them against every query */
            float *rows = work + (size_t)t * 2 * TILE * dp, *tile = rows + TILE * dp; /* (TILE, dp), (dp, TILE) */
            Py_ssize_t nb = (n + TILE - 1) / TILE;
            #pragma omp for schedule(static) nowait
            for (Py_ssize_t b = 0; b < nb; b++) {
                Py_ssize_t i0 = b * TILE, m = n - i0 < TILE ? n - i0 : TILE;
                for (Py_ssize_t r = 0; r < m; r++) decode_row(codes + (i0 + r) * d, rows + r * dp, d);
                for (Py_ssize_t r = m; r < TILE; r++) memset(rows + r * dp, 0, sizeof(float) * dp);
                for (Py_ssize_t r = 0; r < TILE; r++) /* transpose: one column per dimension */
                    for (Py_ssize_t j = 0; j < d; j++) tile[j * TILE + r] = rows[r * dp + j];
                for (Py_ssize_t q0 = 0; q0 < nq; q0 += 4) {
                    float acc[4][TILE];
                    Py_ssize_t g = nq - q0 < 4 ? nq - q0 : 4;
                    const float *x = xq + q0 * dp; /* the 4 queries share each column load */
                    score_tile(tile, x, dp, d, acc);
                    for (Py_ssize_t u = 0; u < g; u++) {
                        Py_ssize_t h = (Py_ssize_t)t * nq + q0 + u;
                        float *v = hv + h * k;
                        int64_t *id = hi + h * k;
                        for (Py_ssize_t r = 0; r < m; r++)
                            if (hs[h] < k || acc[u][r] >= v[0]) heap_push(v, id, k, hs + h, acc[u][r], off + (int64_t)(i0 + r));
                    }
                }
            }
        }
        }
    }
    /* merge the per-thread heaps of each query, then sort descending */
    for (Py_ssize_t q = 0; q < nq; q++) {
        float *val = outD + q * k;
        int64_t *ids = outI + q * k;
        Py_ssize_t size = 0;
        for (int t = 0; t < nt; t++) {
            Py_ssize_t h = (Py_ssize_t)t * nq + q;
            for (Py_ssize_t e = 0; e < hs[h]; e++) heap_push(val, ids, k, &size, hv[h * k + e], hi[h * k + e]);
        }
        for (Py_ssize_t e = size; e < k; e++) { val[e] = -FLT_MAX; ids[e] = -1; }
        for (Py_ssize_t a = 1; a < size; a++) { /* insertion sort, k is small */
            float v = val[a]; int64_t id = ids[a]; Py_ssize_t b = a;
            while (b > 0 && better(v, id, val[b - 1], ids[b - 1])) { val[b] = val[b - 1]; ids[b] = ids[b - 1]; b--; }
            val[b] = v; ids[b] = id;
        }
    }
    free(xq); free(work); free(hv); free(hi); free(hs);
    return 0;
}

static PyObject *py_search(PyObject *self, PyObject *args) {
    Py_buffer codes, xq, D, I;
    Py_ssize_t n, d, nq, k;
    if (!PyArg_ParseTuple(args, "y*nny*nnw*w*", &codes, &n, &d, &xq, &nq, &k, &D, &I)) return NULL;
    const Py_ssize_t big = PY_SSIZE_T_MAX / 16; /* sizes below this cannot overflow the products */
    int ok = n >= 0 && d > 0 && nq >= 0 && k > 0 && n < big / d && nq < big / d && nq < big / k / 64
             && codes.len >= n * d && xq.len >= (Py_ssize_t)(nq * d * sizeof(float))
             && D.len >= (Py_ssize_t)(nq * k * sizeof(float)) && I.len >= (Py_ssize_t)(nq * k * sizeof(int64_t));
    int failed = 0;
    if (ok) {
        segment_t seg = {(const uint8_t *)codes.buf, n, 0};
        Py_BEGIN_ALLOW_THREADS
        failed = search(&seg, 1, d, (const float *)xq.buf, nq, k, (float *)D.buf, (int64_t *)I.buf);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&codes); PyBuffer_Release(&xq); PyBuffer_Release(&D); PyBuffer_Release(&I);
    if (failed) return PyErr_NoMemory();
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "search(codes, n, d, xq, nq, k, D, I): sizes out of range or buffers too small");
        return NULL;
    }
    Py_RETURN_NONE;
}

/* search_many(codes_list, offsets, d, xq, nq, k, D, I): the segments' code buffers, each holding
   len(buffer) / d rows numbered from its offset, scanned as one. */
static PyObject *py_search_many(PyObject *self, PyObject *args) {
    PyObject *codes_list, *offsets;
    Py_buffer xq, D, I;
    Py_ssize_t d, nq, k;
    if (!PyArg_ParseTuple(args, "OOny*nnw*w*", &codes_list, &offsets, &d, &xq, &nq, &k, &D, &I)) return NULL;
    Py_ssize_t nseg = PySequence_Check(codes_list) && PySequence_Check(offsets) ? PySequence_Size(codes_list) : -1;
    const Py_ssize_t big = PY_SSIZE_T_MAX / 16;
    int ok = nseg >= 0 && nseg < 1 << 20 && PySequence_Size(offsets) == nseg && d > 0 && nq >= 0 && k > 0
             && nq < big / d && nq < big / k / 64 && xq.len >= (Py_ssize_t)(nq * d * sizeof(float))
             && D.len >= (Py_ssize_t)(nq * k * sizeof(float)) && I.len >= (Py_ssize_t)(nq * k * sizeof(int64_t));
    Py_buffer *bufs = ok ? calloc((size_t)nseg + 1, sizeof(Py_buffer)) : NULL;
    segment_t *segs = ok ? calloc((size_t)nseg + 1, sizeof(segment_t)) : NULL;
    Py_ssize_t got = 0;
    ok = ok && bufs && segs;
    for (; ok && got < nseg; got++) {
        PyObject *item = PySequence_GetItem(codes_list, got), *o = PySequence_GetItem(offsets, got);
        long long offset = o ? PyLong_AsLongLong(o) : -1;
        int have = item && PyObject_GetBuffer(item, &bufs[got], PyBUF_SIMPLE) == 0;
        Py_XDECREF(item); Py_XDECREF(o);
        if (!have) { PyErr_Clear(); ok = 0; break; }
        if (PyErr_Occurred() || offset < 0 || bufs[got].len % d) { PyErr_Clear(); ok = 0; got++; break; }
        segs[got].codes = (const uint8_t *)bufs[got].buf;
        segs[got].n = bufs[got].len / d;
        segs[got].offset = (int64_t)offset;
    }
    int failed = 0;
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        failed = search(segs, (int)nseg, d, (const float *)xq.buf, nq, k, (float *)D.buf, (int64_t *)I.buf);
        Py_END_ALLOW_THREADS
    }
    for (Py_ssize_t s = 0; s < got && bufs; s++) PyBuffer_Release(&bufs[s]);
    free(bufs); free(segs);
    PyBuffer_Release(&xq); PyBuffer_Release(&D); PyBuffer_Release(&I);
    if (failed) return PyErr_NoMemory();
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "search_many(codes_list, offsets, d, xq, nq, k, D, I): bad segments, sizes or buffers");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"search_many", py_search_many, METH_VARARGS,
     "search_many(codes_list, offsets, d, xq, nq, k, D, I): search() over several code buffers of d-byte "
     "rows at once; a row r of buffer s is reported as offsets[s] + r."},
    {"search", py_search, METH_VARARGS,
     "search(codes, n, d, xq, nq, k, D, I): top-k inner products of float32 queries xq (nq, d) "
     "with float8 e4m3fn rows codes (n, d); writes D (nq, k) float32 and I (nq, k) int64."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_float8scan", NULL, -1, methods};

PyMODINIT_FUNC PyInit__float8scan(void) {
#ifdef _OPENMP
    pthread_atfork(NULL, NULL, mark_forked_child);
#endif
    return PyModule_Create(&module);
}
