/* Shared by the check suites: run one suite and turn the result into an exit status. */
#ifndef FWD_TEST_UNIT_H
#define FWD_TEST_UNIT_H

#include <check.h>
#include <stdlib.h>

static inline int fwd_test_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
