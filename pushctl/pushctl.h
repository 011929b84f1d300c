/*
 * pushctl: the operator's and developer's command-line tool. main.c picks the
 * subcommand; each one lives in its own cmd_<name>.c, parses its own flags
 * with config_parse (argv[0] is the subcommand name) and returns the exit
 * code: 0 ok, 1 the operation failed, 2 bad usage.
 */
#ifndef PUSHCTL_H
#define PUSHCTL_H

int pushctl_publish(int argc, char **argv);   /* publish --to u1,u2 [--topic T] DATA */
int pushctl_broadcast(int argc, char **argv); /* broadcast [--topic T] DATA */
int pushctl_presence(int argc, char **argv);  /* presence USER */
int pushctl_tail(int argc, char **argv);      /* tail: decode <prefix>.> to JSON lines */
int pushctl_token(int argc, char **argv);     /* token --sub USER [--ttl S] */
int pushctl_connect(int argc, char **argv);   /* connect --token T [--url ws://...]: print frames */
int pushctl_demo(int argc, char **argv);      /* demo: serve the demo page until SIGTERM */

#endif
