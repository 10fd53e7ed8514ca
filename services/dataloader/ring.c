/*
 * ring: the batch ring in shared memory (see ring.h).
 */
#include "services/dataloader/ring.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/blockstore.h"

static uint64_t align4k(uint64_t x) { return (x + 4095) & ~(uint64_t)4095; }

static int ring_path(char *buf, size_t len, const char *run_id, rt_err *err)
{
    int rc = bs_run_id_check(run_id, err);
    if (rc < 0)
        return rc;
    const char *dir = getenv(BS_ENV_DIR);
    if (dir == NULL || dir[0] == '\0')
        dir = BS_DIR_SHM;
    if (snprintf(buf, len, "%s/ramtrain.%s.ring", dir, run_id) >= (int)len)
        return err_set(err, -ENAMETOOLONG, "ring path for run %s is too long", run_id);
    return 0;
}

int ring_create(const char *run_id, uint32_t n_slots, uint32_t rows, uint32_t seq, ring *out,
                rt_err *err)
{
    memset(out, 0, sizeof *out);
    if (n_slots < 2 || n_slots > RING_MAX_SLOTS || rows < 1 || seq < 1)
        return err_set(err, -EINVAL, "ring: %u slots of %u x %u: slots must be 2..%d, rows and "
                       "seq_len at least 1", n_slots, rows, seq, RING_MAX_SLOTS);
    int rc = ring_path(out->path, sizeof out->path, run_id, err);
    if (rc < 0)
        return rc;
    uint64_t tok = align4k((uint64_t)rows * (seq + 1) * sizeof(int32_t));
    uint64_t mask = align4k((uint64_t)rows * seq);
    uint64_t doc = align4k((uint64_t)rows * (seq + 1) * sizeof(uint32_t));
    uint64_t slot = tok + mask + doc;
    uint64_t total = 4096 + slot * n_slots;
    unlink(out->path); /* a ring left by an earlier incarnation holds nothing to keep */
    int fd = open(out->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return err_set(err, -errno, "%s: cannot create the batch ring: %s", out->path,
                       strerror(errno));
    void *p = MAP_FAILED;
    if (fchmod(fd, 0600) < 0 || (rc = posix_fallocate(fd, 0, (off_t)total)) != 0) {
        rc = err_set(err, rc > 0 ? -rc : -errno, "%s: cannot allocate %.1f MiB for the batch "
                     "ring: %s", out->path, total / 1048576.0, strerror(rc > 0 ? rc : errno));
        goto fail;
    }
    p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        rc = err_set(err, -errno, "%s: mmap: %s", out->path, strerror(errno));
        goto fail;
    }
    close(fd);
    ring_header *h = p;
    h->version = RING_VERSION;
    h->header_bytes = sizeof *h;
    snprintf(h->run_id, sizeof h->run_id, "%s", run_id);
    h->n_slots = n_slots, h->rows = rows, h->seq = seq;
    h->slot_bytes = slot;
    h->slots_off = 4096;
    h->tokens_off = 0, h->mask_off = tok, h->doc_off = tok + mask;
    h->map_bytes = total;
    for (uint32_t s = 0; s < n_slots; s++) {
        atomic_store(&h->slot[s].batch, UINT64_MAX);
        atomic_store(&h->slot[s].state, RING_EMPTY);
    }
    atomic_thread_fence(memory_order_release);
    h->magic = RING_MAGIC;
    out->hdr = h;
    out->map_bytes = total;
    return 0;
fail:
    close(fd);
    unlink(out->path);
    return rc;
}

int ring_attach(const char *run_id, ring *out, rt_err *err)
{
    memset(out, 0, sizeof *out);
    int rc = ring_path(out->path, sizeof out->path, run_id, err);
    if (rc < 0)
        return rc;
    int fd = open(out->path, O_RDWR | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        rc = err_set(err, -errno, "%s: no batch ring: %s", out->path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return rc;
    }
    if ((uint64_t)st.st_size < 4096) {
        close(fd);
        return err_set(err, -EBADMSG, "%s: %lld bytes, too small for a batch ring", out->path,
                       (long long)st.st_size);
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return err_set(err, -errno, "%s: mmap: %s", out->path, strerror(errno));
    ring_header *h = p;
    if (h->magic != RING_MAGIC)
        rc = err_set(err, -EBADMSG, "%s: not a batch ring (magic %016llx)", out->path,
                     (unsigned long long)h->magic);
    else if (h->version != RING_VERSION || h->header_bytes != sizeof *h)
        rc = err_set(err, -EBADMSG, "%s: ring version %u (header %u bytes); this build reads "
                     "version %u", out->path, h->version, h->header_bytes, RING_VERSION);
    else if (strncmp(h->run_id, run_id, sizeof h->run_id) != 0)
        rc = err_set(err, -ESTALE, "%s: ring of run %.63s, not %s", out->path, h->run_id, run_id);
    else if (h->n_slots < 2 || h->n_slots > RING_MAX_SLOTS ||
             h->map_bytes != (uint64_t)st.st_size ||
             h->slots_off + h->slot_bytes * h->n_slots != h->map_bytes)
        rc = err_set(err, -EBADMSG, "%s: ring geometry does not match its size", out->path);
    if (rc < 0) {
        munmap(p, (size_t)st.st_size);
        return rc;
    }
    out->hdr = h;
    out->map_bytes = (uint64_t)st.st_size;
    return 0;
}

void ring_close(ring *r)
{
    if (r->hdr != NULL)
        munmap(r->hdr, r->map_bytes);
    memset(r, 0, sizeof *r);
}

int ring_unlink(const char *run_id, rt_err *err)
{
    char path[256];
    int rc = ring_path(path, sizeof path, run_id, err);
    if (rc < 0)
        return rc;
    if (unlink(path) < 0)
        return errno == ENOENT ? -ENOENT
                               : err_set(err, -errno, "%s: %s", path, strerror(errno));
    return 0;
}

static char *slot_base(const ring *r, uint32_t s)
{
    return (char *)r->hdr + r->hdr->slots_off + (uint64_t)s * r->hdr->slot_bytes;
}

int32_t *ring_tokens(const ring *r, uint32_t s)
{
    return (int32_t *)(slot_base(r, s) + r->hdr->tokens_off);
}

uint8_t *ring_mask(const ring *r, uint32_t s) { return (uint8_t *)(slot_base(r, s) + r->hdr->mask_off); }

uint32_t *ring_doc(const ring *r, uint32_t s)
{
    return (uint32_t *)(slot_base(r, s) + r->hdr->doc_off);
}
