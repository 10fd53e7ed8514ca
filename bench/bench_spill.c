/*
 * bench_spill: the parameter server's optimizer step with its optimizer
 * state spilled to NVMe, against the same step in RAM and against what the
 * disk can move (fio, same file system, same request size and depth); and
 * checkpoint writes against fio's sequential write bandwidth.
 *
 * A spilled step reads each spilled block's master/m/v extent and writes it
 * back, so its floor on a disk is bytes_read / fio_read + bytes_written /
 * fio_write (reads and writes overlap in our pipeline, but a device shares
 * its bandwidth between them, so the sum is the honest bound). The ratio
 * printed is that floor over our time: 1.0 means the step runs at the disk's
 * speed with the AdamW arithmetic hidden behind it.
 *
 * Runs the real ps_store (shared memory blocks, the AdamW pool, the I/O
 * engine) on a synthetic Llama of the size given.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench/fio_ref.h"
#include "services/common/log.h"
#include "services/common/rng.h"
#include "services/paramserver/ps_store.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void die(const char *what, const rt_err *err)
{
    fprintf(stderr, "bench_spill: %s: %s\n", what, err->msg);
    exit(1);
}

typedef struct result {
    double step_s;                     /* best optimizer step */
    double ckpt_s;                     /* checkpoint write */
    uint64_t ckpt_bytes, spill_bytes, ram_bytes;
} result;

static result run(const ps_config *base, uint64_t budget, const char *dir, int rounds,
                  const char *tag)
{
    ps_config c = *base;
    char run_id[64];
    snprintf(run_id, sizeof run_id, "bench%d%s", (int)getpid(), tag);
    c.run_id = run_id;
    c.ram_budget = budget;
    c.spill_dir = dir;
    ps_store *s;
    rt_err err = {{0}};
    if (ps_store_open(&c, &s, &err) < 0)
        die("open", &err);
    result r = {.step_s = 1e30};
    ps_usage(s, &r.ram_bytes, &r.spill_bytes);
    /* gradients: random values in G0 of every block, accumulated each step */
    rng_state g;
    rng_seed(&g, 7);
    for (int b = ps_first_block(s); b < ps_first_block(s) + ps_n_blocks(s); b++) {
        const ps_block *pb = ps_block_get(s, b);
        for (int i = 0; i < pb->l->n_tensors; i++) {
            uint64_t n = pb->l->t[i].numel;
            float *tmp = malloc(n * sizeof *tmp);
            rng_normal_fill(&g, tmp, n, 1e-3);
            dt_from_f32(pb->l->compute, tmp, lb_tensor_ptr(pb->l, pb->shm.base, LB_SEC_G0, i), n);
            free(tmp);
        }
    }
    for (int step = 0; step < rounds; step++) {
        for (int b = ps_first_block(s); b < ps_first_block(s) + ps_n_blocks(s); b++)
            if (ps_grad_ready(s, b, (uint64_t)step, 0, 0, &err) < 0)
                die("grad", &err);
        double t0 = now_s();
        if (ps_step_begin(s, (uint64_t)step, 1.0, true, (uint64_t)step + 1, &err) < 0)
            die("step", &err);
        int blk, rc;
        while ((rc = ps_step_next(s, &blk, &err)) == 0)
            ;
        if (rc < 0)
            die("step", &err);
        double t = now_s() - t0;
        if (t < r.step_s)
            r.step_s = t;
    }
    char ck[4096], path[4200];
    snprintf(ck, sizeof ck, "%s/bench-ckpt-%s", dir, run_id);
    double t0 = now_s();
    if (ps_checkpoint(s, ck, 1, false, path, sizeof path, &r.ckpt_bytes, &err) < 0)
        die("checkpoint", &err);
    r.ckpt_s = now_s() - t0;
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", ck);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_spill: could not remove %s\n", ck);
    ps_store_close(s, true);
    return r;
}

int main(int argc, char **argv)
{
    int hidden = 1024, layers = 8, vocab = 16384, inter = 2816, rounds = 3, threads = 0;
    const char *dir = NULL;
    static const struct option opts[] = {
        {"dir", 1, 0, 'd'}, {"hidden", 1, 0, 'H'}, {"layers", 1, 0, 'L'}, {"vocab", 1, 0, 'V'},
        {"intermediate", 1, 0, 'I'}, {"rounds", 1, 0, 'r'}, {"threads", 1, 0, 't'},
        {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'd': dir = optarg; break;
        case 'H': hidden = atoi(optarg); break;
        case 'L': layers = atoi(optarg); break;
        case 'V': vocab = atoi(optarg); break;
        case 'I': inter = atoi(optarg); break;
        case 'r': rounds = atoi(optarg); break;
        case 't': threads = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: bench_spill --dir DIR_ON_NVME [--hidden N --layers N "
                            "--vocab N --intermediate N --rounds N --threads N]\n");
            return 2;
        }
    }
    if (dir == NULL) {
        const char *t = getenv("TMPDIR");
        dir = t && *t ? t : "/var/tmp";
    }
    char fio[4096];
    if (fio_find(fio, sizeof fio) < 0)
        return 2;
    log_init("bench_spill", LOG_LEVEL_WARN);
    char json[1024];
    snprintf(json, sizeof json,
             "{\"model_type\":\"llama\",\"hidden_size\":%d,\"intermediate_size\":%d,"
             "\"num_hidden_layers\":%d,\"num_attention_heads\":%d,\"num_key_value_heads\":%d,"
             "\"vocab_size\":%d,\"rms_norm_eps\":1e-5,\"max_position_embeddings\":4096}",
             hidden, inter, layers, hidden / 64, hidden / 64, vocab);
    ps_config c = {.compute = DT_BF16, .n_gslots = 2, .seed = 1, .threads = threads,
                   .numa = "interleave", .io = IO_KIND_AUTO, .try_huge = true,
                   .opt = {.lr = 1e-4, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8,
                           .weight_decay = 0.1, .micro_batches = 1}};
    rt_err err = {{0}};
    if (model_config_parse(json, "bench model", &c.model, &err) < 0)
        die("config", &err);
    /* budget: everything but block 0's optimizer state spills */
    uint64_t resident = 0, max_opt = 0, extra0 = 0;
    for (int b = 0; b < model_n_blocks(&c.model); b++) {
        lb_layout l;
        if (model_block_layout(&c.model, b, c.compute, c.n_gslots, &l, &err) < 0)
            die("layout", &err);
        resident += l.resident_bytes;
        max_opt = l.opt_bytes > max_opt ? l.opt_bytes : max_opt;
        if (b == 0)
            extra0 = l.total_bytes - l.resident_bytes;
    }
    uint64_t budget = resident + 3 * max_opt + extra0;
    printf("model: %.1fM parameters (bf16 compute), %d blocks; spill dir %s\n",
           model_n_params(&c.model) / 1e6, model_n_blocks(&c.model), dir);

    result ram = run(&c, 0, dir, rounds, "r");
    result sp = run(&c, budget, dir, rounds, "s");
    if (sp.spill_bytes == 0) {
        fprintf(stderr, "bench_spill: nothing spilled (%d blocks, budget %.1f MiB): the spilled step would "
                        "time RAM only; use more --layers\n", model_n_blocks(&c.model), budget / 1048576.0);
        return 1;
    }

    /* the disk's reference on a file of the spilled size, same request size and depth */
    char file[4200];
    snprintf(file, sizeof file, "%s/bench-spill-fio-%d", dir, (int)getpid());
    uint64_t size = sp.spill_bytes > (64u << 20) ? sp.spill_bytes : (64u << 20);
    size = (size + (8u << 20) - 1) / (8u << 20) * (8u << 20);
    double fw = fio_seq(fio, file, true, 8u << 20, 32, size, NULL, 0);
    double fr = fio_seq(fio, file, false, 8u << 20, 32, size, NULL, 0);
    unlink(file);
    if (fw <= 0 || fr <= 0)
        return 1;
    /* The spill file holds two slots per block (the version's and the next);
     * a step reads one and writes the other, so it moves half the file each way. */
    double moved = sp.spill_bytes / 2.0;
    double floor_s = moved / fr + moved / fw;
    printf("fio (8 MiB requests, depth 32, %.0f MiB): write %.1f MiB/s  read %.1f MiB/s\n",
           size / 1048576.0, fw / 1048576.0, fr / 1048576.0);
    printf("optimizer step, RAM:   %.3f s (%.1f Mparams/s)\n", ram.step_s,
           model_n_params(&c.model) / ram.step_s / 1e6);
    printf("optimizer step, spill: %.3f s with %.1f MiB read + written; disk floor %.3f s  "
           "ratio %.2f\n", sp.step_s, moved / 1048576.0, floor_s, floor_s / sp.step_s);
    printf("spill vs RAM step time: ratio %.2f\n", ram.step_s / sp.step_s);
    double ck_bw = ram.ckpt_bytes / ram.ckpt_s;
    printf("checkpoint write (RAM mode): %.1f MiB in %.2f s = %.1f MiB/s, fio write %.1f MiB/s  "
           "ratio %.2f\n", ram.ckpt_bytes / 1048576.0, ram.ckpt_s, ck_bw / 1048576.0,
           fw / 1048576.0, ck_bw / fw);
    /* with spill, a checkpoint also reads the spilled state back from the disk */
    double ck_floor = moved / fr + sp.ckpt_bytes / fw;
    printf("checkpoint write (spill mode): %.1f MiB in %.2f s (reads %.1f MiB of spilled state); "
           "disk floor %.2f s  ratio %.2f\n", sp.ckpt_bytes / 1048576.0, sp.ckpt_s,
           moved / 1048576.0, ck_floor, ck_floor / sp.ckpt_s);
    return 0;
}
