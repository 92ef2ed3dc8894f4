/* keel/keel.h - umbrella header: include this to use libkeel. */
#ifndef KEEL_KEEL_H
#define KEEL_KEEL_H
#include <keel/common.h>
#include <keel/version.h>
#include <keel/core.h>
#include <keel/chain.h>
#include <keel/log.h>
#include <keel/metrics.h>
#include <keel/http.h>
#include <keel/device.h>
#include <keel/tasks.h>
#include <keel/config.h>
#include <keel/validate.h>
#include <keel/store.h>
#include <keel/redis.h>
#include <keel/policy.h>
#include <keel/retry.h>
#include <keel/breaker.h>
#include <keel/limiter.h>
#include <keel/cache.h>
#include <keel/bulkhead.h>
#include <keel/timer.h>
#include <keel/password.h>
#include <keel/jwt.h>
#include <keel/payment.h>
#include <keel/idempotency.h>
#endif
