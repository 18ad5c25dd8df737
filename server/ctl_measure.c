/* ctl_measure.c: fp8ctl measure (not yet written). */
#include "config.h"
#include <stdio.h>
#include "server/fp8ctl.h"
int ctl_measure_main(int argc, char **argv)
{
    (void)argc; (void)argv;
    fprintf(stderr, "fp8ctl measure: not implemented yet\n");
    return 1;
}
