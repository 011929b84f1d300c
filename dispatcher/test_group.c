/* Unit tests of dispatcher/group: recipients gathered by node. */
#include "check.h"
#include "group.h"

typedef struct seen {
    char out[256];
} seen_t;

static void show(void *arg, const char *node, char **users, size_t n)
{
    seen_t *s = arg;
    size_t l = strlen(s->out);
    l += (size_t)snprintf(s->out + l, sizeof s->out - l, "%s:", node);
    for (size_t i = 0; i < n; i++)
        l += (size_t)snprintf(s->out + l, sizeof s->out - l, "%s%s", i ? "," : "", users[i]);
    snprintf(s->out + l, sizeof s->out - l, ";");
}

static void users_are_grouped_by_node_in_first_seen_order(void)
{
    group_t *g = group_new();
    char u1[] = "u1", u2[] = "u2", u3[] = "u3", u1b[] = "u1";
    group_add(g, "n1", u1);
    group_add(g, "n2", u2);
    group_add(g, "n1", u3);
    group_add(g, "n2", u1);  /* u1 on two nodes */
    group_add(g, "n1", u1b); /* same user again on n1: kept once */
    seen_t s = {""};
    group_each(g, show, &s);
    CHECK_STR(s.out, "n1:u1,u3;n2:u2,u1;");
    CHECK_INT(group_nodes(g), 2);
    CHECK_INT(group_users(g), 3);
    group_free(g);
}

static void empty_group_reports_nothing(void)
{
    group_t *g = group_new();
    seen_t s = {""};
    group_each(g, show, &s);
    CHECK_STR(s.out, "");
    CHECK_INT(group_users(g), 0);
    group_free(g);
    group_free(NULL);
}

CHECK_MAIN(CHECK_CASE(users_are_grouped_by_node_in_first_seen_order),
           CHECK_CASE(empty_group_reports_nothing))
