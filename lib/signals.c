/* signals: see signals.h. Uses sigwait on a blocked mask: no async handlers. */
#include "signals.h"

#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <time.h>

static sigset_t signals_stop_set;

void signals_init(void)
{
    sigemptyset(&signals_stop_set);
    sigaddset(&signals_stop_set, SIGTERM);
    sigaddset(&signals_stop_set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals_stop_set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int signals_wait(void)
{
    int sig = 0;
    while (sigwait(&signals_stop_set, &sig) != 0)
        ;
    return sig;
}

int signals_poll(void)
{
    struct timespec zero = {0, 0};
    int sig = sigtimedwait(&signals_stop_set, NULL, &zero);
    return sig > 0 ? sig : 0;
}
