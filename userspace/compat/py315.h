/* SPDX-License-Identifier: MIT */
/* CPython 3.15: 3.14's object layout and rules. */
#ifndef PYCDS_COMPAT_PY315_H
#define PYCDS_COMPAT_PY315_H

#define PYCDS_PY_MINOR 15
#include "py314.h"

#endif /* PYCDS_COMPAT_PY315_H */
