/*
 * text_util: see text_util.h. Kept apart so that the tokenizer, the data
 * pipeline and the commands share one copy instead of a static one each.
 */
#include "services/dataloader/text_util.h"

#include <errno.h>
#include <unistd.h>

const char *tu_json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "real";
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    case JSON_NULL: return "null";
    }
    return "value";
}

int tu_write_all(int fd, const void *p, size_t len)
{
    const char *b = p;
    while (len > 0) {
        ssize_t w = write(fd, b, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        b += w;
        len -= (size_t)w;
    }
    return 0;
}
