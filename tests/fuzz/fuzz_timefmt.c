/*
 * libFuzzer target: a time-key value from container output through every
 * time-format (the first byte picks it). A parsed time is never negative.
 */
#include "fwd_timefmt.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const specs[] = {"rfc3339",
                                        "unix",
                                        "unix_ms",
                                        "unix_us",
                                        "unix_ns",
                                        "%d/%b/%Y:%H:%M:%S %z",
                                        "%Y-%m-%dT%H:%M:%S.%N%z",
                                        "%s.%L"};
    struct fwd_timefmt f;
    int64_t ns;

    if (size < 1)
        return 0;
    if (fwd_timefmt_compile(&f, specs[data[0] % 8]) != 0)
        abort();
    if (fwd_timefmt_parse(&f, (const char *)data + 1, size - 1, &ns) == 0 && ns < 0)
        abort();
    return 0;
}
