/* cmd_migrate.c - `keel migrate`: apply (or report) database migrations. */
#define _GNU_SOURCE 1
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <keel/keel.h>

#include "cli.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: keel migrate [--database-url URL] [--dir DIR] [--status]\n"
               "\n"
               "Apply the numbered migrations of DIR/<engine>/ that the database has not applied\n"
               "yet, each in its own transaction, then print the schema version.\n"
               "\n"
               "  --database-url URL  sqlite:PATH or postgres://... (default: $DATABASE_URL,\n"
               "                      else sqlite:./var/keel.db)\n"
               "  --dir DIR           migrations directory (default: $KEELD_MIGRATIONS_DIR, else\n"
               "                      keeld's own migrations)\n"
               "  --status            print the schema version only; apply nothing\n"
               "\n"
               "Exit status: 0 done, 1 the database refused or a migration failed, 2 usage.\n");
}

int keel_cmd_migrate(int argc, char **argv)
{
    const char *url = getenv("DATABASE_URL");
    const char *dir = getenv("KEELD_MIGRATIONS_DIR");
    int status_only = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--status") == 0) {
            status_only = 1;
        } else if ((strcmp(argv[i], "--database-url") == 0 || strcmp(argv[i], "--dir") == 0) &&
                   i + 1 < argc) {
            if (argv[i][2] == 'd' && argv[i][3] == 'a')
                url = argv[++i];
            else
                dir = argv[++i];
        } else {
            fprintf(stderr, "keel migrate: unknown or incomplete option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (url == NULL || url[0] == '\0')
        url = "sqlite:./var/keel.db";
    if (dir == NULL || dir[0] == '\0')
        dir = access(KEELD_SOURCE_MIGRATIONS, R_OK | X_OK) == 0 ? KEELD_SOURCE_MIGRATIONS
                                                                : KEELD_INSTALLED_MIGRATIONS;
    keel_store_config cfg;
    keel_store_config_default(&cfg);
    cfg.url = url;
    cfg.pool_size = 1;
    keel_store *s = NULL;
    keel_diag d = {0};
    keel_err e = keel_store_open(&s, &cfg, &d);
    if (e != KEEL_OK) {
        fprintf(stderr, "keel migrate: %s\n", d.msg[0] ? d.msg : keel_strerror(e));
        return e == KEEL_EINVAL ? 2 : 1;
    }
    int rc = 0;
    if (!status_only && (e = keel_store_migrate(s, dir, &d)) != KEEL_OK) {
        fprintf(stderr, "keel migrate: %s\n", d.msg[0] ? d.msg : keel_strerror(e));
        rc = 1;
    }
    int64_t version = 0;
    if (rc == 0 && (e = keel_store_schema_version(s, &version)) != KEEL_OK) {
        fprintf(stderr, "keel migrate: %s\n", keel_strerror(e));
        rc = 1;
    }
    if (rc == 0)
        printf("schema version %lld\n", (long long)version);
    keel_store_close(s);
    return rc;
}
