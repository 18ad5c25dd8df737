/* ctl_model.c: fp8ctl perplexity and generate (not yet written). */
#include "config.h"
#include <stdio.h>
#include "server/fp8ctl.h"
int ctl_perplexity_main(int argc, char **argv)
{
    (void)argc; (void)argv;
    fprintf(stderr, "fp8ctl perplexity: not implemented yet\n");
    return 1;
}
int ctl_generate_main(int argc, char **argv)
{
    (void)argc; (void)argv;
    fprintf(stderr, "fp8ctl generate: not implemented yet\n");
    return 1;
}
