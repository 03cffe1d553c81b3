/* SPDX-License-Identifier: MIT */
/* CPython 3.13: 3.12's rules, and code objects hold JIT executors. */
#ifndef PYCDS_COMPAT_PY313_H
#define PYCDS_COMPAT_PY313_H

#define PYCDS_PY_MINOR 13
#define PYCDS_CODE_RESET_MORE(d) ((d)->co_executors = NULL)
#include "py312.h"

#endif /* PYCDS_COMPAT_PY313_H */
