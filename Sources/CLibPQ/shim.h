#ifndef PASSION_CLIBPQ_SHIM_H
#define PASSION_CLIBPQ_SHIM_H
#include <libpq-fe.h>

/* The PG_DIAG_* field codes are character-literal macros, which Swift does not import. */
static inline int passion_pg_diag_sqlstate(void) { return PG_DIAG_SQLSTATE; }
static inline int passion_pg_diag_message(void) { return PG_DIAG_MESSAGE_PRIMARY; }
static inline int passion_pg_diag_constraint(void) { return PG_DIAG_CONSTRAINT_NAME; }
static inline int passion_pg_diag_table(void) { return PG_DIAG_TABLE_NAME; }
static inline int passion_pg_diag_column(void) { return PG_DIAG_COLUMN_NAME; }
static inline int passion_pg_diag_detail(void) { return PG_DIAG_MESSAGE_DETAIL; }
static inline int passion_pg_diag_hint(void) { return PG_DIAG_MESSAGE_HINT; }
#endif
