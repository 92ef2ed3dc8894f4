/* redact_int.h - private declarations of src/pay/redact.c (tests and the fuzz target use them).
 * Never installed. */
#ifndef KEEL_PAY_REDACT_INT_H
#define KEEL_PAY_REDACT_INT_H

#include <stddef.h>

#include <keel/redact.h>

/* Bytes a keel_redactor currently holds back (for the bounded-memory checks). */
size_t keel__redactor_pending(const keel_redactor *r);

#endif /* KEEL_PAY_REDACT_INT_H */
