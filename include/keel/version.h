/* keel/version.h - compile-time and run-time version of libkeel. */
#ifndef KEEL_VERSION_H
#define KEEL_VERSION_H
#include <keel/common.h>
#ifdef __cplusplus
extern "C" {
#endif
#define KEEL_VERSION_MAJOR 0
#define KEEL_VERSION_MINOR 1
#define KEEL_VERSION_PATCH 0
#define KEEL_VERSION_STRING "0.1.0"
#define KEEL_VERSION_HEX                                                                           \
    ((KEEL_VERSION_MAJOR << 16) | (KEEL_VERSION_MINOR << 8) | KEEL_VERSION_PATCH)
/** Version of the library actually linked, e.g. "0.1.0". Static string. */
KEEL_API const char *keel_version(void);
/** KEEL_VERSION_HEX of the library actually linked. */
KEEL_API unsigned keel_version_hex(void);
#ifdef __cplusplus
}
#endif
#endif
