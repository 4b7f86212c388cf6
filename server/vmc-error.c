/* vmc-error.c — the public error domain. */
#include "vmcmux/vmcmux.h"

G_DEFINE_QUARK(vmc-error-quark, vmc_error)
