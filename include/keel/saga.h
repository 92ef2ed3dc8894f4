/*
 * keel/saga.h - saga orchestration with a durable saga log and crash recovery (seed 004
 * "Saga orchestration").
 *
 * Model.  A checkout that spans services (inventory, payments, shipping) has no transaction
 * covering all of them.  A saga replaces it with ordered local steps, each paired with an
 * optional compensation that undoes it.  Steps run in order; when step k fails, the
 * compensations of the completed steps k-1 .. 0 run in reverse order (the failed step itself
 * is not compensated: it reported failure, so it is assumed to have had no effect).  Each
 * compensation is tried up to compensation_retries times; after failed attempt n the
 * orchestrator waits compensation_base_delay_ms * n on the config's keel_clock (linear
 * backoff; no wait after the last attempt).  A compensation that still fails is recorded and
 * the remaining (earlier) compensations still run, so as much as possible is undone.
 *
 * States.  RUNNING -> COMPLETED (every step succeeded), RUNNING -> COMPENSATING ->
 * COMPENSATED (a step failed and every compensation succeeded) or FAILED_COMPENSATION (at
 * least one compensation failed for good: the system is inconsistent, page the on-call;
 * keel_saga_assert_succeeded() returns KEEL_EPAY_COMPENSATION).
 *
 * Context.  Every saga carries a jansson object (the context).  Steps read it and add keys
 * (charge_id, reservation_id...).  It is written to the saga log after every completed step
 * and compensation, so recovery sees what the steps produced.  It must stay a JSON object of
 * at most KEEL_SAGA_CONTEXT_MAX bytes once serialised.
 *
 * Saga log.  A keel_saga_log (a vtable, so other backends can be added) records every
 * transition before or after it happens: saga started, step started / completed / failed,
 * compensation started / completed / failed (with the attempt), saga aborted by recovery,
 * saga claimed by a recoverer, saga finished.  Two implementations ship: in memory (tests,
 * single-process tools) and SQL on a keel_store (SQLite or PostgreSQL; tables keel_sagas and
 * keel_saga_events, created by keel_store_migrate_component("keel.pay.saga")); every
 * transition is one transaction.  The log is the source of truth: when it cannot be written,
 * the executor stops driving the saga at once (no further step or compensation runs) and
 * returns the log's error; the saga is then finished by keel_saga_recover().
 *
 * Ownership and leases.  Every saga row names its owner (a process instance), a claim token
 * (unique per execution or recovery claim) and a lease expiry taken from the database clock.
 * Each transition renews the lease and is fenced on the claim token: a writer whose claim was
 * taken over gets KEEL_EBUSY and stops.  lease_ms must therefore exceed the longest single
 * step or compensation (including its retries' backoff).
 *
 * Recovery rules (keel_saga_recover, run at startup and then periodically):
 *   - Only sagas in RUNNING or COMPENSATING are candidates.  A candidate is claimed with one
 *     atomic compare-and-set UPDATE: it must still hold the claim token the recoverer read,
 *     still be RUNNING/COMPENSATING, and either its lease has expired or its owner is the
 *     config's reclaim_owner (the name of a previous instance known to be dead).  Two
 *     recoverers, threads or processes, can therefore never both claim a saga: the loser's
 *     UPDATE matches no row and the saga is counted as busy.  A live executor's saga is never
 *     taken while its lease runs.
 *   - A saga whose name has no registered definition is reported (KEEL_ENOTFOUND, with the
 *     saga id and name in diag, counted in report->unknown) and left untouched.
 *   - RUNNING with every step completed (the crash hit before "saga finished") -> COMPLETED.
 *   - RUNNING, policy COMPENSATE (the default): the saga is aborted (event "saga_aborted",
 *     error KEEL_ESTATE, failed step = the interrupted step k) and compensated.  If the last
 *     record is "step k started" without an outcome, step k's effect is unknown, so step k's
 *     compensation runs too, then k-1 .. 0.  Compensations must therefore be idempotent and
 *     tolerate "nothing to undo".  If step k had not started, compensation starts at k-1.
 *   - RUNNING, policy RESUME (forward recovery, opted in per definition): step k is run again
 *     (if it had started) or started, and the saga continues.  Steps must then be idempotent
 *     (for example through the idempotency policy keyed on saga id + step name).  A step that
 *     fails during resumption is compensated as usual.
 *   - COMPENSATING: compensation continues from the step where it stopped; a compensation
 *     that had started without an outcome runs again (idempotency again).  Attempts restart
 *     at 1.
 *
 * Thread-safety.  A keel_saga_def is built on one thread and is immutable (and shareable)
 * once keel_saga_execute() or keel_saga_recover() has used it.  keel_saga_execute() and
 * keel_saga_recover() may run on any number of threads at once.  Both logs are thread-safe.
 * A keel_saga_exec belongs to its caller.
 */
#ifndef KEEL_SAGA_H
#define KEEL_SAGA_H

#include <jansson.h>
#include <keel/common.h>
#include <keel/core.h>
#include <keel/policy.h>
#include <keel/store.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Longest saga id, saga name, step name and owner name, in bytes (1..max printable ASCII,
 *  no spaces). */
#define KEEL_SAGA_ID_MAX 128
#define KEEL_SAGA_NAME_MAX 128
#define KEEL_SAGA_OWNER_MAX 128
/** Most steps in one definition. */
#define KEEL_SAGA_STEPS_MAX 64
/** Largest serialised context, in bytes. */
#define KEEL_SAGA_CONTEXT_MAX (1024u * 1024u)

/** Saga states.  Values are stored; append only. */
typedef enum keel_saga_state {
    KEEL_SAGA_RUNNING = 1,
    KEEL_SAGA_COMPENSATING = 2,
    KEEL_SAGA_COMPLETED = 3,
    KEEL_SAGA_COMPENSATED = 4,
    KEEL_SAGA_FAILED_COMPENSATION = 5
} keel_saga_state;

/** "RUNNING", "COMPENSATING", "COMPLETED", "COMPENSATED", "FAILED_COMPENSATION"; "?" for
 *  others.  Thread-safety: any thread. Ownership: static string. Errors: none. */
KEEL_API const char *keel_saga_state_name(keel_saga_state s);
/** Inverse of keel_saga_state_name (exact match).
 *  @return KEEL_OK, KEEL_EINVAL (NULL), KEEL_EPARSE (unknown name). Thread-safety: any. */
KEEL_API KEEL_NODISCARD keel_err keel_saga_state_parse(const char *s, keel_saga_state *out);

/** Per-step outcome in an execution result. */
typedef enum keel_saga_step_status {
    KEEL_SAGA_STEP_PENDING = 0,             /* never started */
    KEEL_SAGA_STEP_STARTED = 1,             /* started; outcome unknown (crash) */
    KEEL_SAGA_STEP_COMPLETED = 2,           /* succeeded (and not compensated) */
    KEEL_SAGA_STEP_FAILED = 3,              /* the action returned an error */
    KEEL_SAGA_STEP_COMPENSATED = 4,         /* its compensation succeeded */
    KEEL_SAGA_STEP_COMPENSATION_FAILED = 5  /* every compensation attempt failed */
} keel_saga_step_status;

/** What a step action or compensation is told about the call.  Borrowed for the call. */
typedef struct keel_saga_call {
    const char *saga_id;   /* use saga_id + step name as an idempotency key */
    const char *saga_name;
    const char *step_name;
    size_t step;           /* 0-based index */
    unsigned attempt;      /* compensations: 1 .. compensation_retries; actions: 1 */
    int recovering;        /* 1 when driven by keel_saga_recover() */
} keel_saga_call;

/** A step action or compensation.  Reads and modifies ctx (a JSON object) in place; returns
 *  KEEL_OK or an error (any keel_err, typically a KEEL_EPAY_* code).  Must not keep ctx. */
typedef keel_err (*keel_saga_fn)(const keel_saga_call *call, json_t *ctx, void *ud);

/** What recovery does with a saga a crash left RUNNING (see the header comment). */
typedef enum keel_saga_recovery {
    KEEL_SAGA_RECOVER_COMPENSATE = 0, /* backward recovery (default) */
    KEEL_SAGA_RECOVER_RESUME = 1      /* forward recovery: steps must be idempotent */
} keel_saga_recovery;

/** Saga definition settings.  Fill with keel_saga_config_default(). */
typedef struct keel_saga_config {
    size_t size;                         /* sizeof(keel_saga_config) */
    unsigned compensation_retries;       /* attempts per compensation, >= 1 (default 3) */
    uint64_t compensation_base_delay_ms; /* wait base * n after failed attempt n (default 100) */
    const keel_clock *clock;             /* backoff waits; NULL = system; borrowed */
    keel_saga_recovery recovery;         /* default KEEL_SAGA_RECOVER_COMPENSATE */
    const char *owner;    /* this process instance, stored as the saga owner; copied.
                             NULL = "<hostname>:<pid>:<random>" chosen once per process */
    uint64_t lease_ms;    /* lease renewed by every transition (default 60000); 0 makes the
                             saga claimable by any recoverer at once (tests only) */
} keel_saga_config;

/** Fill cfg with the defaults.  Thread-safety: any thread. Errors: none. */
KEEL_API void keel_saga_config_default(keel_saga_config *cfg);

/** A saga definition: a name and ordered steps.  Opaque. */
typedef struct keel_saga_def keel_saga_def;

/** Create a definition.  name: 1..KEEL_SAGA_NAME_MAX printable ASCII ("checkout").  cfg NULL
 *  = defaults.  @return KEEL_OK, KEEL_EINVAL (bad name or config), KEEL_ENOMEM.
 *  Thread-safety: any thread. Ownership: copies name and cfg->owner; borrows cfg->clock;
 *  caller destroys the definition with keel_saga_def_destroy(). */
KEEL_API KEEL_NODISCARD keel_err keel_saga_def_create(keel_saga_def **out, const char *name,
                                                      const keel_saga_config *cfg);
/** Append a step.  compensate may be NULL (nothing to undo: the step is skipped while
 *  compensating).  ud is passed to both functions.
 *  @return KEEL_OK, KEEL_EINVAL (NULL action, bad or duplicate name), KEEL_EFULL (more than
 *  KEEL_SAGA_STEPS_MAX steps), KEEL_ESTATE (the definition was already used), KEEL_ENOMEM.
 *  Thread-safety: before first use only. Ownership: copies name; borrows ud. */
KEEL_API KEEL_NODISCARD keel_err keel_saga_def_add_step(keel_saga_def *def, const char *name,
                                                        keel_saga_fn action,
                                                        keel_saga_fn compensate, void *ud);
/** Name and step count of a definition.  Thread-safety: any. Ownership: borrowed name. */
KEEL_API const char *keel_saga_def_name(const keel_saga_def *def);
KEEL_API size_t keel_saga_def_nsteps(const keel_saga_def *def);
/** Free a definition (no execution may be using it).  NULL is a no-op. */
KEEL_API void keel_saga_def_destroy(keel_saga_def *def);

/** 1 if id is a valid saga id (1..KEEL_SAGA_ID_MAX bytes of 0x21..0x7e).  Thread-safety: any. */
KEEL_API int keel_saga_id_valid(const char *id);

/* ------------------------------------------------------------- saga log -- */

/** Transitions recorded in the log.  Stored by name (keel_saga_event_kind_name). */
typedef enum keel_saga_event_kind {
    KEEL_SAGA_EV_STARTED = 1,         /* saga_started: id, name, owner, initial context */
    KEEL_SAGA_EV_STEP_STARTED = 2,    /* step_started */
    KEEL_SAGA_EV_STEP_COMPLETED = 3,  /* step_completed, with the context */
    KEEL_SAGA_EV_STEP_FAILED = 4,     /* step_failed, with the error; state -> COMPENSATING */
    KEEL_SAGA_EV_ABORTED = 5,         /* saga_aborted by recovery; state -> COMPENSATING */
    KEEL_SAGA_EV_COMP_STARTED = 6,    /* compensation_started (attempt) */
    KEEL_SAGA_EV_COMP_COMPLETED = 7,  /* compensation_completed (attempt), with the context */
    KEEL_SAGA_EV_COMP_FAILED = 8,     /* compensation_failed (attempt, error, final) */
    KEEL_SAGA_EV_FINISHED = 9,        /* saga_finished, with the final state */
    KEEL_SAGA_EV_CLAIMED = 10         /* saga_claimed by a recoverer (written by claim) */
} keel_saga_event_kind;

/** "saga_started", "step_started", ... ; "?" for others.  Ownership: static string. */
KEEL_API const char *keel_saga_event_kind_name(keel_saga_event_kind k);

/** The durable state of one saga (one row of keel_sagas).  Transparent value filled by the
 *  log; release its context with keel_saga_record_cleanup(). */
typedef struct keel_saga_record {
    char id[KEEL_SAGA_ID_MAX + 1];
    char name[KEEL_SAGA_NAME_MAX + 1];
    keel_saga_state state;
    int next_step;         /* steps completed so far (the next step to run) */
    int in_step;           /* 1: step next_step started, outcome not recorded */
    int comp_next;         /* COMPENSATING: next step to compensate, counting down; -1 none */
    int failed_step;       /* the failed / interrupted step, -1 none */
    keel_err error;        /* its error (KEEL_ESTATE when interrupted by a crash) */
    int comp_failures;     /* compensations that failed for good */
    json_t *context;       /* owned reference (NULL when not loaded) */
    char owner[KEEL_SAGA_OWNER_MAX + 1];
    char claim[KEEL_UUID_SIZE];
    int64_t lease_until_ms; /* database clock, Unix ms */
    int64_t seq;            /* events recorded */
    int64_t created_at_ms, updated_at_ms;
} keel_saga_record;

/** Drop the record's context reference (the rest is plain data).  NULL is a no-op. */
KEEL_API void keel_saga_record_cleanup(keel_saga_record *rec);

/** One transition, as handed to a log's record().  Borrowed for the call. */
typedef struct keel_saga_event {
    keel_saga_event_kind kind;
    const keel_saga_record *saga; /* the saga's state after the transition; saga->claim is the
                                     writer's claim token (fencing) */
    int step;                     /* step index, -1 for saga-level events */
    const char *step_name;        /* NULL for saga-level events */
    keel_err error;               /* STEP_FAILED, ABORTED, COMP_FAILED */
    unsigned attempt;             /* COMP_* */
    int final;                    /* COMP_FAILED: 1 when no attempt is left */
    int context_changed;          /* 1: persist saga->context */
    uint64_t lease_ms;            /* renew the lease to now + lease_ms */
} keel_saga_event;

/** One entry of a saga's history (keel_saga_log_history). Borrowed for the callback. */
typedef struct keel_saga_entry {
    int64_t seq; /* 1, 2, ... */
    keel_saga_event_kind kind;
    int step;
    const char *step_name; /* NULL for saga-level events */
    keel_err error;
    unsigned attempt;
    keel_saga_state state; /* the saga state after the event */
    int64_t at_ms;         /* Unix ms */
} keel_saga_entry;
typedef void (*keel_saga_entry_fn)(const keel_saga_entry *e, void *ud);

/** A claim request (see "Recovery rules"). */
typedef struct keel_saga_claim {
    const char *saga_id;
    const char *observed_claim; /* the claim token read by load() */
    const char *new_claim;      /* fresh token */
    const char *owner;          /* the recoverer's instance name */
    const char *reclaim_owner;  /* NULL, or a dead instance whose sagas may be taken at once */
    uint64_t lease_ms;
} keel_saga_claim;

/** The saga log interface.  Implementations embed it as their first member.  Every function
 *  must be thread-safe.
 *  record: apply one transition atomically.  STARTED inserts (KEEL_EEXIST when the id is
 *    taken); the others update the saga only while it is RUNNING/COMPENSATING and still holds
 *    ev->saga->claim (else KEEL_EBUSY; KEEL_ENOTFOUND for an unknown id) and append the event.
 *  load: fill *out (KEEL_ENOTFOUND with the id in diag).
 *  list_active: ids of RUNNING/COMPENSATING sagas starting with prefix ("" = all) and
 *    sorting after `after` (byte order), ascending, at most cap; *n set.
 *  claim: the compare-and-set of "Recovery rules"; KEEL_OK or KEEL_EBUSY (not claimable).
 *  history: call fn for each event of the saga in order (KEEL_ENOTFOUND for unknown ids).
 *  destroy: free the log. */
typedef struct keel_saga_log keel_saga_log;
struct keel_saga_log {
    const char *name; /* "memory", "sql" */
    keel_err (*record)(keel_saga_log *self, const keel_saga_event *ev, keel_diag *diag);
    keel_err (*load)(keel_saga_log *self, const char *saga_id, keel_saga_record *out,
                     keel_diag *diag);
    keel_err (*list_active)(keel_saga_log *self, const char *prefix, const char *after,
                            char (*ids)[KEEL_SAGA_ID_MAX + 1], size_t cap, size_t *n,
                            keel_diag *diag);
    keel_err (*claim)(keel_saga_log *self, const keel_saga_claim *c, keel_diag *diag);
    keel_err (*history)(keel_saga_log *self, const char *saga_id, keel_saga_entry_fn fn,
                        void *ud, keel_diag *diag);
    void (*destroy)(keel_saga_log *self);
};

/** An in-memory log.  clock (borrowed; NULL = system monotonic clock) drives lease expiry.
 *  @return KEEL_OK, KEEL_ENOMEM.  Ownership: destroy with keel_saga_log_destroy().
 *  Thread-safety: the log is thread-safe (one mutex). */
KEEL_API KEEL_NODISCARD keel_err keel_saga_log_memory_create(keel_saga_log **out,
                                                             const keel_clock *clock);
/** A durable log on store: applies the "keel.pay.saga" component migrations (tables
 *  keel_sagas, keel_saga_events), then records each transition in one transaction.
 *  Lease times come from the database clock ({now_ms}).
 *  @return KEEL_OK, KEEL_EINVAL, KEEL_ENOMEM, or the migration's error (diag).
 *  Ownership: borrows store (it must outlive the log). Thread-safety: thread-safe. */
KEEL_API KEEL_NODISCARD keel_err keel_saga_log_sql_create(keel_saga_log **out,
                                                          keel_store *store, keel_diag *diag);
/** Load a saga's durable state.  @return KEEL_OK, KEEL_EINVAL, KEEL_ENOTFOUND (unknown id,
 *  named in diag), or the log's error.  Ownership: caller cleans *out up. */
KEEL_API KEEL_NODISCARD keel_err keel_saga_log_load(keel_saga_log *log, const char *saga_id,
                                                    keel_saga_record *out, keel_diag *diag);
/** Walk a saga's recorded transitions in order.  @return KEEL_OK, KEEL_EINVAL,
 *  KEEL_ENOTFOUND (unknown id, named in diag), or the log's error. */
KEEL_API KEEL_NODISCARD keel_err keel_saga_log_history(keel_saga_log *log, const char *saga_id,
                                                       keel_saga_entry_fn fn, void *ud,
                                                       keel_diag *diag);
/** Destroy a log.  NULL is a no-op. */
KEEL_API void keel_saga_log_destroy(keel_saga_log *log);

/* ------------------------------------------------------------ execution -- */

/** The result of an execution (or of a recovery).  Opaque. */
typedef struct keel_saga_exec keel_saga_exec;

/** Run a saga to a final state.
 *  @param log      NULL = no log (no durability, no recovery)
 *  @param saga_id  caller-chosen ("saga_ord_123") or NULL for a fresh UUIDv4
 *  @param ctx      a JSON object (NULL = {}); the saga takes its own reference and the steps
 *                  modify it in place
 *  @return KEEL_OK with *out set (state COMPLETED, COMPENSATED or FAILED_COMPENSATION; a step
 *  failure is not an error of this function - inspect the result or call
 *  keel_saga_assert_succeeded()); KEEL_EINVAL (bad id, ctx not an object); KEEL_EEXIST (the id
 *  is already in the log); KEEL_ETOOBIG (context too large to record); KEEL_EBUSY (another
 *  process claimed the saga: it will finish it); the log's error (the saga stops at once and
 *  is left to keel_saga_recover); KEEL_ENOMEM.  On error *out is NULL.
 *  Thread-safety: any thread.  Ownership: borrows def and log for the call; caller destroys
 *  *out with keel_saga_exec_destroy(). */
KEEL_API KEEL_NODISCARD keel_err keel_saga_execute(const keel_saga_def *def,
                                                   keel_saga_log *log, const char *saga_id,
                                                   json_t *ctx, keel_saga_exec **out,
                                                   keel_diag *diag);

/** KEEL_OK for COMPLETED; the failed step's error for COMPENSATED; KEEL_EPAY_COMPENSATION for
 *  FAILED_COMPENSATION (seed assert_saga_succeeded / SagaCompensationError); KEEL_ESTATE for a
 *  non-final state; KEEL_EINVAL for NULL.  Thread-safety: any thread. */
KEEL_API keel_err keel_saga_assert_succeeded(const keel_saga_exec *x);

/** One step's outcome.  Borrowed from the execution. */
typedef struct keel_saga_step_result {
    const char *name;
    keel_saga_step_status status;
    keel_err error;          /* action error (FAILED), last compensation error otherwise */
    unsigned comp_attempts;  /* compensation attempts made by this execution */
} keel_saga_step_result;

/** Accessors.  Thread-safety: any thread (read-only).  Ownership: borrowed from x, valid until
 *  keel_saga_exec_destroy(). */
KEEL_API keel_saga_state keel_saga_exec_state(const keel_saga_exec *x);
KEEL_API const char *keel_saga_exec_id(const keel_saga_exec *x);
KEEL_API const char *keel_saga_exec_name(const keel_saga_exec *x);
/** The context (borrowed; json_incref it to keep it). */
KEEL_API json_t *keel_saga_exec_context(const keel_saga_exec *x);
/** Index of the failed (or crash-interrupted) step, -1 when none. */
KEEL_API int keel_saga_exec_failed_step(const keel_saga_exec *x);
/** The failed step's error, KEEL_OK when none. */
KEEL_API keel_err keel_saga_exec_error(const keel_saga_exec *x);
KEEL_API size_t keel_saga_exec_nsteps(const keel_saga_exec *x);
/** Step i's outcome, NULL when i is out of range.  For a recovered saga, steps that finished
 *  before the crash are reconstructed from the durable record (COMPLETED / COMPENSATED). */
KEEL_API const keel_saga_step_result *keel_saga_exec_step(const keel_saga_exec *x, size_t i);
/** The compensation failure list: number of steps whose compensation failed for good, and the
 *  i-th of them (in the order they failed), or -1. */
KEEL_API size_t keel_saga_exec_ncompensation_failures(const keel_saga_exec *x);
KEEL_API int keel_saga_exec_compensation_failure(const keel_saga_exec *x, size_t i);
/** 1 when the result comes from keel_saga_recover(). */
KEEL_API int keel_saga_exec_recovered(const keel_saga_exec *x);
/** Free the result (and its context reference).  NULL is a no-op. */
KEEL_API void keel_saga_exec_destroy(keel_saga_exec *x);

/* ------------------------------------------------------------- recovery -- */

/** Called for each saga recovery drove to a final state (for example to page the on-call on
 *  FAILED_COMPENSATION).  x is borrowed for the call. */
typedef void (*keel_saga_recovered_fn)(const keel_saga_exec *x, void *ud);

typedef struct keel_saga_recover_config {
    size_t size;
    const char *owner;          /* instance name written on claim; NULL = process default */
    const char *reclaim_owner;  /* a previous, dead instance: its sagas are claimed at once
                                   even while their lease runs (NULL = only expired leases) */
    const char *id_prefix;      /* only sagas whose id starts with this (NULL = all) */
    uint64_t lease_ms;          /* lease taken on claim and renewed (default 60000) */
    size_t max_sagas;           /* stop after claiming this many (0 = no limit) */
    keel_saga_recovered_fn on_recovered;
    void *on_recovered_ud;
} keel_saga_recover_config;

KEEL_API void keel_saga_recover_config_default(keel_saga_recover_config *cfg);

/** What a recovery run did. */
typedef struct keel_saga_recover_report {
    size_t found;               /* candidates seen (RUNNING/COMPENSATING) */
    size_t recovered;           /* claimed and driven to a final state */
    size_t completed, compensated, failed_compensation; /* final states of those */
    size_t busy;                /* not claimable (live lease or claimed by someone else) */
    size_t unknown;             /* no definition registered for the saga name */
    size_t errors;              /* log errors while recovering (saga left for later) */
    char first_unknown[KEEL_SAGA_ID_MAX + 1]; /* id of the first unknown saga, "" when none */
} keel_saga_recover_report;

/** Drive every saga that a crash left RUNNING or COMPENSATING to a final state, by the rules
 *  in the header comment.  defs: the registered definitions, matched by name.
 *  @return KEEL_OK when every candidate was recovered or busy; KEEL_ENOTFOUND when some saga
 *  names no registered definition (diag names the first saga id and name; the others were
 *  still recovered); the first log error otherwise (the saga concerned is left for a later
 *  run; the others were still tried); KEEL_EINVAL.  report may be NULL.
 *  Thread-safety: any thread; safe to run concurrently in several threads and processes.
 *  Ownership: borrows everything for the call. */
KEEL_API KEEL_NODISCARD keel_err keel_saga_recover_log(keel_saga_log *log,
                                                       const keel_saga_def *const *defs,
                                                       size_t ndefs,
                                                       const keel_saga_recover_config *cfg,
                                                       keel_saga_recover_report *report,
                                                       keel_diag *diag);
/** keel_saga_recover_log() on a durable SQL log over store (created and destroyed for the
 *  call; applies the component migrations). */
KEEL_API KEEL_NODISCARD keel_err keel_saga_recover(keel_store *store,
                                                   const keel_saga_def *const *defs,
                                                   size_t ndefs,
                                                   const keel_saga_recover_config *cfg,
                                                   keel_saga_recover_report *report,
                                                   keel_diag *diag);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_SAGA_H */
