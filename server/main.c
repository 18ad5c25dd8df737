/* main.c: placeholder until the foundation lands. */
#include "config.h"
#include <stdio.h>
int main(void) { puts("fp8d " PACKAGE_VERSION); return 0; }
