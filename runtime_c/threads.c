/* onnx-emit runtime: a fixed pool of worker threads for native builds exported with --threads N, which add this
 * file and compile the runtime with -DEK_THREADS=N -pthread (off by default: embedded builds stay single-threaded).
 * No malloc of ours; the pool starts on first use and lives as long as the process. One parallel region runs
 * at a time: ek_parallel_for returns 0 without running anything when a region is already running (a kernel
 * called from a worker, or a second caller thread), and the caller then does the work serially itself, so
 * nesting cannot deadlock. */

#include "emit_runtime.h"

#if !defined(EK_THREADS) || EK_THREADS < 2
#error "threads.c is for builds with -DEK_THREADS=N, N >= 2 (onnx-emit export --threads N)"
#endif
#include <pthread.h>

static pthread_mutex_t region_lock = PTHREAD_MUTEX_INITIALIZER; /* held while a parallel region runs */
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_work = PTHREAD_COND_INITIALIZER;
static pthread_cond_t pool_done = PTHREAD_COND_INITIALIZER;
static pthread_t pool_threads[EK_THREADS - 1];
static int pool_size = -1; /* workers started (-1: not yet tried) */
static unsigned long pool_generation;
static int pool_pending;
static ek_range_fn job_fn;
static void *job_ctx;
static size_t job_n;

static void ek_run_chunk(int t)
{
    const size_t parts = (size_t)pool_size + 1;
    const size_t begin = job_n * (size_t)t / parts, end = job_n * ((size_t)t + 1) / parts;
    if (begin < end)
        job_fn(job_ctx, begin, end);
}

static void *ek_worker(void *arg)
{
    const int t = (int)(size_t)arg;
    unsigned long seen = 0;
    for (;;) {
        pthread_mutex_lock(&pool_lock);
        while (pool_generation == seen)
            pthread_cond_wait(&pool_work, &pool_lock);
        seen = pool_generation;
        pthread_mutex_unlock(&pool_lock);
        ek_run_chunk(t);
        pthread_mutex_lock(&pool_lock);
        if (--pool_pending == 0)
            pthread_cond_signal(&pool_done);
        pthread_mutex_unlock(&pool_lock);
    }
    return NULL;
}

int ek_parallel_for(size_t n, ek_range_fn fn, void *ctx)
{
    if (n < 2 || pthread_mutex_trylock(&region_lock) != 0)
        return 0; /* too small, nested, or another caller's region is running */
    pthread_mutex_lock(&pool_lock);
    if (pool_size < 0) { /* start the workers once; if the system refuses some, use the ones it gave */
        pool_size = 0;
        while (pool_size < EK_THREADS - 1 &&
               pthread_create(&pool_threads[pool_size], NULL, ek_worker, (void *)(size_t)(pool_size + 1)) == 0)
            ++pool_size;
    }
    job_fn = fn;
    job_ctx = ctx;
    job_n = n;
    pool_pending = pool_size;
    ++pool_generation;
    pthread_cond_broadcast(&pool_work);
    pthread_mutex_unlock(&pool_lock);
    ek_run_chunk(0);
    pthread_mutex_lock(&pool_lock);
    while (pool_pending > 0)
        pthread_cond_wait(&pool_done, &pool_lock);
    pthread_mutex_unlock(&pool_lock);
    pthread_mutex_unlock(&region_lock);
    return 1;
}

/* ---- the kernels' parallel entry points ---- */

typedef struct {
    size_t M, N, K;
    float alpha;
    const float *A;
    size_t lda;
    int transA;
    const float *B;
    size_t ldb;
    int transB;
    float beta;
    const float *bias;
    size_t bias_rs, bias_cs;
    float *C;
    size_t ldc;
    int act;
    float act_a, act_b;
    int a_packed;          /* a_packed or win: ek_sgemm_conv's arguments (alpha = beta = 1, a bias per row) */
    const ek_windows *win;
    int by_columns;
} ek_sgemm_job;

#define EK_SPLIT_COLS 16 /* column blocks of whole vectors */

/* below ~0.2 M multiply-adds (or with few rows and columns) a split costs more than it saves */
static int ek_split_pays(size_t M, size_t N, size_t K)
{
    return (double)M * (double)N * (double)K >= 2e5 && (M >= 8 || N >= 2 * EK_SPLIT_COLS);
}

static void ek_sgemm_part(void *ctx, size_t begin, size_t end)
{
    const ek_sgemm_job *j = (const ek_sgemm_job *)ctx;
    if (j->by_columns) {
        const size_t j0 = begin * EK_SPLIT_COLS, j1 = end * EK_SPLIT_COLS < j->N ? end * EK_SPLIT_COLS : j->N;
        if (j->win || j->a_packed) /* every window row shifts by the same j0, so x + j0 is the block's B too */
            ek_sgemm_conv(j->M, j1 - j0, j->K, j->A, j->a_packed, j->B + j0, j->ldb, j->win, j->bias, j->C + j0, j->ldc,
                          j->act, j->act_a, j->act_b);
        else
            ek_sgemm(j->M, j1 - j0, j->K, j->alpha, j->A, j->lda, j->transA, j->transB ? j->B + j0 * j->ldb : j->B + j0,
                     j->ldb, j->transB, j->beta, j->bias ? j->bias + j0 * j->bias_cs : NULL, j->bias_rs, j->bias_cs,
                     j->C + j0, j->ldc, j->act, j->act_a, j->act_b);
    } else if (j->a_packed) { /* whole groups of packed rows: rows r0.. are packed from A + r0 * K on */
        const size_t pr = (size_t)j->a_packed, r0 = begin * pr, r1 = end * pr < j->M ? end * pr : j->M;
        ek_sgemm_conv(r1 - r0, j->N, j->K, j->A + r0 * j->K, j->a_packed, j->B, j->ldb, NULL, j->bias ? j->bias + r0 : NULL,
                      j->C + r0 * j->ldc, j->ldc, j->act, j->act_a, j->act_b);
    } else {
        ek_sgemm(end - begin, j->N, j->K, j->alpha, j->transA ? j->A + begin : j->A + begin * j->lda, j->lda,
                        j->transA, j->B, j->ldb, j->transB, j->beta, j->bias ? j->bias + begin * j->bias_rs : NULL,
                        j->bias_rs, j->bias_cs, j->C + begin * j->ldc, j->ldc, j->act, j->act_a, j->act_b);
    }
}

int ek_sgemm_parallel(size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda, int transA,
                      const float *B, size_t ldb, int transB, float beta, const float *bias, size_t bias_rs,
                      size_t bias_cs, float *C, size_t ldc, int act, float act_a, float act_b)
{
    ek_sgemm_job j;
    if (!ek_split_pays(M, N, K)) return 0;
    j.M = M, j.N = N, j.K = K, j.alpha = alpha, j.A = A, j.lda = lda, j.transA = transA, j.B = B, j.ldb = ldb;
    j.transB = transB, j.beta = beta, j.bias = bias, j.bias_rs = bias_rs, j.bias_cs = bias_cs, j.C = C, j.ldc = ldc;
    j.act = act, j.act_a = act_a, j.act_b = act_b, j.a_packed = 0, j.win = NULL;
    /* split the longer side: each thread then packs only its own columns of B (or rows of A) */
    j.by_columns = N >= M;
    return ek_parallel_for(j.by_columns ? (N + EK_SPLIT_COLS - 1) / EK_SPLIT_COLS : M, ek_sgemm_part, &j);
}

int ek_sgemm_conv_parallel(size_t M, size_t N, size_t K, const float *A, int a_packed, const float *B, size_t ldb,
                           const ek_windows *win, const float *bias, float *C, size_t ldc, int act, float act_a,
                           float act_b)
{
    ek_sgemm_job j; /* ek_sgemm_parallel's job; the windows are B, so they split by columns only, packed rows by
                     * whole row groups */
    if (!ek_split_pays(M, N, K)) return 0;
    j.M = M, j.N = N, j.K = K, j.alpha = 1, j.A = A, j.lda = K, j.transA = 0, j.B = B, j.ldb = ldb, j.transB = 0;
    j.beta = 1, j.bias = bias, j.bias_rs = 1, j.bias_cs = 0, j.C = C, j.ldc = ldc;
    j.act = act, j.act_a = act_a, j.act_b = act_b, j.a_packed = a_packed, j.win = win, j.by_columns = win || N >= M;
    return ek_parallel_for(j.by_columns ? (N + EK_SPLIT_COLS - 1) / EK_SPLIT_COLS
                                        : (M + (size_t)a_packed - 1) / (size_t)a_packed,
                           ek_sgemm_part, &j);
}
