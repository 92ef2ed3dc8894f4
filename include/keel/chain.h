/*
 * keel/chain.h - the one composition abstraction of keel (design.md section 3).
 *
 * A chain is an ordered list of layers.  Running a chain calls the first
 * layer; each layer may act, call keel_chain_next() to run the rest of the
 * chain (and the terminal function at its end), act again on the way out, or
 * answer by itself without calling next.  HTTP middleware and resilience
 * policies (retry, breaker, timeout, idempotency) are both layers: what the
 * context pointer means is up to the user of the chain.
 *
 * Thread-safety: build a chain at startup; once built, keel_chain_run() may be
 * called from any number of threads at once (layers must be thread-safe
 * themselves).  Adding layers while the chain runs is not allowed.
 */
#ifndef KEEL_CHAIN_H
#define KEEL_CHAIN_H

#include <keel/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct keel_chain keel_chain;
typedef struct keel_layer keel_layer;
/** Cursor through a running chain; lives on the stack of keel_chain_run(). */
typedef struct keel_chain_cursor keel_chain_cursor;

/** The end of the chain: the thing the layers wrap (an HTTP handler, a payment call). */
typedef keel_err (*keel_chain_terminal_fn)(void *cx, void *ud);

/** A layer.  Embed it as the first member of your own struct to carry state. */
struct keel_layer {
    const char *name;
    /** Do the layer's work; call keel_chain_next(cur, cx) to run the rest. */
    keel_err (*call)(keel_layer *self, void *cx, keel_chain_cursor *cur);
    /** Called once by keel_chain_destroy(); may free self.  May be NULL. */
    void (*dispose)(keel_layer *self);
};

struct keel_chain_cursor {
    const keel_chain *chain;
    size_t index;
    keel_chain_terminal_fn terminal;
    void *terminal_ud;
};

/** Create an empty chain. Ownership: caller destroys with keel_chain_destroy(). */
KEEL_API KEEL_NODISCARD keel_err keel_chain_create(keel_chain **out);
/** Append a layer at the inner end.  The chain takes the layer: dispose() runs at destroy.
 *  @return KEEL_OK, KEEL_ENOMEM (layer not taken), KEEL_EINVAL. */
KEEL_API KEEL_NODISCARD keel_err keel_chain_add_take(keel_chain *c, keel_layer *layer);
/** Number of layers. */
KEEL_API size_t keel_chain_len(const keel_chain *c);
/** Layer at position i (0 = outermost) or NULL. Borrowed. */
KEEL_API keel_layer *keel_chain_at(const keel_chain *c, size_t i);
/** Run the chain around terminal(cx, ud).  Returns what the outermost layer returns.
 *  A NULL or empty chain calls terminal directly. */
KEEL_API keel_err keel_chain_run(const keel_chain *c, void *cx, keel_chain_terminal_fn terminal,
                                 void *ud);
/** From inside a layer: run the remaining layers and the terminal.  Calling it more than once
 *  (a retry layer) re-runs the rest of the chain each time. */
KEEL_API keel_err keel_chain_next(keel_chain_cursor *cur, void *cx);
/** Dispose every layer and free the chain. NULL is a no-op. */
KEEL_API void keel_chain_destroy(keel_chain *c);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_CHAIN_H */
