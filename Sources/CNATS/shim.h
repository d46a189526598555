#ifndef LEDGERFLOW_CNATS_SHIM_H
#define LEDGERFLOW_CNATS_SHIM_H
#include <nats/nats.h>
#endif
