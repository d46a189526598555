#ifndef LEDGERFLOW_CLMDB_SHIM_H
#define LEDGERFLOW_CLMDB_SHIM_H
#include <lmdb.h>
#endif
