/* Shared by the check suites: a MessagePack object as compact text, for exact comparisons. */
#ifndef FWD_TEST_SHOW_H
#define FWD_TEST_SHOW_H

#include <msgpack.h>
#include <stdio.h>
#include <string.h>

/*
 * nil -> null, booleans, integers as digits, floats as F(%g), strings in
 * double quotes (bytes as they are), arrays [a,b], maps {k:v,...}.
 */
static inline void fwd_test_show(const msgpack_object *o, char *out, size_t cap)
{
    size_t n = strlen(out);

    switch (o->type) {
        case MSGPACK_OBJECT_NIL:
            snprintf(out + n, cap - n, "null");
            break;
        case MSGPACK_OBJECT_BOOLEAN:
            snprintf(out + n, cap - n, o->via.boolean ? "true" : "false");
            break;
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
            snprintf(out + n, cap - n, "%llu", (unsigned long long)o->via.u64);
            break;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
            snprintf(out + n, cap - n, "%lld", (long long)o->via.i64);
            break;
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
            snprintf(out + n, cap - n, "F(%g)", o->via.f64);
            break;
        case MSGPACK_OBJECT_STR:
            snprintf(out + n, cap - n, "\"%.*s\"", (int)o->via.str.size, o->via.str.ptr);
            break;
        case MSGPACK_OBJECT_ARRAY:
            snprintf(out + n, cap - n, "[");
            for (uint32_t i = 0; i < o->via.array.size; i++) {
                if (i)
                    snprintf(out + strlen(out), cap - strlen(out), ",");
                fwd_test_show(&o->via.array.ptr[i], out, cap);
            }
            snprintf(out + strlen(out), cap - strlen(out), "]");
            break;
        case MSGPACK_OBJECT_MAP:
            snprintf(out + n, cap - n, "{");
            for (uint32_t i = 0; i < o->via.map.size; i++) {
                if (i)
                    snprintf(out + strlen(out), cap - strlen(out), ",");
                fwd_test_show(&o->via.map.ptr[i].key, out, cap);
                snprintf(out + strlen(out), cap - strlen(out), ":");
                fwd_test_show(&o->via.map.ptr[i].val, out, cap);
            }
            snprintf(out + strlen(out), cap - strlen(out), "}");
            break;
        default:
            snprintf(out + n, cap - n, "?");
            break;
    }
}

#endif
