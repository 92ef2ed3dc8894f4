/* cli.h - subcommands of the keel CLI: each takes argv from its own name on and returns the
 * process exit status (0 success, 1 negative verdict or failure, 2 usage or input error). */
#ifndef KEEL_CLI_H
#define KEEL_CLI_H

int keel_cmd_migrate(int argc, char **argv);
int keel_cmd_password(int argc, char **argv); /* cmd_password.c */
int keel_cmd_jwt(int argc, char **argv);      /* cmd_jwt.c */
int keel_cmd_redact(int argc, char **argv);    /* cmd_redact.c */
int keel_cmd_webhook(int argc, char **argv);   /* cmd_webhook.c */
int keel_cmd_reconcile(int argc, char **argv); /* cmd_reconcile.c */
int keel_cmd_demo(int argc, char **argv);      /* cmd_demo.c */

#endif
