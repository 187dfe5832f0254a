#ifndef PASSION_CLIBPQ_SHIM_H
#define PASSION_CLIBPQ_SHIM_H
#include <libpq-fe.h>
#endif
