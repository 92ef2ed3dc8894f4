/* keel - the command-line tool.  Subcommands arrive with their issues. */
#include <stdio.h>
#include <string.h>

#include <keel/keel.h>

#include "cli.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: keel <command> [options]\n"
               "\n"
               "commands:\n"
               "  demo       run seed 004's e-commerce checkout end to end (keel demo --help)\n"
               "  migrate    apply database migrations (keel migrate --help)\n"
               "  jwt        sign or verify JSON Web Tokens (keel jwt --help)\n"
               "  password   hash or verify a password with Argon2id (keel password --help)\n"
               "  reconcile  compare an internal ledger with a gateway report (CSV)\n"
               "  redact     mask card numbers, CVVs and track data in text (PCI)\n"
               "  webhook    sign or verify Stripe-style webhook signatures\n"
               "  version    print the libkeel version\n"
               "\n"
               "Each command reads stdin when no file is given, writes results to stdout and\n"
               "diagnostics to stderr; exit 0 success, 1 negative verdict, 2 usage error.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("keel %s\n", keel_version());
        return 0;
    }
    if (strcmp(argv[1], "migrate") == 0)
        return keel_cmd_migrate(argc - 1, argv + 1);
    if (strcmp(argv[1], "password") == 0)
        return keel_cmd_password(argc - 1, argv + 1);
    if (strcmp(argv[1], "jwt") == 0)
        return keel_cmd_jwt(argc - 1, argv + 1);
    if (strcmp(argv[1], "redact") == 0)
        return keel_cmd_redact(argc - 1, argv + 1);
    if (strcmp(argv[1], "webhook") == 0)
        return keel_cmd_webhook(argc - 1, argv + 1);
    if (strcmp(argv[1], "reconcile") == 0)
        return keel_cmd_reconcile(argc - 1, argv + 1);
    if (strcmp(argv[1], "demo") == 0)
        return keel_cmd_demo(argc - 1, argv + 1);
    fprintf(stderr, "keel: unknown command '%s' (see keel --help)\n", argv[1]);
    return 2;
}
