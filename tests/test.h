/* test.h — minimal assertions for C unit tests: print both values and where, then abort. */
#ifndef SL_TEST_H
#define SL_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ASSERT(x)                                                                                \
    do {                                                                                         \
        if (!(x)) {                                                                              \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #x);            \
            abort();                                                                             \
        }                                                                                        \
    } while (0)

#define ASSERT_EQ(a, b)                                                                          \
    do {                                                                                         \
        long long _a = (long long)(a), _b = (long long)(b);                                      \
        if (_a != _b) {                                                                          \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b, \
                    _a, _b);                                                                     \
            abort();                                                                             \
        }                                                                                        \
    } while (0)

/* |a - b| <= abs_tol + |b| * rel_tol; b is the reference */
#define ASSERT_NEAR(a, b, abs_tol, rel_tol)                                                      \
    do {                                                                                         \
        double _a = (double)(a), _b = (double)(b);                                               \
        if (!(fabs(_a - _b) <= (abs_tol) + fabs(_b) * (rel_tol))) {                              \
            fprintf(stderr, "%s:%d: %s ~= %s failed: %.9g vs %.9g (diff %.3g)\n", __FILE__,      \
                    __LINE__, #a, #b, _a, _b, fabs(_a - _b));                                     \
            abort();                                                                             \
        }                                                                                        \
    } while (0)

#define ASSERT_STR_CONTAINS(hay, needle)                                                         \
    do {                                                                                         \
        const char *_h = (hay), *_n = (needle);                                                  \
        if (!_h || !strstr(_h, _n)) {                                                            \
            fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__,       \
                    _h ? _h : "(null)", _n);                                                     \
            abort();                                                                             \
        }                                                                                        \
    } while (0)

#endif
