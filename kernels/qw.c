#include "qw.h"

#include <stdlib.h>
#include <string.h>

#include "../base/base.h"

int64_t sl_qw_row_bytes(const sl_qw *w) {
    switch (w->fmt) {
    case SL_WF_F32: return w->cols * 4;
    case SL_WF_F16:
    case SL_WF_BF16: return w->cols * 2;
    case SL_WF_QW8: return w->cols;
    case SL_WF_QW4: return w->cols / 2;
    }
    return 0;
}

void sl_qw_dequant_row(const sl_qw *w, int64_t r, float *dst) {
    int64_t n = w->cols;
    switch (w->fmt) {
    case SL_WF_F32: memcpy(dst, (const float *)w->data + r * n, (size_t)n * 4); return;
    case SL_WF_F16: {
        const uint16_t *s = (const uint16_t *)w->data + r * n;
        for (int64_t i = 0; i < n; i++) dst[i] = sl_fp16_to_f32(s[i]);
        return;
    }
    case SL_WF_BF16: {
        const uint16_t *s = (const uint16_t *)w->data + r * n;
        for (int64_t i = 0; i < n; i++) dst[i] = sl_bf16_to_f32(s[i]);
        return;
    }
    case SL_WF_QW8:
    case SL_WF_QW4: {
        int64_t ng = n / w->group;
        const float *sc = w->scales + r * ng;
        const float *of = w->offsets ? w->offsets + r * ng : NULL;
        for (int64_t i = 0; i < n; i++) {
            float c;
            if (w->fmt == SL_WF_QW8) {
                c = (float)((const int8_t *)w->codes)[r * n + i];
            } else {
                uint8_t b = ((const uint8_t *)w->codes)[r * (n / 2) + i / 2];
                int q = (i & 1) ? b >> 4 : b & 15;
                c = (float)(of ? q : q - 8);
            }
            int64_t g = i / w->group;
            dst[i] = of ? sc[g] * c + of[g] : sc[g] * c;
        }
        return;
    }
    }
}

void sl_qw_alloc(sl_qw *w, sl_wfmt fmt, int64_t rows, int64_t cols, int group, int with_offsets) {
    memset(w, 0, sizeof *w);
    w->fmt = fmt;
    w->rows = rows;
    w->cols = cols;
    w->owns = 1;
    if (fmt == SL_WF_QW8 || fmt == SL_WF_QW4) {
        SL_CHECK(group > 0 && cols % group == 0 && (fmt == SL_WF_QW8 || cols % 2 == 0));
        w->group = group;
        w->codes = sl_xmalloc((size_t)(rows * sl_qw_row_bytes(w)));
        w->scales = sl_xmalloc((size_t)(rows * (cols / group)) * sizeof(float));
        if (with_offsets) w->offsets = sl_xmalloc((size_t)(rows * (cols / group)) * sizeof(float));
    } else {
        w->data = sl_xmalloc((size_t)(rows * sl_qw_row_bytes(w)));
    }
}

void sl_qw_free(sl_qw *w) {
    if (w->owns) {
        free(w->data);
        free(w->codes);
        free(w->scales);
        free(w->offsets);
    }
    memset(w, 0, sizeof *w);
}

const char *sl_wfmt_name(sl_wfmt f) {
    static const char *n[] = {"F32", "F16", "BF16", "QW8", "QW4"};
    return (unsigned)f < 5 ? n[f] : "?";
}
