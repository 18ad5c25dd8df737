/* fp8ctl.h: subcommands of the fp8ctl tool.  Each takes the arguments
 * after its name (argv[0] is the subcommand name) and returns the process
 * exit status: 0 success, 1 failure, 2 usage error (message on stderr). */
#ifndef FP8D_FP8CTL_H
#define FP8D_FP8CTL_H

int ctl_cast_main(int argc, char **argv);        /* ctl_cast.c */
int ctl_measure_main(int argc, char **argv);     /* ctl_measure.c */
int ctl_perplexity_main(int argc, char **argv);  /* ctl_model.c */
int ctl_generate_main(int argc, char **argv);    /* ctl_model.c */
int ctl_convert_main(int argc, char **argv);     /* ctl_convert.c */

#endif
