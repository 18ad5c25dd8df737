/* ctl_cast.c: fp8ctl cast (not yet written). */
#include "config.h"
#include <stdio.h>
#include "server/fp8ctl.h"
int ctl_cast_main(int argc, char **argv)
{
    (void)argc; (void)argv;
    fprintf(stderr, "fp8ctl cast: not implemented yet\n");
    return 1;
}
