/* libFuzzer target for qs_cron_parse/next/interval. The input is the
 * expression; invariants: errors carry a reason and leave the output
 * untouched, next() is strictly after its argument and is a fire time
 * (next(t-1) == t), and it is monotonic. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qsnap/cron.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 256)
        return 0;
    char expr[257];
    memcpy(expr, data, size);
    expr[size] = '\0';
    struct qs_cron c, untouched;
    memset(&c, 0xA5, sizeof(c));
    memcpy(&untouched, &c, sizeof(c));
    struct qs_error err;
    memset(&err, 0, sizeof(err));
    if (qs_cron_parse(expr, &c, &err) != 0) {
        check(err.msg[0] != '\0');
        check(memcmp(&c, &untouched, sizeof(c)) == 0);
        return 0;
    }
    /* a fixed start time (2025-03-30 01:30:00 UTC) */
    int64_t t = 1743298200;
    int64_t n1 = qs_cron_next(&c, t);
    if (c.off) {
        check(n1 == -1);
        check(qs_cron_interval(&c, t) == 0);
        return 0;
    }
    if (n1 < 0)
        return 0; /* never fires (e.g. 31 Feb) */
    check(n1 > t);
    check(n1 % 60 == 0);
    check(qs_cron_next(&c, n1 - 1) == n1);
    int64_t n2 = qs_cron_next(&c, n1);
    check(n2 > n1);
    if (size < 32) {
        int64_t iv = qs_cron_interval(&c, t);
        check(iv >= 60);
        check(n2 - n1 <= iv);
    }
    return 0;
}
