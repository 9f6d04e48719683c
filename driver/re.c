/*
 * re.c - compile a pattern from a log-opt, with an error a person can act on.
 * Without JIT (pcre2_jit_compile fails on some platforms) matching still
 * works, interpreted.
 */
#include "fwd_re.h"

#include <stdio.h>

pcre2_code *fwd_re_compile(const char *pattern, const char *opt, char *err, size_t errlen)
{
    int code;
    PCRE2_SIZE off;
    pcre2_code *c = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, 0, &code, &off, NULL);

    if (c == NULL) {
        PCRE2_UCHAR msg[120];

        pcre2_get_error_message(code, msg, sizeof(msg));
        snprintf(err, errlen, "invalid log-opt %s=\"%s\": %s at offset %zu", opt, pattern,
                 (char *)msg, (size_t)off);
        return NULL;
    }
    (void)pcre2_jit_compile(c, PCRE2_JIT_COMPLETE);
    return c;
}
