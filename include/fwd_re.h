/*
 * fwd_re.h - PCRE2 patterns given in log-opts (labels-regex, env-regex,
 * parse-regex, multiline-start), compiled once at StartLogging.
 */
#ifndef FWD_RE_H
#define FWD_RE_H

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>
#include <stddef.h>

/*
 * Compile pattern (JIT when the platform has it). NULL with
 * `invalid log-opt OPT="PATTERN": reason at offset N` in err.
 */
pcre2_code *fwd_re_compile(const char *pattern, const char *opt, char *err, size_t errlen);

#endif
