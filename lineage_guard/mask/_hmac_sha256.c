/* HMAC-SHA256 of every row of an Arrow binary array, in one call, with OpenSSL's SHA-256.
 *
 * Why this exists: an HMAC of a short value is two SHA-256 compressions once the key's inner and
 * outer pad blocks are hashed, and those two pad states are the same for every row. Per-value
 * HMAC APIs (OpenSSL's EVP_MAC, polars-hash's `hmac_sha256`, Python's `hmac`) redo the pad blocks
 * or allocate a context for every value: 330-350 ns a row here, where copying the two cached
 * SHA256_CTX midstates costs ~140 ns (benchmarks/masking.py). The digest itself is OpenSSL's
 * (SHA-NI where the CPU has it); this file only composes RFC 2104 from it.
 *
 * OpenSSL's SHA256_Init/Update/Final are deprecated in 3.0 in favour of EVP, whose context copy
 * allocates; they are still exported by every OpenSSL 3 release. Where they are gone the build of
 * this optional extension fails and lineage_guard takes the polars-hash path instead.
 *
 * Inputs are Arrow large_binary buffers handed over as they are: `offsets` (n + 1 int64, may start
 * past 0 for a sliced array) and `data`. Every offset is checked against `data` before any row is
 * hashed; the loop runs without the GIL. Key material is wiped from the stack before returning.
 */
#define PY_SSIZE_T_CLEAN
#define OPENSSL_SUPPRESS_DEPRECATED
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/opensslv.h>
#include <openssl/sha.h>

#if OPENSSL_VERSION_MAJOR < 3
#error "OpenSSL 3 is required"
#endif

#define BLOCK 64
#define DIGEST 32

typedef struct {
    SHA256_CTX inner;
    SHA256_CTX outer;
} pads_t;

static void make_pads(const unsigned char *key, Py_ssize_t key_len, pads_t *pads) {
    unsigned char block[BLOCK];
    unsigned char pad[BLOCK];
    memset(block, 0, BLOCK);
    if (key_len > BLOCK) {
        SHA256(key, (size_t)key_len, block);
    } else {
        memcpy(block, key, (size_t)key_len);
    }
    for (int j = 0; j < BLOCK; j++) pad[j] = block[j] ^ 0x36;
    SHA256_Init(&pads->inner);
    SHA256_Update(&pads->inner, pad, BLOCK);
    for (int j = 0; j < BLOCK; j++) pad[j] = block[j] ^ 0x5c;
    SHA256_Init(&pads->outer);
    SHA256_Update(&pads->outer, pad, BLOCK);
    OPENSSL_cleanse(block, BLOCK);
    OPENSSL_cleanse(pad, BLOCK);
}

static inline int64_t offset_at(const unsigned char *offsets, Py_ssize_t i) {
    int64_t value;
    memcpy(&value, offsets + 8 * i, 8);
    return value;
}

/* Rows in the offsets buffer, after checking that every offset lies in `data` and never goes back. */
static Py_ssize_t checked_rows(const Py_buffer *offsets, const Py_buffer *data) {
    if (offsets->len < 8 || offsets->len % 8 != 0) {
        PyErr_SetString(PyExc_ValueError, "offsets must hold n + 1 int64 values");
        return -1;
    }
    Py_ssize_t n = offsets->len / 8 - 1;
    int64_t previous = 0;
    for (Py_ssize_t i = 0; i <= n; i++) {
        int64_t at = offset_at(offsets->buf, i);
        if (at < 0 || at > (int64_t)data->len || (i > 0 && at < previous)) {
            PyErr_SetString(PyExc_ValueError, "offsets are not a valid binary array over data");
            return -1;
        }
        previous = at;
    }
    return n;
}

static inline void hmac_row(const pads_t *pads, const unsigned char *value, size_t len, unsigned char *out) {
    SHA256_CTX ctx = pads->inner;
    unsigned char inner[DIGEST];
    SHA256_Update(&ctx, value, len);
    SHA256_Final(inner, &ctx);
    ctx = pads->outer;
    SHA256_Update(&ctx, inner, DIGEST);
    SHA256_Final(out, &ctx);
}

PyDoc_STRVAR(digests_doc,
"digests(key, offsets, data, out)\n--\n\n"
"Write HMAC-SHA256(key, row) of every row (offsets: n + 1 int64 over data) into out (n * 32 bytes).");

static PyObject *digests(PyObject *self, PyObject *args) {
    Py_buffer key, offsets, data, out;
    if (!PyArg_ParseTuple(args, "y*y*y*w*", &key, &offsets, &data, &out)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = checked_rows(&offsets, &data);
    if (n < 0) goto done;
    if (out.len != n * DIGEST) {
        PyErr_SetString(PyExc_ValueError, "out must hold 32 bytes per row");
        goto done;
    }
    pads_t pads;
    make_pads(key.buf, key.len, &pads);
    const unsigned char *off = offsets.buf, *base = data.buf;
    unsigned char *dst = out.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t lo = offset_at(off, i), hi = offset_at(off, i + 1);
        hmac_row(&pads, base + lo, (size_t)(hi - lo), dst + DIGEST * i);
    }
    Py_END_ALLOW_THREADS
    OPENSSL_cleanse(&pads, sizeof pads);
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&key);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    return result;
}

PyDoc_STRVAR(hex_rows_doc,
"hex_rows(key, offsets, data, out, prefix, hex_chars)\n--\n\n"
"Write prefix + the first hex_chars lowercase hex characters of HMAC-SHA256(key, row) for every\n"
"row into out, as fixed-width rows of len(prefix) + hex_chars bytes.");

static PyObject *hex_rows(PyObject *self, PyObject *args) {
    static const char HEX[] = "0123456789abcdef";
    Py_buffer key, offsets, data, out, prefix;
    int hex_chars;
    if (!PyArg_ParseTuple(args, "y*y*y*w*y*i", &key, &offsets, &data, &out, &prefix, &hex_chars)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = checked_rows(&offsets, &data);
    if (n < 0) goto done;
    if (hex_chars < 0 || hex_chars > 2 * DIGEST) {
        PyErr_SetString(PyExc_ValueError, "hex_chars must be between 0 and 64");
        goto done;
    }
    Py_ssize_t width = prefix.len + hex_chars;
    if (out.len != n * width) {
        PyErr_SetString(PyExc_ValueError, "out must hold len(prefix) + hex_chars bytes per row");
        goto done;
    }
    pads_t pads;
    make_pads(key.buf, key.len, &pads);
    const unsigned char *off = offsets.buf, *base = data.buf, *head = prefix.buf;
    unsigned char *dst = out.buf;
    Py_ssize_t head_len = prefix.len;
    Py_BEGIN_ALLOW_THREADS
    unsigned char mac[DIGEST];
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t lo = offset_at(off, i), hi = offset_at(off, i + 1);
        hmac_row(&pads, base + lo, (size_t)(hi - lo), mac);
        unsigned char *row = dst + width * i;
        memcpy(row, head, (size_t)head_len);
        row += head_len;
        for (int j = 0; j < hex_chars; j++) {
            unsigned char byte = mac[j >> 1];
            row[j] = HEX[(j & 1) ? (byte & 0x0f) : (byte >> 4)];
        }
    }
    OPENSSL_cleanse(mac, DIGEST);
    Py_END_ALLOW_THREADS
    OPENSSL_cleanse(&pads, sizeof pads);
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&key);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    PyBuffer_Release(&prefix);
    return result;
}

static PyMethodDef methods[] = {
    {"digests", digests, METH_VARARGS, digests_doc},
    {"hex_rows", hex_rows, METH_VARARGS, hex_rows_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_hmac_sha256",
    "HMAC-SHA256 over Arrow binary buffers from cached pad midstates (see lineage_guard.mask.native).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__hmac_sha256(void) {
    return PyModule_Create(&module);
}
