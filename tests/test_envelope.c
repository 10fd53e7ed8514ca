/*
 * test_envelope: the message layer (services/common/envelope.c).
 *
 * Every body type survives a pack/unpack round trip with its fields intact;
 * every refusal (oversized, truncated, garbage, wrong version, wrong run, no
 * body, missing sender) is a negative errno with a message naming the field;
 * and a packed envelope crosses a real ZeroMQ ipc:// DEALER -> ROUTER pair and
 * an ErrorReply comes back. Foreign messages (another version, no body) are
 * packed with the generated ramtrain__envelope__pack, since env_pack refuses
 * to produce them.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "services/common/envelope.h"
#include "services/common/log.h"

#define RUN "run-20250131-abc"

/* Packs e with env_pack_alloc, checks env_pack gives the same bytes, unpacks
 * and returns the result (asserting success). */
static Ramtrain__Envelope *round_trip(const Ramtrain__Envelope *e)
{
    rt_err err = {""};
    uint8_t *bytes = NULL;
    size_t len = 0, len2 = 0;
    uint8_t fixed[256];
    uint64_t rid = 0;
    Ramtrain__Envelope *out = NULL;

    int rc = env_pack_alloc(e, &bytes, &len, &err);
    if (rc != 0)
        print_error("env_pack_alloc: %s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(len, env_packed_size(e));
    assert_true(len <= sizeof fixed);
    assert_int_equal(env_pack(e, fixed, sizeof fixed, &len2, &err), 0);
    assert_int_equal(len2, len);
    assert_memory_equal(fixed, bytes, len);

    rc = env_unpack(bytes, len, RUN, &out, &rid, &err);
    if (rc != 0)
        print_error("env_unpack: %s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_non_null(out);
    assert_string_equal(out->run_id, e->run_id);
    assert_string_equal(out->sender, e->sender);
    assert_true(out->has_request_id);
    assert_int_equal(out->request_id, e->request_id);
    assert_int_equal(rid, e->request_id);
    assert_int_equal(out->protocol_version, ENV_PROTOCOL_VERSION);
    assert_int_equal(out->body_case, e->body_case);
    assert_string_equal(env_body_name(out), env_body_name(e));
    free(bytes);
    return out;
}

static void test_hello_ready(void **state)
{
    Ramtrain__Envelope e;
    Ramtrain__Hello h = RAMTRAIN__HELLO__INIT;
    h.role = "worker";
    h.has_pid = 1, h.pid = 4242;
    h.has_incarnation = 1, h.incarnation = 3;
    h.host = "node7";
    env_init(&e, RUN, "worker", 1);
    e.body_case = RAMTRAIN__ENVELOPE__BODY_HELLO;
    e.hello = &h;
    Ramtrain__Envelope *o = round_trip(&e);
    assert_string_equal(env_body_name(o), "hello");
    assert_string_equal(o->hello->role, "worker");
    assert_true(o->hello->has_pid);
    assert_int_equal(o->hello->pid, 4242);
    assert_int_equal(o->hello->incarnation, 3);
    assert_string_equal(o->hello->host, "node7");
    env_free(o);

    Ramtrain__Ready r = RAMTRAIN__READY__INIT;
    r.role = "paramserver";
    r.has_pid = 1, r.pid = 77;
    r.has_committed_step = 1, r.committed_step = 1000;
    r.has_data_cursor = 1, r.data_cursor = 8000;
    r.has_heartbeat_ms = 1, r.heartbeat_ms = 500;
    env_init(&e, RUN, "paramserver", 1);
    e.body_case = RAMTRAIN__ENVELOPE__BODY_READY;
    e.ready = &r;
    o = round_trip(&e);
    assert_string_equal(o->ready->role, "paramserver");
    assert_int_equal(o->ready->pid, 77);
    assert_true(o->ready->has_committed_step);
    assert_int_equal(o->ready->committed_step, 1000);
    assert_int_equal(o->ready->data_cursor, 8000);
    assert_int_equal(o->ready->heartbeat_ms, 500);
    env_free(o);

    /* Absent stays absent: a Ready before the first commit. */
    Ramtrain__Ready r0 = RAMTRAIN__READY__INIT;
    e.ready = &r0;
    o = round_trip(&e);
    assert_false(o->ready->has_committed_step);
    assert_null(o->ready->role);
    env_free(o);
}

static void test_heartbeat_error(void **state)
{
    Ramtrain__Envelope e;
    Ramtrain__Heartbeat hb = RAMTRAIN__HEARTBEAT__INIT;
    hb.has_seq = 1, hb.seq = UINT64_MAX;
    hb.has_time_ns = 1, hb.time_ns = 123456789012345ull;
    env_init(&e, RUN, "dataloader", 0);
    e.body_case = RAMTRAIN__ENVELOPE__BODY_HEARTBEAT;
    e.heartbeat = &hb;
    Ramtrain__Envelope *o = round_trip(&e);
    assert_true(o->heartbeat->seq == UINT64_MAX);
    assert_int_equal(o->heartbeat->time_ns, 123456789012345ull);
    env_free(o);

    Ramtrain__ErrorReply er = RAMTRAIN__ERROR_REPLY__INIT;
    er.has_code = 1, er.code = -ENOENT;
    er.message = "block 7: not in this shard";
    env_init(&e, RUN, "paramserver", 99);
    e.body_case = RAMTRAIN__ENVELOPE__BODY_ERROR_REPLY;
    e.error_reply = &er;
    o = round_trip(&e);
    assert_int_equal(o->error_reply->code, -ENOENT);
    assert_string_equal(o->error_reply->message, "block 7: not in this shard");
    env_free(o);
}

static void test_batch(void **state)
{
    Ramtrain__Envelope e;
    Ramtrain__GetBatch gb = RAMTRAIN__GET_BATCH__INIT;
    gb.has_batch = 1, gb.batch = 1ull << 40;
    env_init(&e, RUN, "worker", 2);
    e.body_case = RAMTRAIN__ENVELOPE__BODY_GET_BATCH;
    e.get_batch = &gb;
    Ramtrain__Envelope *o = round_trip(&e);
    assert_int_equal(o->get_batch->batch, 1ull << 40);
    env_free(o);

    Ramtrain__BatchReady br = RAMTRAIN__BATCH_READY__INIT;
    br.has_batch = 1, br.batch = 17;
    br.has_ring_slot = 1, br.ring_slot = 3;
    br.has_n_tokens = 1, br.n_tokens = 16384;
    br.has_n_rows = 1, br.n_rows = 8;
    br.has_data_cursor = 1, br.data_cursor = 987654321;
    env_init(&e, RUN, "dataloader", 2);
    e.body_case = RAMTRAIN__ENVELOPE__BODY_BATCH_READY;
    e.batch_ready = &br;
    o = round_trip(&e);
    assert_int_equal(o->batch_ready->batch, 17);
    assert_int_equal(o->batch_ready->ring_slot, 3);
    assert_int_equal(o->batch_ready->n_tokens, 16384);
    assert_int_equal(o->batch_ready->n_rows, 8);
    assert_int_equal(o->batch_ready->data_cursor, 987654321);
    env_free(o);
}

static void test_layers(void **state)
{
    Ramtrain__Envelope e;
    Ramtrain__FetchLayer fl = RAMTRAIN__FETCH_LAYER__INIT;
    fl.has_block = 1, fl.block = 33;
    fl.has_min_version = 1, fl.min_version = 12;
    env_init(&e, RUN, "worker", 3);
    e.body_case = RAMTRAIN__ENVELOPE__BODY_FETCH_LAYER;
    e.fetch_layer = &fl;
    Ramtrain__Envelope *o = round_trip(&e);
    assert_int_equal(o->fetch_layer->block, 33);
    assert_int_equal(o->fetch_layer->min_version, 12);
    env_free(o);

    Ramtrain__LayerReady lr = RAMTRAIN__LAYER_READY__INIT;
    lr.has_block = 1, lr.block = 33;
    lr.has_version = 1, lr.version = 12;
    lr.has_shard = 1, lr.shard = 1;
    env_init(&e, RUN, "paramserver.1", 3);
    e.body_case = RAMTRAIN__ENVELOPE__BODY_LAYER_READY;
    e.layer_ready = &lr;
    o = round_trip(&e);
    assert_int_equal(o->layer_ready->block, 33);
    assert_int_equal(o->layer_ready->version, 12);
    assert_int_equal(o->layer_ready->shard, 1);
    env_free(o);
}

static void test_grads(void **state)
{
    Ramtrain__Envelope e;
    Ramtrain__GradReady gr = RAMTRAIN__GRAD_READY__INIT;
    gr.has_block = 1, gr.block = 5;
    gr.has_step = 1, gr.step = 41;
    gr.has_micro = 1, gr.micro = 7;
    gr.has_slot = 1, gr.slot = 1;
    env_init(&e, RUN, "worker", 4);
    e.body_case = RAMTRAIN__ENVELOPE__BODY_GRAD_READY;
    e.grad_ready = &gr;
    Ramtrain__Envelope *o = round_trip(&e);
    assert_int_equal(o->grad_ready->block, 5);
    assert_int_equal(o->grad_ready->step, 41);
    assert_int_equal(o->grad_ready->micro, 7);
    assert_int_equal(o->grad_ready->slot, 1);
    env_free(o);

    Ramtrain__Ack ack = RAMTRAIN__ACK__INIT;
    ack.has_block = 1, ack.block = 5;
    ack.has_step = 1, ack.step = 41;
    ack.has_micro = 1, ack.micro = 7;
    ack.has_duplicate = 1, ack.duplicate = 1;
    env_init(&e, RUN, "paramserver", 4);
    e.body_case = RAMTRAIN__ENVELOPE__BODY_ACK;
    e.ack = &ack;
    o = round_trip(&e);
    assert_int_equal(o->ack->block, 5);
    assert_int_equal(o->ack->step, 41);
    assert_int_equal(o->ack->micro, 7);
    assert_true(o->ack->has_duplicate && o->ack->duplicate);
    env_free(o);
}

static void test_steps(void **state)
{
    Ramtrain__Envelope e;
    Ramtrain__ApplyStep as = RAMTRAIN__APPLY_STEP__INIT;
    as.has_step = 1, as.step = 41;
    as.has_clip_factor = 1, as.clip_factor = 0.3183098861837907;
    as.has_data_cursor = 1, as.data_cursor = 336;
    env_init(&e, RUN, "orchestrator", 5);
    e.body_case = RAMTRAIN__ENVELOPE__BODY_APPLY_STEP;
    e.apply_step = &as;
    Ramtrain__Envelope *o = round_trip(&e);
    assert_int_equal(o->apply_step->step, 41);
    assert_true(o->apply_step->clip_factor == 0.3183098861837907); /* bitwise: a double travels as 8 bytes */
    assert_int_equal(o->apply_step->data_cursor, 336);
    env_free(o);

    Ramtrain__StepCommitted sc = RAMTRAIN__STEP_COMMITTED__INIT;
    sc.has_step = 1, sc.step = 41;
    sc.has_data_cursor = 1, sc.data_cursor = 336;
    sc.has_shard = 1, sc.shard = 0;
    env_init(&e, RUN, "paramserver", 5);
    e.body_case = RAMTRAIN__ENVELOPE__BODY_STEP_COMMITTED;
    e.step_committed = &sc;
    o = round_trip(&e);
    assert_int_equal(o->step_committed->step, 41);
    assert_int_equal(o->step_committed->data_cursor, 336);
    assert_true(o->step_committed->has_shard);
    assert_int_equal(o->step_committed->shard, 0);
    env_free(o);

    Ramtrain__Shutdown sd = RAMTRAIN__SHUTDOWN__INIT;
    sd.reason = "ramtrain stop";
    sd.has_grace_ms = 1, sd.grace_ms = 10000;
    env_init(&e, RUN, "orchestrator", 6);
    e.body_case = RAMTRAIN__ENVELOPE__BODY_SHUTDOWN;
    e.shutdown = &sd;
    o = round_trip(&e);
    assert_string_equal(o->shutdown->reason, "ramtrain stop");
    assert_int_equal(o->shutdown->grace_ms, 10000);
    env_free(o);
}

/* Packs a GetBatch envelope into *bytes (malloc'd) with the generated packer,
 * so that the header can be anything a foreign peer might send. */
static size_t pack_raw(Ramtrain__Envelope *e, uint8_t **bytes)
{
    size_t n = ramtrain__envelope__get_packed_size(e);
    *bytes = malloc(n > 0 ? n : 1);
    assert_non_null(*bytes);
    assert_int_equal(ramtrain__envelope__pack(e, *bytes), n);
    return n;
}

/* Expects env_unpack of bytes[len] to fail with code and a message holding
 * field; returns nothing, frees nothing. */
static void expect_reject(const uint8_t *bytes, size_t len, int code, const char *field)
{
    rt_err err = {""};
    Ramtrain__Envelope sentinel;
    Ramtrain__Envelope *out = &sentinel; /* env_unpack must reset it to NULL */
    int rc = env_unpack(bytes, len, RUN, &out, NULL, &err);
    if (rc != code || strstr(err.msg, field) == NULL)
        print_error("got %d \"%s\", expected %d naming %s\n", rc, err.msg, code, field);
    assert_int_equal(rc, code);
    assert_null(out);
    assert_non_null(strstr(err.msg, field));
}

static void test_reject_oversized(void **state)
{
    rt_err err = {""};
    uint8_t *bytes = NULL;
    size_t len = 0;
    Ramtrain__Envelope e;
    Ramtrain__ErrorReply er = RAMTRAIN__ERROR_REPLY__INIT;
    char *big = malloc(ENV_MAX_MSG + 1);
    assert_non_null(big);
    memset(big, 'x', ENV_MAX_MSG);
    big[ENV_MAX_MSG] = '\0';
    er.message = big;
    env_init(&e, RUN, "worker", 8);
    e.body_case = RAMTRAIN__ENVELOPE__BODY_ERROR_REPLY;
    e.error_reply = &er;

    /* Sending side: refused before packing. */
    assert_int_equal(env_pack_alloc(&e, &bytes, &len, &err), -EMSGSIZE);
    assert_null(bytes);
    assert_non_null(strstr(err.msg, "ENV_MAX_MSG"));
    assert_non_null(strstr(err.msg, "error_reply"));

    /* Receiving side: a well-formed but oversized message is not parsed. */
    len = pack_raw(&e, &bytes);
    assert_true(len > ENV_MAX_MSG);
    expect_reject(bytes, len, -EMSGSIZE, "ENV_MAX_MSG");
    free(bytes);

    /* Exactly ENV_MAX_MSG bytes passes both ways. The length prefixes are
     * 3-byte varints all around 1 MiB, so one correction lands exactly. */
    big[ENV_MAX_MSG - 64] = '\0';
    size_t want = ENV_MAX_MSG - 64 + (ENV_MAX_MSG - env_packed_size(&e));
    memset(big, 'x', want);
    big[want] = '\0';
    assert_int_equal(env_packed_size(&e), ENV_MAX_MSG);
    assert_int_equal(env_pack_alloc(&e, &bytes, &len, &err), 0);
    assert_int_equal(len, ENV_MAX_MSG);
    Ramtrain__Envelope *o = NULL;
    assert_int_equal(env_unpack(bytes, len, RUN, &o, NULL, &err), 0);
    assert_int_equal(strlen(o->error_reply->message), want);
    env_free(o);
    free(bytes);
    free(big);

    /* A caller buffer too small for the message is -ENOBUFS. */
    uint8_t small[8];
    Ramtrain__Heartbeat hb = RAMTRAIN__HEARTBEAT__INIT;
    hb.has_seq = 1, hb.seq = 1;
    env_init(&e, RUN, "worker", 8);
    e.body_case = RAMTRAIN__ENVELOPE__BODY_HEARTBEAT;
    e.heartbeat = &hb;
    assert_int_equal(env_pack(&e, small, sizeof small, &len, &err), -ENOBUFS);
    assert_non_null(strstr(err.msg, "heartbeat"));
}

static void test_reject_truncated_and_garbage(void **state)
{
    Ramtrain__Envelope e;
    Ramtrain__FetchLayer fl = RAMTRAIN__FETCH_LAYER__INIT;
    fl.has_block = 1, fl.block = 300;
    fl.has_min_version = 1, fl.min_version = 70000;
    env_init(&e, RUN, "worker", 9);
    e.body_case = RAMTRAIN__ENVELOPE__BODY_FETCH_LAYER;
    e.fetch_layer = &fl;
    uint8_t *bytes = NULL;
    size_t len = 0;
    rt_err err = {""};
    assert_int_equal(env_pack_alloc(&e, &bytes, &len, &err), 0);

    /* One byte short cuts into the body, which protobuf-c packs last. */
    expect_reject(bytes, len - 1, -EBADMSG, "malformed");
    /* Every shorter prefix is refused too (some parse, but lack the body or
     * a header field), each copied so ASan sees any read past the end. */
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *p = malloc(cut > 0 ? cut : 1);
        assert_non_null(p);
        Ramtrain__Envelope *out = NULL;
        memcpy(p, bytes, cut);
        int rc = env_unpack(p, cut, RUN, &out, NULL, &err);
        if (rc >= 0)
            print_error("prefix of %zu/%zu bytes accepted\n", cut, len);
        assert_true(rc < 0);
        assert_null(out);
        free(p);
    }
    free(bytes);

    static const uint8_t ff[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                   0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    expect_reject(ff, sizeof ff, -EBADMSG, "malformed");
    /* A length prefix far larger than the message. */
    static const uint8_t liar[] = {0x0a, 0xff, 0xff, 0x03, 'r', 'u', 'n'};
    expect_reject(liar, sizeof liar, -EBADMSG, "malformed");

    /* Random bytes: never accepted, never a crash. */
    uint32_t s = 2463534242u;
    uint8_t junk[200];
    for (int iter = 0; iter < 2000; iter++) {
        size_t n = (size_t)(iter % (int)sizeof junk) + 1;
        for (size_t i = 0; i < n; i++) {
            s ^= s << 13, s ^= s >> 17, s ^= s << 5; /* xorshift32 */
            junk[i] = (uint8_t)s;
        }
        Ramtrain__Envelope *out = NULL;
        int rc = env_unpack(junk, n, RUN, &out, NULL, &err);
        assert_true(rc < 0);
        assert_null(out);
    }
}

static void test_reject_header(void **state)
{
    Ramtrain__Envelope e;
    Ramtrain__Heartbeat hb = RAMTRAIN__HEARTBEAT__INIT;
    uint8_t *bytes = NULL;
    size_t len;
    uint64_t rid = 0;
    rt_err err = {""};
    Ramtrain__Envelope *out = NULL;

    /* Another protocol version; the request id still comes back. */
    env_init(&e, RUN, "worker", 31);
    e.body_case = RAMTRAIN__ENVELOPE__BODY_HEARTBEAT;
    e.heartbeat = &hb;
    e.protocol_version = ENV_PROTOCOL_VERSION + 1;
    len = pack_raw(&e, &bytes);
    assert_int_equal(env_unpack(bytes, len, RUN, &out, &rid, &err), -EPROTONOSUPPORT);
    assert_null(out);
    assert_int_equal(rid, 31);
    assert_non_null(strstr(err.msg, "protocol_version"));
    free(bytes);
    /* ... and env_pack will not produce it. */
    assert_int_equal(env_pack_alloc(&e, &bytes, &len, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "protocol_version"));

    e.has_protocol_version = 0;
    len = pack_raw(&e, &bytes);
    expect_reject(bytes, len, -EPROTONOSUPPORT, "protocol_version: missing");
    free(bytes);

    /* Another run. Peer text is quoted printable-only. */
    env_init(&e, "run-old\n\x1b[31m", "worker", 32);
    e.body_case = RAMTRAIN__ENVELOPE__BODY_HEARTBEAT;
    e.heartbeat = &hb;
    len = pack_raw(&e, &bytes);
    expect_reject(bytes, len, -EPERM, "run_id");
    assert_int_equal(env_unpack(bytes, len, RUN, &out, NULL, &err), -EPERM);
    assert_non_null(strstr(err.msg, "\"run-old??[31m\""));
    assert_null(strchr(err.msg, '\n'));
    free(bytes);

    /* No run id at all. */
    env_init(&e, NULL, "worker", 33);
    e.body_case = RAMTRAIN__ENVELOPE__BODY_HEARTBEAT;
    e.heartbeat = &hb;
    len = pack_raw(&e, &bytes);
    expect_reject(bytes, len, -EPERM, "run_id: missing");
    free(bytes);

    /* No sender. */
    env_init(&e, RUN, NULL, 34);
    e.body_case = RAMTRAIN__ENVELOPE__BODY_HEARTBEAT;
    e.heartbeat = &hb;
    len = pack_raw(&e, &bytes);
    expect_reject(bytes, len, -EBADMSG, "sender");
    free(bytes);
    assert_int_equal(env_pack_alloc(&e, &bytes, &len, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "sender"));

    /* The expected run id is required. */
    assert_int_equal(env_unpack((const uint8_t *)"", 0, NULL, &out, NULL, &err), -EINVAL);
}

static void test_reject_no_body(void **state)
{
    Ramtrain__Envelope e;
    uint8_t *bytes = NULL;
    size_t len;
    rt_err err = {""};

    env_init(&e, RUN, "worker", 40);
    assert_string_equal(env_body_name(&e), "none");
    len = pack_raw(&e, &bytes);
    expect_reject(bytes, len, -ENOMSG, "body");
    free(bytes);
    assert_int_equal(env_pack_alloc(&e, &bytes, &len, &err), -ENOMSG);
    assert_non_null(strstr(err.msg, "body"));

    /* A body from a newer peer (field 99, a length-delimited message) is
     * skipped as an unknown field: no body either. */
    Ramtrain__Heartbeat hb = RAMTRAIN__HEARTBEAT__INIT;
    e.body_case = RAMTRAIN__ENVELOPE__BODY_HEARTBEAT;
    e.heartbeat = &hb;
    uint8_t buf[128];
    assert_int_equal(env_pack(&e, buf, sizeof buf, &len, &err), 0);
    /* Heartbeat with no fields packs as tag(18, LEN) = 0x92 0x01, length 0. */
    assert_true(len >= 3 && buf[len - 3] == 0x92 && buf[len - 2] == 0x01 && buf[len - 1] == 0);
    len -= 3;
    const uint8_t unknown[] = {0x9a, 0x06, 0x02, 0x08, 0x01}; /* tag(99, LEN), {1: 1} */
    memcpy(buf + len, unknown, sizeof unknown);
    len += sizeof unknown;
    expect_reject(buf, len, -ENOMSG, "does not know");

    /* Body case set, pointer NULL: refused, not dereferenced. */
    e.heartbeat = NULL;
    assert_int_equal(env_pack(&e, buf, sizeof buf, &len, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "heartbeat"));
}

static void test_error_reply(void **state)
{
    uint8_t *bytes = NULL;
    size_t len = 0;
    rt_err err = {""};
    Ramtrain__Envelope *o = NULL;

    assert_int_equal(env_error_reply(RUN, "paramserver", 77, -EPERM, "envelope.run_id: wrong",
                                     &bytes, &len, &err), 0);
    assert_int_equal(env_unpack(bytes, len, RUN, &o, NULL, &err), 0);
    assert_int_equal(o->body_case, RAMTRAIN__ENVELOPE__BODY_ERROR_REPLY);
    assert_int_equal(o->request_id, 77);
    assert_true(o->error_reply->has_code);
    assert_int_equal(o->error_reply->code, -EPERM);
    assert_string_equal(o->error_reply->message, "envelope.run_id: wrong");
    env_free(o);
    free(bytes);

    /* A long message is cut at ENV_ERROR_MSG_MAX, at a UTF-8 boundary:
     * "é" (0xc3 0xa9) straddling the cut is dropped whole. */
    char longmsg[ENV_ERROR_MSG_MAX + 16];
    memset(longmsg, 'a', sizeof longmsg);
    longmsg[ENV_ERROR_MSG_MAX - 1] = (char)0xc3;
    longmsg[ENV_ERROR_MSG_MAX] = (char)0xa9;
    longmsg[sizeof longmsg - 1] = '\0';
    assert_int_equal(env_error_reply(RUN, "worker", 1, -EIO, longmsg, &bytes, &len, &err), 0);
    assert_int_equal(env_unpack(bytes, len, RUN, &o, NULL, &err), 0);
    assert_int_equal(strlen(o->error_reply->message), ENV_ERROR_MSG_MAX - 1);
    env_free(o);
    free(bytes);

    assert_int_equal(env_error_reply(RUN, "worker", 1, 5, "x", &bytes, &len, &err), -EINVAL);
    assert_null(bytes);
    assert_non_null(strstr(err.msg, "code"));
    assert_int_equal(env_error_reply(RUN, "worker", 1, -EIO, NULL, &bytes, &len, &err), -EINVAL);
}

/* Receives one frame of at most ENV_MAX_MSG bytes into a malloc'd buffer. */
static uint8_t *recv_frame(void *sock, size_t *len, int *more)
{
    zmq_msg_t m;
    assert_int_equal(zmq_msg_init(&m), 0);
    int n = zmq_msg_recv(&m, sock, 0);
    if (n < 0)
        print_error("zmq_msg_recv: %s\n", zmq_strerror(zmq_errno()));
    assert_true(n >= 0);
    *len = zmq_msg_size(&m);
    *more = zmq_msg_more(&m);
    uint8_t *p = malloc(*len > 0 ? *len : 1);
    assert_non_null(p);
    memcpy(p, zmq_msg_data(&m), *len);
    zmq_msg_close(&m);
    return p;
}

static void test_zmq_ipc(void **state)
{
    char dir[] = "/tmp/ramtrain-test-envelope-XXXXXX";
    char path[128], endpoint[160];
    void *ctx = NULL, *router = NULL, *dealer = NULL;
    int timeout_ms = 5000, linger = 0, more = 0;
    uint8_t *bytes = NULL, *ident = NULL, *payload = NULL;
    size_t len = 0, ident_len = 0, payload_len = 0;
    rt_err err = {""};
    Ramtrain__Envelope *o = NULL;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/paramserver", dir);
    snprintf(endpoint, sizeof endpoint, "ipc://%s", path);

    ctx = zmq_ctx_new();
    assert_non_null(ctx);
    router = zmq_socket(ctx, ZMQ_ROUTER);
    dealer = zmq_socket(ctx, ZMQ_DEALER);
    assert_non_null(router);
    assert_non_null(dealer);
    for (int i = 0; i < 2; i++) {
        void *s = i == 0 ? router : dealer;
        assert_int_equal(zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms), 0);
        assert_int_equal(zmq_setsockopt(s, ZMQ_SNDTIMEO, &timeout_ms, sizeof timeout_ms), 0);
        assert_int_equal(zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger), 0);
    }
    assert_int_equal(zmq_bind(router, endpoint), 0);
    assert_int_equal(zmq_connect(dealer, endpoint), 0);

    /* worker -> paramserver: GradReady. */
    Ramtrain__Envelope e;
    Ramtrain__GradReady gr = RAMTRAIN__GRAD_READY__INIT;
    gr.has_block = 1, gr.block = 12;
    gr.has_step = 1, gr.step = 3;
    gr.has_micro = 1, gr.micro = 2;
    gr.has_slot = 1, gr.slot = 0;
    env_init(&e, RUN, "worker", 500);
    e.body_case = RAMTRAIN__ENVELOPE__BODY_GRAD_READY;
    e.grad_ready = &gr;
    assert_int_equal(env_pack_alloc(&e, &bytes, &len, &err), 0);
    assert_int_equal(zmq_send(dealer, bytes, len, 0), (int)len);
    free(bytes);
    bytes = NULL;

    /* The ROUTER sees [peer identity][payload]. */
    ident = recv_frame(router, &ident_len, &more);
    assert_true(more);
    payload = recv_frame(router, &payload_len, &more);
    assert_false(more);
    assert_int_equal(payload_len, len);
    assert_int_equal(env_unpack(payload, payload_len, RUN, &o, NULL, &err), 0);
    assert_int_equal(o->body_case, RAMTRAIN__ENVELOPE__BODY_GRAD_READY);
    assert_string_equal(o->sender, "worker");
    assert_int_equal(o->request_id, 500);
    assert_int_equal(o->grad_ready->block, 12);
    assert_int_equal(o->grad_ready->step, 3);
    assert_int_equal(o->grad_ready->micro, 2);
    assert_true(o->grad_ready->has_slot);
    assert_int_equal(o->grad_ready->slot, 0);

    /* paramserver -> worker: an ErrorReply echoing the request id. */
    assert_int_equal(env_error_reply(RUN, "paramserver", o->request_id, -ENOENT,
                                     "block 12: not in this shard", &bytes, &len, &err), 0);
    env_free(o);
    o = NULL;
    assert_int_equal(zmq_send(router, ident, ident_len, ZMQ_SNDMORE), (int)ident_len);
    assert_int_equal(zmq_send(router, bytes, len, 0), (int)len);
    free(bytes);
    bytes = NULL;
    free(payload);
    payload = recv_frame(dealer, &payload_len, &more);
    assert_false(more);
    assert_int_equal(env_unpack(payload, payload_len, RUN, &o, NULL, &err), 0);
    assert_int_equal(o->body_case, RAMTRAIN__ENVELOPE__BODY_ERROR_REPLY);
    assert_int_equal(o->request_id, 500);
    assert_int_equal(o->error_reply->code, -ENOENT);
    assert_string_equal(o->error_reply->message, "block 12: not in this shard");

    env_free(o);
    free(payload);
    free(ident);
    assert_int_equal(zmq_close(dealer), 0);
    assert_int_equal(zmq_close(router), 0);
    assert_int_equal(zmq_ctx_term(ctx), 0);
    unlink(path); /* libzmq removes it on close; this covers older versions */
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    log_init("test_envelope", LOG_LEVEL_INFO);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello_ready),
        cmocka_unit_test(test_heartbeat_error),
        cmocka_unit_test(test_batch),
        cmocka_unit_test(test_layers),
        cmocka_unit_test(test_grads),
        cmocka_unit_test(test_steps),
        cmocka_unit_test(test_reject_oversized),
        cmocka_unit_test(test_reject_truncated_and_garbage),
        cmocka_unit_test(test_reject_header),
        cmocka_unit_test(test_reject_no_body),
        cmocka_unit_test(test_error_reply),
        cmocka_unit_test(test_zmq_ipc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
