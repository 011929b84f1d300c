/*
 * expiry: a thread that drops expired messages from the store once a
 * minute (see store_expire), so the store holds only what may still be
 * delivered.
 */
#ifndef COLLECTOR_EXPIRY_H
#define COLLECTOR_EXPIRY_H

#include "store.h"

#define EXPIRY_INTERVAL_S 60

typedef struct expiry expiry_t;

expiry_t *expiry_start(store_t *store);
void expiry_stop(expiry_t *e);

#endif
